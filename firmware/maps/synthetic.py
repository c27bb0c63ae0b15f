"""Synthetic grid layers with every awkward case, for tests and benchmarks.

    s = SyntheticLayer(cols=316, rows=316, seed=1)
    s.layer                    # GeoJSON FeatureCollection, EPSG:4490 lon/lat
    lon, lat = s.points(100_000, seed=2)

Cells are quads on a jittered lattice (so neighbours share edges and vertices exactly),
some split into two triangles along a diagonal, some with a hole (half of them filled by
an island cell), some merged into a two-part MultiPolygon touching at one vertex, and
some missing (gaps).  Vertices sit on multiples of ``grain`` 1e-7 degree units, so every
edge passes through many points of the 1e-7 degree grid: ``points`` samples those exactly
(on edges and vertices, and one unit off a vertex) as well as uniformly.  Codes are valid
15-digit grid codes in a shuffled order, so the smallest-code tie-break is exercised.
"""

import numpy as np

DISTRICT = "410106"


def _codes(n, rng):
    k = rng.permutation(n)
    block, seq = k // 999, k % 999 + 1
    street, community = block // 999 + 1, block % 999 + 1
    return [f"{DISTRICT}{s:03d}{c:03d}{q:03d}" for s, c, q in zip(street.tolist(),
            community.tolist(), seq.tolist(), strict=True)]


class SyntheticLayer:
    """A grid layer of about ``cols`` x ``rows`` cells around (lon0, lat0)."""

    def __init__(self, cols, rows, seed=1, lon0=113.26, lat0=34.78, step=10000, grain=100,
                 triangles=0.05, holes=0.01, multis=0.01, gaps=0.01):
        rng = np.random.default_rng(seed)
        self.grain = grain
        jitter = int(0.2 * step) // grain
        jx = rng.integers(-jitter, jitter + 1, (cols + 1, rows + 1)) * grain
        jy = rng.integers(-jitter, jitter + 1, (cols + 1, rows + 1)) * grain
        i, j = np.meshgrid(np.arange(cols + 1), np.arange(rows + 1), indexing="ij")
        x0 = round(lon0 * 1e7) // grain * grain
        y0 = round(lat0 * 1e7) // grain * grain
        vx = x0 + i * step + jx
        vy = y0 + j * step + jy
        half = step // 10 // grain * grain

        lx, ly = vx.tolist(), vy.tolist()
        pos = [[[x / 1e7, y / 1e7] for x, y in zip(cx, cy, strict=True)]
               for cx, cy in zip(lx, ly, strict=True)]

        def v(a, b):
            return lx[a][b], ly[a][b]

        def ring(*points):
            out = [p if isinstance(p, list) else [p[0] / 1e7, p[1] / 1e7] for p in points]
            return [*out, out[0]]

        plain = gaps + triangles + holes + multis
        geoms, edges, extra_vertices, merged = [], set(), [], set()
        kind = rng.random((cols, rows)).tolist()
        for a in range(cols):
            pa, pb, ka = pos[a], pos[a + 1], kind[a]
            for b in range(rows):
                u = ka[b]
                if u >= plain and (a, b) not in merged:
                    geoms.append(("Polygon", [ring(pa[b], pb[b], pb[b + 1], pa[b + 1])]))
                elif u < gaps or (a, b) in merged:
                    continue
                elif u < gaps + triangles:
                    geoms.append(("Polygon", [ring(pa[b], pb[b], pb[b + 1])]))
                    geoms.append(("Polygon", [ring(pa[b], pb[b + 1], pa[b + 1])]))
                    edges.add((*v(a, b), *v(a + 1, b + 1)))
                elif u < gaps + triangles + holes:
                    cx = x0 + a * step + step // 2
                    cy = y0 + b * step + step // 2
                    hole = [(cx - half, cy - half), (cx - half, cy + half),
                            (cx + half, cy + half), (cx + half, cy - half)]
                    geoms.append(("Polygon", [ring(pa[b], pb[b], pb[b + 1], pa[b + 1]),
                                              ring(*hole)]))
                    if u < gaps + triangles + holes / 2:
                        geoms.append(("Polygon", [ring(*hole[::-1])]))
                    extra_vertices.extend(hole)
                    edges.update((*p, *q) for p, q in zip(hole, hole[1:] + hole[:1],
                                                          strict=True))
                elif a + 1 < cols and b + 1 < rows and kind[a + 1][b + 1] >= plain:
                    merged.add((a + 1, b + 1))
                    pc = pos[a + 2]
                    geoms.append(("MultiPolygon", [
                        [ring(pa[b], pb[b], pb[b + 1], pa[b + 1])],
                        [ring(pb[b + 1], pc[b + 1], pc[b + 2], pb[b + 2])]]))
                else:
                    geoms.append(("Polygon", [ring(pa[b], pb[b], pb[b + 1], pa[b + 1])]))
        codes = _codes(len(geoms), rng)
        features = [{"type": "Feature", "properties": {"code": code},
                     "geometry": {"type": gtype, "coordinates": coords}}
                    for code, (gtype, coords) in zip(codes, geoms, strict=True)]
        self.layer = {"type": "FeatureCollection",
                      "crs": {"type": "name", "properties": {"name": "EPSG:4490"}},
                      "features": features}
        self.cells = len(features)
        lattice = np.stack([vx.ravel(), vy.ravel()], axis=1)
        self.vertices = np.concatenate([lattice, np.array(extra_vertices, dtype=np.int64)
                                        .reshape(-1, 2)])
        h = np.stack([vx[:-1, :], vy[:-1, :], vx[1:, :], vy[1:, :]], axis=-1).reshape(-1, 4)
        w = np.stack([vx[:, :-1], vy[:, :-1], vx[:, 1:], vy[:, 1:]], axis=-1).reshape(-1, 4)
        self.edges = np.concatenate([h, w, np.array(sorted(edges), dtype=np.int64)
                                     .reshape(-1, 4)])
        self.bounds = (int(vx.min()), int(vy.min()), int(vx.max()), int(vy.max()))

    def points_e7(self, n, seed=2):
        """``n`` integer points: 40 % uniform (some outside), 25 % on vertices, 25 % on
        edges, 10 % one unit off a vertex."""
        rng = np.random.default_rng(seed)
        x0, y0, x1, y1 = self.bounds
        pad = (x1 - x0) // 50
        k_uni, k_vert, k_edge = int(n * 0.4), int(n * 0.25), int(n * 0.25)
        k_off = n - k_uni - k_vert - k_edge
        uni = np.stack([rng.integers(x0 - pad, x1 + pad, k_uni),
                        rng.integers(y0 - pad, y1 + pad, k_uni)], axis=1)
        vert = self.vertices[rng.integers(0, len(self.vertices), k_vert)]
        e = self.edges[rng.integers(0, len(self.edges), k_edge)]
        dx, dy = e[:, 2] - e[:, 0], e[:, 3] - e[:, 1]
        g = np.gcd(np.abs(dx), np.abs(dy))
        t = (rng.random(k_edge) * (g + 1)).astype(np.int64).clip(0, g)
        edge = np.stack([e[:, 0] + t * (dx // g), e[:, 1] + t * (dy // g)], axis=1)
        off = self.vertices[rng.integers(0, len(self.vertices), k_off)] + \
            rng.integers(-1, 2, (k_off, 2))
        pts = np.concatenate([uni, vert, edge, off])
        return pts[rng.permutation(n)]

    def points(self, n, seed=2):
        """``points_e7`` as (lon, lat) float arrays in degrees."""
        pts = self.points_e7(n, seed)
        return pts[:, 0] / 1e7, pts[:, 1] / 1e7


def _ring(ring):
    out = [[x / 1e7, y / 1e7] for x, y in ring]
    return [*out, out[0]]


def feature(code, *polygons, prop="code"):
    """A Feature whose polygons are lists of rings of (x, y) in 1e-7 degree units (unclosed);
    one polygon makes a Polygon, several a MultiPolygon."""
    coords = [[_ring(ring) for ring in poly] for poly in polygons]
    geometry = {"type": "Polygon", "coordinates": coords[0]} if len(coords) == 1 else \
        {"type": "MultiPolygon", "coordinates": coords}
    return {"type": "Feature", "properties": {prop: code}, "geometry": geometry}


def collection(*features, crs="EPSG:4490"):
    """A FeatureCollection of ``features`` declaring ``crs`` (None: no "crs" member)."""
    layer = {"type": "FeatureCollection", "features": list(features)}
    if crs:
        layer["crs"] = {"type": "name", "properties": {"name": crs}}
    return layer
