"""The code books the device checks class codes against (firmware/codebooks/*.json).

The books are loaded by ``gridlink.firmware.codebooks`` (the one loader); a profile names
its standard and every class code it maps a button or sensor to must be in that
standard's book.  A district's local book (``use_overlays``, from ``--codebook-overlay``)
is applied to the book it extends, for the whole process; a book the applied configuration
document names (``use_book``, fetched as an artifact) replaces its standard's book.
"""

from ..errors import DeviceError

_local = None   # {standard: CodeBook} with the local books applied, or None
_fetched = None  # a CodeBook the applied configuration names (use_book), or None


class CodebookUnavailable(DeviceError):
    def __init__(self, message, fix):
        super().__init__(message)
        self.fix = fix


def use_overlays(files):
    """Apply the local books in ``files`` from now on; CodebookUnavailable says why one
    cannot be used (nothing changes then)."""
    global _local
    from ..codebooks import load_books
    from ..core.codebook import CodeError

    try:
        books = load_books(overlays=files) if files else None
    except CodeError as exc:
        raise CodebookUnavailable(str(exc), "fix the local code book, or run without it "
                                  "(--codebook-overlay)") from None
    _local = books


def use_book(cb):
    """Check class codes against the core CodeBook ``cb`` (a code book the centre named,
    fetched) for its standard from now on, in place of the provisioned one (and its local
    book); None goes back to the provisioned one."""
    global _fetched
    _fetched = cb


def _books():
    from ..codebooks import load_books

    books = _local if _local is not None else load_books()
    return books if _fetched is None else {**books, _fetched.standard: _fetched}


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
    return lookup_in(book(standard))


def lookup_in(cb):
    """``class_lookup`` in the core CodeBook ``cb``."""
    from ..core.codebook import CodeError

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
