"""The grid map agrees with shapely ``covers`` (smallest code wins) on 100,000 points over a
100,000-cell map, a third of them deliberately on edges and vertices."""


import pytest
from gridlink.firmware.core.gridmap import GridMap
from gridlink.firmware.maps import open_map
from gridlink.firmware.maps.synthetic import SyntheticLayer
from gridlink.host.gridcompile import compile_layer

from tests.support.shapely_grid import shapely_reference


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
