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

    __slots__ = ("certainty", "code", "conflict", "kind", "local", "major", "major_name", "name",
                 "source", "standard")

    def __init__(self, standard, kind, code, name, major, major_name, certainty, source,
                 conflict, local=None):
        self.standard = standard
        self.kind = kind
        self.code = code
        self.name = name
        self.major = major
        self.major_name = major_name
        self.certainty = certainty
        self.source = source
        self.conflict = conflict
        self.local = local  # a local book's change: {"change": added|renamed, "book", ...}

    def as_dict(self):
        out = {"standard": self.standard, "kind": self.kind, "code": self.code,
               "name": self.name, "major": self.major, "major_name": self.major_name,
               "certainty": self.certainty, "source": self.source, "conflict": self.conflict}
        if self.local is not None:
            out["local"] = self.local
        return out

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
        self.local = data.get("local")  # the local book applied (apply_overlay), or None

    @property
    def data(self):
        """The parsed JSON this book was made from."""
        return self._data

    @property
    def id(self):
        """What a device reports as its code book: 'GB/T 47678.5-2026@9b9bd01eda60'
        ('…@9b9bd01eda60+zz-410106.3f2a9c01b7de' with a local book applied)."""
        return f"{self.standard}@{self.version}"

    def grid_alias(self, code):
        """The standard grid code a local 12-digit code (the local book's
        ``grid_aliases``) stands for, or None."""
        return self.local["grid_aliases"].get(code) if self.local is not None else None

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
        local = None
        if self.local is not None:
            change = self.local["changes"].get(kind, {}).get(code)
            if change is not None:
                local = {"change": change, "book": self.local["id"],
                         "title": self.local["title"]}
                if change == "renamed":
                    local["standard_name"] = self.local["standard_names"][kind][code]
        return ClassEntry(self.standard, kind, code, row[0], major,
                          self.major_name(kind, major), row[1], src,
                          row[3] if len(row) > 3 else None, local)

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
        if self.local is not None:
            why = self.local["retired"].get(kind, {}).get(code)
            if why is not None:
                raise CodeError(f"class {code} is retired by the local book "
                                f"{self.local['id']} ({self.local['title']}): {why}")
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



# -- local books ---------------------------------------------------------------------------

OVERLAY_FORMAT = "gridlink-codebook-overlay/1"
LOCAL_TAG = "L"        # the certainty tag of a class a local book adds
OVERLAY_ID_MAX = 20    # a status's codebook field is at most 64 characters
NAME_MAX = 30          # 事项名称/管理部件名称: C30 in GB/T 47678.5-2026 Tables 2 and 3
LOCAL_MAJORS_FROM = 20  # new majors: 20-99 (the standards use 01-10; 扩展事件 21 is seen)


def _overlay_fail(overlay_id, message):
    raise CodeError(f"local code book {overlay_id}: {message}")


def _overlay_table(overlay, part, kinds_of):
    table = overlay.get(part) or {}
    if not isinstance(table, dict):
        _overlay_fail(overlay.get("id"), f"{part} must be an object of kinds")
    for kind, rows in table.items():
        if kind not in KINDS:
            _overlay_fail(overlay.get("id"), f"{part}: kind {shown(str(kind))} is not one of "
                          f"{', '.join(KINDS)}")
        if not isinstance(rows, dict):
            _overlay_fail(overlay.get("id"), f"{part}.{kind} must be an object of codes")
        kinds_of.append((kind, rows))
    return table


def _local_name(oid, where, name):
    if not isinstance(name, str) or not name.strip():
        _overlay_fail(oid, f"{where}: a name is needed")
    if len(name) > NAME_MAX:
        _overlay_fail(oid, f"{where}: the name has {len(name)} characters; at most {NAME_MAX}")
    return name


def overlay_id(overlay):
    """'zz-410106.3f2a9c01b7de': how a book with this local book applied names it."""
    return f"{overlay['id']}.{overlay['version']}"


def apply_overlay(book, overlay):
    """The parsed JSON of ``book`` (a ``gridlink-codebook/1`` book) with a district's local
    book applied: classes added within the standard's extension ranges (a new major 20-99,
    or minor 90-99 / 900-999 in a standard major), classes renamed (the standard's name
    kept beside) and classes retired (refused for new reports with the reason), plus local
    12-digit grid codes as aliases of standard ones.  CodeError names the entry that does
    not fit.  ``book`` is not changed."""
    if not isinstance(overlay, dict) or overlay.get("format") != OVERLAY_FORMAT:
        found = overlay.get("format") if isinstance(overlay, dict) else type(overlay).__name__
        raise CodeError(f"local code book: format {found!r} is not {OVERLAY_FORMAT}")
    oid = overlay.get("id")
    if not (isinstance(oid, str) and 0 < len(oid) <= OVERLAY_ID_MAX
            and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in oid)):
        raise CodeError(f"local code book: id {shown(str(oid))} must be 1-{OVERLAY_ID_MAX} "
                        "of a-z, 0-9 and '-'")
    for key in ("title", "source", "version"):
        if not isinstance(overlay.get(key), str) or not overlay[key]:
            _overlay_fail(oid, f"{key} is missing")
    base = f"{book['standard']}@{book['version']}"
    if overlay.get("base") != base:
        _overlay_fail(oid, "it extends " + shown(str(overlay.get("base"))) + ", but this book "
                      "is " + shown(base))
    out = dict(book)
    sources = list(book.get("sources") or [])
    sources.append(overlay["source"])
    out["sources"] = sources
    src = len(out["sources"]) - 1
    major_digits, minor_digits = book["layout"]["class"]
    local = {"id": oid, "title": overlay["title"], "source": overlay["source"],
             "version": overlay["version"], "base": base,
             "districts": list(overlay.get("districts") or []),
             "changes": {}, "standard_names": {}, "retired": {}, "grid_aliases": {}}
    tables = {}
    for kind in KINDS:
        t = book.get(kind) or {"majors": {}, "classes": {}}
        tables[kind] = {"majors": dict(t["majors"]), "classes": dict(t["classes"])}
    found = []
    _overlay_table(overlay, "majors", found)
    for kind, rows in found:
        for major, name in rows.items():
            where = f"majors.{kind}.{major}"
            if (not isinstance(major, str) or len(major) != major_digits
                    or first_non_digit(major) >= 0):
                _overlay_fail(oid, f"{where}: a major is {major_digits} digits")
            if major in tables[kind]["majors"]:
                _overlay_fail(oid, f"{where}: {major} is a {book['standard']} major already")
            if int(major) < LOCAL_MAJORS_FROM:
                _overlay_fail(oid, f"{where}: local majors are {LOCAL_MAJORS_FROM}-99; "
                              f"lower ones are left to the standard")
            tables[kind]["majors"][major] = [_local_name(oid, where, name), LOCAL_TAG, src]
    changes = local["changes"]
    for part in ("add", "rename", "retire"):
        found = []
        _overlay_table(overlay, part, found)
        for kind, rows in found:
            classes = tables[kind]["classes"]
            for code, value in rows.items():
                where = f"{part}.{kind}.{code}"
                if (not isinstance(code, str) or len(code) != major_digits + minor_digits
                        or first_non_digit(code) >= 0):
                    _overlay_fail(oid, f"{where}: {book['standard']} class codes are "
                                  f"{major_digits + minor_digits} digits")
                if code in changes.get(kind, {}):
                    _overlay_fail(oid, f"{where}: {code} is changed twice")
                if part == "add":
                    _add_local(oid, where, book, tables[kind], code, minor_digits)
                    classes[code] = [_local_name(oid, where, value), LOCAL_TAG, src]
                    changes.setdefault(kind, {})[code] = "added"
                    continue
                row = classes.get(code)
                if row is None:
                    _overlay_fail(oid, f"{where}: {code} is not a {book['standard']} "
                                  f"{kind} class")
                if part == "rename":
                    local["standard_names"].setdefault(kind, {})[code] = row[0]
                    renamed = list(row)
                    renamed[0] = _local_name(oid, where, value)
                    classes[code] = renamed
                    changes.setdefault(kind, {})[code] = "renamed"
                else:
                    if not isinstance(value, str) or not value.strip():
                        _overlay_fail(oid, f"{where}: say why it is retired")
                    local["retired"].setdefault(kind, {})[code] = value
                    del classes[code]
                    changes.setdefault(kind, {})[code] = "retired"
    aliases = overlay.get("grid_aliases") or {}
    if not isinstance(aliases, dict):
        _overlay_fail(oid, "grid_aliases must be an object")
    for alias, code in aliases.items():
        where = f"grid_aliases.{alias}"
        if (not isinstance(alias, str) or len(alias) != 12 or first_non_digit(alias) >= 0):
            _overlay_fail(oid, f"{where}: a local grid code is 12 digits (6 + 2 + 2 + 2)")
        if (not isinstance(code, str) or len(code) not in (14, 15)
                or first_non_digit(code) >= 0):
            _overlay_fail(oid, f"{where}: it must name a 14- or 15-digit standard grid code")
        if code[:6] != alias[:6]:
            _overlay_fail(oid, f"{where}: {alias} and {code} are in different districts")
        local["grid_aliases"][alias] = code
    for kind in KINDS:
        if kind in book or tables[kind]["classes"]:
            out[kind] = tables[kind]
    out["version"] = f"{book['version']}+{overlay_id(overlay)}"
    out["local"] = local
    return out


def _add_local(oid, where, book, table, code, minor_digits):
    if code in table["classes"]:
        _overlay_fail(oid, f"{where}: {code} is a {book['standard']} class already (rename "
                      "it instead)")
    major = code[:len(code) - minor_digits]
    if major not in table["majors"]:
        _overlay_fail(oid, f"{where}: major {major} is neither a {book['standard']} major "
                      "nor one this local book adds")
    if table["majors"][major][1] != LOCAL_TAG and int(code[len(major):]) < 9 * 10 ** (
            minor_digits - 1):
        low = "9" + "0" * (minor_digits - 1)
        _overlay_fail(oid, f"{where}: in the standard's major {major}, local classes are "
                      f"{major}{low}-{major}{'9' * minor_digits} (the extension range)")


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
