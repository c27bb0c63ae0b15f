"""How fast is the intake queue?  Its operations vs bare SQL on the same store, same run.

    .venv/bin/python benchmarks/bench_intake.py [--quick] [--db sqlite|postgres]

On a queue of N committed reports (SQLite WAL synchronous=FULL by default):
  * list: one page of 50 pending reports with their intake state, class names and the
    total count (what the board asks on every change), vs the reference
    ``SELECT * FROM reports ORDER BY captured_at DESC LIMIT 50``;
  * decide: claim then accept one report (two transactions, conditional UPDATEs), vs the
    reference of one bare single-row UPDATE transaction;
  * http: the list page over HTTP from a real uvicorn (JSON encoding included).
Prints operations per second and ratios; writes benchmarks/results/intake.json.
"""

import argparse
import json
import secrets
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from gridlink.gateway.api import MIGRATIONS, create_app
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.queue import IntakeQueue
from gridlink.gateway.store import open_store

OUT = Path(__file__).resolve().parent / "results" / "intake.json"
CODES = ("06010", "07001", "09009", "06013", "01001")


def fill(store, n):
    rows = []
    for i in range(n):
        rid = f"pv-{i % 20:04d}:{i:012d}"
        t = f"2026-11-{1 + i // 100000 % 28:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:" \
            f"{i % 60:02d}.000Z"
        grid = f"410106{1 + i % 5:03d}{1 + i % 9:03d}{1 + i % 90:03d}"
        rows.append((rid, rid.split(":")[0], "410106", i, t, t, t, "gnss", 34.8, 113.29, 3, 1,
                     "[]", grid, grid, 0, grid[:9], "event", "GB/T 47678.5-2026",
                     CODES[i % len(CODES)], None, "button", None, None, "", "[]", "{}"))
    with store.connect() as conn:
        cur = conn.cursor()
        cur.executemany(store.sql(
            "INSERT INTO reports (id, device, district, seq, captured_at, received_at,"
            " committed_at, time_source, lat, lon, fix_mode, fix_status, flags, grid,"
            " grid_device, grid_mismatch, street, kind, standard, code, object, source, task,"
            " result, text, photos, payload) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            rows)
    return [r[0] for r in rows]


def rate(fn, count, repeats):
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(count):
            fn(i)
        runs.append(count / (time.perf_counter() - t0))
    return statistics.median(runs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    n, ops, repeats = (5000, 100, 3) if args.quick else (30000, 200, 5)

    with tempfile.TemporaryDirectory() as tmp:
        if args.db == "sqlite":
            store = open_store(f"sqlite:///{tmp}/bench.sqlite")
        else:
            store = open_store("postgresql://postgres@127.0.0.1:5432/test"
                               f"?schema=bench_{uuid.uuid4().hex[:10]}")
        try:
            store.migrate(extra=MIGRATIONS)
            ids = fill(store, n)
            app = create_app(store)
            queue = app.state.queue
            assert isinstance(queue, IntakeQueue)

            def bare_page(_):
                with store.connect(readonly=True) as conn:
                    conn.execute("SELECT * FROM reports ORDER BY captured_at DESC LIMIT 50"
                                 ).fetchall()

            def page(_):
                queue.list(limit=50)

            stamp = iter(range(10**9))

            def bare_update(i):  # a new value each time: SQLite skips writing an unchanged row
                with store.connect() as conn:
                    conn.execute(store.sql("UPDATE reports SET text = ? WHERE id = ?"),
                                 (f"x{next(stamp)}", ids[i]))

            decided = iter(ids[::-1])

            def decide(_):
                rid = next(decided)
                queue.claim(rid, "bench")
                queue.accept(rid, "bench")

            results = {
                "reports": n,
                "db": args.db,
                "bare_page_per_s": rate(bare_page, ops, repeats),
                "list_page_per_s": rate(page, ops, repeats),
                "bare_update_per_s": rate(bare_update, ops, repeats),
                "claim_accept_per_s": rate(decide, ops, repeats),
            }
            # over HTTP as a client sees it: signed in with an API token (checked per request)
            app.state.accounts.add("bench", ("viewer",), secrets.token_urlsafe(16))
            token, _ = app.state.accounts.issue_token("bench", "benchmark")
            with BackgroundServer(app) as server:
                request = urllib.request.Request(server.url + "/api/reports?limit=50",
                                                 headers={"Authorization": f"Bearer {token}"})

                def http_page(_):
                    with urllib.request.urlopen(request) as resp:
                        resp.read()

                results["http_page_per_s"] = rate(http_page, ops // 2, repeats)
        finally:
            if args.db == "postgres":
                with store.connect() as conn:
                    conn.execute(f'DROP SCHEMA "{store.schema}" CASCADE')
            store.close()

    results["list_vs_bare"] = results["bare_page_per_s"] / results["list_page_per_s"]
    results["decide_vs_bare_update"] = results["bare_update_per_s"] / results[
        "claim_accept_per_s"]
    print(f"{args.db}, {n} reports")
    print(f"  pending page (50, count, names): {results['list_page_per_s']:8.0f}/s  "
          f"bare SELECT page: {results['bare_page_per_s']:8.0f}/s  "
          f"ratio {results['list_vs_bare']:.1f}x")
    print(f"  claim + accept:                  {results['claim_accept_per_s']:8.0f}/s  "
          f"bare UPDATE txn: {results['bare_update_per_s']:8.0f}/s  "
          f"ratio {results['decide_vs_bare_update']:.1f}x")
    print(f"  pending page over HTTP:          {results['http_page_per_s']:8.0f}/s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    name = "intake.json" if args.db == "sqlite" else "intake-postgres.json"
    (OUT.parent / name).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
