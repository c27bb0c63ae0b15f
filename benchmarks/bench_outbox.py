"""How fast is the outbox?  Durable appends against raw fsync'd writes and SQLite, same run.

    .venv/bin/python benchmarks/bench_outbox.py [--quick] [--dir PATH]

References measured in the same run on the same file system:
- raw: ``os.write`` + ``os.fsync`` of the very same record bytes to one file (the floor
  any durable log pays);
- SQLite in WAL mode with ``synchronous=FULL``, one row (the same payload) per transaction.

Also: append + ack cycles (two fsyncs each), appends without fsync (the CPU cost of
encoding and bookkeeping), and opening a full 1 MiB log (scan + CRC of every record).
Writes benchmarks/results/outbox.json.
"""

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from gridlink.firmware.core import records
from gridlink.firmware.core.outbox import REPORT, TRACK, Outbox
from gridlink.firmware.core.report import encode_report, make_report

OUT = Path(__file__).resolve().parent / "results" / "outbox.json"


def sample_payload():
    fix = {"lat": 34.812345, "lon": 113.291234, "alt": 120.5, "mode": 3, "status": 1,
           "sats": 9, "hdop": 0.9, "epoch": 1795832107.0}
    rep = make_report("pv-0001", 42, fix, 0, "event", "GB/T 47678.5-2026", "06010",
                      grid="410106001001001", fix_age=0.25,
                      photos=[("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                               218345)], text="暴露垃圾 路口东侧")
    return encode_report(rep)


def measure(methods, repeats):
    """Median operations per second of each method; the methods take turns in every round
    so that drifts of the disk or the machine hit them alike.

    methods: name -> (make, n), where make(round) returns op(i), timed for i < n.
    """
    runs = {name: [] for name in methods}
    for r in range(repeats):
        for name, (make, n) in methods.items():
            op = make(r)
            t0 = time.perf_counter()
            for i in range(n):
                op(i)
            runs[name].append(n / (time.perf_counter() - t0))
    return {name: statistics.median(v) for name, v in runs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", help="where to write (default: a temp dir on /var/tmp)")
    args = parser.parse_args(argv)
    n, repeats = (150, 3) if args.quick else (600, 5)
    base = Path(tempfile.mkdtemp(prefix="bench-outbox-", dir=args.dir or "/var/tmp"))
    payload = sample_payload()
    rec = records.encode(REPORT, 1, payload)
    try:
        def outbox_append(r, sync=True):
            ob = Outbox(str(base / f"ob{r}{sync}"), 64 * 1024 * 1024, sync=sync)
            return lambda i: ob.append(REPORT, payload)

        def outbox_append_ack(r):
            ob = Outbox(str(base / f"oa{r}"), 64 * 1024 * 1024)
            return lambda i: ob.ack(ob.append(REPORT, payload))

        def raw(r):
            fd = os.open(base / f"raw{r}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

            def write(i):
                os.write(fd, rec)
                os.fsync(fd)
            return write

        def sqlite(r):
            db = sqlite3.connect(base / f"db{r}.sqlite", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, kind INT, payload BLOB)")

            def insert(i):
                db.execute("BEGIN")
                db.execute("INSERT INTO outbox (kind, payload) VALUES (?, ?)", (1, payload))
                db.execute("COMMIT")
            return insert

        results = {"payload_bytes": len(payload), "record_bytes": len(rec)}
        results.update(measure({
            "raw_write_fsync_per_s": (raw, n),
            "sqlite_wal_full_1row_tx_per_s": (sqlite, n),
            "outbox_durable_append_per_s": (outbox_append, n),
            "outbox_append_then_ack_per_s": (outbox_append_ack, n // 2),
            "outbox_append_no_fsync_per_s": (lambda r: outbox_append(r, sync=False), n * 10),
        }, repeats))
        # recovery: open a full 1 MiB log of track and report records
        full = base / "full"
        ob = Outbox(str(full), 1024 * 1024, sync=False)
        count = 0
        while ob.size + len(rec) < 1024 * 1024:
            ob.append(TRACK if count % 3 else REPORT, payload[: 60 + count % 200])
            count += 1
        ob.close()
        t0 = time.perf_counter()
        ob = Outbox(str(full), 1024 * 1024, sync=False)
        results["open_1MiB_log_s"] = time.perf_counter() - t0
        results["open_1MiB_log_records"] = ob.depth()
        ob.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    append = results["outbox_durable_append_per_s"]
    results["ratio_outbox_vs_raw_fsync"] = append / results["raw_write_fsync_per_s"]
    results["ratio_outbox_vs_sqlite"] = append / results["sqlite_wal_full_1row_tx_per_s"]
    for name, value in results.items():
        print(f"{name:<34} {value:>14,.3f}" if isinstance(value, float) else
              f"{name:<34} {value:>14,}")
    print(f"durable append: {results['ratio_outbox_vs_raw_fsync']:.2f}x raw write+fsync, "
          f"{results['ratio_outbox_vs_sqlite']:.2f}x SQLite WAL FULL (one row per transaction)")
    results["machine"] = {"python": platform.python_version(), "system": platform.platform(),
                          "quick": args.quick, "n": n, "repeats": repeats}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
