"""Compile a GIS grid layer (GeoJSON) into a grid map file the device core reads.

    data, stats = compile_layer(json.load(f), code_property="code")   # → bytes, dict
    compile_file("grid.geojson", "grid.glgm", crs="EPSG:4547")

Runs on CPython with pyproj and shapely (the ``gis`` extra), never on the device.  The
layer is a FeatureCollection of Polygon/MultiPolygon features, each with a 14/15-digit
grid code property, in lon/lat or a projected CRS (the GeoJSON ``crs`` member, else
``crs=``, else RFC 7946 CRS84).  Coordinates are reprojected to CGCS2000 lon/lat
(EPSG:4490), rounded to 1e-7 degree, and checked *after* rounding, because that is the
geometry the device tests points against: closed rings, no degenerate rings, valid
polygons (no self-intersection), no two cells overlapping, unique codes.  Every problem
names the feature index.  The file format is described in docs/gridmap.md.
"""

import json
import os
import struct
import tempfile
import zlib

from gridlink.firmware.core import gridmap as fmt

from .errors import HostError

TARGET_EPSG = 4490  # CGCS2000 geographic lon/lat: what GNSS gives (≈ WGS 84 at metre level)
EXACT_DATUMS = ("World Geodetic System 1984", "China 2000")
MAX_PROBLEMS = 20
MAX_BUCKETS = 1 << 24


class GridCompileError(HostError):
    """The layer cannot become a grid map; ``problems`` lists each reason."""

    def __init__(self, problems):
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS]
        if len(self.problems) == 1:
            text = f"grid layer rejected: {shown[0]}"
        else:
            text = f"grid layer rejected ({len(self.problems)} problems):\n  " + \
                "\n  ".join(shown)
            if len(self.problems) > len(shown):
                text += f"\n  … and {len(self.problems) - len(shown)} more"
        super().__init__(text)


# -- reading the layer -----------------------------------------------------------------

def load_layer(src):
    """The parsed GeoJSON of ``src`` (a path), with a clear error for bad JSON."""
    try:
        with open(src, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise GridCompileError([f"cannot read {src}: {exc.strerror}"]) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GridCompileError([f"{src} is not valid GeoJSON text: {exc}"]) from None


def _parse_crs(text, where):
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(text)
    except CRSError:
        raise GridCompileError([f"{where}: {text!r} is not a coordinate reference system "
                                f"PROJ knows (try EPSG:4326 or EPSG:4547)"]) from None


def source_crs(layer, crs=None):
    """The layer's CRS: its ``crs`` member, else ``crs``, else CRS84; both must agree."""
    from pyproj import CRS

    member = layer.get("crs")
    in_file = None
    if member is not None:
        name = member.get("properties", {}).get("name") if isinstance(member, dict) else None
        if not isinstance(member, dict) or member.get("type") != "name" or \
                not isinstance(name, str):
            raise GridCompileError(['the "crs" member must be {"type": "name", "properties": '
                                    '{"name": "EPSG:…"}}; linked CRSs are not supported'])
        in_file = _parse_crs(name, 'the "crs" member')
    given = _parse_crs(crs, "--crs") if crs else None
    if in_file is not None and given is not None and \
            not in_file.equals(given, ignore_axis_order=True):
        raise GridCompileError([f'--crs {crs} contradicts the layer\'s "crs" member '
                                f'({in_file.to_string()}); fix the file or drop --crs'])
    return in_file or given or CRS.from_user_input("OGC:CRS84")


def _transformer(src):
    from pyproj import Transformer

    t = Transformer.from_crs(src, f"EPSG:{TARGET_EPSG}", always_xy=True)
    datum = src.geodetic_crs.datum.name if src.geodetic_crs else "unknown"
    if t.accuracy == -1 and not datum.startswith(EXACT_DATUMS):
        raise GridCompileError([f"{src.name}: PROJ has no known transformation from the "
                                f"{datum} datum to CGCS2000, only a ballpark one (off by up "
                                f"to ~100 m); reproject the layer with your survey's "
                                f"parameters first"])
    return t


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _CodeChecker:
    """Validates grid codes with ``Codes.parse_grid_code``, once per community prefix."""

    def __init__(self, codes):
        self.codes = codes
        self.prefixes = set()

    def __call__(self, props, code_property, where):
        if not isinstance(props, dict):
            raise ValueError(f"{where}: has no properties (needs {code_property!r})")
        value = props.get(code_property)
        if value is None:
            keys = ", ".join(sorted(props)) or "none"
            raise ValueError(f"{where}: no {code_property!r} property (it has: {keys}); "
                             f"name the code field with --code-property")
        if type(value) is int:
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(f"{where}: {code_property} {value!r} is a "
                             f"{type(value).__name__}, not a string of 14 or 15 digits")
        prefix, seq = value[:12], value[12:]
        if prefix in self.prefixes and seq.isascii() and seq.isdigit() and \
                len(seq) in (2, 3) and seq.strip("0"):
            return value
        from gridlink.firmware.core.codebook import CodeError

        try:
            self.codes.parse_grid_code(value)
        except CodeError as exc:
            raise ValueError(f"{where}: {exc}") from None
        self.prefixes.add(prefix)
        return value


def _ring_ok(ring):
    return type(ring) is list and len(ring) >= 4 and all(
        type(p) is list and len(p) >= 2 and type(p[0]) in (int, float) and
        type(p[1]) in (int, float) for p in ring) and ring[0][:2] == ring[-1][:2]


def _rings_look_ok(rings):
    """Fast whole-layer check that every ring is a closed list of >= 4 numeric [x, y]."""
    if set(map(type, rings)) != {list} or min(map(len, rings)) < 4:
        return False
    positions = [pos for ring in rings for pos in ring]
    if set(map(type, positions)) != {list} or min(map(len, positions)) < 2:
        return False
    if not set(map(type, (v for pos in positions for v in pos[:2]))) <= {int, float}:
        return False
    return all(r[0][0] == r[-1][0] and r[0][1] == r[-1][1] for r in rings)


def _ring_problem(ring, label):
    if not isinstance(ring, list) or len(ring) < 4:
        n = len(ring) if isinstance(ring, list) else 0
        return f"{label} has {n} positions; a closed ring needs at least 4"
    for k, pos in enumerate(ring):
        if not isinstance(pos, list) or len(pos) < 2 or not _number(pos[0]) or \
                not _number(pos[1]):
            return f"{label} position {k} is {pos!r}, not [x, y]"
    return f"{label} is not closed: first position {ring[0][:2]} is not the last {ring[-1][:2]}"


def _ring_label(where, p, r):
    return f"{where}: polygon {p} {'outer ring' if r == 0 else f'hole {r}'}"


def _polygons_of(geometry, where):
    """[[ring, …], …] position lists of a Polygon/MultiPolygon, structure checked."""
    if not isinstance(geometry, dict):
        raise ValueError(f"{where}: has no geometry")
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        polygons = coords
    else:
        raise ValueError(f"{where}: geometry type {kind!r} is not supported (only Polygon "
                         f"and MultiPolygon grid cells)")
    if not isinstance(polygons, list) or not polygons:
        raise ValueError(f"{where}: {kind} has no coordinates")
    for p, poly in enumerate(polygons):
        if not isinstance(poly, list) or not poly:
            raise ValueError(f"{where}: polygon {p} has no rings")
    return polygons


class Cells:
    """Grid cells as flat arrays: codes, feature indexes and rings in 1e-7 degree units.

    Ring k of the layer has vertices ``x[ring_off[k]:ring_off[k + 1]]`` (not closed);
    polygon j has rings ``poly_off[j]:poly_off[j + 1]`` (outer first); cell i has
    polygons ``cell_off[i]:cell_off[i + 1]``.
    """

    def __init__(self, codes, features, x, y, ring_off, poly_off, cell_off):
        import numpy as np

        self.codes, self.features = codes, features
        self.x, self.y = x, y
        self.ring_off, self.poly_off, self.cell_off = ring_off, poly_off, cell_off
        self.cell_rings = poly_off[cell_off]  # cell i has rings cell_rings[i]:cell_rings[i+1]
        self.cell_verts = ring_off[self.cell_rings]
        starts = self.cell_verts[:-1]
        self.bbox = np.stack([np.minimum.reduceat(x, starts), np.minimum.reduceat(y, starts),
                              np.maximum.reduceat(x, starts), np.maximum.reduceat(y, starts)],
                             axis=1)

    def __len__(self):
        return len(self.codes)

    def label(self, i):
        return f"feature {self.features[i]} ({self.codes[i]})"


def read_cells(layer, code_property="code", crs=None, codes=None):
    """Validated ``Cells`` of a parsed GeoJSON layer, in 1e-7 degree CGCS2000 lon/lat."""
    import numpy as np
    from gridlink.firmware.core.codes import Codes

    if not isinstance(layer, dict) or layer.get("type") != "FeatureCollection":
        kind = layer.get("type") if isinstance(layer, dict) else type(layer).__name__
        raise GridCompileError([f"the layer must be a GeoJSON FeatureCollection, not {kind}"])
    features = layer.get("features")
    if not isinstance(features, list) or not features:
        raise GridCompileError(["the FeatureCollection has no features"])
    transformer = _transformer(source_crs(layer, crs))
    check_code = _CodeChecker(codes or Codes())

    problems, parsed = [], []
    for i, feature in enumerate(features):
        where = f"feature {i}"
        try:
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                raise ValueError(f"{where}: is not a GeoJSON Feature")
            code = check_code(feature.get("properties"), code_property, where)
            parsed.append((i, code, _polygons_of(feature.get("geometry"), f"{where} ({code})")))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise GridCompileError(problems)

    rings = [ring for _, _, polys in parsed for poly in polys for ring in poly]
    where = [(i, code, p, r) for i, code, polys in parsed
             for p, poly in enumerate(polys) for r in range(len(poly))]
    if not _rings_look_ok(rings):
        for k, ring in enumerate(rings):
            if not _ring_ok(ring):
                i, code, p, r = where[k]
                problems.append(_ring_problem(ring, _ring_label(f"feature {i} ({code})", p, r)))
        raise GridCompileError(problems)
    raw_off = np.concatenate(([0], np.cumsum([len(r) for r in rings])))
    try:
        xs = np.fromiter((pos[0] for ring in rings for pos in ring), float, raw_off[-1])
        ys = np.fromiter((pos[1] for ring in rings for pos in ring), float, raw_off[-1])
    except OverflowError:
        for k, ring in enumerate(rings):
            for n, pos in enumerate(ring):
                if any(abs(v) > 1e300 for v in pos[:2]):
                    i, code, p, r = where[k]
                    problems.append(f"{_ring_label(f'feature {i} ({code})', p, r)} position "
                                    f"{n} has a coordinate too large to be one")
                    break
        raise GridCompileError(problems) from None
    lon, lat = transformer.transform(xs, ys)
    bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90))
    for k in np.unique(np.searchsorted(raw_off, np.flatnonzero(bad), side="right") - 1)[:50]:
        i, code, p, r = where[k]
        first = int(np.flatnonzero(bad[raw_off[k]:raw_off[k + 1]])[0])
        problems.append(f"{_ring_label(f'feature {i} ({code})', p, r)} position {first} "
                        f"{rings[k][first][:2]} is not a place on Earth in the layer's CRS "
                        f"(a projected layer without its \"crs\" member? pass --crs)")
    if problems:
        raise GridCompileError(problems)
    qx = np.floor(lon * 1e7 + 0.5).astype(np.int64)
    qy = np.floor(lat * 1e7 + 0.5).astype(np.int64)

    # Drop each ring's closing position and repeated consecutive positions.
    n_rings = len(rings)
    ring_of = np.repeat(np.arange(n_rings), np.diff(raw_off))
    keep = np.ones(len(qx), dtype=bool)
    keep[raw_off[1:] - 1] = False
    same = np.zeros(len(qx), dtype=bool)
    same[1:] = (qx[1:] == qx[:-1]) & (qy[1:] == qy[:-1])
    same[raw_off[:-1]] = False
    keep &= ~same
    counts = np.bincount(ring_of[keep], minlength=n_rings)
    off = np.concatenate(([0], np.cumsum(counts)))
    x, y = qx[keep], qy[keep]
    if counts.min() > 0:
        wrap = (x[off[1:] - 1] == x[off[:-1]]) & (y[off[1:] - 1] == y[off[:-1]]) & (counts > 1)
        if wrap.any():
            drop = np.zeros(len(x), dtype=bool)
            drop[off[1:][wrap] - 1] = True
            x, y = x[~drop], y[~drop]
            counts = counts - wrap
            off = np.concatenate(([0], np.cumsum(counts)))
    for k in np.flatnonzero(counts < 3).tolist():
        i, code, p, r = where[k]
        problems.append(f"{_ring_label(f'feature {i} ({code})', p, r)} is degenerate: "
                        f"{counts[k]} distinct points after rounding to 1e-7 degree")
    for k in np.flatnonzero(counts > 65535).tolist():
        i, code, p, r = where[k]
        problems.append(f"{_ring_label(f'feature {i} ({code})', p, r)} has {counts[k]} "
                        f"points; a ring may have at most 65535")
    if problems:
        raise GridCompileError(problems)
    for k in _flat_rings(x, y, off).tolist():
        i, code, p, r = where[k]
        problems.append(f"{_ring_label(f'feature {i} ({code})', p, r)} is degenerate: it "
                        f"encloses no area (all its points lie on one line)")
    if problems:
        raise GridCompileError(problems)

    poly_off = np.concatenate(([0], np.cumsum([len(poly) for _, _, polys in parsed
                                               for poly in polys])))
    cell_off = np.concatenate(([0], np.cumsum([len(polys) for _, _, polys in parsed])))
    return Cells([code for _, code, _ in parsed], [i for i, _, _ in parsed], x, y, off,
                 poly_off, cell_off)


def _flat_rings(x, y, off):
    """Indexes of rings with zero area (exact: float shoelace, integers where unsure)."""
    import numpy as np

    first = np.repeat(off[:-1], np.diff(off))
    rx, ry = (x - x[first]).astype(float), (y - y[first]).astype(float)
    nxt = np.arange(len(x)) + 1
    nxt[off[1:] - 1] = off[:-1]
    terms = rx * ry[nxt] - rx[nxt] * ry
    area = np.add.reduceat(terms, off[:-1])
    scale = np.add.reduceat(np.abs(terms), off[:-1])
    flat = []
    for k in np.flatnonzero(np.abs(area) <= 1e-9 * scale).tolist():
        xs, ys = x[off[k]:off[k + 1]].tolist(), y[off[k]:off[k + 1]].tolist()
        twice = sum((xs[j] - xs[0]) * (ys[j - len(xs) + 1] - ys[0])
                    - (xs[j - len(xs) + 1] - xs[0]) * (ys[j] - ys[0]) for j in range(len(xs)))
        if twice == 0:
            flat.append(k)
    return np.asarray(flat, dtype=np.int64)


# -- checking the cells together -------------------------------------------------------

def shapes(cells, origin=(0, 0)):
    """Shapely MultiPolygons of the cells (coordinates relative to ``origin``)."""
    import numpy as np
    import shapely

    off = cells.ring_off
    counts = np.diff(off)
    # Close every ring: insert its first vertex after its last.
    at = np.repeat(off[1:], 1)
    x = np.insert(cells.x, at, cells.x[off[:-1]]) - origin[0]
    y = np.insert(cells.y, at, cells.y[off[:-1]]) - origin[1]
    closed_off = np.concatenate(([0], np.cumsum(counts + 1)))
    coords = np.stack([x, y], axis=1).astype(float)
    return shapely.from_ragged_array(shapely.GeometryType.MULTIPOLYGON, coords,
                                     (closed_off, cells.poly_off, cells.cell_off))


def check_cells(cells, geoms):
    """Unique codes, valid polygons and no overlapping cells, or GridCompileError."""
    import numpy as np
    import shapely

    problems, seen = [], {}
    for i, code in enumerate(cells.codes):
        if code in seen:
            problems.append(f"feature {cells.features[i]}: grid code {code} is already used "
                            f"by feature {cells.features[seen[code]]}; codes must be unique")
        else:
            seen[code] = i
    valid = shapely.is_valid(geoms)
    for k in np.flatnonzero(~valid).tolist():
        reason = shapely.is_valid_reason(geoms[k])
        problems.append(f"{cells.label(k)}: invalid polygon after rounding to 1e-7 degree: "
                        f"{_degrees(reason)}")
    if problems:
        raise GridCompileError(sorted(problems, key=_feature_number))
    if shapely.coverage_is_valid(geoms):
        return  # a valid coverage has no overlaps (fast path)
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms)
    keep = a < b
    a, b = a[keep], b[keep]
    overlap = shapely.relate_pattern(geoms[a], geoms[b], "T********")
    for i, j in zip(a[overlap].tolist(), b[overlap].tolist(), strict=True):
        first, second = sorted((i, j), key=lambda k: cells.features[k])
        problems.append(f"{cells.label(second)} overlaps {cells.label(first)}; grid cells "
                        f"must not overlap")
    if problems:
        raise GridCompileError(sorted(problems, key=_feature_number))


def _feature_number(problem):
    """Sort key: the feature index a problem starts with ("feature 12 …")."""
    word = problem.split()[1].rstrip(":")
    return int(word) if word.isdigit() else -1


def _degrees(reason):
    """GEOS's reason with its [x y] location turned from 1e-7 units into degrees."""
    head, sep, rest = reason.partition("[")
    if not sep:
        return reason
    try:
        x, y = (float(v) for v in rest.rstrip("]").split()[:2])
    except ValueError:
        return reason
    return f"{head.rstrip()} at lon {x / 1e7:.7f}, lat {y / 1e7:.7f}"


# -- the index and the file ------------------------------------------------------------

def _bucket_size(bbox, span, scale):
    import numpy as np

    n = len(bbox)
    w = float(np.median(bbox[:, 2] - bbox[:, 0]))
    h = float(np.median(bbox[:, 3] - bbox[:, 1]))
    bw = int(min(max(w * scale, 1), 65535))
    bh = int(min(max(h * scale, 1), 65535))
    while (span[0] // bw + 1) * (span[1] // bh + 1) > max(4 * n + 64, 4096) and \
            (bw < 65535 or bh < 65535):
        bw = min(bw * 2, 65535)
        bh = min(bh * 2, 65535)
    return bw, bh


def build_index(bbox, geoms, span, bucket_scale):
    """Bucket index over cells (bbox relative to the map origin, in file order).

    Returns (bw, bh, nx, ny, directory array, entries array)."""
    import numpy as np
    import shapely

    bw, bh = _bucket_size(bbox, span, bucket_scale)
    nx, ny = span[0] // bw + 1, span[1] // bh + 1
    if nx > 65535 or ny > 65535 or nx * ny > MAX_BUCKETS:
        raise GridCompileError([f"the map spans {span[0] / 1e7:.3f} x {span[1] / 1e7:.3f} "
                                f"degrees, too large for one grid map; split it"])
    bx0, by0 = bbox[:, 0] // bw, bbox[:, 1] // bh
    bx1, by1 = bbox[:, 2] // bw, bbox[:, 3] // bh
    cx, cy = bx1 - bx0 + 1, by1 - by0 + 1
    per_cell = cx * cy
    cell = np.repeat(np.arange(len(bbox)), per_cell)
    k = np.arange(per_cell.sum()) - np.repeat(np.cumsum(per_cell) - per_cell, per_cell)
    bx = bx0[cell] + k % cx[cell]
    by = by0[cell] + k // cx[cell]
    left, bottom = bx * bw, by * bh
    lo_x = np.maximum(bbox[cell, 0] - left, 0)
    lo_y = np.maximum(bbox[cell, 1] - bottom, 0)
    hi_x = np.minimum(bbox[cell, 2] - left, bw - 1)
    hi_y = np.minimum(bbox[cell, 3] - bottom, bh - 1)
    bucket = by * nx + bx

    # A bucket wholly inside one cell's interior needs no point-in-polygon test.
    inner = np.flatnonzero((lo_x == 0) & (lo_y == 0) & (hi_x == bw - 1) & (hi_y == bh - 1))
    boxes = shapely.box(left[inner], bottom[inner], left[inner] + bw - 1,
                        bottom[inner] + bh - 1)
    whole = np.zeros(len(cell), dtype=bool)
    whole[inner] = shapely.contains_properly(geoms[cell[inner]], boxes)
    whole_bucket = np.zeros(nx * ny, dtype=bool)
    whole_bucket[bucket[whole]] = True
    keep = ~whole_bucket[bucket] | whole
    cell, bucket, whole = cell[keep], bucket[keep], whole[keep]
    lo_x, lo_y, hi_x, hi_y = lo_x[keep], lo_y[keep], hi_x[keep], hi_y[keep]

    order = np.lexsort((cell, bucket))
    entries = np.empty(len(order), dtype=[("c", "<u4"), ("x0", "u1"), ("y0", "u1"),
                                          ("x1", "u1"), ("y1", "u1")])
    entries["c"] = cell[order].astype(np.uint32) | \
        np.where(whole[order], fmt.WHOLE, 0).astype(np.uint32)
    # In 1/256 bucket steps; monotone, so a point inside the bbox stays inside.
    entries["x0"], entries["y0"] = (lo_x[order] << 8) // bw, (lo_y[order] << 8) // bh
    entries["x1"], entries["y1"] = (hi_x[order] << 8) // bw, (hi_y[order] << 8) // bh
    counts = np.bincount(bucket, minlength=nx * ny)
    directory = np.concatenate(([0], np.cumsum(counts))).astype("<u4")
    return bw, bh, nx, ny, directory, entries


def _records(cells, order, bbox):
    """Cell records in file order (``order`` maps file position → cell)."""
    import numpy as np

    vert_cell = np.repeat(np.arange(len(cells)), np.diff(cells.cell_verts))
    rel = np.stack([cells.x - cells.bbox[vert_cell, 0], cells.y - cells.bbox[vert_cell, 1]],
                   axis=1)
    wide = (cells.bbox[:, 2:] - cells.bbox[:, :2]).max(axis=1) > 65535
    narrow_bytes = np.where(rel <= 65535, rel, 0).astype("<u2").tobytes()
    wide_bytes = rel.astype("<u4").tobytes() if wide.any() else b""
    ring_counts = np.diff(cells.ring_off).tolist()
    cell_rings, cell_verts = cells.cell_rings.tolist(), cells.cell_verts.tolist()
    pack_head = struct.Struct(fmt.RECORD_HEAD).pack
    out = []
    for pos, i in enumerate(order.tolist()):
        r0, r1 = cell_rings[i], cell_rings[i + 1]
        v0, v1 = cell_verts[i], cell_verts[i + 1]
        width = 4 if wide[i] else 2
        coords = (wide_bytes if wide[i] else narrow_bytes)[2 * width * v0:2 * width * v1]
        out.append(pack_head(r1 - r0, width, 0, int(bbox[pos, 0]), int(bbox[pos, 1]))
                   + struct.pack(f"<{r1 - r0}H", *ring_counts[r0:r1]) + coords)
    return out


def encode(cells, geoms=None, bucket_scale=1.0):
    """The map file bytes for checked cells, and its statistics."""
    import numpy as np
    import shapely

    if geoms is None:
        geoms = shapes(cells)
    widths = {len(c) for c in cells.codes}
    if len(widths) > 1:
        raise GridCompileError([f"grid codes mix {sorted(widths)} digits; one map holds one "
                                f"code layout"])
    code_width = widths.pop()
    order = np.array(sorted(range(len(cells)), key=cells.codes.__getitem__), dtype=np.int64)
    x0, y0 = (int(v) for v in cells.bbox[:, :2].min(axis=0))
    span = tuple(int(v) for v in cells.bbox[:, 2:].max(axis=0) - (x0, y0))
    bbox = cells.bbox[order] - (x0, y0, x0, y0)
    local = shapely.transform(geoms[order], lambda xy: xy - (x0, y0))
    bw, bh, nx, ny, directory, entries = build_index(bbox, local, span, bucket_scale)

    codes = "".join(cells.codes[i] for i in order.tolist()).encode("ascii")
    records = _records(cells, order, bbox)
    off_codes = fmt.HEADER_SIZE
    off_dir = off_codes + len(codes)
    off_entries = off_dir + 4 * len(directory)
    off_cells = off_entries + fmt.ENTRY_SIZE * len(entries)
    off_records = off_cells + 4 * (len(cells) + 1)
    starts = np.concatenate(([0], np.cumsum([len(r) for r in records]))) + off_records
    n_rings = len(cells.ring_off) - 1
    n_vertices = len(cells.x)
    body = b"".join([codes, directory.tobytes(), entries.tobytes(),
                     starts.astype("<u4").tobytes(), *records])
    size = fmt.HEADER_SIZE + len(body)
    if size > 0xFFFFFFFF:
        raise GridCompileError(["the map would exceed 4 GiB; split the layer"])
    tail = struct.pack(fmt.HEADER_FORMAT, fmt.MAGIC, fmt.VERSION, fmt.HEADER_SIZE, 0,
                       x0, y0, span[0], span[1], len(cells), n_rings, n_vertices, code_width,
                       nx, ny, TARGET_EPSG, bw, bh, len(entries), off_codes, off_dir,
                       off_entries, off_cells, size)[12:]
    crc = zlib.crc32(body, zlib.crc32(tail))
    head = struct.pack("<4sHHI", fmt.MAGIC, fmt.VERSION, fmt.HEADER_SIZE, crc) + tail
    stats = {"cells": len(cells), "rings": n_rings, "vertices": n_vertices,
             "code_width": code_width, "bytes": size,
             "bbox": [x0 / 1e7, y0 / 1e7, (x0 + span[0]) / 1e7, (y0 + span[1]) / 1e7],
             "buckets": [nx, ny], "bucket_units": [bw, bh], "entries": len(entries),
             "whole_buckets": int((entries["c"] & fmt.WHOLE != 0).sum())}
    return head + body, stats

def compile_layer(layer, code_property="code", crs=None, codes=None, bucket_scale=1.0):
    """(map bytes, statistics) for a parsed GeoJSON grid layer; GridCompileError if bad."""
    if not bucket_scale > 0:
        raise GridCompileError([f"bucket scale must be a positive number, not {bucket_scale}"])
    cells = read_cells(layer, code_property=code_property, crs=crs, codes=codes)
    geoms = shapes(cells)
    check_cells(cells, geoms)
    return encode(cells, geoms, bucket_scale=bucket_scale)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def compile_file(src, out, code_property="code", crs=None, codes=None, bucket_scale=1.0):
    """Compile GeoJSON file ``src`` into map file ``out`` (written atomically)."""
    data, stats = compile_layer(load_layer(src), code_property=code_property, crs=crs,
                                codes=codes, bucket_scale=bucket_scale)
    write_map(out, data)
    return stats


def write_map(out, data):
    """Write map bytes to ``out`` atomically (temporary file, fsync, rename)."""
    out = os.fspath(out)
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(out)), suffix=".tmp")
    except OSError as exc:
        raise GridCompileError([f"cannot write {out}: {exc.strerror}"]) from None
    try:
        os.chmod(tmp, 0o644 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise GridCompileError([f"cannot write {out}: {exc.strerror}"]) from None
        raise
