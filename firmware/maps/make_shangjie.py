"""Make the sample grid map of 上街区 (Zhengzhou Shangjie district, GB/T 2260 410106).

    python -m gridlink.firmware.maps.make_shangjie [--geojson shangjie.geojson] [--map OUT]

Writes a GIS grid layer as GeoJSON in CGCS2000 / 3-degree Gauss–Krüger CM 114E
(EPSG:4547, metres, declared in the "crs" member), then compiles it with the same code
``gridlink grid compile --code-property DYWGBSM --divisions`` runs, into
``firmware/maps/shangjie.glgm`` (shipped with the package).  The output is deterministic.

What is real and what is not:
  * Codes are real: district 410106, streets 001–005 and 100 (峡窝镇) and their 59
    communities from the NBS division table (docs: domain-standards.md §7), 15-digit grid
    codes (6+3+3+3) numbered west→east, north→south within each community (§1.4).
  * Bounds: lon 113.26–113.33, lat 34.78–34.84 (CGCS2000), about 6.4 km x 6.6 km around
    the district seat (34.80631 N, 113.29141 E).  The real district (61–65 km²) is not a
    rectangle and reaches beyond this box; the box is a stand-in.
  * Geometry is synthetic: ~100 m cells (≈10,000 m², 万米单元网格) on a lattice jittered by
    up to 15 m, streets and communities as compact regions of cells around seed points.
    One community owns an enclave (an island cell inside a hole of a neighbour's cell,
    stored with one of its cells as a MultiPolygon).  Real boundaries come from the
    district's survey; compile them the same way.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

DISTRICT = "410106"
# street → its community codes (NBS 统计用区划代码, 2016 baseline; domain-standards.md §7)
COMMUNITIES = {
    "001": [f"{k:03d}" for k in range(1, 10)],                        # 济源路街道
    "002": [f"{k:03d}" for k in range(1, 14)] + ["202"],              # 中心路街道
    "003": [f"{k:03d}" for k in range(1, 6)],                         # 新安路街道
    "004": [f"{k:03d}" for k in range(1, 4)],                         # 工业路街道
    "005": ["001"],                                                   # 矿山街道
    "100": ["001", "002", "003"] + [f"{k:03d}" for k in range(201, 224)] + ["400"],  # 峡窝镇
}
# street → seed points (fraction of the box from the west, from the north)
STREET_SEEDS = {
    "001": [(0.28, 0.28)], "002": [(0.47, 0.52)], "003": [(0.55, 0.18)],
    "004": [(0.78, 0.30)], "005": [(0.12, 0.55)],
    "100": [(0.20, 1.05), (0.60, 1.05), (1.02, 0.80), (1.02, 0.05)],
}
# The district seat (中心路132号, 34.80631 N, 113.29141 E) lies in 中心路街道 (002).
SEAT = (113.29141, 34.80631)
WEST, SOUTH, EAST, NORTH = 113.26, 34.78, 113.33, 34.84
STEP = 100.0     # metres between lattice lines
JITTER = 15.0    # metres, at most, a lattice node moves
CRS = "EPSG:4547"
CODE_PROPERTY = "DYWGBSM"  # 单元网格标识码
SEED = 410106
MAP = Path(__file__).with_name("shangjie.glgm")


def lattice(rng):
    """Jittered lattice nodes in EPSG:4547 metres covering the box; row 0 is the north."""
    from pyproj import Transformer

    to_gk = Transformer.from_crs("EPSG:4490", CRS, always_xy=True)
    xs, ys = to_gk.transform([WEST, EAST, WEST, EAST], [SOUTH, SOUTH, NORTH, NORTH])
    e0, e1 = min(xs), max(xs)
    n0, n1 = min(ys), max(ys)
    cols, rows = int((e1 - e0) // STEP), int((n1 - n0) // STEP)
    e = e0 + (e1 - e0 - cols * STEP) / 2 + np.arange(cols + 1) * STEP
    n = n1 - (n1 - n0 - rows * STEP) / 2 - np.arange(rows + 1) * STEP
    ge, gn = np.meshgrid(e, n)  # [row, col]
    je = rng.uniform(-JITTER, JITTER, ge.shape)
    jn = rng.uniform(-JITTER, JITTER, gn.shape)
    je[:, [0, -1]] = 0  # keep the outline straight
    jn[[0, -1], :] = 0
    return np.round(ge + je, 2), np.round(gn + jn, 2), cols, rows


def regions(cols, rows, rng):
    """(street, community) of every cell [row, col]: streets around seeds, communities
    as balanced compact clusters (a few Lloyd iterations) inside each street."""
    r, c = np.mgrid[0:rows, 0:cols]
    fx, fy = (c + 0.5) / cols, (r + 0.5) / rows
    names, dist = [], []
    for street, seeds in STREET_SEEDS.items():
        d = np.min([(fx - sx) ** 2 + (fy - sy) ** 2 for sx, sy in seeds], axis=0)
        names.append(street)
        dist.append(d / len(COMMUNITIES[street]) ** 0.8)  # more communities, more land
    street_of = np.array(names)[np.argmin(dist, axis=0)]
    community_of = np.empty((rows, cols), dtype=object)
    for street, codes in COMMUNITIES.items():
        rr, cc = np.nonzero(street_of == street)
        pts = np.stack([cc, rr], axis=1).astype(float)
        centres = pts[rng.choice(len(pts), len(codes), replace=False)]
        for _ in range(12):
            label = np.argmin(((pts[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
            for k in range(len(codes)):
                if (label == k).any():
                    centres[k] = pts[label == k].mean(axis=0)
        # order communities north→south, west→east so numbering follows the map
        rank = np.lexsort((centres[:, 0], centres[:, 1]))
        code_of = {int(k): codes[i] for i, k in enumerate(rank)}
        for (x, y), k in zip(pts.astype(int), label, strict=True):
            community_of[y, x] = code_of[int(k)]
    return street_of, community_of


def make_layer(seed=SEED):
    """The GeoJSON grid layer (a dict) in EPSG:4547."""
    rng = np.random.default_rng(seed)
    ge, gn, cols, rows = lattice(rng)
    street_of, community_of = regions(cols, rows, rng)

    def quad(r, c):
        corners = [(r, c), (r + 1, c), (r + 1, c + 1), (r, c + 1), (r, c)]
        return [[float(ge[a, b]), float(gn[a, b])] for a, b in corners]

    # The enclave: a cell of one community next to another community gets a courtyard
    # hole; the island in it belongs to the neighbour, with that neighbour's cell.
    host = enclave_cell = None
    for r in range(rows // 3, rows):
        for c in range(cols // 3, cols - 1):
            if street_of[r, c] == "002" and community_of[r, c + 1] != community_of[r, c] \
                    and street_of[r, c + 1] == "002":
                host, enclave_cell = (r, c), (r, c + 1)
                break
        if host:
            break
    ce = float(ge[host[0], host[1]] + ge[host[0] + 1, host[1] + 1]) / 2
    cn = float(gn[host[0], host[1]] + gn[host[0] + 1, host[1] + 1]) / 2
    hole = [[ce - 20, cn - 15], [ce - 20, cn + 15], [ce + 20, cn + 15], [ce + 20, cn - 15]]
    hole.append(hole[0])

    cells = []  # (street, community, sort key, geometry)
    for r in range(rows):
        for c in range(cols):
            if (r, c) == enclave_cell:
                geometry = {"type": "MultiPolygon",
                            "coordinates": [[quad(r, c)], [hole[::-1]]]}
            elif (r, c) == host:
                geometry = {"type": "Polygon", "coordinates": [quad(r, c), hole]}
            else:
                geometry = {"type": "Polygon", "coordinates": [quad(r, c)]}
            cells.append((street_of[r, c], community_of[r, c], (r, c), geometry))
    cells.sort(key=lambda t: (t[0], t[1], t[2]))  # north→south rows, west→east in a row

    features, seq, last = [], 0, None
    for street, community, _, geometry in cells:
        seq = seq + 1 if (street, community) == last else 1
        last = (street, community)
        code = f"{DISTRICT}{street}{community}{seq:03d}"
        features.append({"type": "Feature", "properties": {
            CODE_PROPERTY: code, "JDDM": DISTRICT + street,
            "SQDM": DISTRICT + street + community}, "geometry": geometry})
    return {"type": "FeatureCollection", "name": "上街区单元网格 (synthetic geometry)",
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4547"}},
            "features": features}


def build(geojson_path, map_path, seed=SEED):
    """Write the layer to ``geojson_path`` and compile it to ``map_path``; the stats."""
    from gridlink.firmware import gridcompile
    from gridlink.firmware.codebooks import load_divisions
    from gridlink.firmware.core.codes import Codes

    layer = make_layer(seed)
    with open(geojson_path, "w", encoding="utf-8") as f:
        json.dump(layer, f, ensure_ascii=False, separators=(",", ":"))
    codes = Codes(divisions=load_divisions())
    return gridcompile.compile_file(geojson_path, map_path, code_property=CODE_PROPERTY,
                                    codes=codes)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geojson", help="keep the generated GeoJSON layer here")
    ap.add_argument("--map", default=str(MAP), help=f"map file to write (default {MAP})")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src = args.geojson or os.path.join(tmp, "shangjie.geojson")
        stats = build(src, args.map)
    print(json.dumps(stats, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
