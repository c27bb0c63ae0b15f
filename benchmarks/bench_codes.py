"""How fast are code checks?  Validation vs a bare dict lookup, measured in the same run.

    .venv/bin/python benchmarks/bench_codes.py [--quick]

Reference: ``code in classes`` on the raw parsed book (what a check cannot beat).  Prints
operations per second and the ratio reference / operation; writes
benchmarks/results/codes.json.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from gridlink.firmware import codebooks

OUT = Path(__file__).resolve().parent / "results" / "codes.json"


def rate(fn, items, repeats):
    """Median operations per second of fn over items."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        runs.append(len(items) / (time.perf_counter() - t0))
    return statistics.median(runs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repeats, scale = (3, 2) if args.quick else (7, 10)

    codes = codebooks.codes()
    book = codes.book("GB/T 47678.5-2026")
    events = book.codes("event") * scale
    raw = codebooks.load("GB/T 47678.5-2026")["event"]["classes"]
    div = codes.divisions
    grids = [d + s + c + "001" for d in div.district_codes() for s in (div.streets(d) or {})
             for c in div.street(d, s)["communities"]] * scale * 4
    ids = [d + c + "000001" for d in div.district_codes() for c in book.codes("component")]
    ids *= scale

    reference = rate(lambda c: c in raw, events, repeats)
    results = {
        "reference_dict_lookup_per_s": reference,
        "validate_class_code_per_s": rate(
            lambda c: codes.validate_class_code("GB/T 47678.5-2026", "event", c), events,
            repeats),
        "parse_grid_code_per_s": rate(codes.parse_grid_code, grids, repeats),
        "parse_component_id_per_s": rate(codes.parse_component_id, ids, repeats),
        "explain_grid_per_s": rate(codes.explain, grids, repeats),
    }
    for name, value in results.items():
        ratio = reference / value
        print(f"{name:<30} {value:>12,.0f}/s   reference/this = {ratio:8.1f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"quick": args.quick, **results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
