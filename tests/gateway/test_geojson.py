"""gateway/geojson: a cell's rings sorted into outer rings and holes."""

from gridlink.gateway.geojson import cell_geometry, grid_geojson

E7 = 10_000_000


def square(x0, y0, size):
    """A square ring in 1e-7 degree, counter-clockwise, without its closing point."""
    return [(x0, y0), (x0 + size, y0), (x0 + size, y0 + size), (x0, y0 + size)]


def test_a_lone_ring_is_a_closed_polygon_in_degrees():
    geom = cell_geometry([square(113 * E7, 34 * E7, E7 // 100)])
    assert geom["type"] == "Polygon"
    (ring,) = geom["coordinates"]
    assert ring[0] == ring[-1] == [113.0, 34.0]
    assert ring[2] == [113.01, 34.01]


def test_a_ring_inside_another_is_its_hole_and_an_island_in_the_hole_is_a_polygon_again():
    outer, hole, island = square(0, 0, 900), square(300, 300, 300), square(400, 400, 100)
    geom = cell_geometry([island, outer, hole])
    assert geom["type"] == "MultiPolygon"
    shapes = sorted(geom["coordinates"], key=len)
    assert [len(p) for p in shapes] == [1, 2]  # the island alone; the outer with its hole
    assert shapes[0][0][0] == [400 / E7, 400 / E7]
    assert [ring[0] for ring in shapes[1]] == [[0.0, 0.0], [300 / E7, 300 / E7]]


def test_no_map_draws_no_cells():
    assert grid_geojson(None) == {"type": "FeatureCollection", "features": []}
