"""The grid map agrees with shapely ``covers`` (smallest code wins) on 100,000 points over a
100,000-cell map, a third of them deliberately on edges and vertices."""

import json

import numpy as np
import pytest
import shapely
from gridlink.firmware.core.gridmap import GridMap
from gridlink.firmware.gridcompile import compile_layer
from gridlink.firmware.maps import open_map
from gridlink.firmware.maps.synthetic import SyntheticLayer


def quantise(v):
    return np.floor(np.asarray(v, dtype=float) * 1e7 + 0.5)


def shapely_reference(layer, lon, lat):
    """Per point, the smallest code whose cell covers it (both rounded to 1e-7 degree),
    computed with shapely from the GeoJSON alone, or None; and how many cells cover it."""
    feats = layer["features"]
    geoms = np.empty(len(feats), dtype=object)
    simple = [k for k, f in enumerate(feats) if f["geometry"]["type"] == "Polygon"
              and len(f["geometry"]["coordinates"]) == 1]
    if simple:
        rings = [feats[k]["geometry"]["coordinates"][0] for k in simple]
        coords = quantise([pos for ring in rings for pos in ring])
        which = np.repeat(np.arange(len(rings)), [len(r) for r in rings])
        geoms[simple] = shapely.polygons(shapely.linearrings(coords, indices=which))
    other = sorted(set(range(len(feats))) - set(simple))
    if other:
        geoms[other] = shapely.transform(
            shapely.from_geojson([json.dumps(feats[k]["geometry"]) for k in other]), quantise)
    codes = np.array([f["properties"]["code"] for f in feats])
    points = shapely.points(quantise(lon), quantise(lat))
    p, g = shapely.STRtree(geoms).query(points, predicate="covered_by")
    order = np.argsort(codes)
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes))
    best = np.full(len(points), len(codes))
    np.minimum.at(best, p, rank[g])
    sorted_codes = [*codes[order].tolist(), None]
    return [sorted_codes[b] for b in best.tolist()], np.bincount(p, minlength=len(points))


@pytest.fixture(scope="module")
def big_map(tmp_path_factory):
    synthetic = SyntheticLayer(316, 316, seed=1)
    data, stats = compile_layer(synthetic.layer)
    path = tmp_path_factory.mktemp("grid") / "big.glgm"
    path.write_bytes(data)
    return synthetic, path, stats


def test_100k_points_agree_with_shapely_covers_over_100k_cells(big_map):
    synthetic, path, stats = big_map
    assert stats["cells"] >= 100_000
    pts = synthetic.points_e7(100_000, seed=2)
    lon, lat = (pts[:, 0] / 1e7).tolist(), (pts[:, 1] / 1e7).tolist()
    expected, covering = shapely_reference(synthetic.layer, lon, lat)
    # The sample really probes the boundary rule: shared edges/vertices, holes, gaps.
    assert (covering >= 2).sum() > 20_000
    assert (covering >= 3).sum() > 5_000
    assert sum(e is None for e in expected) > 2_000

    m = open_map(path, mapped=True)
    got = [m.locate(x, y) for x, y in zip(lon, lat, strict=True)]
    wrong = [(k, lon[k], lat[k], got[k], expected[k]) for k in range(len(got))
             if got[k] != expected[k]]
    assert not wrong, f"{len(wrong)} points disagree, first: {wrong[:5]}"


def test_reading_from_a_file_object_agrees_too(big_map):
    synthetic, path, _ = big_map
    pts = synthetic.points_e7(5_000, seed=3)
    lon, lat = (pts[:, 0] / 1e7).tolist(), (pts[:, 1] / 1e7).tolist()
    expected, _ = shapely_reference(synthetic.layer, lon, lat)
    with open(path, "rb") as f:
        m = GridMap(f)
        got = [m.locate(x, y) for x, y in zip(lon, lat, strict=True)]
    assert got == expected
