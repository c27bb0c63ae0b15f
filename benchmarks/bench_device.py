"""The Pi device's budgets, each measured here and printed against its budget.

    .venv/bin/python benchmarks/bench_device.py [--quick]

- trigger → report durable in the outbox (camera excluded) ≤ 100 ms: a simulated button
  release on gpiozero's MockFactory pin until the report is fsync'd in the outbox.
  Reference in the same run: one bare ``write + fsync`` of the same bytes to a file.
- report payload ≤ 1 KB: the encoded reports made in this run (largest and median).
- track point ≤ 32 bytes on the wire: real captures replayed through the thinner and the
  batch encoder; marginal bytes per point.
- device RSS on CPython ≤ 60 MB: ``gridlink device run --sim`` as a process, after
  replaying and a few presses.  Reference: a bare interpreter's RSS.
- start → first GNSS read ≤ 2 s: process start until the first bytes from the receiver
  (simulated receiver on a pty, the real pyserial path).

Writes benchmarks/results/device.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "device.json"
sys.path.insert(0, str(ROOT))

BUDGETS = {"trigger_to_durable_ms": 100, "report_bytes": 1024, "track_point_bytes": 32,
           "rss_mb": 60, "start_to_first_gnss_read_s": 2.0}


def fsync_reference(data, n, folder):
    """Median ms of a bare append + fsync of ``data`` (what durability cannot beat)."""
    path = Path(folder) / "ref.bin"
    runs = []
    with open(path, "ab") as f:
        for _ in range(n):
            t0 = time.perf_counter()
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs)


def trigger_latency(n, folder):
    """(median ms, p95 ms, report sizes) of button release → report durable, in process."""
    import json as _json

    from gridlink.firmware.device.hardware import Hardware, Replay
    from gridlink.firmware.device.profile import load_profile
    from gridlink.firmware.device.runtime import Device
    from gridlink.firmware.device.store import REPORT

    prof = load_profile("patrol-vehicle")
    prof["camera"]["backend"] = "none"
    hardware = Hardware(prof, "sim", replay=Replay.of(prof, speed=5.0))
    dev = Device(prof, Path(folder) / "dev", "mqtt://127.0.0.1:9", hardware=hardware,
                 cancel_grace=0, console=False).start()
    try:
        deadline = time.monotonic() + 10
        while dev.fix_now()[0] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        pin = dev.triggers.devices["garbage"].pin
        times = []
        for _ in range(n):
            before = dev.store.depth()["reports"]
            pin.drive_low()
            time.sleep(0.12)                       # held like a finger, beyond bounce
            t0 = time.perf_counter()
            pin.drive_high()                       # release → report (when_released)
            while dev.store.depth()["reports"] == before:
                time.sleep(0.0002)
            times.append((time.perf_counter() - t0) * 1000)
        sizes = [len(p) for _s, _k, p in dev.store.pending((REPORT,))]
        sample = _json.loads(dev.store.pending((REPORT,))[0][2])
    finally:
        dev.stop()
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], sizes, sample


def track_point_bytes():
    """(mean marginal bytes per point, worst batch average) over real captures."""
    from gridlink.firmware.core import track
    from gridlink.firmware.core.nmea import decode
    from gridlink.firmware.sim import replay

    names = ["nmea-rtk.log", "ublox-8.log", "ublox-zed-f9p-nmea.log", "quectel-eg25-g.log"]
    per_point = []
    for name in names:
        try:
            lines = replay.read_capture(replay.find_capture(name))
        except Exception:  # a shared capture that is not present here
            continue
        moved = replay.translate(lines, (34.8095, 113.2965))
        fixes = [f for f in decode(b"".join(moved), min_year=2000)
                 if f.has_position and f.epoch]
        th = track.Thinner(1, 0, still_m=0)            # keep everything: worst case
        batch = track.Batch("pv-0001", 20, 600)
        for f in fixes:
            if not th.offer(f.epoch, f.lat, f.lon):
                continue
            full = batch.add(f.epoch, f.lat, f.lon, f.speed)
            if full:
                n = len(batch.pts)
                data = batch.take()
                empty = len(track.encode("pv-0001", 0, [])) - 2
                per_point.append((len(data) - empty) / n)
    return statistics.mean(per_point), max(per_point)


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def device_process(folder, presses):
    """(RSS MB of a running simulated device, start → first GNSS read s)."""
    from gridlink.firmware.device.control import request
    from gridlink.mosquitto import Mosquitto

    workdir = Path(folder) / "broker"
    with Mosquitto(workdir) as broker:
        data = Path(folder) / "proc"
        proc = subprocess.Popen([sys.executable, "-m", "gridlink.firmware.device", "run",
                                 "--profile", "patrol-vehicle", "--data-dir", str(data),
                                 "--broker", broker.url, "--sim", "--sim-speed", "5",
                                 "--cancel-grace", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + 20
            first = None
            while time.monotonic() < deadline:
                try:
                    st = request(data, {"cmd": "status"}, timeout=2)["status"]
                    first = st.get("first_gnss_read_s")
                    if first is not None:
                        break
                except Exception:  # not up yet
                    pass
                time.sleep(0.05)
            for _ in range(presses):
                request(data, {"cmd": "press", "input": "garbage"})
            time.sleep(2)
            rss = rss_kb(proc.pid) / 1024
        finally:
            proc.terminate()
            proc.wait(20)
    ref = subprocess.run([sys.executable, "-c", "import pathlib,os;print([l for l in "
                          "pathlib.Path('/proc/self/status').read_text().splitlines() "
                          "if l.startswith('VmRSS')][0].split()[1])"],
                         capture_output=True, text=True, check=True)
    return rss, first, int(ref.stdout) / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    n = 15 if args.quick else 60
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)
        median_ms, p95_ms, sizes, sample = trigger_latency(n, tmp)
        ref_ms = fsync_reference(json.dumps(sample).encode(), n, tmp)
        point_mean, point_worst = track_point_bytes()
        rss, first_read, ref_rss = device_process(tmp, 3 if args.quick else 10)
    results = {
        "trigger_to_durable_ms": {"median": round(median_ms, 2), "p95": round(p95_ms, 2),
                                  "reference_fsync_ms": round(ref_ms, 3),
                                  "ratio_to_fsync": round(median_ms / ref_ms, 1),
                                  "budget": BUDGETS["trigger_to_durable_ms"], "n": n},
        "report_bytes": {"max": max(sizes), "median": statistics.median(sizes),
                         "budget": BUDGETS["report_bytes"], "n": len(sizes)},
        "track_point_bytes": {"mean": round(point_mean, 2), "worst_batch": round(point_worst, 2),
                              "budget": BUDGETS["track_point_bytes"]},
        "rss_mb": {"device": round(rss, 1), "reference_bare_python": round(ref_rss, 1),
                   "ratio": round(rss / ref_rss, 1), "budget": BUDGETS["rss_mb"]},
        "start_to_first_gnss_read_s": {"value": first_read,
                                       "budget": BUDGETS["start_to_first_gnss_read_s"]},
    }
    rows = [
        ("trigger → durable (median / p95)", f"{median_ms:.1f} / {p95_ms:.1f} ms",
         f"≤ {BUDGETS['trigger_to_durable_ms']} ms", p95_ms <= BUDGETS["trigger_to_durable_ms"],
         f"{median_ms / ref_ms:.1f}× a bare fsync ({ref_ms:.2f} ms)"),
        ("report payload (max)", f"{max(sizes)} B", "≤ 1024 B", max(sizes) <= 1024, ""),
        ("track point (mean / worst)", f"{point_mean:.1f} / {point_worst:.1f} B", "≤ 32 B",
         point_worst <= 32, ""),
        ("device RSS", f"{rss:.1f} MB", "≤ 60 MB", rss <= 60,
         f"{rss / ref_rss:.1f}× a bare interpreter ({ref_rss:.1f} MB)"),
        ("start → first GNSS read", f"{first_read} s", "≤ 2 s",
         first_read is not None and first_read <= 2, ""),
    ]
    for name, value, budget, ok, note in rows:
        print(f"{name:34} {value:>18}  {budget:>9}  {'ok' if ok else 'OVER'}  {note}")
    results["all_within_budget"] = all(r[3] for r in rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0 if results["all_within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
