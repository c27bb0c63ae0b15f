"""The shipped sample map of 上街区 (410106) is what its script makes, with real codes
numbered west→east, north→south in each community, and ~10,000 m² cells."""

import json

import pytest
import shapely
from gridlink.firmware.core.codes import Codes
from gridlink.firmware.core.gridmap import GridMap
from gridlink.host import make_shangjie as sj


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shangjie")
    stats = sj.build(tmp / "shangjie.geojson", tmp / "shangjie.glgm")
    layer = json.loads((tmp / "shangjie.geojson").read_text(encoding="utf-8"))
    return layer, (tmp / "shangjie.glgm").read_bytes(), stats


def test_the_committed_map_is_what_the_script_makes(built):
    _, data, _ = built
    assert sj.MAP.read_bytes() == data, \
        "firmware/maps/shangjie.glgm is stale: run python -m gridlink.host.make_shangjie"


def test_the_layer_is_in_gauss_kruger_and_the_map_in_lon_lat(built):
    layer, data, stats = built
    assert layer["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4547"
    x, y = layer["features"][0]["geometry"]["coordinates"][0][0]
    assert 400_000 < x < 500_000 and 3_800_000 < y < 3_900_000  # metres, CM 114E
    w, s, e, n = GridMap(data).bbox
    assert (w, s, e, n) == pytest.approx((sj.WEST, sj.SOUTH, sj.EAST, sj.NORTH), abs=0.001)
    assert stats["cells"] > 4000


def test_codes_are_real_and_every_community_has_cells(built):
    layer, _, _ = built
    with open("firmware/codebooks/divisions.json", encoding="utf-8") as f:
        codes = Codes(divisions=json.load(f))
    seen = set()
    for f in layer["features"]:
        grid = codes.parse_grid_code(f["properties"][sj.CODE_PROPERTY], strict=True)
        assert grid.district == "410106" and not grid.warnings
        seen.add((grid.street, grid.community))
    wanted = {(st, cm) for st, cms in sj.COMMUNITIES.items() for cm in cms}
    assert seen == wanted and len(wanted) == 59


def test_grids_are_numbered_west_to_east_north_to_south_within_a_community(built):
    layer, _, _ = built
    top = max(f["geometry"]["coordinates"][0][0][1] for f in layer["features"]
              if f["geometry"]["type"] == "Polygon")
    left = min(f["geometry"]["coordinates"][0][0][0] for f in layer["features"]
               if f["geometry"]["type"] == "Polygon")
    by_community = {}
    for f in layer["features"]:
        g = f["geometry"]
        corner = (g["coordinates"][0] if g["type"] == "Polygon" else g["coordinates"][0][0])[0]
        row = round((top - corner[1]) / sj.STEP)
        col = round((corner[0] - left) / sj.STEP)
        code = f["properties"][sj.CODE_PROPERTY]
        by_community.setdefault(code[:12], []).append((code[12:], (row, col)))
    for community, cells in by_community.items():
        cells.sort()
        assert [seq for seq, _ in cells] == [f"{k:03d}" for k in range(1, len(cells) + 1)]
        places = [place for _, place in cells]
        assert places == sorted(places), community


def test_cells_are_about_ten_thousand_square_metres(built):
    layer, _, _ = built
    areas = shapely.area(shapely.from_geojson(
        [json.dumps(f["geometry"]) for f in layer["features"]]))
    assert 9_500 < areas.mean() < 10_500
    assert areas.min() > 5_000 and areas.max() < 16_000  # lattice jitter of up to 15 m


def test_the_enclave_island_belongs_to_the_neighbouring_community(built):
    layer, data, _ = built
    holed = [f for f in layer["features"] if f["geometry"]["type"] == "Polygon"
             and len(f["geometry"]["coordinates"]) == 2]
    multi = [f for f in layer["features"] if f["geometry"]["type"] == "MultiPolygon"]
    assert len(holed) == 1 and len(multi) == 1
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs("EPSG:4547", "EPSG:4490", always_xy=True)
    hole = holed[0]["geometry"]["coordinates"][1]
    cx = sum(p[0] for p in hole[:-1]) / 4
    cy = sum(p[1] for p in hole[:-1]) / 4
    m = GridMap(data)
    island = m.locate(*to_lonlat.transform(cx, cy))
    host = m.locate(*to_lonlat.transform(cx + 30, cy))
    assert island == multi[0]["properties"][sj.CODE_PROPERTY]
    assert host == holed[0]["properties"][sj.CODE_PROPERTY]
    assert island[:12] != host[:12]


def test_the_district_seat_is_in_zhongxinlu_street():
    m = GridMap(sj.MAP.read_bytes())
    assert m.locate(*sj.SEAT).startswith("410106002")  # 中心路街道
    assert m.locate(113.20, 34.80) is None
