"""Build the shipped code books from their sources (CPython only; re-runnable).

    .venv/bin/python firmware/codebooks/build.py            # rewrite the JSON files
    .venv/bin/python firmware/codebooks/build.py --check    # exit 1 if they are stale
    .venv/bin/python firmware/codebooks/build.py --csv ../shared/data/codes/classes.csv

Inputs (in ``sources/``): ``classes.csv`` (a verbatim copy of the project's shared
``data/codes/classes.csv``: one row per major or minor class, with a free-text ``source``
column carrying a certainty tag [V]/[T]/[I]/[M]) and ``divisions.csv`` (GB/T 2260 districts
with their GB/T 10114 streets and NBS communities, each row naming where it came from).

Outputs (next to this file): one book per standard (``cjt214-2007.json``,
``gbt30428.2-2013.json``, ``gbt47678.5-2026.json``) and ``divisions.json``.  Each records a
``version``: the first 12 hex digits of the SHA-256 of its own canonical JSON without the
version field, so the same content always gets the same version.  The format is described
in docs/codes.md; the device core reads it with ``CodeBook`` / ``Divisions``.
"""

import argparse
import csv
import hashlib
import io
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"

BOOK_FORMAT = "gridlink-codebook/1"
DIVISIONS_FORMAT = "gridlink-divisions/1"

# csv spelling of the standard → (canonical id, output file, layouts, layout certainty, notes)
STANDARDS = {
    "CJ/T214-2007": {
        "standard": "CJ/T 214-2007",
        "file": "cjt214-2007.json",
        "layout": {"class": [2, 2], "component_id": [6, 2, 2, 6], "event_code": [6, 2, 2]},
        "certainty": {"class": "T", "component_id": "T", "event_code": "I"},
        "partial": {"component": False, "event": False},
        "notes": [
            "Tables reconstructed from third-party code (Tianque dictionary, CETC BJ list, "
            "WeChat mini-program, Beijing Chaoyang app); no official text was available.",
            "The 10-digit event code (6 district + 2 major + 2 minor) is an inference [I].",
            "The code of the 7th component major 扩展部件 is unknown; it is listed under "
            "'unplaced' and has no classes.",
        ],
    },
    "GB/T30428.2-2013": {
        "standard": "GB/T 30428.2-2013",
        "file": "gbt30428.2-2013.json",
        "layout": {"class": [2, 2], "component_id": None, "event_code": None},
        "certainty": {"class": "I", "component_id": None, "event_code": None},
        "partial": {"component": True, "event": True},
        "notes": [
            "Partial: only the event codes used by one third-party enum (China Mobile cmict) "
            "are known; the 2013 component tables were not found.",
            "Component-id and event-code layouts of the 2013 edition are not known.",
        ],
    },
    "GB/T47678.5-2026": {
        "standard": "GB/T 47678.5-2026",
        "file": "gbt47678.5-2026.json",
        "layout": {"class": [2, 3], "component_id": [6, 2, 3, 6], "event_code": [6, 2, 3]},
        "certainty": {"class": "T", "component_id": "T", "event_code": "T"},
        "partial": {"component": False, "event": False},
        "notes": [
            "Annex A (部件, stated total 153) and Annex C (事项, stated total 250) as "
            "transcribed by github Jackyhellolove/city-inspection-ai.",
            "Gaps in the numbering (e.g. 01016, 06031) are absent in the transcription.",
        ],
    },
}

# source key → (text, certainty of what it gives)
DIVISION_SOURCES = {
    "adcode": ("github Vonng/adcode data/adcode/410106.csv (NBS 统计用区划代码, 2016-07-31 "
               "baseline), cited in domain-standards.md §7 [V]", "V"),
    "suzhou": ("domain-standards.md §2.1: a Suzhou integration script's ObjID "
               "3205080101000001 = 320508 姑苏区 [T]; streets not listed", "T"),
}

SOURCE_RE = re.compile(r"^(CJ/T\s?214-2007|GB/T\s?30428\.2-2013|GB/T\s?47678\.5-2026)\b")
TAG_RE = re.compile(r"\[([VTIM]\??)\]")
CONFLICT_RE = re.compile(r"CONFLICT\s+(.*)$")


class BuildError(Exception):
    """A source row cannot be turned into a book entry."""


def parse_source(text, line):
    """(standard key, certainty tag, conflict note or None) from a csv source cell."""
    m = SOURCE_RE.match(text)
    if not m:
        raise BuildError(f"classes.csv line {line}: source {text!r} names no known standard")
    tag = TAG_RE.search(text)
    if not tag:
        raise BuildError(f"classes.csv line {line}: source {text!r} has no certainty tag")
    conflict = CONFLICT_RE.search(text)
    return m.group(1).replace(" ", ""), tag.group(1), conflict.group(1) if conflict else None


def read_classes(text):
    """Rows of classes.csv grouped by standard key."""
    rows = {key: [] for key in STANDARDS}
    reader = csv.DictReader(io.StringIO(text))
    expected = ["kind", "major_code", "major_name", "minor_code", "minor_name", "source"]
    if reader.fieldnames != expected:
        raise BuildError(f"classes.csv header {reader.fieldnames} is not {expected}")
    for line, row in enumerate(reader, start=2):
        key, tag, conflict = parse_source(row["source"], line)
        if row["kind"] not in ("component", "event"):
            raise BuildError(f"classes.csv line {line}: kind {row['kind']!r}")
        rows[key].append((line, row, tag, conflict))
    return rows


def build_book(key, rows):
    spec = STANDARDS[key]
    major_len, minor_len = spec["layout"]["class"]
    sources = []
    book = {
        "format": BOOK_FORMAT,
        "standard": spec["standard"],
        "version": "",
        "layout": spec["layout"],
        "certainty": spec["certainty"],
        "partial": spec["partial"],
        "notes": spec["notes"],
        "sources": sources,
        "component": {"majors": {}, "classes": {}},
        "event": {"majors": {}, "classes": {}},
        "unplaced": [],
    }

    def source_index(text):
        if text not in sources:
            sources.append(text)
        return sources.index(text)

    for line, row, tag, conflict in rows:
        table = book[row["kind"]]
        major, minor = row["major_code"], row["minor_code"]
        src = source_index(row["source"])
        if not minor:
            if not major:  # a major class whose code is not known
                book["unplaced"].append([row["kind"], row["major_name"], tag, src])
                continue
            if len(major) != major_len or not major.isdigit():
                raise BuildError(f"classes.csv line {line}: major {major!r} for {key}")
            if major in table["majors"]:
                raise BuildError(f"classes.csv line {line}: major {major} repeated for {key}")
            table["majors"][major] = [row["major_name"] or None, tag, src]
            continue
        if len(minor) != major_len + minor_len or not minor.isdigit():
            raise BuildError(f"classes.csv line {line}: class {minor!r} has the wrong shape "
                             f"for {key} ({major_len}+{minor_len} digits)")
        if minor[:major_len] != major:
            raise BuildError(f"classes.csv line {line}: class {minor} is not under major {major}")
        if minor in table["classes"]:
            raise BuildError(f"classes.csv line {line}: class {minor} repeated for {key}")
        if major not in table["majors"]:
            # A class whose major row is missing (GB/T 30428.2-2013 06-06): record the major
            # with an unknown name, at the class's certainty.
            table["majors"][major] = [row["major_name"] or None, tag, src]
        entry = [row["minor_name"], tag, src]
        if conflict:
            entry.append(conflict)
        table["classes"][minor] = entry
    book["version"] = content_version(book)
    return book


def read_divisions(text):
    districts = {}
    source_keys = []
    reader = csv.DictReader(io.StringIO(text))
    for line, row in enumerate(reader, start=2):
        code, name, key = row["code"], row["name"], row["source"]
        if key not in DIVISION_SOURCES:
            raise BuildError(f"divisions.csv line {line}: unknown source {key!r}")
        if key not in source_keys:
            source_keys.append(key)
        src = source_keys.index(key)
        if len(code) == 6:
            districts[code] = {"name": name, "parent": row["parent"] or None,
                               "source": src, "certainty": DIVISION_SOURCES[key][1],
                               "streets": None}
            continue
        district = districts.get(code[:6])
        if district is None:
            raise BuildError(f"divisions.csv line {line}: {code} before its district")
        if len(code) == 9:
            if district["streets"] is None:
                district["streets"] = {}
            district["streets"][code[6:]] = {"name": name, "communities": {}}
        elif len(code) == 12:
            street = (district["streets"] or {}).get(code[6:9])
            if street is None:
                raise BuildError(f"divisions.csv line {line}: {code} before its street")
            street["communities"][code[9:]] = name
        else:
            raise BuildError(f"divisions.csv line {line}: code {code!r} is not 6, 9 or 12 digits")
    table = {
        "format": DIVISIONS_FORMAT,
        "version": "",
        "standard": "GB/T 2260 (districts) + GB/T 10114 (streets) + NBS (communities)",
        "sources": [DIVISION_SOURCES[k][0] for k in source_keys],
        "districts": districts,
    }
    table["version"] = content_version(table)
    return table


def canonical(obj):
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def content_version(obj):
    """12 hex digits of the SHA-256 of the canonical JSON without the version field."""
    body = dict(obj)
    body.pop("version", None)
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()[:12]


def build_all(classes_text, divisions_text):
    """{file name: bytes} for every shipped data file."""
    grouped = read_classes(classes_text)
    out = {}
    for key, spec in STANDARDS.items():
        out[spec["file"]] = dump(build_book(key, grouped[key]))
    out["divisions.json"] = dump(read_divisions(divisions_text))
    return out


def dump(obj):
    # Compact UTF-8 on one line: the sources in sources/ are the reviewable form.
    return (canonical(obj) + "\n").encode("utf-8")


def slim(book, kinds=("event",), sources=False):
    """A smaller copy of a parsed book for a node that needs fewer tables.

    Keeps only ``kinds`` (and drops the source texts unless ``sources``); the version stays
    the full book's, so a node reports which book its copy was cut from.
    """
    out = {k: v for k, v in book.items() if k not in ("component", "event")}
    for kind in kinds:
        out[kind] = book[kind]
    if not sources:
        out["sources"] = []
    out["slim"] = {"kinds": list(kinds), "sources": bool(sources)}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=SOURCES / "classes.csv",
                        help="classes.csv to build from (default: the vendored copy)")
    parser.add_argument("--divisions", type=Path, default=SOURCES / "divisions.csv")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a shipped file differs from a fresh build")
    args = parser.parse_args(argv)
    try:
        files = build_all(args.csv.read_text(encoding="utf-8"),
                          args.divisions.read_text(encoding="utf-8"))
    except BuildError as exc:
        print(f"build: error: {exc}", file=sys.stderr)
        return 2
    stale = []
    for name, data in files.items():
        target = args.out / name
        if target.exists() and target.read_bytes() == data:
            continue
        stale.append(name)
        if not args.check:
            target.write_bytes(data)
    verb = "stale" if args.check else "written"
    print(f"{len(files)} files, {len(stale)} {verb}: {', '.join(stale) or '-'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
