"""Batch provisioning throughput: devices per minute with 4 jobs vs 1 job (the reference,
same run), for each certificate backend available.  The technician's budget: 40 devices
before noon.  Writes benchmarks/results/flash.json.

    .venv/bin/python benchmarks/bench_flash.py [--quick]
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from gridlink.flash import pki
from gridlink.flash.provision import provision_batch

RESULTS = Path(__file__).resolve().parent / "results" / "flash.json"


def sheet(d, n):
    lines = ["device,district,profile,target,object"]
    for i in range(1, n + 1):
        if i % 2:
            lines.append(f"sn-{i:04d},410106,sensor-node,{d}/t/{i},41010601002{i:06d}")
        else:
            lines.append(f"pv-{i:04d},410106,patrol-vehicle,{d}/t/{i},")
    (d / "devices.csv").write_text("\n".join(lines) + "\n")
    return d / "devices.csv"


def one_run(n, jobs, backend, ca):
    os.environ["GRIDLINK_PKI"] = backend
    d = Path(tempfile.mkdtemp(prefix="bench-flash-"))
    try:
        csv = sheet(d, n)
        t = time.perf_counter()
        ok, _, failed = provision_batch(csv, dict(ca, broker="mqtts://127.0.0.1:8883"),
                                        jobs=jobs, out=lambda line: None)
        took = time.perf_counter() - t
        if ok != n or failed:
            raise SystemExit(f"{failed} devices failed")
        return took
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, reps = (8, 1) if args.quick else (16, 2)
    cad = Path(tempfile.mkdtemp(prefix="bench-ca-"))
    key, crt = pki.make_ca("bench CA")
    (cad / "ca.key").write_bytes(key)
    (cad / "ca.pem").write_bytes(crt)
    ca = {"ca_cert": str(cad / "ca.pem"), "ca_key": str(cad / "ca.key")}
    backends = ["openssl"]
    try:
        import cryptography  # noqa: F401

        backends.insert(0, "cryptography")
    except ImportError:
        pass
    out = {"devices": n, "repeats": reps, "cpus": os.cpu_count(), "backends": {}}
    for b in backends:
        one_run(2, 1, b, ca)  # warm-up: imports, first process starts
        serial = statistics.median(one_run(n, 1, b, ca) for _ in range(reps))
        parallel = statistics.median(one_run(n, 4, b, ca) for _ in range(reps))
        res = {"jobs1_s": round(serial, 3), "jobs4_s": round(parallel, 3),
               "jobs1_per_min": round(n / serial * 60), "jobs4_per_min": round(n / parallel * 60),
               "speedup_jobs4_vs_jobs1": round(serial / parallel, 2)}
        out["backends"][b] = res
        print(f"{b:>12}: {n} devices, 1 job {serial:.2f} s ({res['jobs1_per_min']}/min), "
              f"4 jobs {parallel:.2f} s ({res['jobs4_per_min']}/min) → "
              f"×{res['speedup_jobs4_vs_jobs1']} vs 1 job")
    shutil.rmtree(cad, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
