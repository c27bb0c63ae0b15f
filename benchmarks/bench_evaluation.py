"""How fast are the evaluation rates?  A month of one district's data, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_evaluation.py [--quick] [--db sqlite|postgres|both]

The store holds three months of a district (上街区: 40 supervisors, each carrying one
patrol device, on duty 8 h a day): REPORTS_PER_DAY reports a day, 3/4 of them decided
(立案 or 不予立案), a 核实 task for every fifth and a 核查 task for every tenth, some late,
a case for every 立案 (4 in 5 closed, some late, seven departments).  Timed: the middle
month's table per supervisor per day (with duty hours), per grid per month, per device per
week and per department per month (``Rates.table``, every rate and stage time in each), vs the
reference of a bare ``COUNT(*) … GROUP BY device`` over the same month's reports.  Prints
wall and CPU milliseconds (CPU: this process and the PostgreSQL backend, so that a busy
machine's waiting is told apart) and the ratio; writes benchmarks/results/evaluation.json.
Goal: under a second for each table.

On PostgreSQL the wall time is taken with the server's settings (parallel workers
allowed); the CPU in a second pass with ``max_parallel_workers_per_gather = 0``: a
parallel worker is a process of its own that exits with the query, so its CPU cannot be
read, while without workers all of a query's CPU is its backend's.  That pass's wall time
is kept too (``serial_ms``).
"""

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gridlink.gateway.api import MIGRATIONS
from gridlink.gateway.clock import wire_time
from gridlink.gateway.rates import MIGRATIONS as RATE_MIGRATIONS
from gridlink.gateway.rates import Rates
from gridlink.gateway.roster import MIGRATIONS as ROSTER_MIGRATIONS
from gridlink.gateway.store import open_store

OUT = Path(__file__).resolve().parent / "results" / "evaluation.json"
START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH = (datetime(2026, 11, 1, tzinfo=UTC) - timedelta(hours=8),
         datetime(2026, 12, 1, tzinfo=UTC) - timedelta(hours=8))  # November, Beijing time
SUPERVISORS = 40


def fill(store, days, per_day):
    """Three months of a district; returns the number of reports and tasks."""
    reports, intake, tasks, duty, cases, history = [], [], [], [], [], []
    n = days * per_day
    step = 86400.0 / per_day
    for i in range(n):
        t = START + timedelta(seconds=i * step)
        dev = f"pv-{i % SUPERVISORS:04d}"
        rid = f"{dev}:{i:012d}"
        grid = f"410106{1 + i % 5:03d}{1 + i % 9:03d}{1 + i % 90:03d}"
        at = wire_time(t)
        reports.append((rid, dev, "410106", i, at, at, at, "gnss", 34.8, 113.29, 3, 1, "[]",
                        grid, grid, 0, grid[:9], "event", "GB/T 47678.5-2026", "06010", None,
                        "button", None, None, "", "[]", "{}"))
        if i % 4:
            decided = wire_time(t + timedelta(seconds=60 + i % 1800))
            state = "accepted" if i % 3 else "rejected"
            intake.append((rid, state, f"C{i}" if state == "accepted" else None, "op", decided,
                           decided))
            if state == "accepted":  # its case: 4 in 5 closed (1 in 6 of them late)
                closed = i % 5 != 0
                updated = wire_time(t + timedelta(seconds=3 * 86400 if closed else 7200))
                due = None if closed else wire_time(t + timedelta(seconds=(i % 3) * 86400))
                cases.append((f"C{i}", rid, "closed" if closed else "dispatched", "event",
                              "GB/T 47678.5-2026", "06010", grid, "410106", f"d{i % 7}",
                              None if closed else "handle", None if closed else decided, due,
                              decided, "op", updated))
                history.append((f"C{i}", 2, updated, "op", "resolved" if closed else "dispatch",
                                "checking" if closed else "registered",
                                "closed" if closed else "dispatched",
                                "check" if closed else "dispatch", int(i % 6 != 1)))
        for kind, every, limit in (("verify", 5, 3600), ("check", 10, 7200)):
            if i % every == 0:
                done = None if i % 7 == 0 else wire_time(t + timedelta(seconds=i % (2 * limit)))
                tasks.append((f"T{kind[0]}{i}", kind, rid, 34.8, 113.29, grid, "410106", "", dev,
                              "assignment", "done" if done else "sent", at,
                              wire_time(t + timedelta(seconds=limit)), at, done))
    for d in range(days):
        for s in range(SUPERVISORS):
            on = START + timedelta(days=d) - timedelta(hours=1)
            duty.append((f"s{s:03d}", wire_time(on), wire_time(on + timedelta(hours=8)), "day"))
    with store.connect() as conn:
        cur = conn.cursor()
        cur.executemany(store.sql(
            "INSERT INTO reports (id, device, district, seq, captured_at, received_at,"
            " committed_at, time_source, lat, lon, fix_mode, fix_status, flags, grid,"
            " grid_device, grid_mismatch, street, kind, standard, code, object, source, task,"
            " result, text, photos, payload) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            reports)
        cur.executemany(store.sql(
            "INSERT INTO intake (report_id, state, case_no, decided_by, decided_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"), intake)
        cur.executemany(store.sql(
            "INSERT INTO cases (case_no, report_id, state, kind, standard, code, grid,"
            " district, department, stage, stage_since, stage_due, version, created_at,"
            " created_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 2, ?, ?, ?)"),
            cases)
        cur.executemany(store.sql(
            "INSERT INTO case_history (case_no, n, at, actor, action, from_state, to_state,"
            " stage, on_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"), history)
        cur.executemany(store.sql(
            "INSERT INTO tasks (id, type, report_id, lat, lon, grid, district, text, device,"
            " routed_by, state, created_at, deadline, sent_at, done_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), tasks)
        cur.executemany(store.sql(
            "INSERT INTO eval_supervisors (id, name, updated_at) VALUES (?, ?, ?)"),
            [(f"s{s:03d}", f"监督员{s}", wire_time(START)) for s in range(SUPERVISORS)])
        cur.executemany(store.sql(
            "INSERT INTO eval_carries (device, supervisor, since) VALUES (?, ?, ?)"),
            [(f"pv-{s:04d}", f"s{s:03d}", wire_time(START)) for s in range(SUPERVISORS)])
        cur.executemany(store.sql(
            "INSERT INTO eval_duty (supervisor, on_at, off_at, shift) VALUES (?, ?, ?, ?)"),
            duty)
    if store.dialect == "postgres":
        with store.connect() as conn:
            conn.execute("ANALYZE")
    return len(reports), len(tasks), len(cases)


def backend_cpu_s(store):
    """CPU seconds used so far by the PostgreSQL backend serving the store's next
    connection (the pool hands the last one back), or 0 on SQLite (it runs in-process)."""
    if store.dialect != "postgres":
        return 0.0
    with store.connect(readonly=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serial_plans(store):
    """PostgreSQL plans without parallel workers on the store's pooled connection (the pool
    hands the last one back), so that all of a query's CPU is its backend's."""
    setting = "max_parallel_workers_per_gather"
    with store.connect() as conn:
        conn.execute(f"SET {setting} = 0")
    try:
        if store.fetchall(f"SHOW {setting}")[0][setting] != "0":
            raise SystemExit(f"bench_evaluation: {setting} = 0 did not hold on the pool's "
                             "connection")
        yield
    finally:
        with store.connect() as conn:
            conn.execute(f"RESET {setting}")


def timed(fn, repeats, store):
    """(median wall ms, mean CPU ms of this process and the database backend)."""
    runs = []
    cpu0, back0 = time.process_time(), backend_cpu_s(store)
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    cpu = time.process_time() - cpu0 + backend_cpu_s(store) - back0
    return statistics.median(runs), cpu * 1000 / repeats


def measure(db, per_day, repeats):
    with tempfile.TemporaryDirectory() as tmp:
        if db == "sqlite":
            store = open_store(f"sqlite:///{tmp}/bench.sqlite")
        else:
            store = open_store("postgresql://postgres@127.0.0.1:5432/test"
                               f"?schema=bench_{uuid.uuid4().hex[:10]}")
        try:
            store.migrate(extra=MIGRATIONS + ROSTER_MIGRATIONS + RATE_MIGRATIONS)
            n_reports, n_tasks, n_cases = fill(store, 92, per_day)
            rates = Rates(store, clock=lambda: MONTH[1])
            since, until = wire_time(MONTH[0]), wire_time(MONTH[1])

            def bare():
                store.fetchall("SELECT device, COUNT(*) AS n FROM reports"
                               " WHERE captured_at >= ? AND captured_at < ? GROUP BY device",
                               (since, until))

            tables = {"supervisor_day": ("supervisor", "day"), "grid_month": ("grid", "month"),
                      "device_week": ("device", "week"),
                      "department_month": ("department", "month")}
            def both(fn):
                """(wall ms, CPU ms, wall ms of the CPU's pass or None)"""
                ms, cpu = timed(fn, repeats, store)
                if db != "postgres":
                    return ms, cpu, None
                with serial_plans(store):
                    serial_ms, cpu = timed(fn, repeats, store)
                return ms, cpu, serial_ms

            bare_ms, bare_cpu, bare_serial = both(bare)
            result = {"db": db, "reports": n_reports, "tasks": n_tasks, "cases": n_cases,
                      "month_reports": per_day * 30, "bare_group_ms": bare_ms,
                      "bare_group_cpu_ms": bare_cpu}
            if bare_serial is not None:
                result["bare_group_serial_ms"] = bare_serial
            for name, (by, period) in tables.items():
                rows = len(rates.table(by=by, period=period, since=since, until=until)["rows"])
                ms, cpu, serial_ms = both(lambda b=by, p=period: rates.table(
                    by=b, period=p, since=since, until=until))
                result[name] = {"rows": rows, "ms": ms, "cpu_ms": cpu,
                                "ratio_vs_bare_group": ms / bare_ms}
                if serial_ms is not None:
                    result[name]["serial_ms"] = serial_ms
            result["slowest_ms"] = max(result[k]["ms"] for k in tables)
            result["slowest_cpu_ms"] = max(result[k]["cpu_ms"] for k in tables)
            return result
        finally:
            if db == "postgres":
                store.drop_schema()
            store.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args(argv)
    per_day, repeats = (500, 3) if args.quick else (2000, 5)
    results = {"reports_per_day": per_day, "supervisors": SUPERVISORS,
               "load_average_before": os.getloadavg()[0]}
    for db in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        r = results[db] = measure(db, per_day, repeats)
        print(f"{db}: {r['reports']} reports, {r['tasks']} tasks, {r['cases']} cases; a month "
              f"({r['month_reports']} reports): bare GROUP BY {r['bare_group_ms']:.1f} ms")
        for name in ("supervisor_day", "grid_month", "device_week", "department_month"):
            serial = (f" (no parallel workers: {r[name]['serial_ms']:.1f} ms wall)"
                      if "serial_ms" in r[name] else "")
            print(f"  {name:15} {r[name]['rows']:6} rows {r[name]['ms']:8.1f} ms wall"
                  f" {r[name]['cpu_ms']:8.1f} ms CPU{serial}"
                  f"  ({r[name]['ratio_vs_bare_group']:.1f}× the bare GROUP BY)")
    results["load_average_after"] = os.getloadavg()[0]
    print(f"load average (1 min) {results['load_average_before']:.1f} before, "
          f"{results['load_average_after']:.1f} after, on {os.cpu_count()} cores")
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
