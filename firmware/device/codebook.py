"""The code books the device checks class codes against (firmware/codebooks/*.json).

The books are loaded by ``gridlink.firmware.codebooks`` (the one loader); a profile names
its standard and every class code it maps a button or sensor to must be in that
standard's book.
"""

from ..errors import DeviceError


class CodebookUnavailable(DeviceError):
    def __init__(self, message, fix):
        super().__init__(message)
        self.fix = fix


def _books():
    from ..codebooks import load_books

    return load_books()


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
