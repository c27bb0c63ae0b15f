"""The code books the device checks class codes against (firmware/codebooks/*.json).

The files are built by ``firmware/codebooks/build.py`` from the shared classes table
(format ``gridlink-codebook/1``); a profile names its standard and every class code it
maps a button or sensor to must be in that standard's book.
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


@lru_cache(maxsize=8)
def _books():
    books = {}
    for path in sorted(CODEBOOKS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") == "gridlink-codebook/1":
            books[data["standard"]] = data
    return books


def book(standard):
    """The code book dict of ``standard``; CodebookUnavailable names the known ones."""
    books = _books()
    if standard not in books:
        raise CodebookUnavailable(
            f"no code book for standard {standard!r}",
            "use one of: " + ", ".join(sorted(books)) if books else "install the code books")
    return books[standard]


def class_lookup(standard):
    """A function (kind, code) → class name or None for ``standard``."""
    data = book(standard)

    def lookup(kind, code):
        entry = data.get(kind, {}).get("classes", {}).get(code)
        return entry[0] if entry else None

    return lookup


def version(standard):
    """The code book's version string (carried in every status message)."""
    data = book(standard)
    return f"{data['standard']}@{data['version']}"
