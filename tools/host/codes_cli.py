"""``gridlink codes``: explain any grid, component, event or class code; list code books.

    gridlink codes show 410106001001001          # district, street, community, grid
    gridlink codes show 06010 --json             # class names in every standard it fits
    gridlink codes list --standard "GB/T 47678.5-2026" --kind event
    gridlink codes books                         # shipped books, versions and counts

A wrong code prints one line naming the wrong part and exits 2.
"""

import json
import sys

KINDS = ("component", "event")


def register(parser):
    sub = parser.add_subparsers(dest="codes_command", metavar="ACTION", required=True)

    show = sub.add_parser("show", help="explain a code: what it is, its parts and names")
    show.add_argument("code", help="any code: 2/4/5-digit class, 6/9/12-digit division, "
                                   "10/11-digit event code, 14/15-digit grid, 16/17-digit id")
    show.add_argument("--json", action="store_true", help="print the explanation as JSON")
    show.add_argument("--divisions", metavar="FILE",
                      help="a division table JSON to use instead of the shipped one")
    show.set_defaults(func=cmd_show)

    lst = sub.add_parser("list", help="list the classes of the code books")
    lst.add_argument("--standard", metavar="S", help="one standard, e.g. 'GB/T 47678.5-2026'")
    lst.add_argument("--kind", choices=KINDS, help="only components or only events")
    lst.add_argument("--json", action="store_true", help="print the classes as JSON")
    lst.set_defaults(func=cmd_list)

    books = sub.add_parser("books", help="the shipped books: standard, version, counts")
    books.add_argument("--json", action="store_true", help="print the books as JSON")
    books.set_defaults(func=cmd_books)

    ov = sub.add_parser("overlay", help="a district's local code book (docs/codes.md)")
    ov_sub = ov.add_subparsers(dest="overlay_command", metavar="STEP", required=True)
    p = ov_sub.add_parser("seal", help="write the local book's version (the hash of its "
                          "content) after checking it against the book it extends")
    p.add_argument("file", help="the local code book (JSON) to seal in place")
    p.set_defaults(func=cmd_overlay_seal)
    p = ov_sub.add_parser("check", help="check a sealed local book and list what it changes")
    p.add_argument("file", help="the sealed local code book (JSON)")
    p.set_defaults(func=cmd_overlay_check)


def _codes(divisions=None):
    from gridlink.firmware import codebooks
    from gridlink.firmware.core.codes import Codes, Divisions

    if divisions is None:
        return codebooks.codes()
    return Codes([codebooks.book(s) for s in codebooks.STANDARDS],
                 Divisions(codebooks.load_divisions(divisions)))


def cmd_show(args, out=None):
    out = out or sys.stdout
    result = _codes(args.divisions).explain(args.code.strip())
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2), file=out)
        return 0
    for reading in result["readings"]:
        print(format_reading(result["code"], reading), file=out)
    return 0


def format_reading(code, reading):
    """A human explanation of one reading, a few lines."""
    tag = f" [{reading['certainty']}]" if reading.get("certainty") else ""
    kind = f" ({reading['kind']})" if reading.get("kind") else ""
    if reading["what"] == "class code":
        kind = f" ({reading['class']['kind']})"
    lines = [f"{code}  {reading['what']}{kind}  {reading['standard']}{tag}  "
             f"layout {reading['layout']}"]
    for part, value, name in reading["parts"]:
        label = name or "-"
        if part == "district" and reading.get("parent"):
            label += f" ({reading['parent']})"
        if part == "street" and reading.get("street_type"):
            label += f" ({reading['street_type']})"
        lines.append(f"  {part:<10} {value:<7} {label}")
    entry = reading.get("class")
    if entry:
        lines.append(f"  class      {entry['code']:<7} {entry['name']} "
                     f"[{entry['certainty']}]  source: {entry['source']}")
        if entry.get("conflict"):
            lines.append(f"  CONFLICT   {entry['conflict']}")
    if "classes" in reading:
        lines.append(f"  classes    {reading['classes']}")
    if reading.get("source"):
        lines.append(f"  source     {reading['source']}")
    lines.extend(f"  warning    {w}" for w in reading["warnings"])
    return "\n".join(lines)


def cmd_list(args, out=None):
    out = out or sys.stdout
    codes = _codes()
    books = [codes.book(args.standard)] if args.standard else codes.books
    kinds = [args.kind] if args.kind else list(KINDS)
    rows = [e for b in books for k in kinds for e in b.entries(k)]
    if args.json:
        print(json.dumps([e.as_dict() for e in rows], ensure_ascii=False, indent=1), file=out)
        return 0
    for e in rows:
        conflict = f"  CONFLICT: {e.conflict}" if e.conflict else ""
        print(f"{e.standard:<18} {e.kind:<9} {e.code:<5} {e.name} [{e.certainty}]  "
              f"({e.major} {e.major_name or '?'}){conflict}", file=out)
    return 0


def cmd_books(args, out=None):
    out = out or sys.stdout
    codes = _codes()
    rows = []
    for b in codes.books:
        rows.append({"standard": b.standard, "id": b.id,
                     "components": len(b.codes("component")), "events": len(b.codes("event")),
                     "partial": b.partial})
    rows.append({"standard": "divisions", "id": codes.divisions.id,
                 "districts": codes.divisions.district_codes()})
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1), file=out)
        return 0
    for r in rows:
        counts = (f"{r['components']} components, {r['events']} events"
                  if "events" in r else f"districts {', '.join(r['districts'])}")
        print(f"{r['id']:<32} {counts}", file=out)
    return 0


def _applied(doc):
    from gridlink.firmware import codebooks

    return codebooks.with_overlays(codebooks.load_books(), [doc])


def _changes(book, out):
    local = book.local
    print(f"{book.id}: {local['title']} (source: {local['source']})", file=out)
    for kind in KINDS:
        for code, change in sorted(local["changes"].get(kind, {}).items()):
            if change == "retired":
                line = local["retired"][kind][code]
            else:
                e = book.entry(kind, code)
                line = e.name + (f" (standard: {local['standard_names'][kind][code]})"
                                 if change == "renamed" else "")
            print(f"  {kind:9} {code}  {change:8} {line}", file=out)
    for alias, code in sorted(local["grid_aliases"].items()):
        print(f"  grid      {alias}  alias of {code}", file=out)


def cmd_overlay_seal(args, out=None):
    from pathlib import Path

    from gridlink.firmware import codebooks
    from gridlink.firmware.core.codebook import CodeError

    out = out or sys.stdout
    path = Path(args.file)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CodeError(f"local code book {path}: {exc}") from None
    sealed = codebooks.seal_overlay(doc)
    books = _applied(sealed)          # refuses a book that does not fit, before writing
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(sealed, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    _changes(books[sealed["base"].split("@")[0]], out)
    return 0


def cmd_overlay_check(args, out=None):
    from gridlink.firmware import codebooks

    out = out or sys.stdout
    doc = codebooks.load_overlay(args.file)
    _changes(_applied(doc)[doc["base"].split("@")[0]], out)
    return 0
