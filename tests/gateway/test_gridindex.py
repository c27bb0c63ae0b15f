"""The gateway's raster locator answers exactly what the core's GridMap answers: on the
district map, on a map of holes and slanted edges, at vertices, on edges and on the
raster's own lines, and off the map."""


import pytest
from gridlink.firmware.core.gridmap import GridMap, GridMapError
from gridlink.gateway.gridindex import RasterLocator
from gridlink.host.gridcompile import compile_layer
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.paths import ROOT

E7 = 10_000_000


def _feature(code, *rings):
    return {"type": "Feature", "properties": {"code": code},
            "geometry": {"type": "Polygon",
                         "coordinates": [[list(p) for p in (*r, r[0])] for r in rings]}}


def _odd_layer():
    """A cell with a hole and another cell filling the hole, a slanted triangle, and a
    thin sliver: rings whose edges cross raster cells at every angle."""
    x, y = 113.28, 34.80
    outer = [(x, y), (x + 0.02, y), (x + 0.02, y + 0.02), (x, y + 0.02)]
    hole = [(x + 0.005, y + 0.005), (x + 0.005, y + 0.013), (x + 0.013, y + 0.011)]
    return {"type": "FeatureCollection", "features": [
        _feature("410106001001001", outer, hole),
        _feature("410106001001002", hole[::-1]),
        _feature("410106001001003", [(x + 0.02, y), (x + 0.031, y + 0.007),
                                     (x + 0.02, y + 0.02)]),
        _feature("410106001001004", [(x, y + 0.02), (x + 0.02, y + 0.02),
                                     (x + 0.02, y + 0.0201)]),
    ]}


@pytest.fixture(scope="module")
def district():
    grid = GridMap((ROOT / "firmware" / "maps" / "shangjie.glgm").read_bytes())
    return grid, RasterLocator(grid)


@pytest.fixture(scope="module")
def odd():
    grid = GridMap(compile_layer(_odd_layer())[0])
    return grid, RasterLocator(grid, per_cell=64)


def _special_points(grid, loc):
    """Vertices, edge midpoints (on the edge when the midpoint is a whole unit), raster
    corners, and points just off each of them."""
    pts = []
    for cell in range(grid.n_cells):
        for ring in grid.rings(cell):
            for k, (bx, by) in enumerate(ring):
                ax, ay = ring[k - 1]
                pts += [(bx, by), ((ax + bx) // 2, (ay + by) // 2)]
    corners = [(loc._x0 + i * loc._sx, loc._y0 + j * loc._sy)
               for i in range(0, loc._nx + 1, max(1, loc._nx // 40))
               for j in range(0, loc._ny + 1, max(1, loc._ny // 40))]
    out = []
    for x, y in pts + corners:
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                out.append(((x + dx) / E7, (y + dy) / E7))
    return out


@pytest.mark.parametrize("name", ["district", "odd"])
def test_the_same_answer_as_the_grid_map_at_every_vertex_edge_and_raster_corner(name, request):
    grid, loc = request.getfixturevalue(name)
    pts = _special_points(grid, loc)
    assert len(pts) > 1000
    assert [loc.locate(lon, lat) for lon, lat in pts] == [grid.locate(lon, lat)
                                                          for lon, lat in pts]


@pytest.mark.parametrize("name", ["district", "odd"])
def test_the_same_answer_as_the_grid_map_on_a_lattice_over_and_around_the_map(name, request):
    grid, _loc = request.getfixturevalue(name)
    loc = RasterLocator(grid, per_cell=8)  # coarse: more points fall near edges
    w, s, e, n = grid.bbox
    pad = (e - w) * 0.05
    pts = [(w - pad + (e - w + 2 * pad) * i / 157, s - pad + (n - s + 2 * pad) * j / 163)
           for i in range(158) for j in range(164)]
    got = [loc.locate(lon, lat) for lon, lat in pts]
    assert got == [grid.locate(lon, lat) for lon, lat in pts]
    assert None in got and len(set(got)) > min(grid.n_cells, 100) // 2


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_point_gets_the_grid_maps_answer(odd, district, data):
    for grid, loc in (odd, district):
        w, s, e, n = grid.bbox
        lon = data.draw(st.floats(w - 0.01, e + 0.01, allow_nan=False))
        lat = data.draw(st.floats(s - 0.01, n + 0.01, allow_nan=False))
        assert loc.locate(lon, lat) == grid.locate(lon, lat)


def test_most_of_the_district_is_answered_from_the_raster(district):
    _grid, loc = district
    clear = sum(1 for v in loc._table if v != -3) / len(loc._table)
    assert clear > 0.8  # the speed comes from these (the benchmark measures it)
    assert -2 not in loc._table  # every clear patch was located at start


def test_bad_coordinates_raise_as_the_grid_map_does(district):
    _grid, loc = district
    for lon, lat in ((181.0, 34.8), (113.3, -91.0), (float("nan"), 34.8)):
        with pytest.raises(GridMapError):
            loc.locate(lon, lat)


def _touches(x0, y0, x1, y1, a, b):
    """Whether segment a–b meets the closed rectangle [x0, x1] × [y0, y1] (exact)."""
    from fractions import Fraction

    (ax, ay), (bx, by) = a, b
    lo, hi = Fraction(0), Fraction(1)
    for p, q in ((-(bx - ax), ax - x0), (bx - ax, x1 - ax), (-(by - ay), ay - y0),
                 (by - ay, y1 - ay)):
        if p == 0:
            if q < 0:
                return False
        elif p < 0:
            lo = max(lo, Fraction(q, p))
        else:
            hi = min(hi, Fraction(q, p))
    return lo <= hi


@settings(max_examples=300, deadline=None)
@given(st.tuples(st.integers(0, 60), st.integers(0, 60)),
       st.tuples(st.integers(0, 60), st.integers(0, 60)),
       st.integers(1, 7), st.integers(1, 7))
def test_an_edge_marks_every_raster_cell_it_touches(a, b, sx, sy):
    """Exact on the raster's own lines: a segment through a raster corner marks all the
    cells meeting there (what makes the rest safe to answer from the table)."""
    from array import array

    loc = RasterLocator.__new__(RasterLocator)
    loc._x0 = loc._y0 = 0
    loc._sx, loc._sy = sx, sy
    loc._nx, loc._ny = 60 // sx + 1, 60 // sy + 1
    loc._table = array("i", [-2]) * (loc._nx * loc._ny)
    loc._mark(a, b)
    for j in range(loc._ny):
        for i in range(loc._nx):
            if _touches(i * sx, j * sy, (i + 1) * sx, (j + 1) * sy, a, b):
                assert loc._table[j * loc._nx + i] == -3, (i, j)
