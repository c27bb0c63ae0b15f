"""Under real MicroPython the map is read from its file on demand and gives the same codes
as CPython (and shapely) for the same points, edges and vertices included."""

import json

import pytest
from gridlink.firmware.core.gridmap import GridMap
from gridlink.firmware.maps.synthetic import SyntheticLayer
from gridlink.host.gridcompile import compile_layer
from gridlink.host.make_shangjie import MAP as SAMPLE

from tests.support.mpy_wasm import run_micropython
from tests.support.shapely_grid import shapely_reference

pytestmark = pytest.mark.micropython

SCRIPT = """
import json
from gridcore.gridmap import GridMap, GridMapError

def run(path, pts):
    with open(path, "rb") as f:
        m = GridMap(f)
        return [m.locate(pts[0][i], pts[1][i]) for i in range(len(pts[0]))]

out = {}
for name in ("synthetic", "sample"):
    out[name] = run("/maps/" + name + ".glgm", json.loads(open("/pts/" + name + ".json").read()))
for name in ("damaged", "notamap"):
    try:
        GridMap(open("/maps/" + name + ".glgm", "rb"))
        out[name] = "opened"
    except GridMapError as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs():
    synthetic = SyntheticLayer(50, 50, seed=3)
    data, stats = compile_layer(synthetic.layer)
    assert stats["cells"] >= 2500
    pts = synthetic.points_e7(2000, seed=4)
    syn_pts = [(pts[:, 0] / 1e7).tolist(), (pts[:, 1] / 1e7).tolist()]

    sample = SAMPLE.read_bytes()
    m = GridMap(sample)
    w, s, e, n = m.bbox
    cells = [m.rings(c)[0][0] for c in range(0, m.n_cells, 7)]  # vertices of cells
    sam_pts = [[x / 1e7 for x, _ in cells] + [w + (e - w) * k / 97 for k in range(98)],
               [y / 1e7 for _, y in cells] + [s + (n - s) * k / 89 for k in range(98)]]
    damaged = bytearray(data)
    damaged[-5] ^= 1
    out = run_micropython(SCRIPT, files={
        "/maps/synthetic.glgm": data, "/maps/sample.glgm": sample,
        "/maps/damaged.glgm": bytes(damaged), "/maps/notamap.glgm": b"PK\x03\x04" + data[4:],
        "/pts/synthetic.json": json.dumps(syn_pts), "/pts/sample.json": json.dumps(sam_pts)})
    return json.loads(out.strip().splitlines()[-1]), synthetic, data, syn_pts, sample, sam_pts


def test_micropython_reads_a_2500_cell_map_from_its_file_like_cpython_and_shapely(runs):
    got, synthetic, data, pts, _, _ = runs
    cpython = GridMap(data)
    expected = [cpython.locate(x, y) for x, y in zip(*pts, strict=True)]
    assert got["synthetic"] == expected
    assert expected == shapely_reference(synthetic.layer, *pts)[0]
    assert sum(code is None for code in expected) > 20  # outside points were asked too


def test_micropython_locates_on_the_sample_map_like_cpython(runs):
    got, _, _, _, sample, pts = runs
    m = GridMap(sample)
    expected = [m.locate(x, y) for x, y in zip(*pts, strict=True)]
    assert got["sample"] == expected
    assert all(code.startswith("410106") for code in expected[:-98])


def test_micropython_refuses_damaged_and_foreign_files(runs):
    got = runs[0]
    assert got["damaged"].startswith("grid map checksum mismatch")
    assert got["notamap"] == "not a grid map: magic b'PK\\x03\\x04', expected b'GLGM'"
