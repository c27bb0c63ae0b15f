"""PostgreSQL reports partitioned by month (and by district and month) against one table,
in one run, on a generated year of a megacity's reports.

    .venv/bin/python benchmarks/bench_partitions.py [--quick] [--days 365] [--per-day 1000]

A megacity's 300,000 reports a day make 110 million rows a year; generating that takes
far longer than a benchmark may here, so the year is generated at ``--per-day`` reports
a day (what was generated is printed and written), spread evenly over the year's
seconds, 16 districts, 3,000 devices, payloads of about 500 bytes.  Three schemas hold
the same rows, each with the gateway's and the board's migrations:

- ``flat``: ``reports`` as one table (the schema before migration 0007);
- ``month``: partitioned by month of ``captured_at`` (migration 0007, what ships);
- ``district_month``: partitioned by district, each district by month (made here).

Figures (median of repeats, the three schemas taking turns, ms): a district's newest
page in a month, a district's reports per day over a month, a month's count by class
code over the city, 500 reports looked up by id (what the ingest does for redelivered
ids), inserting 500 new reports through the ingest's path (``Store.insert_new``: COPY
then INSERT … ON CONFLICT DO NOTHING) and 500 redelivered ones, and taking the oldest
month out (DELETE against DETACH PARTITION, rolled back).
Writes benchmarks/results/partitions.json.
"""

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridlink.gateway.api import MIGRATIONS  # noqa: E402
from gridlink.gateway.store import base, open_store  # noqa: E402
from gridlink.gateway.validate import REPORT_COLUMNS  # noqa: E402

from tests.support.gateway_rig import PG_BASE  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "partitions.json"
DISTRICTS = [f"4101{i:02d}" for i in range(2, 18)]  # 16 districts
DEVICES = 3000
YEAR = dt.date(2025, 1, 1)

_GENERATE = """
INSERT INTO reports ({cols})
SELECT 'pv-' || lpad(dev::text, 4, '0') || ':' || lpad(g::text, 12, '0'),
       'pv-' || lpad(dev::text, 4, '0'), dis, g, ts, ts, ts, 'gnss',
       34.7 + (g %% 997) / 10000.0, 113.2 + (g %% 991) / 10000.0, 3, 1, '[]',
       dis || '001001' || lpad((g %% 40)::text, 3, '0'),
       dis || '001001' || lpad((g %% 40)::text, 3, '0'), 0, dis || '001',
       'event', 'GB/T 47678.5-2026', lpad((g %% 60 + 1)::text, 5, '06'), NULL, 'button',
       NULL, NULL, 'a pothole by the kerb', '[]',
       '{{"v":1,"id":"pv-' || lpad(dev::text, 4, '0') || ':' || lpad(g::text, 12, '0') ||
       '","pad":"' || repeat('x', 400) || '"}}', md5(g::text), NULL
FROM generate_series(1, %(n)s) AS g,
     LATERAL (SELECT g %% {devices} AS dev) d,
     LATERAL (SELECT (%(districts)s::text[])[1 + (g %% {devices}) %% {nd}] AS dis) k,
     LATERAL (SELECT to_char(%(start)s::timestamp + make_interval(secs => g * %(step)s),
                             'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ts) t
"""


def schema_store(tag):
    return open_store(f"{PG_BASE}?schema=bench_{tag}_{uuid.uuid4().hex[:8]}")


def months(n):
    return [dt.date(YEAR.year + (YEAR.month - 1 + k) // 12, (YEAR.month - 1 + k) % 12 + 1, 1)
            for k in range(n)]


def district_month(store, count):
    """Re-make ``reports`` as LIST (district) partitions, each RANGE (month) partitioned."""
    with store.connect() as conn:
        defs = [r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND "
            "tablename = 'reports' AND indexname <> 'reports_pkey'").fetchall()]
        conn.execute("ALTER TABLE reports RENAME TO reports_month")
        conn.execute("CREATE TABLE reports (LIKE reports_month INCLUDING DEFAULTS) "
                     "PARTITION BY LIST (district)")
        conn.execute("ALTER TABLE reports ADD PRIMARY KEY (id, district, captured_at)")
        for d in DISTRICTS:
            conn.execute(f"CREATE TABLE reports_{d} PARTITION OF reports FOR VALUES IN "
                         f"('{d}') PARTITION BY RANGE (captured_at)")
            conn.execute(f"CREATE TABLE reports_{d}_default PARTITION OF reports_{d} DEFAULT")
            for m in months(count):
                nxt = months(count + 1)[months(count).index(m) + 1]
                conn.execute(f"CREATE TABLE reports_{d}_{m:%Y_%m} PARTITION OF reports_{d} "
                             f"FOR VALUES FROM ('{m}') TO ('{nxt}')")
        conn.execute("CREATE TABLE reports_other PARTITION OF reports DEFAULT")
        conn.execute("DROP TABLE reports_month")
        for d in defs:
            conn.execute(d)
        conn.execute("CREATE TRIGGER reports_claim_id BEFORE INSERT ON reports FOR EACH ROW "
                     "EXECUTE FUNCTION gridlink_claim_report_id()")
        conn.execute("CREATE TRIGGER reports_release_id AFTER DELETE ON reports FOR EACH ROW "
                     "EXECUTE FUNCTION gridlink_release_report_id()")


def fill(store, flat):
    """Copy the generated year from ``flat`` (the ids claimed as the trigger would)."""
    with store.connect() as conn:
        conn.execute("ALTER TABLE reports DISABLE TRIGGER reports_claim_id")
        conn.execute(f'INSERT INTO reports SELECT * FROM "{flat.schema}".reports')
        conn.execute(f'INSERT INTO report_ids SELECT id FROM "{flat.schema}".reports')
        conn.execute("ALTER TABLE reports ENABLE TRIGGER reports_claim_id")
        conn.execute("ANALYZE reports")
        conn.execute("ANALYZE report_ids")


def new_rows(template, start, n, when):
    rows = []
    for i in range(n):
        seq = start + i
        rid = f"pv-9999:{seq:012d}"
        rows.append(tuple({**template, "id": rid, "device": "pv-9999", "seq": seq,
                           "captured_at": when, "received_at": when, "committed_at": when,
                           "payload": template["payload"].replace(template["id"], rid)}[c]
                          for c in REPORT_COLUMNS))
    return rows


def workloads(store, n_months, repeat):
    """The work measured on one schema: figure name → (callable, times to run it)."""
    district = DISTRICTS[3]
    lo, hi = months(n_months)[n_months // 2], months(n_months + 1)[n_months // 2 + 1]
    lo, hi = lo.isoformat(), hi.isoformat()

    def q(sql, params=()):
        with store.connect(readonly=True) as conn:
            return conn.execute(sql, params).fetchall()

    figures = {
        "district_month_page_ms": (lambda: q(
            "SELECT id, captured_at, code FROM reports WHERE district = %s AND "
            "captured_at >= %s AND captured_at < %s ORDER BY captured_at DESC, id DESC "
            "LIMIT 50", (district, lo, hi)), repeat),
        "district_month_per_day_ms": (lambda: q(
            "SELECT left(captured_at, 10), COUNT(*) FROM reports WHERE district = %s AND "
            "captured_at >= %s AND captured_at < %s GROUP BY 1", (district, lo, hi)), repeat),
        "city_month_by_code_ms": (lambda: q(
            "SELECT code, COUNT(*) FROM reports WHERE captured_at >= %s AND captured_at < %s "
            "GROUP BY code", (lo, hi)), repeat),
    }
    ids = [r[0] for r in q("SELECT id FROM reports TABLESAMPLE SYSTEM (1) LIMIT 500")]
    figures["lookup_500_ids_ms"] = (lambda: q(
        "SELECT id, digest, payload FROM reports WHERE id = ANY(%s)", (ids,)), repeat)
    template = dict(zip(REPORT_COLUMNS, q(
        f"SELECT {', '.join(REPORT_COLUMNS)} FROM reports LIMIT 1")[0], strict=True))
    last = months(n_months)[-1].isoformat() + "T12:00:00.000Z"
    batches = [new_rows(template, 10**9 + k * 500, 500, last) for k in range(repeat)]
    it = iter(batches)

    def insert(rows):
        with store.connect() as conn:
            got = store.insert_new(conn, "reports", REPORT_COLUMNS, rows, "id")
        return got

    figures["insert_500_new_ms"] = (lambda: insert(next(it)), repeat)
    figures["insert_500_redelivered_ms"] = (lambda: redelivered(batches[0]), repeat)

    def redelivered(rows):
        assert insert(rows) == []  # nothing inserted twice

    first, second = months(2)

    def take_oldest_month():
        with store.connect() as conn:
            part = conn.execute("SELECT to_regclass(%s)", (f"reports_{first:%Y_%m}",)
                                ).fetchone()[0]
            if part is not None:
                conn.execute(f"ALTER TABLE reports DETACH PARTITION reports_{first:%Y_%m}")
            elif conn.execute("SELECT to_regclass('reports_other')").fetchone()[0]:
                for d in DISTRICTS:  # district × month: one partition per district
                    conn.execute(f"ALTER TABLE reports_{d} DETACH PARTITION "
                                 f"reports_{d}_{first:%Y_%m}")
            else:
                conn.execute("DELETE FROM reports WHERE captured_at < %s", (second.isoformat(),))
            conn.rollback()

    figures["take_oldest_month_out_ms"] = (take_oldest_month, max(2, repeat // 3))
    return figures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="90 days at 1,000 a day")
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--per-day", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    if args.quick:
        args.days, args.per_day, args.repeat = 90, 1000, 5
    n = args.days * args.per_day
    n_months = (dt.date.fromordinal(YEAR.toordinal() + args.days - 1).month - YEAR.month + 1)
    started = time.monotonic()
    stores = {"flat": schema_store("flat"), "month": schema_store("month"),
              "district_month": schema_store("dmonth")}
    try:
        for name, s in stores.items():
            if name == "flat":
                with _before_partitions():
                    s.migrate(extra=MIGRATIONS)
            else:
                s.migrate(extra=MIGRATIONS)
        flat = stores["flat"]
        t = time.perf_counter()
        with flat.connect() as conn:
            conn.execute(_GENERATE.format(cols=", ".join(REPORT_COLUMNS), devices=DEVICES,
                                          nd=len(DISTRICTS)),
                         {"n": n, "districts": DISTRICTS, "start": YEAR.isoformat(),
                          "step": args.days * 86400 / n})
            conn.execute("ANALYZE reports")
        generated_s = time.perf_counter() - t
        with stores["month"].connect() as conn:
            for m in months(n_months):
                conn.execute("SELECT gridlink_month_partition('reports', %s)", (m,))
        district_month(stores["district_month"], n_months)
        copy_s = {}
        for name in ("month", "district_month"):
            t = time.perf_counter()
            fill(stores[name], flat)
            copy_s[name] = round(time.perf_counter() - t, 1)
        work = {name: workloads(s, n_months, args.repeat) for name, s in stores.items()}
        results = {name: {} for name in stores}
        for figure, (_, times) in work["flat"].items():
            # the schemas take turns at each repeat: the machine's load falls on all three
            spent = {name: [] for name in stores}
            for _ in range(times):
                for name in stores:
                    t = time.perf_counter()
                    work[name][figure][0]()
                    spent[name].append((time.perf_counter() - t) * 1000)
            for name in stores:
                results[name][figure] = round(statistics.median(spent[name]), 2)
        for name in stores:
            print(f"{name:15} " + "  ".join(f"{k} {v}" for k, v in results[name].items()),
                  flush=True)
    finally:
        for s in stores.values():
            s.drop_schema()
    ratios = {k: round(results["flat"][k] / results["month"][k], 2)
              for k in results["flat"] if results["month"][k]}
    ratios_dm = {k: round(results["flat"][k] / results["district_month"][k], 2)
                 for k in results["flat"] if results["district_month"][k]}
    out = {
        "generated": {"reports": n, "days": args.days, "per_day": args.per_day,
                      "months": n_months, "districts": len(DISTRICTS), "devices": DEVICES,
                      "megacity_per_day": 300_000,
                      "note": "a sample: the megacity's year is 110M rows; this is the same "
                              "shape at per_day reports a day",
                      "generate_s": round(generated_s, 1), "copy_s": copy_s},
        "flat": results["flat"], "month": results["month"],
        "district_month": results["district_month"],
        "flat_over_month": ratios, "flat_over_district_month": ratios_dm,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(f"generated {n:,} reports ({args.days} days × {args.per_day:,}/day) in "
          f"{generated_s:.1f}s; copies {copy_s}")
    print("flat ÷ month (>1: partitioned faster):", ratios)
    print("flat ÷ district×month:", ratios_dm)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} in {out['wall_s']}s")
    return 0


class _before_partitions:
    """Migrate as the gateway did before migration 0007 (reports as one table)."""

    def __enter__(self):
        self.saved = base.BUILTIN
        base.BUILTIN = tuple(m for m in base.BUILTIN if m[0] != "0007_month_partitions")

    def __exit__(self, *exc):
        base.BUILTIN = self.saved


if __name__ == "__main__":
    sys.exit(main())
