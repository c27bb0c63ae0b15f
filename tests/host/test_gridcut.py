"""A map cut to one area keeps the cells meeting it whole: inside the area it answers as
the whole map does (holes, enclaves, edges and vertices too), and it is a small part of
the district's map — what a sensor node holds."""

import random
import subprocess
import sys

import pytest
from gridlink.firmware.core.gridmap import GridMap
from gridlink.firmware.maps import default_map
from gridlink.host.gridcompile import GridCompileError
from gridlink.host.gridcut import around, cut_map

from tests.support.paths import ROOT

WHOLE = default_map("410106").read_bytes()
GRIDLINK = [sys.executable, "-c", "import sys; from gridlink.cli import main; sys.exit(main())"]
NODE = (113.2965, 34.8095)     # the sensor-node profile's position


def _points(m, box, n, rnd):
    """Random points in ``box`` and every vertex of the cells there (edge cases)."""
    w, s, e, n_ = box
    pts = [(round(rnd.uniform(w, e), 7), round(rnd.uniform(s, n_), 7)) for _ in range(n)]
    for i in range(m.n_cells):
        pts.extend((x / 1e7, y / 1e7) for r in m.rings(i) for x, y in r)
    return pts


@pytest.mark.parametrize("radius", [100, 300, 1000])
def test_inside_the_area_the_cut_map_answers_as_the_whole_map(radius):
    box = around(*NODE, radius)
    data, stats = cut_map(WHOLE, box)
    whole, cut = GridMap(WHOLE), GridMap(data)
    assert cut.n_cells == stats["cells"] < whole.n_cells and stats["of_bytes"] == len(WHOLE)
    assert cut.locate(*NODE) == whole.locate(*NODE) == "410106002005047"
    rnd = random.Random(radius)
    w, s, e, n = box
    for lon, lat in _points(cut, box, 2000, rnd):
        want = whole.locate(lon, lat)
        if w <= lon <= e and s <= lat <= n:
            assert cut.locate(lon, lat) == want, (lon, lat)
        else:   # beyond the area: nothing, or a kept cell covering the point (on an
            got = cut.locate(lon, lat)   # edge shared with a cell not kept: its neighbour)
            assert got is None or (want is not None and got >= want), (lon, lat)


def test_cells_with_holes_and_parts_are_cut_whole():
    whole = GridMap(WHOLE)
    # the sample's enclave: a cell of several rings (a courtyard hole, an island part)
    many = [i for i in range(whole.n_cells) if len(whole.rings(i)) > 1]
    assert many
    for i in many:
        xs = [x for r in whole.rings(i) for x, _ in r]
        ys = [y for r in whole.rings(i) for _, y in r]
        box = (min(xs) / 1e7, min(ys) / 1e7, max(xs) / 1e7, max(ys) / 1e7)
        cut = GridMap(cut_map(WHOLE, box)[0])
        for lon, lat in _points(cut, box, 500, random.Random(i)):
            if box[0] <= lon <= box[2] and box[1] <= lat <= box[3]:
                assert cut.locate(lon, lat) == whole.locate(lon, lat), (lon, lat)


def test_an_area_with_no_cell_or_a_bad_map_is_refused():
    with pytest.raises(GridCompileError, match="no cell of the map meets"):
        cut_map(WHOLE, (1.0, 1.0, 2.0, 2.0))
    with pytest.raises(GridCompileError, match="not a grid map"):
        cut_map(b"\0" * 100, around(*NODE, 300))
    with pytest.raises(GridCompileError, match="radius"):
        around(*NODE, 0)


def test_gridlink_grid_cut_writes_the_map_and_says_its_size(tmp_path):
    out = tmp_path / "node.glgm"
    done = subprocess.run([*GRIDLINK, "grid", "cut",
                           str(default_map("410106")), "-o", str(out), "--around",
                           *map(str, NODE), "--radius", "300"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "50 of 4288 cells" in done.stdout and f"{out.stat().st_size} of 361280 bytes" \
        in done.stdout
    assert GridMap(out.read_bytes()).locate(*NODE) == "410106002005047"
