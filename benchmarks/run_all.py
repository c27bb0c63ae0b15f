"""Run every benchmark in turn, then print the headline figures from their results.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only nmea,grid,…]
    .venv/bin/python benchmarks/run_all.py --markdown   # the README's table, run nothing

Each ``bench_<name>.py`` measures its reference in the same run and writes
``benchmarks/results/<name>.json``; this script only sequences them (never two at once:
they would share the two cores), summarises, and writes the headline table into the
README between its two ``benchmarks`` markers, so every figure there is one a run printed.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
HIL_RESULTS = HERE.parent / "hil_tests" / "results" / "latest.json"
README = HERE.parent / "README.md"
BEGIN, END = "<!-- benchmarks: begin (benchmarks/run_all.py writes this) -->", \
    "<!-- benchmarks: end -->"

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
    "evaluation": [("evaluation: a month of a district's rates, slowest table, ms (SQLite)",
                    "sqlite.slowest_ms", "≤ 1000"),
                   ("… its CPU, ms (SQLite)", "sqlite.slowest_cpu_ms", ""),
                   ("… the same on PostgreSQL, ms", "postgres.slowest_ms", "≤ 1000"),
                   ("… its CPU (backend and client; measured without parallel workers), ms",
                    "postgres.slowest_cpu_ms", ""),
                   ("… load average while measured (2 cores)", "load_average_after", "")],
    "media": [("photo bytes at equal SSIM: best JPEG vs today", "photo.best_jpeg.ratio",
               "≤ 0.8"),
              ("… best other format the browsers show (WebP/AVIF) vs today",
               "photo.best_other.ratio", ""),
              ("… the device's encoder (WebP within 0.8× the JPEG) vs today, SSIM no lower",
               "photo.device.ratio_total_bytes", "≤ 0.8"),
              ("trigger → report stored, WebP made after the report vs before it "
               "(1280×960, sim)", "report_path.ratio", ""),
              ("event clip bit rate at 720p, kbit/s", "clips.720p.bit_rate_kbit_s", "≤ 1000"),
              ("… at 480p, kbit/s", "clips.480p.bit_rate_kbit_s", ""),
              ("10 s + 20 s clip at 720p, bytes", "clips.720p.clip.bytes", ""),
              ("clip ring at 720p: encoder CPU, share of one core (x264, sim)",
               "clips.720p.encode_cpu_share_of_one_core", ""),
              ("clip ring at 720p: RSS growth (encoder + ring), MB",
               "clips.720p.rss_growth_encoder_and_ring_mb", ""),
              ("trigger → clip at the centre over 1 Mbit/s (computed), s",
               "clips.720p.clip.trigger_to_clip_at_centre_s_at_1_mbit", ""),
              ("… measured through the lane, 480p 10 s + 20 s clip, s",
               "lane.trigger_to_playable_at_centre_s", ""),
              ("voice memo, Opus in Ogg, bytes per 10 s", "memo.bytes", "")],
    "ota": [("rollout to 100 simulated devices (5 → 50 → 100), s",
             "rollout.time_to_done_s", ""),
            ("… gateway CPU per device, ms", "rollout.gateway_cpu_ms_per_device", ""),
            ("update cut mid-download at 256 kbit/s: bytes resumed vs uncut",
             "pi_update_256kbit.resumed_vs_uncut", ""),
            ("sensor node image install over MQTT, WebAssembly port, s",
             "mcu_update_wasm.install_s", ""),
            ("… signed manifest check under MicroPython vs CPython (same code)",
             "mcu_update_wasm.micropython_vs_cpython", "")],
    "flash": [("provisioning, devices/min with 4 jobs",
               "backends.cryptography.jobs4_per_min", "≥ 40 before noon")],
    "urgent": [("urgent report behind 5,000 backlogged: link back → top of the queue, s",
                "urgent_at_top_of_queue_s", "≤ 2"),
               ("… the whole backlog committed (the reference), s",
                "whole_backlog_committed_s", "")],
    "partitions": [("PostgreSQL: reports generated for a year (a sample of the megacity's "
                    "300,000/day)", "generated.reports", ""),
                   ("… one table ÷ month partitions, time (> 1: partitions faster): "
                    "a district's month, per day", "flat_over_month.district_month_per_day_ms",
                    ""),
                   ("… a month's count by code, city-wide",
                    "flat_over_month.city_month_by_code_ms", ""),
                   ("… 500 reports looked up by id (redeliveries)",
                    "flat_over_month.lookup_500_ids_ms", ""),
                   ("… 500 new reports inserted (the ingest's path)",
                    "flat_over_month.insert_500_new_ms", ""),
                   ("… the oldest month taken out (DETACH vs DELETE)",
                    "flat_over_month.take_oldest_month_out_ms", "")],
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


def meets(value, goal):
    """True or False for a goal written ``≥ N`` / ``≤ N`` (a trailing ``×`` or words
    allowed), None when the goal says no number or the value is missing."""
    found = re.match(r"\s*([≥≤])\s*([0-9][0-9,.]*)", goal or "")
    if not found or not isinstance(value, int | float):
        return None
    limit = float(found.group(2).replace(",", ""))
    return value >= limit if found.group(1) == "≥" else value <= limit


def markdown_table():
    """The headline table, and a line naming any goal not met, as the README shows it."""
    lines = ["| benchmark | figure | latest | goal |", "|---|---|---:|---|"]
    missed = []
    for name, label, value, goal in headlines():
        lines.append(f"| {name} | {label} | {shown(value)} | {goal} |")
        if meets(value, goal) is False:
            named = label if label.startswith(f"{name}:") else f"{name}: {label}"
            missed.append(f"{named} ({shown(value)}, goal {goal})")
    lines.append("")
    lines.append("Goals not met in the latest run: " + "; ".join(missed) + "." if missed
                 else "Every goal is met in the latest run.")
    return "\n".join(lines)


def readme_with_table(text, table):
    """``text`` with the part between the README's markers replaced by ``table``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"run_all: {README.name} lacks the markers {BEGIN!r} … {END!r}")
    return text[:start + len(BEGIN)] + "\n" + table + "\n" + text[end:]


def write_readme():
    text = README.read_text(encoding="utf-8")
    new = readme_with_table(text, markdown_table())
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"{README.name}: benchmark table updated")


def hil_budgets(path=HIL_RESULTS):
    """Print the budgets of the last HIL patrol morning (the HIL suite measures them; they
    stay out of the README table, which would go stale with every test run)."""
    if not path.exists():
        print("\nHIL budgets: no run yet (pytest hil_tests)")
        return
    data = json.loads(path.read_text())
    print(f"\nHIL budgets (the last patrol morning, {path.relative_to(HERE.parent)}):")
    for name, b in data.get("budgets", {}).items():
        mark = {True: "met", False: "NOT MET", None: ""}[b.get("ok")]
        print(f"  {name:45} {shown(b.get('measured')):>12}  {b.get('limit', '')}  {mark}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    ap.add_argument("--only", help="comma-separated names (default: all)")
    ap.add_argument("--markdown", "--table", action="store_true",
                    help="run nothing: print the latest figures as the README's Markdown table")
    ap.add_argument("--readme", action="store_true",
                    help="run nothing: write the latest figures into the README")
    args = ap.parse_args()
    if args.markdown:
        print(markdown_table())
        return 0
    if args.readme:
        write_readme()
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
    hil_budgets()
    if failed:
        print("failed:", ", ".join(failed))
    write_readme()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
