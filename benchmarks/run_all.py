"""Run every benchmark in turn, then print the headline figures from their results.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only nmea,grid,…]

Each ``bench_<name>.py`` measures its reference in the same run and writes
``benchmarks/results/<name>.json``; this script only sequences them (never two at once:
they would share the two cores) and summarises.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# name → [(label, path in its JSON, goal text)]
HEADLINES = {
    "nmea": [("NMEA sentences/s vs pynmea2", "cpython.ratio_vs_pynmea2_parse", "≥ 2×"),
             ("NMEA sentences/s under MicroPython", "micropython.sentences_per_s", "")],
    "grid": [("grid lookups/s vs shapely STRtree", "ratio", "≥ 1.5×"),
             ("MicroPython heap for a 2,500-cell map, bytes",
              "micropython.heap_growth_bound_bytes", "≤ 32768")],
    "outbox": [("durable appends/s", "outbox_durable_append_per_s", ""),
               ("… vs raw write+fsync", "ratio_outbox_vs_raw_fsync", "")],
    "codes": [("class-code checks/s", "validate_class_code_per_s", "")],
    "device": [("trigger → durable, median ms", "trigger_to_durable_ms.median", "≤ 100"),
               ("report payload, max bytes", "report_bytes.max", "≤ 1024"),
               ("track point, bytes", "track_point_bytes.mean", "≤ 32"),
               ("device RSS, MB", "rss_mb.device", "≤ 60"),
               ("start → first GNSS read, s", "start_to_first_gnss_read_s.value", "≤ 2")],
    "gateway": [("gateway vs raw broker ceiling", "gateway_vs_ceiling", "≥ 0.8"),
                ("backlog drain into SQLite, reports/s", "drain_sqlite_reports_per_s",
                 "≥ 20000"),
                ("… cores 20,000/s takes at this CPU cost", "drain_cpu.cores_for_20000_per_s",
                 ""),
                ("… with 2 workers (one per core)", "drain_sqlite_2_workers_per_s", "≥ 20000"),
                ("… share of the machine busy during that drain",
                 "drain_2_workers_cpu.machine_busy", ""),
                ("judging: msgspec fast path vs json + core validator",
                 "judge.fastreport_speedup", ""),
                ("locating on the district map: raster vs the core GridMap",
                 "judge.locate_raster_speedup", ""),
                ("receiving alone (PUBACK only): the gateway's link vs paho",
                 "receive_link_vs_paho", ""),
                ("publish → commit p99 at 2,000/s, ms", "latency.0.commit_p99_ms", "≤ 50"),
                ("publish → commit p99 at 400/s, ms", "latency.1.commit_p99_ms", ""),
                ("PostgreSQL drain, 1 worker, reports/s", "drain_postgres_1_worker", ""),
                ("PostgreSQL two workers vs one", "postgres_2_vs_1", "")],
    "intake": [("intake: pending pages/s (SQLite)", "list_page_per_s", ""),
               ("intake: claim+accept/s (SQLite)", "claim_accept_per_s", "")],
    "flash": [("provisioning, devices/min with 4 jobs",
               "backends.cryptography.jobs4_per_min", "≥ 40 before noon")],
}


def dig(obj, path):
    for key in path.split("."):
        if isinstance(obj, list) and key.isdigit() and int(key) < len(obj):
            obj = obj[int(key)]
        elif isinstance(obj, dict) and key in obj:
            obj = obj[key]
        else:
            return None
    return obj


def headlines():
    """(benchmark, label, value, goal, when) for every headline found in results/."""
    for name, rows in HEADLINES.items():
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        for label, key, goal in rows:
            yield name, label, dig(data, key), goal


def shown(value):
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table():
    lines = ["| benchmark | figure | latest | goal |", "|---|---|---:|---|"]
    for name, label, value, goal in headlines():
        lines.append(f"| {name} | {label} | {shown(value)} | {goal} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    ap.add_argument("--only", help="comma-separated names (default: all)")
    ap.add_argument("--table", action="store_true",
                    help="run nothing: print the latest figures as a Markdown table (README)")
    args = ap.parse_args()
    if args.table:
        print(markdown_table())
        return 0
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    failed = []
    for name in names:
        cmd = [sys.executable, str(HERE / f"bench_{name}.py")] + (["--quick"] if args.quick else [])
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.monotonic()
        if subprocess.run(cmd).returncode:
            failed.append(name)
        print(f"=== {name}: {time.monotonic() - start:.0f} s", flush=True)
    print("\nheadline figures (benchmarks/results/*.json):")
    for name, label, value, goal in headlines():
        if name in names:
            print(f"  {label:45} {shown(value):>12}  {goal}")
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
