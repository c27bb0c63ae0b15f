"""Cut a compiled grid map to the cells of one area: the map a sensor node holds.

    data, stats = cut_map(open("grid.glgm", "rb").read(), around(113.2965, 34.8095, 300))

A node stands at one provisioned position and needs the code of the cell it stands in;
the whole district's map (361 KB for 上街区) is more than its flash should hold for that.
The cut keeps every cell whose bounding box meets the area, whole and unchanged (the same
rings, the same codes), and builds a new index over them, so inside the area the cut map
answers exactly as the whole map does; outside the kept cells it answers ``None``.
Runs on CPython with shapely (the ``gis`` extra), like the compiler.
"""

import math

from gridlink.firmware.core.gridmap import GridMap, GridMapError

from .gridcompile import Cells, GridCompileError, encode

METRES_PER_DEGREE = 111320.0


def around(lon, lat, radius_m):
    """The (west, south, east, north) box in degrees ``radius_m`` metres about a point."""
    if not radius_m > 0:
        raise GridCompileError([f"the radius must be a positive number of metres, not "
                                f"{radius_m}"])
    dlat = radius_m / METRES_PER_DEGREE
    dlon = radius_m / (METRES_PER_DEGREE * max(math.cos(math.radians(lat)), 1e-6))
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def cut_map(data, box):
    """(map bytes, statistics) of the cells of map ``data`` whose bounding box meets
    ``box`` (west, south, east, north in degrees); GridCompileError when none does."""
    import numpy as np
    import shapely

    try:
        m = GridMap(data)
    except GridMapError as exc:
        raise GridCompileError([str(exc)]) from None
    w, s, e, n = (math.floor(v * 1e7 + 0.5) for v in box)
    if not (w <= e and s <= n):
        raise GridCompileError([f"the box {box} is empty (west > east or south > north)"])
    codes, xs, ys, ring_off, cell_off, geoms = [], [], [], [0], [0], []
    for i in range(m.n_cells):
        rings = m.rings(i)
        x = [p[0] for r in rings for p in r]
        y = [p[1] for r in rings for p in r]
        if max(x) < w or min(x) > e or max(y) < s or min(y) > n:
            continue
        codes.append(m.code(i))
        for r in rings:
            xs.extend(p[0] for p in r)
            ys.extend(p[1] for p in r)
            ring_off.append(len(xs))
        cell_off.append(len(ring_off) - 1)
        # the cell as the reader sees it: its rings even–odd (holes, parts, enclaves)
        shape = shapely.Polygon(rings[0])
        for r in rings[1:]:
            shape = shapely.symmetric_difference(shape, shapely.Polygon(r))
        geoms.append(shape)
    if not codes:
        raise GridCompileError([f"no cell of the map meets the box {box}"])
    # each ring stands as its own polygon in the records, as the compiler writes them
    rings_n = len(ring_off) - 1
    cells = Cells(codes, list(range(len(codes))), np.array(xs, dtype=np.int64),
                  np.array(ys, dtype=np.int64), np.array(ring_off, dtype=np.int64),
                  np.arange(rings_n + 1, dtype=np.int64), np.array(cell_off, dtype=np.int64))
    out, stats = encode(cells, np.array(geoms, dtype=object))
    return out, {**stats, "of_cells": m.n_cells, "of_bytes": m.size}
