"""The code books the device checks class codes against (firmware/codebooks/*.json).

The files are built by ``firmware/codebooks/build.py`` (format ``gridlink-codebook/1``)
and read with the core's ``CodeBook``; a profile names its standard and every class code
it maps a button or sensor to must be in that standard's book.
"""

import json
from functools import lru_cache
from pathlib import Path

from ..errors import DeviceError

CODEBOOKS = Path(__file__).resolve().parents[1] / "codebooks"


class CodebookUnavailable(DeviceError):
    def __init__(self, message, fix):
        super().__init__(message)
        self.fix = fix


@lru_cache(maxsize=1)
def _books():
    from ..core.codebook import BOOK_FORMAT, CodeBook

    books = {}
    for path in sorted(CODEBOOKS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") == BOOK_FORMAT:
            books[data["standard"]] = CodeBook(data)
    return books


def book(standard):
    """The core CodeBook of ``standard``; CodebookUnavailable names the known ones."""
    books = _books()
    if standard not in books:
        raise CodebookUnavailable(
            f"no code book for standard {standard!r}",
            "use one of: " + ", ".join(sorted(books)) if books else "install the code books")
    return books[standard]


def class_lookup(standard):
    """A function (kind, code) → None when the code is in the book, else why it is not."""
    from ..core.codebook import CodeError

    cb = book(standard)

    def lookup(kind, code):
        try:
            cb.lookup(kind, code)
        except CodeError as exc:
            return str(exc)
        return None

    return lookup


def check_code(standard, kind, code):
    """``make_report``'s check_code hook: True, or the core's CodeError saying why not."""
    book(standard).lookup(kind, code)
    return True


def version(standard):
    """'GB/T 47678.5-2026@9b9bd01eda60': the code book a status message names."""
    return book(standard).id
