"""The shipped code books and division table, and the one CPython loader of code books.

The JSON files here are built by ``build.py`` from ``sources/`` (see docs/codes.md).  The
device core never opens files: this loader reads them on CPython (the gateway, the Pi
device, the flash tools all load books through ``load_books`` / ``book``); a MicroPython
node reads the one file it needs itself and passes ``json.load(f)`` to ``CodeBook`` /
``Divisions``.
"""

import json
from functools import cache
from pathlib import Path

from gridlink.firmware.core.codebook import (
    BOOK_FORMAT,
    OVERLAY_FORMAT,
    CodeError,
    apply_overlay,
    standard_key,
)
from gridlink.firmware.core.codes import CodeBook, Codes, Divisions

HERE = Path(__file__).resolve().parent

# standard → data file (next to this module)
FILES = {
    "CJ/T 214-2007": "cjt214-2007.json",
    "GB/T 30428.2-2013": "gbt30428.2-2013.json",
    "GB/T 47678.5-2026": "gbt47678.5-2026.json",
}
DIVISIONS_FILE = "divisions.json"
STANDARDS = tuple(FILES)


def path(standard):
    """The data file of a standard (spelling of spaces and case does not matter)."""
    key = standard_key(standard)
    for name, file in FILES.items():
        if standard_key(name) == key:
            return HERE / file
    raise CodeError(f"standard {standard!r} has no shipped code book "
                    f"(shipped: {', '.join(STANDARDS)})")


def load(standard):
    """The parsed JSON of one standard's code book."""
    return json.loads(path(standard).read_text(encoding="utf-8"))


def load_divisions(file=None):
    """The parsed JSON of the division table (the shipped one unless ``file`` is given)."""
    return json.loads(Path(file or HERE / DIVISIONS_FILE).read_text(encoding="utf-8"))


def book(standard):
    """The shipped ``CodeBook`` of a standard (one shared object per standard)."""
    return _book(path(standard).name)


@cache
def _book(file):
    return CodeBook(json.loads((HERE / file).read_text(encoding="utf-8")))


def _read_json(file, what):
    try:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CodeError(f"{what} {file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CodeError(f"{what} {file}: not JSON: {exc}") from None


def seal_overlay(doc):
    """``doc`` (a local book) with its ``version``: 12 hex digits of the SHA-256 of its
    canonical JSON without the version, as the shipped books are versioned."""
    from .build import content_version

    return {**doc, "version": content_version(doc)}


def load_overlay(file):
    """A district's local book (``gridlink-codebook-overlay/1``, docs/codes.md) from
    ``file``, its version checked against its content: CodeError names the file and why."""
    doc = _read_json(file, "local code book")
    if not isinstance(doc, dict) or doc.get("format") != OVERLAY_FORMAT:
        raise CodeError(f"local code book {file}: format is not {OVERLAY_FORMAT}")
    want = seal_overlay(doc)["version"]
    if doc.get("version") != want:
        raise CodeError(f"local code book {file}: version {doc.get('version')!r} does not "
                        f"match its content ({want}): changed since it was sealed "
                        "('gridlink codes overlay seal')")
    return doc


def with_overlays(books, overlays):
    """{standard: CodeBook}: ``books`` with each local book (parsed) applied to the book
    of the standard it extends."""
    out = dict(books)
    for overlay in overlays:
        standard = str(overlay.get("base", "")).split("@")[0]
        base = out.get(standard)
        if base is None:
            raise CodeError(f"local code book {overlay.get('id')}: it extends "
                            f"{overlay.get('base')!r}, and no such book is loaded "
                            f"({', '.join(sorted(out))})")
        out[standard] = CodeBook(apply_overlay(base.data, overlay))
    return out


def load_books(files=None, overlays=()):
    """{standard: CodeBook} of the shipped books, or of the code book files ``files``, with
    the local books in the files ``overlays`` applied (:func:`load_overlay`).

    A file that cannot be read, is not JSON or is not a valid ``gridlink-codebook/1`` book
    raises CodeError naming the file.
    """
    if overlays:
        return with_overlays(load_books(files), [load_overlay(f) for f in overlays])
    if files is None:
        return {s: book(s) for s in STANDARDS}
    books = {}
    for file in files:
        doc = _read_json(file, "code book")
        if not isinstance(doc, dict) or doc.get("format") != BOOK_FORMAT:
            raise CodeError(f"code book {file}: format is not {BOOK_FORMAT}")
        try:
            b = CodeBook(doc)
        except CodeError as exc:
            raise CodeError(f"code book {file}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise CodeError(f"code book {file}: malformed ({type(exc).__name__}: {exc})") \
                from None
        books[b.standard] = b
    return books


@cache
def _codes(standards):
    return Codes([book(s) for s in standards], Divisions(load_divisions()))


def codes(standards=STANDARDS):
    """A shared Codes over the shipped books (all by default) and the division table."""
    return _codes(tuple(standards))
