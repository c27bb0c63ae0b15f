"""A report sequence that survives reboot and never repeats after a crash.

Why a counter file rather than deriving the sequence from the outbox: the outbox forgets
acknowledged records at compaction, and track points share its numbering, so it could not
say which report numbers were already used.  The counter file is written *before* a
number is handed out (write-new-then-rename, fsync), so a crash can only skip numbers,
never reuse one.  ``block`` > 1 reserves several numbers per write (fewer writes, a gap of
up to ``block - 1`` after a crash).

File: ``<next free seq> <crc32 of that text, hex>\\n``.  ``path.new`` left by a crash is
also read: the larger valid value wins.  A counter file that exists but is unreadable
raises SequenceError unless the caller passes ``floor`` (e.g. the highest seq found in
the outbox and the rejected file), because guessing could reuse a number.
"""

import binascii

from . import fsio
from .errors import CoreError

SEQ_MAX = 999999999999


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


class SequenceFile:
    """``next()`` → 1, 2, 3, … persisted in ``path``; ``floor``: every value ≤ it is used."""

    def __init__(self, path, block=1, floor=0, dir_path=None):
        if block < 1:
            raise SequenceError("block must be >= 1")
        self.path = path
        self.block = block
        self._dir = dir_path if dir_path is not None else path.rpartition("/")[0]
        main = fsio.read_file(path)
        new = fsio.read_file(path + ".new")
        values = [v for v in (_decode(main), _decode(new)) if v is not None]
        if main is not None and _decode(main) is None and not values and floor <= 0:
            raise SequenceError(
                f"counter file {path} is damaged ({main[:40]!r}); pass floor= the highest "
                "sequence the device may have used (outbox, rejected file) to go on safely")
        values.append(max(floor, 0) + 1)
        self._next = max(values)
        self._reserved = self._next - 1     # persisted: numbers below _reserved+1 are spent

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
