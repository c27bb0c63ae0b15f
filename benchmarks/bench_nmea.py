"""NMEA decoding rate: gridlink's decoder vs pynmea2 on the same real lines, and under
MicroPython.

Lines: every receiver line of the shared gpsd captures (../shared/data/nmea/*.log,
'#' headers dropped; mixed types, dirt included).  Ours decodes them into fixes (full
field conversion, epoch assembly, counters) from one byte stream; pynmea2 parses each
line (``pynmea2.parse``, checksum checked; fields stay text until read) and, in the
second reference, also reads the fields our fixes carry.  Each rate is the best of
interleaved repetitions in the same run, in CPU time of this process (the machine is
shared: wall time would count other processes' turns).  Under MicroPython (WebAssembly
port) the same bytes go through the decoder in 512-byte chunks, as from a UART,
timed with time.ticks_ms after a warm-up pass.  ``--instructions`` also counts the CPU
instructions of one decode, ours and pynmea2's, under valgrind's callgrind: a ratio
that the load of a shared machine does not move (about a minute more).

    .venv/bin/python benchmarks/bench_nmea.py [--quick] [--no-micropython] [--instructions]
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pynmea2  # noqa: E402  (reference only)
from gridlink.firmware.core.nmea import NmeaDecoder  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "nmea"
RESULTS = ROOT / "benchmarks" / "results" / "nmea.json"
GOAL = 2.0

# the pynmea2 attributes that carry what our fixes hold, per sentence type
FIELDS = {
    "GGA": ("timestamp", "latitude", "longitude", "gps_qual", "num_sats", "horizontal_dil",
            "altitude"),
    "RMC": ("timestamp", "status", "latitude", "longitude", "spd_over_grnd", "true_course",
            "datestamp"),
    "GNS": ("timestamp", "latitude", "longitude", "mode_indicator", "num_sats", "hdop",
            "altitude"),
    "GLL": ("timestamp", "status", "latitude", "longitude"),
    "VTG": ("true_track", "spd_over_grnd_kts", "spd_over_grnd_kmph"),
    "GSA": ("mode_fix_type", "hdop"),
    "GSV": ("msg_num", "num_sv_in_view"),
    "ZDA": ("timestamp", "day", "month", "year"),
}

MPY_SCRIPT = """
import time
from gridcore.nmea import NmeaDecoder
data = open("/data/capture.nmea", "rb").read()
def once():
    dec = NmeaDecoder(min_year=1980)
    for i in range(0, len(data), 512):
        dec.feed(data[i:i + 512])
    dec.flush()
    return dec
dec = once()
best = None
for _ in range(REPS):
    t = time.ticks_ms()
    once()
    ms = time.ticks_diff(time.ticks_ms(), t)
    best = ms if best is None or ms < best else best
print(dec.lines, dec.accepted, best)
"""


def load_lines():
    lines = []
    for path in sorted(SHARED.glob("*.log")):
        for line in path.read_bytes().splitlines():
            if line and not line.startswith(b"#"):
                lines.append(line)
    return lines


def ours(data):
    dec = NmeaDecoder(min_year=1980)
    dec.feed(data)
    dec.flush()
    return dec


def pynmea2_parse(texts):
    for text in texts:
        try:  # noqa: SIM105  (contextlib.suppress would slow the reference down)
            pynmea2.parse(text)
        except (pynmea2.ParseError, ValueError):
            pass


def pynmea2_fields(texts):
    for text in texts:
        try:
            msg = pynmea2.parse(text)
        except (pynmea2.ParseError, ValueError):
            continue
        for name in FIELDS.get(getattr(msg, "sentence_type", ""), ()):
            try:  # noqa: SIM105
                getattr(msg, name)
            except (ValueError, TypeError, AttributeError, IndexError):
                pass


def best_times(jobs, reps):
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(reps):
        for name, job in jobs.items():
            t = time.process_time()
            job()
            best[name] = min(best[name], time.process_time() - t)
    return best


def micropython_rate(data, reps):
    from tests.support.mpy_wasm import available, run_micropython

    if not available():
        return None
    out = run_micropython(MPY_SCRIPT.replace("REPS", str(reps)),
                          files={"/data/capture.nmea": data}, timeout=600)
    lines, accepted, ms = (int(x) for x in out.split())
    return {"lines": lines, "accepted": accepted, "best_ms": ms,
            "sentences_per_s": round(lines / (ms / 1000)) if ms else None}


def callgrind_job(job, reps, data, texts):
    """Run under callgrind: one warm-up of both decoders, then ``reps`` runs of ``job``."""
    jobs = {"ours": lambda: ours(data), "pynmea2_parse": lambda: pynmea2_parse(texts)}
    for warm in jobs.values():
        warm()
    for _ in range(reps):
        jobs[job]()


def instructions():
    """Instructions of one decode of the capture, ours and pynmea2's (None without valgrind).

    Each job runs twice under callgrind, after the same warm-up, with 0 and 2 decodes:
    half the difference leaves start-up and imports out.  PYTHONHASHSEED is fixed, as
    hash randomisation moves dict probing and so the count.
    """
    if not shutil.which("valgrind"):
        return None
    env = dict(os.environ, PYTHONHASHSEED="0")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for job in ("ours", "pynmea2_parse"):
            for reps in (0, 2):
                cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/{job}.{reps}",
                       sys.executable, __file__, "--callgrind-job", job, str(reps)]
                runs[job, reps] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.PIPE, text=True)
        collected = {}
        for key, proc in runs.items():
            err = proc.communicate(timeout=900)[1]
            found = re.search(r"Collected : (\d+)", err)
            if proc.returncode or not found:
                sys.exit(f"callgrind run {key} failed:\n{err[-2000:]}")
            collected[key] = int(found.group(1))
    counts = {job: (collected[job, 2] - collected[job, 0]) // 2
              for job in ("ours", "pynmea2_parse")}
    counts["ratio_vs_pynmea2_parse"] = round(counts["pynmea2_parse"] / counts["ours"], 2)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--no-micropython", action="store_true")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions under valgrind (load-independent)")
    parser.add_argument("--callgrind-job", nargs=2, metavar=("JOB", "REPS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lines = load_lines()
    if not lines:
        sys.exit(f"no captures in {SHARED}")
    data = b"\r\n".join(lines) + b"\r\n"
    texts = [line.decode("latin-1") for line in lines]
    if args.callgrind_job:
        callgrind_job(args.callgrind_job[0], int(args.callgrind_job[1]), data, texts)
        return
    reps = 5 if args.quick else 25
    dec = ours(data)
    best = best_times({"ours": lambda: ours(data), "pynmea2_parse": lambda: pynmea2_parse(texts),
                       "pynmea2_fields": lambda: pynmea2_fields(texts)}, reps)
    rate = {name: round(len(lines) / t) for name, t in best.items()}
    ratio_parse = best["pynmea2_parse"] / best["ours"]
    ratio_fields = best["pynmea2_fields"] / best["ours"]
    print(f"{len(lines)} lines ({dec.accepted} accepted, {dec.fixes} fixes), best of {reps}")
    print(f"gridlink decoder           {rate['ours']:>9,} sentences/s")
    print(f"pynmea2 parse              {rate['pynmea2_parse']:>9,} sentences/s")
    print(f"pynmea2 parse + fields     {rate['pynmea2_fields']:>9,} sentences/s")
    print(f"ratio vs pynmea2 parse:          {ratio_parse:.2f}x  (goal >= {GOAL}x)")
    print(f"ratio vs pynmea2 parse + fields: {ratio_fields:.2f}x")
    mpy = None if args.no_micropython else micropython_rate(data, 3 if args.quick else 10)
    if mpy:
        print(f"MicroPython (WebAssembly)  {mpy['sentences_per_s']:>9,} sentences/s "
              f"(512-byte chunks, best {mpy['best_ms']} ms)")
    counts = instructions() if args.instructions else None
    if counts:
        print(f"instructions per decode: ours {counts['ours']:,}, pynmea2 parse "
              f"{counts['pynmea2_parse']:,}: {counts['ratio_vs_pynmea2_parse']:.2f}x")
    result = {
        "benchmark": "nmea",
        "lines": len(lines),
        "accepted": dec.accepted,
        "fixes": dec.fixes,
        "repetitions": reps,
        "cpython": {
            "python": platform.python_version(),
            "pynmea2": pynmea2.__version__,
            "sentences_per_s": rate,
            "ratio_vs_pynmea2_parse": round(ratio_parse, 2),
            "ratio_vs_pynmea2_parse_fields": round(ratio_fields, 2),
            "goal_ratio": GOAL,
        },
        "micropython": mpy,
        "instructions": counts,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
