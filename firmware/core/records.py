"""Length-prefixed, CRC-checked records: the on-disk format of the outbox.

One record::

    magic  2  b"\\xd7\\x4c"  (0xd7 0x4c never occurs in UTF-8 text)
    kind   1  record kind
    length 4  payload bytes, big-endian
    seq    4  sequence number, big-endian
    hcrc   4  crc32 of the 11 bytes above
    payload length bytes
    pcrc   4  crc32 of the payload, seeded with hcrc (binds payload to header)

A header CRC lets a reader trust the length before reading the payload; after damage the
reader resynchronises on the next magic that starts a fully valid record, so one bad
record costs only itself.  :func:`scan` reports damaged spans and where the valid data
ends, so a torn tail can be cut.
"""

import binascii
import struct

from .errors import CoreError

MAGIC = b"\xd7\x4c"
_HEAD = ">2sBII"
HEAD_SIZE = 15          # struct.calcsize(_HEAD) + 4
OVERHEAD = HEAD_SIZE + 4
SEQ_LIMIT = 0xFFFFFFFF
_CHUNK = 4096


class RecordError(CoreError):
    """A record that cannot be encoded (kind, sequence or size out of range)."""


def encode(kind, seq, payload):
    """The bytes of one record."""
    if not 0 <= kind <= 255:
        raise RecordError(f"record kind {kind} out of range 0..255")
    if not 0 <= seq <= SEQ_LIMIT:
        raise RecordError(f"record sequence {seq} out of range")
    head = struct.pack(_HEAD, MAGIC, kind, len(payload), seq)
    hcrc = binascii.crc32(head)
    return b"".join((head, struct.pack(">I", hcrc), payload,
                     struct.pack(">I", binascii.crc32(payload, hcrc))))


def _read_at(f, off, n):
    f.seek(off)
    return f.read(n)


def read_record(f, off, end):
    """(kind, seq, payload, next_offset) of the record at off, or a reason string."""
    if end - off < OVERHEAD:
        return "incomplete record header"
    head = _read_at(f, off, HEAD_SIZE)
    if len(head) < HEAD_SIZE:
        return "incomplete record header"
    if head[:2] != MAGIC:
        return "no record marker"
    _magic, kind, length, seq = struct.unpack(_HEAD, head[:11])
    hcrc = struct.unpack(">I", head[11:15])[0]
    if binascii.crc32(head[:11]) != hcrc:
        return "header CRC mismatch"
    stop = off + OVERHEAD + length
    if stop > end:
        return "record cut short (torn write)"
    body = _read_at(f, off + HEAD_SIZE, length + 4)
    if len(body) < length + 4:
        return "record cut short (torn write)"
    payload = body[:length]
    if binascii.crc32(payload, hcrc) != struct.unpack(">I", body[length:])[0]:
        return "payload CRC mismatch"
    return kind, seq, payload, stop


def _find_magic(f, pos, end):
    while pos < end:
        block = _read_at(f, pos, min(_CHUNK, end - pos))
        if not block:
            return -1
        i = block.find(MAGIC)
        if i >= 0:
            return pos + i
        pos += len(block) - 1 if len(block) > 1 else 1
    return -1


def resync(f, pos, end):
    """Offset of the next fully valid record at or after pos, or -1."""
    while pos < end:
        p = _find_magic(f, pos, end)
        if p < 0:
            return -1
        if not isinstance(read_record(f, p, end), str):
            return p
        pos = p + 1
    return -1


def _header_at(f, off):
    """(kind, payload length) when a header with a valid CRC starts at off, else None."""
    head = _read_at(f, off, HEAD_SIZE)
    if len(head) < HEAD_SIZE or head[:2] != MAGIC:
        return None
    if binascii.crc32(head[:11]) != struct.unpack(">I", head[11:15])[0]:
        return None
    return head[2], struct.unpack(">I", head[3:7])[0]


TORN = ("incomplete record header", "record cut short (torn write)")


def _all_zero(f, start, end):
    pos = start
    while pos < end:
        block = _read_at(f, pos, min(_CHUNK, end - pos))
        if not block:
            break
        if block.count(0) != len(block):
            return False
        pos += len(block)
    return True


def records_in(f, start, end, tail=False, reason=None, ignore=()):
    """How many records a damaged span ``start..end`` (from :func:`scan`) held: one per
    header with a valid CRC in it whose kind is not in ``ignore``, and one for a span
    without any valid header.  A torn ``tail`` — cut short (``reason`` in :data:`TORN`) or
    zero-filled: an append that never returned — counts only the records in it that
    were written whole."""
    torn = tail and (reason in TORN or _all_zero(f, start, end))
    n = found = 0
    pos = start
    while pos < end:
        p = _find_magic(f, pos, end)
        if p < 0:
            break
        head = _header_at(f, p)
        if head is not None and (not torn or p + OVERHEAD + head[1] <= end):
            found += 1
            if head[0] not in ignore:
                n += 1
        pos = p + 1
    return 1 if not torn and not found else n


def scan(f, start, end):
    """Yield ``(offset, kind, seq, payload, next)`` for valid records and
    ``(offset, None, nbytes, reason, tail)`` for damaged spans (``tail`` True when the
    damage runs to ``end``: a torn tail to cut)."""
    off = start
    while off < end:
        rec = read_record(f, off, end)
        if not isinstance(rec, str):
            yield off, rec[0], rec[1], rec[2], rec[3]
            off = rec[3]
            continue
        nxt = resync(f, off + 1, end)
        if nxt < 0:
            yield off, None, end - off, rec, True
            return
        yield off, None, nxt - off, rec, False
        off = nxt
