"""NMEA 0183 decoder: bytes from a GNSS receiver in, one ``Fix`` per epoch out.

``NmeaDecoder.feed(data)`` takes bytes in any chunking (as read from a serial port)
and returns the fix epochs it completed; ``flush()`` ends the stream.  Sentences that
carry the same UTC time of day form one epoch (see ``nmea_epoch``); an epoch
completes when a sentence with another time arrives, or at ``flush()``.

Decoded: RMC GGA GNS GLL VTG GSA GSV ZDA from any talker (GP GN GL GA BD GB GQ QZ GI
…).  Proprietary sentences (``$P…``) and other types are counted and ignored.

Framing rules (the dirt real receivers send):

* a sentence runs from ``$`` to the next ``$`` or the end of the line (LF or CRLF);
  ``$$`` prefixes, leading spaces and NUL padding are skipped, other bytes outside a
  sentence are *garbage*;
* the checksum ``*hh`` is hex in either case and must end the sentence (only
  spaces, CR and NULs may follow it);
* a sentence without ``*hh`` is *truncated* when another ``$`` cut it, when it holds
  a NUL, or when the stream already carried checksums; otherwise it is
  *no_checksum*.  Both are rejected unless the decoder was made with
  ``allow_no_checksum=True`` (for old receivers that send none): then a sentence
  without checksum is accepted only with exactly the field count of its type;
* a physical line longer than ``max_line`` bytes is rejected whole (*too_long*).

Date rules: RMC (status A or D only: receivers send bogus dates without a fix, as
gpsd notes) and ZDA carry the date; GGA, GNS and GLL only the time of day and use
the last good date, advanced by a day when the time of day wraps past midnight.  A
date is bad when it is malformed (``2208-1``), not a calendar date, or earlier than
``min_year``: after a GPS week rollover a receiver reports a date 1024 weeks (19.6
years) early, and RMC years 80..99 mean 1980..1999.  A bad date is counted
(``bad_dates``), forgets the kept date, and its epoch gets ``time`` and ``epoch``
None (``tod`` stays): never a wrong timestamp.  ``min_year`` defaults to 2020, before
any gridlink device was built; lower it only to decode old captures.
"""

import sys

from .nmea_fix import Fix  # noqa: F401  (re-exported: the decoder's output type)
from .nmea_sentences import SLICE, SentenceDecoder

MAX_LINE = 512
DEFAULT_MIN_YEAR = 2020
# feed() works through large inputs in blocks of about this many bytes (see
# _xor_prefix): big-integer shifts cost more per bit under MicroPython.
_BLOCK = 512 if sys.implementation.name == "micropython" else 4096

# Every reason a candidate sentence can be rejected for (keys of ``rejected``).
REASONS = ("bad_checksum", "no_checksum", "truncated", "too_long", "garbage",
           "bad_address", "proprietary", "unknown", "bad_field")

# the sentence types a checksum-less sentence must match by field count (address too)
_NOCK_COUNTS = {
    b"RMC": (12, 13, 14), b"GGA": (15,), b"GNS": (13, 14), b"GLL": (7, 8),
    b"VTG": (5, 9, 10), b"GSA": (18, 19), b"GSV": (4, 5, 8, 9, 12, 13, 16, 17, 20, 21),
    b"ZDA": (7,),
}
_HEX = b"0123456789ABCDEFabcdef"
_HEXVAL = {}  # "hh" in either case → its value
# "*hh\r" and "*hh" → the XOR of a whole line "$" + body + "*hh" + CR LF (or LF) whose
# body has the checksum hh; a line's XOR is two lookups in the block's XOR prefix
_TAIL_CRLF = {}
_TAIL_LF = {}
for _a in _HEX:
    for _b in _HEX:
        _v = int(bytes((_a, _b)), 16)
        _HEXVAL[bytes((_a, _b))] = _v
        _v ^= 0x24 ^ 0x2A ^ _a ^ _b ^ 0x0A  # "$", "*", the digits, LF
        _TAIL_CRLF[bytes((42, _a, _b, 13))] = _v ^ 0x0D
        _TAIL_LF[bytes((42, _a, _b))] = _v
_TRAIL = b" \t\r\n\x00"
# "$" as the needle of "in": CPython tries a bytes needle as an int first, at the cost
# of an exception; MicroPython finds only a bytes needle without iterating
_DOLLAR = b"$" if sys.implementation.name == "micropython" else 36

_TAIL4 = SLICE[-4:]  # "*hh\r"
_TAIL3 = SLICE[-3:]  # "*hh" (LF line end)
_BODY4 = SLICE[1:-4]
_BODY3 = SLICE[1:-3]
_ADDR = SLICE[1:7]   # "GPGGA,"


def checksum(body):
    """The NMEA checksum (XOR of all bytes) of the text between ``$`` and ``*``."""
    n = len(body)
    if n > 128:
        c = 0
        for b in body:
            c ^= b
        return c
    # XOR-fold the body read as one integer: after a fold by w bits the low w bits
    # hold the XOR of the w-bit slices; the bits above them are never read again.
    x = int.from_bytes(body, "little")
    if n > 32:
        if n > 64:
            x ^= x >> 512
        x ^= x >> 256
    x ^= x >> 128
    x ^= x >> 64
    x ^= x >> 32
    x ^= x >> 16
    x ^= x >> 8
    return x & 255


def _xor_prefix(data):
    """Byte i of the result is the XOR of data[0..i]: one pass for every checksum.

    Computed on the whole block as one big-endian integer by a log-step scan (right
    shifts move each byte towards the end and drop what falls off), so the checksum
    of any span is two lookups: xor(data[a..b]) = p[b] ^ p[a - 1].
    """
    n = len(data)
    bits = 8 * n
    x = int.from_bytes(data, "big")
    s = 8
    while s < bits:
        x ^= x >> s
        s <<= 1
    return x.to_bytes(n, "big")


def sentence(body):
    """A complete sentence line for ``body`` (bytes or str, without ``$`` and ``*``)."""
    if isinstance(body, str):
        body = body.encode()
    return b"$" + body + b"*" + f"{checksum(body):02X}".encode() + b"\r\n"


class NmeaDecoder(SentenceDecoder):
    """Streaming NMEA 0183 decoder.  See the module docstring for the rules.

    Counters: ``lines`` (physical lines read), ``sentences`` (candidates found, each
    accepted or rejected), ``accepted``, ``rejected`` (reason → count, reasons in
    ``REASONS``), ``bad_dates`` (dates rejected in accepted sentences), ``fixes``
    (epochs emitted).  ``stats()`` returns them as one dict.
    """

    def __init__(self, min_year=DEFAULT_MIN_YEAR, allow_no_checksum=False, max_line=MAX_LINE):
        SentenceDecoder.__init__(self, min_year)
        self.allow_no_checksum = allow_no_checksum
        self.max_line = max_line
        self.lines = 0
        self.accepted = 0
        self.rejected = {}
        for reason in REASONS:
            self.rejected[reason] = 0
        self._partial = b""
        self._skipping = False      # inside an over-long line, until the next LF
        self._seen_checksum = False
        self._dispatch = {}         # address and comma ("GPGGA,") → handler
        self._refused = {}          # address and comma → why it is rejected

    @property
    def sentences(self):
        n = self.accepted
        for count in self.rejected.values():
            n += count
        return n

    def feed(self, data):
        """Consume bytes; return the list of fixes they completed (often empty)."""
        if not isinstance(data, bytes):
            data = bytes(data)
        if len(data) <= _BLOCK:
            return self._feed(data)
        fixes = []
        i = 0
        n = len(data)
        while i < n:
            j = data.rfind(b"\n", i, i + _BLOCK)
            j = i + _BLOCK if j < 0 else j + 1
            fixes.extend(self._feed(data[i:j]))
            i = j
        return fixes

    def flush(self):
        """End of stream: decode an unterminated last line, complete the open epoch."""
        out = self._out = []
        if self._partial:
            line = self._partial
            self._partial = b""
            self.lines += 1
            self._line(line, True)
        self._skipping = False
        if self._open:
            self._close()
        self._out = None
        return out

    def stats(self):
        """Counters as one JSON-ready dict (rejection reasons that occurred only)."""
        rejected = {}
        for reason in REASONS:
            if self.rejected[reason]:
                rejected[reason] = self.rejected[reason]
        return {
            "lines": self.lines,
            "sentences": self.sentences,
            "accepted": self.accepted,
            "rejected": rejected,
            "bad_dates": self.bad_dates,
            "fixes": self.fixes,
        }

    # -- bytes → lines → sentences ---------------------------------------------------

    def _feed(self, data):
        out = self._out = []
        if self._partial:
            data = self._partial + data
        maxl = self.max_line
        pieces = data.split(b"\n")
        rest = pieces.pop()
        if pieces:
            self.lines += len(pieces)
            xs = _xor_prefix(b"\x00" + data)  # XOR of data[a:b] is xs[b] ^ xs[a]
        skipping = self._skipping
        seen = self._seen_checksum
        handlers = self._dispatch
        refused = self._refused
        crlf = _TAIL_CRLF
        lf = _TAIL_LF
        tail4 = _TAIL4
        tail3 = _TAIL3
        body4 = _BODY4
        body3 = _BODY3
        addr = _ADDR
        dollar = _DOLLAR
        rejected = self.rejected
        accepted = 0
        start = 0
        if skipping and pieces:
            skipping = False  # the first piece ends an over-long line, counted already
            self.lines -= 1
            start = len(pieces[0]) + 1
            del pieces[0]
        x1 = xs[start] if pieces else 0
        for line in pieces:
            x0 = x1  # the XOR prefix at the line's start and end
            n = len(line)
            start += n + 1
            x1 = xs[start]
            # The hot path, inlined: one sentence "$…*hh" on the line ("$$…" too), its
            # checksum right when the XOR of the whole line (CR LF or LF included) is the
            # one its "*hh" implies.  Anything else takes the general path (_line), which
            # applies the same rules.
            want = crlf.get(line[tail4])
            cut = body4
            if want is None:
                want = lf.get(line[tail3])
                cut = body3
            if want is not None and line[0] == 36 and n <= maxl:  # "$"
                if line[1] == 36:  # "$$": one "$" more in the line's XOR
                    line = line[1:]
                    want ^= 36
                body = line[cut]
                if dollar not in body:  # a "$" inside: merged or cut sentences
                    if want != x0 ^ x1:
                        rejected["bad_checksum"] += 1
                        continue
                    seen = True
                    handler = handlers.get(line[addr])
                    if handler is not None:
                        try:
                            ok = handler(body)
                        except (ValueError, IndexError):
                            ok = False
                        if ok:
                            accepted += 1
                        else:
                            rejected["bad_field"] += 1
                        continue
                    reason = refused.get(line[addr])
                    if reason is not None:
                        rejected[reason] += 1
                        continue
                    self._body(body, True)
                    continue
            if n > maxl:
                rejected["too_long"] += 1
            else:
                self._seen_checksum = seen
                self._line(line, False)
                seen = self._seen_checksum
        self._seen_checksum = seen
        self.accepted += accepted
        if skipping:
            rest = b""
        elif len(rest) > maxl:
            self.lines += 1
            rejected["too_long"] += 1
            skipping = True
            rest = b""
        self._skipping = skipping
        self._partial = rest
        self._out = None
        return out

    def _line(self, line, unterminated):
        """The general path: any line, with dirt, merged or cut sentences."""
        i = line.find(b"$")
        if i != 0:
            junk = line if i < 0 else line[:i]
            if junk.strip(_TRAIL):
                self.rejected["garbage"] += 1
            if i < 0:
                return
        while True:
            j = line.find(b"$", i + 1)
            if j < 0:
                self._sentence(line[i + 1:], unterminated)
                return
            if j > i + 1:
                self._sentence(line[i + 1:j], True)
            i = j

    def _sentence(self, s, cut):
        star = s.find(b"*")
        if star < 0:
            s = s.rstrip(_TRAIL)
            if not s:
                return  # a lone "$" (of a "$$" prefix) is no sentence
            if cut or self._seen_checksum or b"\x00" in s:
                self.rejected["truncated"] += 1
            elif not self.allow_no_checksum:
                self.rejected["no_checksum"] += 1
            else:
                self._body(s, False)
            return
        body = s[:star]
        tail = s[star + 1:]
        if len(tail) != 2:
            tail = tail.rstrip(_TRAIL)
        want = _HEXVAL.get(tail)
        if want is None or want != checksum(body):
            self.rejected["bad_checksum"] += 1
            return
        self._seen_checksum = True
        self._body(body, True)

    def _body(self, body, checked):
        """Dispatch a sentence body (address and fields) by its address."""
        if len(body) == 5 or (len(body) > 5 and body[5] == 44):
            key = body[:6] if len(body) > 5 else body + b","  # address and comma
            handler = self._dispatch.get(key) or self._refused.get(key)
            if handler is None:
                handler = self._classify(key)
                table = self._refused if handler.__class__ is str else self._dispatch
                if len(table) < 64:
                    table[key] = handler
        else:
            handler = "proprietary" if body[:1] == b"P" else "bad_address"
        if handler.__class__ is str:
            self.rejected[handler] += 1
            return
        if not checked and body.count(b",") + 1 not in _NOCK_COUNTS[body[2:5]]:
            self.rejected["truncated"] += 1
            return
        try:
            ok = handler(body)
        except (ValueError, IndexError):
            ok = False
        if ok:
            self.accepted += 1
        else:
            self.rejected["bad_field"] += 1

    def _classify(self, addr):
        """The handler of an address (5 characters and a comma), or why it is rejected."""
        if addr[0] == 80:  # "P"
            return "proprietary"
        if not (65 <= addr[0] <= 90 and 65 <= addr[1] <= 90):
            return "bad_address"
        kind = addr[2:5]
        handler = self._handlers.get(kind)
        if handler is not None:
            return handler
        return "unknown" if kind.isalpha() else "bad_address"


def decode(data, **options):
    """Every fix of a whole capture (bytes); options as for ``NmeaDecoder``."""
    dec = NmeaDecoder(**options)
    fixes = dec.feed(data)
    fixes.extend(dec.flush())
    return fixes
