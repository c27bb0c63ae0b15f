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
        deg = {(x, y): [x / 1e7, y / 1e7] for cx, cy in zip(lx, ly, strict=True)
               for x, y in zip(cx, cy, strict=True)}

        def v(a, b):
            return lx[a][b], ly[a][b]

        polys, edges, extra_vertices = [], set(), []
        kind = rng.random((cols, rows))
        merged = np.zeros((cols, rows), dtype=bool)
        for a in range(cols):
            for b in range(rows):
                if merged[a, b]:
                    continue
                quad = [v(a, b), v(a + 1, b), v(a + 1, b + 1), v(a, b + 1)]
                u = kind[a, b]
                if u < gaps:
                    continue
                if u < gaps + triangles:
                    polys.append([[quad[0], quad[1], quad[2]]])
                    polys.append([[quad[0], quad[2], quad[3]]])
                    edges.add((quad[0], quad[2]))
                elif u < gaps + triangles + holes:
                    cx = x0 + a * step + step // 2
                    cy = y0 + b * step + step // 2
                    hole = [(cx - half, cy - half), (cx - half, cy + half),
                            (cx + half, cy + half), (cx + half, cy - half)]
                    polys.append([quad, hole])
                    if u < gaps + triangles + holes / 2:
                        polys.append([hole[::-1]])
                    extra_vertices.extend(hole)
                    edges.update(zip(hole, hole[1:] + hole[:1], strict=True))
                elif (u < gaps + triangles + holes + multis and a + 1 < cols and b + 1 < rows
                      and kind[a + 1, b + 1] >= gaps + triangles + holes + multis):
                    merged[a + 1, b + 1] = True
                    other = [v(a + 1, b + 1), v(a + 2, b + 1), v(a + 2, b + 2), v(a + 1, b + 2)]
                    polys.append(("multi", [[quad], [other]]))
                    continue
                else:
                    polys.append([quad])
        codes = _codes(len(polys), rng)
        features = []
        for code, poly in zip(codes, polys, strict=True):
            if isinstance(poly, tuple):
                geometry = {"type": "MultiPolygon",
                            "coordinates": [[_ring(r, deg) for r in p] for p in poly[1]]}
            else:
                geometry = {"type": "Polygon", "coordinates": [_ring(r, deg) for r in poly]}
            features.append({"type": "Feature", "properties": {"code": code},
                             "geometry": geometry})
        self.layer = {"type": "FeatureCollection",
                      "crs": {"type": "name", "properties": {"name": "EPSG:4490"}},
                      "features": features}
        self.cells = len(features)
        lattice = np.stack([vx.ravel(), vy.ravel()], axis=1)
        self.vertices = np.concatenate([lattice, np.array(extra_vertices, dtype=np.int64)
                                        .reshape(-1, 2)])
        h = np.stack([vx[:-1, :], vy[:-1, :], vx[1:, :], vy[1:, :]], axis=-1).reshape(-1, 4)
        w = np.stack([vx[:, :-1], vy[:, :-1], vx[:, 1:], vy[:, 1:]], axis=-1).reshape(-1, 4)
        self.edges = np.concatenate([h, w, np.array([a + b for a, b in edges], dtype=np.int64)
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


def _ring(ring, deg):
    out = [deg.get(p) or [p[0] / 1e7, p[1] / 1e7] for p in ring]
    out.append(out[0])
    return out
