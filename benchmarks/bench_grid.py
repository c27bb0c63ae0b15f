"""Grid lookup speed against shapely's STRtree, and the MicroPython heap a map needs.

    .venv/bin/python benchmarks/bench_grid.py [--quick]

Same map, same points, same run: a synthetic 100,000-cell layer (quads, triangles, holes,
islands, MultiPolygons, gaps) and points of which a third lie on edges and vertices.
  * ours: ``GridMap`` over a memory-mapped map file, ``locate(lon, lat)`` one point at a time
    (rounding to 1e-7 degree included);
  * reference: ``STRtree.query(point, predicate="covered_by")`` one prebuilt point at a time,
    smallest code of the hits (the same answer; checked).
Rounds alternate between the two; the ratio is of the median rates.  Also: the reader
reading the file with seek/read instead of a memory map, and under MicroPython a 2,500-cell
map read from its file: heap allocated by building the reader and by one lookup, and
lookups/s.  Writes benchmarks/results/grid.json.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import shapely  # noqa: E402
from gridlink.firmware.core.gridmap import GridMap  # noqa: E402
from gridlink.firmware.maps import open_map  # noqa: E402
from gridlink.firmware.maps.synthetic import SyntheticLayer  # noqa: E402
from gridlink.host.gridcompile import compile_layer  # noqa: E402

HEAP_GOAL = 32 * 1024
MPY_SCRIPT = """
import gc, json, time
pts = json.loads(open("/pts.json").read())
n = len(pts[0])
gc.collect()
free0 = gc.mem_free()
a0 = gc.mem_alloc()
from gridcore.gridmap import GridMap
a1 = gc.mem_alloc()
f = open("/map.glgm", "rb")
m = GridMap(f)
a2 = gc.mem_alloc()
worst = 0
total = 0
for i in range(min(n, 300)):
    b = gc.mem_alloc()
    m.locate(pts[0][i], pts[1][i])
    d = gc.mem_alloc() - b
    total += d
    if d > worst:
        worst = d
out = []
t = time.ticks_ms()
for i in range(n):
    out.append(m.locate(pts[0][i], pts[1][i]))
ms = time.ticks_diff(time.ticks_ms(), t)
print(json.dumps({"import": a1 - a0, "reader": a2 - a1, "locate_worst": worst,
                  "locate_mean": total // min(n, 300), "ms": ms, "n": n,
                  "mem_free_drop": free0 - gc.mem_free(), "codes": out}))
"""


def reference_tree(layer):
    feats = layer["features"]
    geoms = shapely.from_geojson([json.dumps(f["geometry"]) for f in feats])
    geoms = shapely.transform(geoms, lambda v: np.floor(v * 1e7 + 0.5))
    codes = [f["properties"]["code"] for f in feats]
    order = sorted(range(len(codes)), key=codes.__getitem__)
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes))
    return shapely.STRtree(geoms), rank, [codes[k] for k in order]


def rates(n, wall, cpu):
    """(lookups per wall second, per CPU second of this process)."""
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def run_ours(m, lon, lat):
    locate = m.locate
    wall, cpu = time.perf_counter(), time.process_time()
    out = [locate(x, y) for x, y in zip(lon, lat, strict=True)]
    return rates(len(lon), wall, cpu), out


def run_reference(tree, rank, sorted_codes, points):
    query = tree.query
    wall, cpu = time.perf_counter(), time.process_time()
    out = []
    for p in points:
        hits = query(p, predicate="covered_by")
        out.append(sorted_codes[rank[hits].min()] if len(hits) else None)
    return rates(len(points), wall, cpu), out


def run_bbox_only(tree, points):
    query = tree.query
    wall, cpu = time.perf_counter(), time.process_time()
    for p in points:
        query(p)
    return rates(len(points), wall, cpu)[1]


def micropython(n_points):
    from tests.support.mpy_wasm import available, run_micropython

    if not available():
        return {"skipped": "MicroPython WebAssembly port not installed (.ci/setup)"}
    s = SyntheticLayer(50, 50, seed=3)
    data, stats = compile_layer(s.layer)
    pts = s.points_e7(n_points, seed=4)
    lon, lat = (pts[:, 0] / 1e7).tolist(), (pts[:, 1] / 1e7).tolist()
    out = json.loads(run_micropython(MPY_SCRIPT, files={
        "/map.glgm": data, "/pts.json": json.dumps([lon, lat])}).strip().splitlines()[-1])
    cpython = GridMap(data)
    same = out.pop("codes") == [cpython.locate(x, y) for x, y in zip(lon, lat, strict=True)]
    heap = out["reader"] + out["locate_worst"]
    return {"cells": stats["cells"], "map_bytes": stats["bytes"], "points": out["n"],
            "same_codes_as_cpython": same,
            "lookups_per_s": round(out["n"] / max(out["ms"], 1) * 1000),
            "heap_import_bytes": out["import"], "heap_reader_bytes": out["reader"],
            "heap_locate_worst_bytes": out["locate_worst"],
            "heap_locate_mean_bytes": out["locate_mean"],
            "heap_growth_bound_bytes": heap, "heap_goal_bytes": HEAP_GOAL,
            "mem_free_drop_bytes": out["mem_free_drop"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 cells, fewer points")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "grid.json"))
    args = ap.parse_args(argv)
    side, n_points, rounds = (142, 20_000, 4) if args.quick else (316, 60_000, 6)

    t0 = time.perf_counter()
    synthetic = SyntheticLayer(side, side, seed=1)
    data, stats = compile_layer(synthetic.layer)
    compile_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.glgm")
        Path(path).write_bytes(data)
        m = open_map(path, mapped=True)
        pts = synthetic.points_e7(n_points, seed=2)
        lon, lat = (pts[:, 0] / 1e7).tolist(), (pts[:, 1] / 1e7).tolist()
        tree, rank, sorted_codes = reference_tree(synthetic.layer)
        points = shapely.points(np.floor(pts / 1e7 * 1e7 + 0.5))

        # Short alternating rounds over slices, so a change in the machine's load hits
        # both sides alike; every point is asked of both.
        ours, ref, mismatches = [], [], 0
        step = n_points // rounds
        for k in range(rounds):
            part = slice(k * step, (k + 1) * step)
            rate, got = run_ours(m, lon[part], lat[part])
            ours.append(rate)
            rate, expected = run_reference(tree, rank, sorted_codes, points[part])
            ref.append(rate)
            mismatches += sum(a != b for a, b in zip(got, expected, strict=True))
        bbox_only = run_bbox_only(tree, points[:20_000])
        with open(path, "rb") as f:
            (_, file_rate), _ = run_ours(GridMap(f), lon[:20_000], lat[:20_000])
    mpy = micropython(500 if args.quick else 2000)

    ours_cpu = statistics.median(r[1] for r in ours)
    ref_cpu = statistics.median(r[1] for r in ref)
    ours_wall = statistics.median(r[0] for r in ours)
    ref_wall = statistics.median(r[0] for r in ref)
    result = {
        "map": {k: stats[k] for k in ("cells", "rings", "vertices", "bytes", "entries")},
        "compile_s": round(compile_s, 2), "points": n_points, "rounds": rounds,
        "ours_lookups_per_s": round(ours_cpu),
        "strtree_covered_by_lookups_per_s": round(ref_cpu),
        "ratio": round(ours_cpu / ref_cpu, 2),
        "ratio_wall_clock": round(ours_wall / ref_wall, 2),
        "rates_are": "per CPU second of this process (median of rounds); wall-clock ratio "
                     "alongside",
        "goal_ratio": 1.5, "mismatches": mismatches,
        "strtree_bbox_only_queries_per_s": round(bbox_only),
        "ours_file_seek_read_lookups_per_s": round(file_rate),
        "micropython": mpy,
        "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(f"map: {stats['cells']} cells, {stats['bytes']} bytes (compiled in "
          f"{compile_s:.1f} s); {n_points} points, {rounds} alternating rounds; "
          f"rates per CPU second")
    print(f"ours (mmap)          : {result['ours_lookups_per_s']:>9,} lookups/s")
    print(f"STRtree covered_by   : {result['strtree_covered_by_lookups_per_s']:>9,} lookups/s")
    print(f"ratio                : {result['ratio']:.2f}x  (goal >= 1.5x; wall-clock "
          f"{result['ratio_wall_clock']:.2f}x; {mismatches} disagreements)")
    print(f"ours (file seek/read): {result['ours_file_seek_read_lookups_per_s']:>9,} lookups/s")
    print(f"STRtree bbox only    : {result['strtree_bbox_only_queries_per_s']:>9,} queries/s "
          f"(candidates, not an answer)")
    if "skipped" in mpy:
        print(f"MicroPython: skipped: {mpy['skipped']}")
    else:
        print(f"MicroPython ({mpy['cells']} cells, file on demand): "
              f"{mpy['lookups_per_s']:,} lookups/s, same codes as CPython: "
              f"{mpy['same_codes_as_cpython']}")
        print(f"  heap: reader {mpy['heap_reader_bytes']} B + worst lookup "
              f"{mpy['heap_locate_worst_bytes']} B = {mpy['heap_growth_bound_bytes']} B "
              f"(goal <= {HEAP_GOAL} B); mean lookup {mpy['heap_locate_mean_bytes']} B; "
              f"module import {mpy['heap_import_bytes']} B; mem_free drop "
              f"{mpy['mem_free_drop_bytes']} B")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
