"""Parse, validate and explain grid codes, component ids, event codes and class codes.

    codes = Codes([CodeBook(json.load(f)) ...], Divisions(json.load(g)))
    codes.validate_class_code("GB/T 47678.5-2026", "event", "06010")   # → ClassEntry
    codes.parse_grid_code("410106001001001")                          # → GridCode
    codes.parse_component_id("41010601010000001")                      # → ComponentId
    codes.parse_event_code("41010606010")                              # → EventCode
    codes.explain("0101")              # → {"code", "length", "readings": [...]}

Layouts (docs/codes.md has the sources and certainty):
  grid code      CJ/T 213-2005      14 = 6 district + 3 street + 3 community + 2 grid
                 GB/T 30428.1/47678 15 = 6 + 3 + 3 + 3
  component id   from each book     CJ/T 214-2007 16 = 6+2+2+6, GB/T 47678.5-2026 17 = 6+2+3+6
  event code     from each book     CJ/T 214-2007 10 = 6+2+2 [I], GB/T 47678.5-2026 11 = 6+2+3
Every wrong code raises CodeError naming the part that is wrong and why.  Without a
division table only the shape of districts, streets and communities is checked.
"""

from .codebook import PLURAL, CodeBook, CodeError, Divisions, check_digits, shown, standard_key

__all__ = ["CodeBook", "CodeError", "Codes", "ComponentId", "Divisions", "EventCode",
           "GridCode", "format_grid_code"]

# length → (standard, part sizes, certainty of the layout)
GRID_LAYOUTS = {
    14: ("CJ/T 213-2005", (6, 3, 3, 2), "T"),
    15: ("GB/T 30428.1-2013 / GB/T 47678-2026", (6, 3, 3, 3), "I"),
}
ID_PARTS = {"component_id": ("district", "major", "minor", "serial"),
            "event_code": ("district", "major", "minor")}
DIVISIONS_STANDARD = {6: "GB/T 2260", 9: "GB/T 10114", 12: "NBS 统计用区划代码"}


def street_type(street):
    """GB/T 10114 type of a 3-digit street/township code (by its range), or None."""
    n = int(street)
    if 1 <= n <= 99:
        return "街道"
    if 100 <= n <= 199:
        return "镇"
    if 200 <= n <= 399:
        return "乡"
    if 400 <= n <= 599:
        return "政企合一"
    return None


def split(code, sizes):
    parts, at = [], 0
    for size in sizes:
        parts.append(code[at:at + size])
        at += size
    return parts


def format_grid_code(district, street, community, sequence):
    """The grid code for its parts; a 2-digit sequence makes a 14-digit CJ/T 213 code."""
    for name, value, size in (("district", district, 6), ("street", street, 3),
                              ("community", community, 3)):
        check_digits(name, value)
        if len(value) != size:
            raise CodeError(f"grid code {name} {value} has {len(value)} digits, not {size}")
    check_digits("sequence", sequence)
    if len(sequence) not in (2, 3):
        raise CodeError(f"grid code sequence {sequence} has {len(sequence)} digits; CJ/T 213"
                        f"-2005 uses 2, GB/T 30428.1-2013 / GB/T 47678 use 3")
    return district + street + community + sequence


class Place:
    """A district, optionally with a street and a community, and their names."""

    __slots__ = ("community", "community_name", "district", "district_name", "street",
                 "street_name", "street_type", "warnings")

    def __init__(self, district, street=None, community=None):
        self.district = district
        self.street = street
        self.community = community
        self.district_name = self.street_name = self.community_name = None
        self.street_type = street_type(street) if street is not None else None
        self.warnings = []


class GridCode:
    """A parsed 单元网格 code; ``format()`` gives the code back."""

    __slots__ = ("certainty", "code", "community", "community_grid", "community_name",
                 "district", "district_name", "sequence", "standard", "street",
                 "street_name", "street_type", "warnings")

    def __init__(self, code, standard, certainty, parts):
        self.code = code
        self.standard = standard
        self.certainty = certainty
        self.district, self.street, self.community, self.sequence = parts
        self.district_name = self.street_name = self.community_name = None
        self.street_type = street_type(self.street)
        # CJ/T 213: sequence 00 is the community polygon itself.
        self.community_grid = len(code) == 14 and self.sequence == "00"
        self.warnings = []

    def format(self):
        return format_grid_code(self.district, self.street, self.community, self.sequence)

    def __str__(self):
        return self.format()

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}


class ComponentId:
    """A parsed 部件标识码: district + class (major + minor) + serial."""

    __slots__ = ("code", "district", "district_name", "entry", "major", "minor", "serial",
                 "standard", "warnings")

    def __init__(self, code, standard, parts):
        self.code = code
        self.standard = standard
        self.district, self.major, self.minor, self.serial = parts
        self.district_name = None
        self.entry = None
        self.warnings = []

    @property
    def class_code(self):
        return self.major + self.minor

    def format(self):
        return self.district + self.major + self.minor + self.serial

    def as_dict(self):
        out = {name: getattr(self, name) for name in self.__slots__ if name != "entry"}
        out["class"] = self.entry.as_dict() if self.entry else None
        return out


class EventCode:
    """A parsed event (事件/事项) code: district + class; a type code, not a case number."""

    __slots__ = ("class_code", "code", "district", "district_name", "entry", "standard",
                 "warnings")

    def __init__(self, code, standard, district, class_code):
        self.code = code
        self.standard = standard
        self.district = district
        self.class_code = class_code
        self.district_name = None
        self.entry = None
        self.warnings = []

    def format(self):
        return self.district + self.class_code

    def as_dict(self):
        out = {name: getattr(self, name) for name in self.__slots__ if name != "entry"}
        out["class"] = self.entry.as_dict() if self.entry else None
        return out


class Codes:
    """The loaded books and division table, and everything that reads codes with them."""

    def __init__(self, books=(), divisions=None):
        self.books = [b if isinstance(b, CodeBook) else CodeBook(b) for b in books]
        if divisions is not None and not isinstance(divisions, Divisions):
            divisions = Divisions(divisions)
        self.divisions = divisions

    @property
    def standards(self):
        return [b.standard for b in self.books]

    def book(self, standard):
        key = standard_key(standard)
        for b in self.books:
            if standard_key(b.standard) == key:
                return b
        loaded = ", ".join(self.standards) or "none"
        raise CodeError(f"standard {shown(str(standard))} has no loaded code book "
                        f"(loaded: {loaded})")

    def validate_class_code(self, standard, kind, code):
        """The ClassEntry of ``code`` in ``standard``'s ``kind`` table, or CodeError."""
        return self.book(standard).lookup(kind, code)

    # -- divisions -------------------------------------------------------------------

    def _district(self, label, district, target):
        """Check a 6-digit district; set ``target.district_name``."""
        province = int(district[:2])
        if province < 11 or province > 82:
            raise CodeError(f"{label}: district {district} has province {district[:2]}, "
                            f"outside GB/T 2260 (11–82)")
        if self.divisions is None:
            return
        row = self.divisions.district(district)
        if row is None:
            known = self.divisions.district_codes()
            listed = ", ".join(known) if len(known) <= 8 else f"{len(known)} districts"
            raise CodeError(f"{label}: district {district} is not in the GB/T 2260 table "
                            f"({self.divisions.id} lists {listed})")
        target.district_name = row["name"]

    def _place(self, label, place, strict):
        """Check district, street and community (street/community may be None)."""
        d, st, cm = place.district, place.street, place.community
        self._district(label, d, place)
        if st is None:
            return
        if st == "000":
            raise CodeError(f"{label}: street 000 is not a street or township (GB/T 10114 "
                            f"codes start at 001)")
        if cm == "000":
            raise CodeError(f"{label}: community 000 is not a community (community codes "
                            f"start at 001)")
        if self.divisions is None:
            return
        streets = self.divisions.streets(d)
        if streets is None:
            place.warnings.append(f"streets of {d} {place.district_name} are not in the "
                                  f"table; street {st} not checked")
            return
        row = streets.get(st)
        if row is None:
            raise CodeError(f"{label}: street {st} is not in the table for {d} "
                            f"{place.district_name} (streets: {', '.join(sorted(streets))})")
        place.street_name = row["name"]
        if cm is None:
            return
        name = row["communities"].get(cm)
        if name is not None:
            place.community_name = name
            return
        listed = ", ".join(sorted(row["communities"])) or "none"
        what = f"community {cm} is not listed under {d}{st} {row['name']} (listed: {listed})"
        if strict:
            raise CodeError(f"{label}: {what}")
        place.warnings.append(f"{what}; accepted: the community list may be older than "
                              f"the code ({self.divisions.id})")

    # -- grid codes ------------------------------------------------------------------

    def parse_grid_code(self, code, strict=False):
        """A GridCode; ``strict`` makes an unlisted community an error, not a warning."""
        check_digits("grid code", code)
        layout = GRID_LAYOUTS.get(len(code))
        if layout is None:
            raise CodeError(f"grid code {code} has {len(code)} digits; CJ/T 213-2005 grid "
                            f"codes have 14 (6 district + 3 street + 3 community + 2 grid), "
                            f"GB/T 30428.1-2013 / GB/T 47678 ones 15 (6+3+3+3)")
        standard, sizes, certainty = layout
        grid = GridCode(code, standard, certainty, split(code, sizes))
        label = f"grid code {code}"
        self._place(label, grid, strict)
        if grid.sequence == "000":
            raise CodeError(f"{label}: grid sequence 000 is not used (15-digit sequences run "
                            f"001–999; a community itself is its 12-digit code)")
        return grid

    # -- component ids and event codes ---------------------------------------------

    def _books_for(self, what, layout_key, code, standard):
        """Books whose ``layout_key`` length equals len(code) (one, if ``standard``)."""
        books = [self.book(standard)] if standard else self.books
        with_layout = [b for b in books if b.layout.get(layout_key)]
        if not with_layout:
            if standard:
                raise CodeError(f"{what} {code}: {books[0].standard} has no {what} layout "
                                f"(it is not known)")
            raise CodeError(f"{what} {code}: no loaded code book has a {what} layout")
        fits = [b for b in with_layout if sum(b.layout[layout_key]) == len(code)]
        if fits:
            return fits
        names = ID_PARTS[layout_key]
        described = []
        for b in with_layout:
            sizes = b.layout[layout_key]
            parts = " + ".join(f"{sizes[i]} {names[i]}" for i in range(len(sizes)))
            described.append(f"{b.standard} ones {sum(sizes)} ({parts})")
        described[0] = described[0].replace(" ones ", f" {what}s have ", 1)
        raise CodeError(f"{what} {code} has {len(code)} digits; {', '.join(described)}")

    def parse_component_id(self, cid, standard=None):
        """A ComponentId (16 digits CJ/T 214-2007, 17 GB/T 47678.5-2026), or CodeError."""
        check_digits("component id", cid)
        book = self._books_for("component id", "component_id", cid, standard)[0]
        parsed = ComponentId(cid, book.standard, split(cid, book.layout["component_id"]))
        label = f"component id {cid}"
        self._district(label, parsed.district, parsed)
        parsed.entry = self._class(label, book, "component", parsed.class_code)
        if parsed.serial.strip("0") == "":
            raise CodeError(f"{label}: serial {parsed.serial} is not used (serials start at "
                            f"{'0' * (len(parsed.serial) - 1)}1)")
        return parsed

    def parse_event_code(self, code, standard=None):
        """An EventCode (10 digits CJ/T 214-2007 [I], 11 GB/T 47678.5-2026), or CodeError."""
        check_digits("event code", code)
        book = self._books_for("event code", "event_code", code, standard)[0]
        district, major, minor = split(code, book.layout["event_code"])
        parsed = EventCode(code, book.standard, district, major + minor)
        label = f"event code {code}"
        self._district(label, district, parsed)
        parsed.entry = self._class(label, book, "event", parsed.class_code)
        return parsed

    @staticmethod
    def _class(label, book, kind, class_code):
        try:
            return book.lookup(kind, class_code)
        except CodeError as exc:
            reason = str(exc)  # re-raised outside: the core never chains exceptions
        raise CodeError(f"{label}: {reason}")

    # -- explain ---------------------------------------------------------------------

    def explain(self, code):
        """Every reading of ``code`` (by length and content), or CodeError if none fits."""
        check_digits("code", code)
        n = len(code)
        candidates = self._candidates(n)
        if not candidates:
            raise CodeError(f"code {code} has {n} digits; known lengths: "
                            f"{self._known_lengths()}")
        readings, errors = [], []
        for read in candidates:
            try:
                readings.append(read(code))
            except CodeError as exc:
                errors.append(str(exc))
        if not readings:
            if len(errors) == 1:
                raise CodeError(errors[0])
            raise CodeError(f"code {code} fits no reading: {'; '.join(errors)}")
        return {"code": code, "length": n, "readings": readings}

    def _candidates(self, n):
        out = []
        if n in GRID_LAYOUTS:
            out.append(self._read_grid)
        if n in DIVISIONS_STANDARD:
            out.append(self._read_division)
        for b in self.books:
            for kind in PLURAL:
                if not b.has(kind):
                    continue
                if n == b.major_digits:
                    out.append(self._reader(self._read_major, b, kind))
                if n == b.class_digits:
                    out.append(self._reader(self._read_class, b, kind))
            if b.layout.get("component_id") and sum(b.layout["component_id"]) == n:
                out.append(self._reader(self._read_component_id, b, None))
            if b.layout.get("event_code") and sum(b.layout["event_code"]) == n:
                out.append(self._reader(self._read_event_code, b, None))
        return out

    @staticmethod
    def _reader(fn, book, kind):
        return lambda code: fn(book, kind, code)

    def _known_lengths(self):
        lengths = {14: ["CJ/T 213-2005 grid code"], 15: ["GB/T 30428.1/47678 grid code"],
                   6: ["district"], 9: ["street"], 12: ["community"]}
        for b in self.books:
            for n, what in ((b.major_digits, "major class"),
                            (b.class_digits, f"{b.standard} class code"),
                            (sum(b.layout.get("component_id") or ()),
                             f"{b.standard} component id"),
                            (sum(b.layout.get("event_code") or ()), f"{b.standard} event code")):
                if n and what not in lengths.setdefault(n, []):
                    lengths[n].append(what)
        return ", ".join(f"{n} ({' / '.join(lengths[n])})" for n in sorted(lengths))

    @staticmethod
    def _reading(what, standard, certainty, layout, parts, warnings=()):
        return {"what": what, "standard": standard, "certainty": certainty,
                "layout": layout, "parts": parts, "class": None, "warnings": list(warnings)}

    def _read_grid(self, code):
        g = self.parse_grid_code(code)
        sizes = GRID_LAYOUTS[len(code)][1]
        parts = [["district", g.district, g.district_name],
                 ["street", g.street, g.street_name],
                 ["community", g.community, g.community_name],
                 ["sequence", g.sequence, "community grid" if g.community_grid else None]]
        reading = self._reading("grid code", g.standard, g.certainty,
                                "+".join(str(s) for s in sizes), parts, g.warnings)
        reading["street_type"] = g.street_type
        return reading

    def _read_division(self, code):
        n = len(code)
        what = {6: "district", 9: "street", 12: "community"}[n]
        place = Place(*split(code, (6, 3, 3)[:n // 3 - 1]))
        self._place(f"{what} code {code}", place, strict=False)
        parts = [["district", place.district, place.district_name]]
        if place.street is not None:
            parts.append(["street", place.street, place.street_name])
        if place.community is not None:
            parts.append(["community", place.community, place.community_name])
        layout = "+".join(str(s) for s in (6, 3, 3)[:len(parts)])
        reading = self._reading(what, DIVISIONS_STANDARD[n], None, layout, parts,
                                place.warnings)
        if self.divisions is not None:
            reading["certainty"] = self.divisions.district(place.district).get("certainty")
            reading["source"] = self.divisions.source(place.district)
            reading["parent"] = self.divisions.district(place.district).get("parent")
        if place.street is not None:
            reading["street_type"] = place.street_type
        return reading

    def _read_major(self, book, kind, code):
        if code not in dict(book.majors(kind)):
            known = ", ".join(c for c, _ in book.majors(kind))
            raise CodeError(f"major {code} is not in {book.standard} {PLURAL[kind]} "
                            f"(majors: {known})")
        members = book.codes(kind, code)
        reading = self._reading("major class", book.standard,
                                book.certainty.get("class"), str(book.major_digits),
                                [["major", code, book.major_name(kind, code)]])
        reading["kind"] = kind
        reading["classes"] = len(members)
        return reading

    def _read_class(self, book, kind, code):
        entry = book.lookup(kind, code)
        reading = self._reading("class code", book.standard, entry.certainty,
                                f"{book.major_digits}+{book.minor_digits}",
                                [["major", entry.major, entry.major_name],
                                 ["minor", code[book.major_digits:], entry.name]])
        reading["class"] = entry.as_dict()
        return reading

    def _read_component_id(self, book, _kind, code):
        c = self.parse_component_id(code, book.standard)
        sizes = book.layout["component_id"]
        parts = [["district", c.district, c.district_name],
                 ["major", c.major, c.entry.major_name],
                 ["minor", c.minor, c.entry.name],
                 ["serial", c.serial, None]]
        reading = self._reading("component id", book.standard,
                                book.certainty.get("component_id"),
                                "+".join(str(s) for s in sizes), parts, c.warnings)
        reading["class"] = c.entry.as_dict()
        return reading

    def _read_event_code(self, book, _kind, code):
        e = self.parse_event_code(code, book.standard)
        sizes = book.layout["event_code"]
        parts = [["district", e.district, e.district_name],
                 ["major", e.entry.major, e.entry.major_name],
                 ["minor", e.class_code[book.major_digits:], e.entry.name]]
        reading = self._reading("event code", book.standard, book.certainty.get("event_code"),
                                "+".join(str(s) for s in sizes), parts, e.warnings)
        reading["class"] = e.entry.as_dict()
        return reading
