"""Code books and the division table as versioned data (parsed JSON in, lookups out).

A code book holds one standard's component and event classes (``gridlink-codebook/1``);
the division table holds GB/T 2260 districts with their streets and communities
(``gridlink-divisions/1``).  Both are built by ``firmware/codebooks/build.py``; the caller
reads and parses the JSON (``json.load``) and hands the result in, so nothing here opens
files.  A sensor node may load a single book, or a book with one kind stripped out.
"""

from .errors import CoreError

KINDS = ("component", "event")
PLURAL = {"component": "components", "event": "events"}
BOOK_FORMAT = "gridlink-codebook/1"
DIVISIONS_FORMAT = "gridlink-divisions/1"


class CodeError(CoreError):
    """A code, class or book is wrong; the message names the part and why."""


def first_non_digit(text):
    """Index of the first character that is not an ASCII digit, or -1."""
    for i, ch in enumerate(text):
        if ch < "0" or ch > "9":
            return i
    return -1


def shown(text, limit=40):
    """``text`` quoted for an error message: control characters escaped, long text cut.

    The same on CPython and MicroPython (unlike repr() of non-ASCII text).
    """
    out = []
    for ch in text[:limit]:
        n = ord(ch)
        control = n < 32 or 127 <= n < 160 or n in (0x2028, 0x2029)
        out.append(f"\\u{n:04x}" if control else ch)
    return "'" + "".join(out) + ("…'" if len(text) > limit else "'")


def check_digits(label, code):
    """Raise CodeError unless ``code`` is a non-empty string of ASCII digits."""
    if not isinstance(code, str):
        raise CodeError(f"{label} must be a string of digits, not {type(code).__name__}")
    if not code:
        raise CodeError(f"{label} is empty")
    bad = first_non_digit(code)
    if bad >= 0:
        raise CodeError(f"{label} {shown(code)}: character {bad + 1} {shown(code[bad])} is "
                        f"not a digit")
    return code


def standard_key(name):
    """Spelling-insensitive key: 'GB/T 47678.5-2026' and 'gb/t47678.5-2026' match."""
    return name.replace(" ", "").upper() if isinstance(name, str) else None


def span(codes):
    """'06001–06052' for a sorted list of codes (one code alone stays as it is)."""
    return codes[0] if len(codes) == 1 else f"{codes[0]}–{codes[-1]}"


class ClassEntry:
    """One class of one book: code, name, its major, certainty tag, source, conflict."""

    __slots__ = ("certainty", "code", "conflict", "kind", "major", "major_name", "name",
                 "source", "standard")

    def __init__(self, standard, kind, code, name, major, major_name, certainty, source,
                 conflict):
        self.standard = standard
        self.kind = kind
        self.code = code
        self.name = name
        self.major = major
        self.major_name = major_name
        self.certainty = certainty
        self.source = source
        self.conflict = conflict

    def as_dict(self):
        return {"standard": self.standard, "kind": self.kind, "code": self.code,
                "name": self.name, "major": self.major, "major_name": self.major_name,
                "certainty": self.certainty, "source": self.source, "conflict": self.conflict}

    def __repr__(self):
        return f"ClassEntry({self.standard!r}, {self.kind!r}, {self.code!r}, {self.name!r})"


class CodeBook:
    """One standard's classes, from the parsed JSON of a ``gridlink-codebook/1`` file."""

    def __init__(self, data):
        if not isinstance(data, dict) or data.get("format") != BOOK_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CodeError(f"code book: format {found!r} is not {BOOK_FORMAT}")
        self.standard = data["standard"]
        self.version = data["version"]
        self.layout = data["layout"]
        self.certainty = data.get("certainty") or {}
        self.partial = data.get("partial") or {}
        self.major_digits, self.minor_digits = self.layout["class"]
        self.class_digits = self.major_digits + self.minor_digits
        self._data = data
        self._sources = data.get("sources") or []
        self._sorted = {}

    @property
    def id(self):
        """What a device reports as its code book: 'GB/T 47678.5-2026@9b9bd01eda60'."""
        return f"{self.standard}@{self.version}"

    def has(self, kind):
        """Whether this copy of the book carries any class of ``kind``."""
        table = self._data.get(kind)
        return bool(table and table.get("classes"))

    def _table(self, kind):
        if kind not in KINDS:
            raise CodeError(f"kind {shown(str(kind))} is not one of {', '.join(KINDS)}")
        return self._data.get(kind) or {"majors": {}, "classes": {}}

    def majors(self, kind):
        """[(code, name or None)] sorted by code."""
        majors = self._table(kind)["majors"]
        return [(code, majors[code][0]) for code in sorted(majors)]

    def major_name(self, kind, major):
        row = self._table(kind)["majors"].get(major)
        return row[0] if row else None

    def codes(self, kind, major=None):
        """Sorted class codes of ``kind`` (under one major if given)."""
        key = (kind, major)
        if key not in self._sorted:
            classes = self._table(kind)["classes"]
            self._sorted[key] = sorted(
                c for c in classes if major is None or c[:self.major_digits] == major)
        return self._sorted[key]

    def entry(self, kind, code):
        """The ClassEntry for ``code``, or None."""
        row = self._table(kind)["classes"].get(code) if isinstance(code, str) else None
        if row is None:
            return None
        major = code[:self.major_digits]
        src = self._sources[row[2]] if row[2] < len(self._sources) else None
        return ClassEntry(self.standard, kind, code, row[0], major,
                          self.major_name(kind, major), row[1], src,
                          row[3] if len(row) > 3 else None)

    def entries(self, kind, major=None):
        return [self.entry(kind, code) for code in self.codes(kind, major)]

    def lookup(self, kind, code):
        """The ClassEntry for a class code, or CodeError saying which part is wrong."""
        table = self._table(kind)
        check_digits("class code", code)
        m, n = self.major_digits, self.minor_digits
        if len(code) != self.class_digits:
            raise CodeError(f"class code {code} has {len(code)} digits; {self.standard} class "
                            f"codes have {self.class_digits} ({m} major + {n} minor)")
        what = f"{self.standard} {PLURAL[kind]}"
        partial = f" (this {self.standard} table is partial)" if self.partial.get(kind) else ""
        if not table["classes"]:
            raise CodeError(f"class {code} is not in {what}: this book has no {kind} "
                            f"classes{partial}")
        row = table["classes"].get(code)
        if row is not None:
            return self.entry(kind, code)
        major = code[:m]
        if major not in table["majors"]:
            known = ", ".join(c for c, _ in self.majors(kind))
            raise CodeError(f"class {code} is not in {what}: major {major} does not exist "
                            f"(majors: {known}){partial}")
        members = self.codes(kind, major)
        name = self.major_name(kind, major) or "(name unknown)"
        if not members:
            raise CodeError(f"class {code} is not in {what}; major {major} {name} has no "
                            f"classes{partial}")
        gap = ""
        # a gap inside the numbering (a trailing 99 "other" class does not count)
        regular = [c for c in members if c[m:].strip("9")]
        if regular and regular[0] < code < regular[-1]:
            gap = f"; {code} is a gap in its numbering"
        raise CodeError(f"class {code} is not in {what}; nearest major {major} {name} has "
                        f"{span(members)} ({len(members)} classes{gap}){partial}")


class Divisions:
    """GB/T 2260 districts with GB/T 10114 streets and communities, from parsed JSON.

    A district whose ``streets`` is null has no street list: its streets and communities
    cannot be checked.  A listed district's street list is taken as complete.
    """

    def __init__(self, data):
        if not isinstance(data, dict) or data.get("format") != DIVISIONS_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CodeError(f"division table: format {found!r} is not {DIVISIONS_FORMAT}")
        self.version = data["version"]
        self._districts = data["districts"]
        self._sources = data.get("sources") or []

    @property
    def id(self):
        return f"divisions@{self.version}"

    def district_codes(self):
        return sorted(self._districts)

    def district(self, code):
        """{'name', 'parent', 'source', 'streets'} or None."""
        return self._districts.get(code)

    def source(self, district):
        row = self._districts.get(district)
        if row is None or row.get("source") is None:
            return None
        i = row["source"]
        return self._sources[i] if i < len(self._sources) else None

    def streets(self, district):
        """The district's street dict, or None when it has no street list."""
        row = self._districts.get(district)
        return row.get("streets") if row else None

    def street(self, district, street):
        streets = self.streets(district)
        return streets.get(street) if streets else None

    def community_name(self, district, street, community):
        row = self.street(district, street)
        return row["communities"].get(community) if row else None
