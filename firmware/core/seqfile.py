"""A report sequence that survives reboot and never repeats: not after a crash, not after
its file is damaged or lost.

Why a counter file rather than deriving the sequence from the outbox: the outbox forgets
acknowledged records at compaction, and track points share its numbering, so it could not
say which report numbers were already used.  The counter file is written *before* a
number is handed out (write-new-then-rename, fsync), so a crash can only skip numbers,
never reuse one.  ``block`` > 1 reserves several numbers per write (fewer writes, a gap of
up to ``block - 1`` after a crash).

Files: ``path`` holds ``<next free seq> <crc32 of that text, hex>\\n``; ``path.new`` left
by a crash is also read (the larger valid value wins); ``path.acked`` holds, in the same
format, the highest seq the gateway acknowledged (:meth:`SequenceFile.acknowledged`).

A counter that is missing or damaged restarts from a floor no earlier id can reach: the
larger of ``floor`` (the caller's highest seq still on the device: outbox, rejected and
cancelled reports), the last acknowledged seq, and — when the wall clock ``now`` is
valid — the unix second (:func:`time_floor`).  A device numbers fewer reports than
seconds pass, so the clock is above every id it ever used, even after a re-flash wiped
all its files.  A counter file that exists but is unreadable, with neither ``floor`` nor a
valid ``now``, raises SequenceError, because guessing could reuse a number.
"""

import binascii

from . import fsio
from .errors import CoreError

SEQ_MAX = 999999999999
CLOCK_VALID_AFTER = 1704067200   # 2024-01-01: a clock before that was never set


class SequenceError(CoreError):
    """The counter file is damaged, or the 12-digit sequence is exhausted."""


def _encode(value):
    text = str(value)
    return (text + " " + "%08x" % binascii.crc32(text.encode()) + "\n").encode()  # noqa: UP031


def _decode(data):
    """The value in a counter file's bytes, or None when damaged."""
    if not data:
        return None
    try:
        text, crc = data.decode().strip().split(" ")
        value = int(text)
    except (ValueError, UnicodeError):
        return None
    if "%08x" % binascii.crc32(text.encode()) != crc or value < 1:  # noqa: UP031
        return None
    return value


def time_floor(now):
    """The whole unix second of ``now`` when it is a set clock (≥ 2024), else 0."""
    if now is None or now < CLOCK_VALID_AFTER:
        return 0
    return min(int(now), SEQ_MAX)


class SequenceFile:
    """``next()`` → increasing numbers persisted in ``path``; ``floor``: every value ≤ it
    is used; ``now``: the wall clock (unix seconds) to restart from if the file is lost."""

    def __init__(self, path, block=1,
                 floor=0,  # pragma: no mutate: any floor <= 0 means none
                 dir_path=None, now=None):
        if block < 1:
            raise SequenceError("block must be >= 1")
        self.path = path
        self.block = block
        self._dir = dir_path if dir_path is not None else path.rpartition("/")[0]
        main = fsio.read_file(path)
        values = [v for v in (_decode(main), _decode(fsio.read_file(path + ".new")))
                  if v is not None]
        acked = [v for v in (_decode(fsio.read_file(path + ".acked")),
                             _decode(fsio.read_file(path + ".acked.new"))) if v is not None]
        self._acked = max(acked) if acked else 0
        clock = time_floor(now)
        self.restarted = not values      # the counter was missing or damaged
        if main is not None and self.restarted and floor <= 0 and not clock:
            raise SequenceError(
                f"counter file {path} is damaged ({main[:40]!r}); pass floor= the highest "
                "sequence the device may have used (outbox, rejected file) or now= a set "
                "clock to go on safely")
        values.append(max(floor, self._acked) + 1)
        if self.restarted:
            values.append(clock + 1)
        self._next = max(values)
        # the last number this instance wrote as spent: none yet (seqs start at 1)
        self._reserved = 0  # pragma: no mutate: any value below 1 means none

    def peek(self):
        """The number ``next()`` will return."""
        return self._next

    def next(self):
        value = self._next
        if value > SEQ_MAX:
            raise SequenceError("12-digit report sequence exhausted")
        if value > self._reserved:
            upto = min(value + self.block - 1, SEQ_MAX)
            fsio.write_file(self.path, _encode(upto + 1), self._dir)
            self._reserved = upto
        self._next = value + 1
        return value

    def skip_past(self, value):
        """Never hand out ``value`` or anything below it (e.g. an id the gateway says was
        used before).  Persisted by the next ``next()``, before it returns a number."""
        if value >= self._next:
            self._next = value + 1

    @property
    def last_acknowledged(self):
        """The highest seq :meth:`acknowledged` recorded (0: none)."""
        return self._acked

    def acknowledged(self, seq):
        """Record that the gateway acknowledged ``seq`` (written only when it is higher
        than the last one), so a lost counter restarts above it."""
        if seq > self._acked:
            fsio.write_file(self.path + ".acked", _encode(seq), self._dir)
            self._acked = seq
