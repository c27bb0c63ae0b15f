"""Compiling GIS layers: reprojection, and a clear error naming the feature for bad input."""

import json

import pytest
from gridlink.firmware.core.codes import Codes
from gridlink.firmware.core.gridmap import GridMap
from gridlink.firmware.maps.synthetic import SyntheticLayer, collection, feature
from gridlink.host.errors import HostError
from gridlink.host.gridcompile import GridCompileError, compile_file, compile_layer
from pyproj import Transformer

X, Y = 1132600000, 347800000
D = "410106001001"


def sq(x0, y0, x1, y1):
    return [(X + x0, Y + y0), (X + x1, Y + y0), (X + x1, Y + y1), (X + x0, Y + y1)]


def ok(code, x=0):
    return feature(code, [sq(x, 0, x + 1000, 1000)])


def geo(kind, coordinates):
    return {"type": "Feature", "properties": {"code": D + "009"},
            "geometry": {"type": kind, "coordinates": coordinates}}


def rejected(layer, **kw):
    with pytest.raises(GridCompileError) as err:
        compile_layer(layer, **kw)
    assert isinstance(err.value, HostError)  # the CLI prints it as one clear line, exit 2
    return str(err.value)


def degrees(ring):
    return [[x / 1e7, y / 1e7] for x, y in ring]


@pytest.mark.parametrize("bad, message", [
    ({"type": "Feature", "properties": {"name": "x"}, "geometry": None},
     "feature 1: no 'code' property (it has: name); name the code field with --code-property"),
    ({"type": "Feature", "properties": None, "geometry": None},
     "feature 1: has no properties (needs 'code')"),
    ({"type": "Feature", "properties": {"code": 410106001001000.0}, "geometry": None},
     "feature 1: code 410106001001000.0 is a float, not a string of 14 or 15 digits"),
    ({"type": "Feature", "properties": {"code": "4101060010010"}, "geometry": None},
     "feature 1: grid code 4101060010010 has 13 digits"),
    ({"type": "Feature", "properties": {"code": "41010600100100X"}, "geometry": None},
     "feature 1: grid code '41010600100100X': character 15 'X' is not a digit"),
    ({"type": "Feature", "properties": {"code": "410106000001001"}, "geometry": None},
     "feature 1: grid code 410106000001001: street 000"),
    ({"type": "Feature", "properties": {"code": "990106001001001"}, "geometry": None},
     "feature 1: grid code 990106001001001: district 990106 has province 99"),
    ({"type": "Feature", "properties": {"code": D + "000"}, "geometry": None},
     "feature 1: grid code 410106001001000: grid sequence 000"),
    ({"type": "Feature", "properties": {"code": D + "009"}, "geometry": None},
     "feature 1 (410106001001009): has no geometry"),
    (geo("Point", [113.3, 34.8]),
     "feature 1 (410106001001009): geometry type 'Point' is not supported (only Polygon "
     "and MultiPolygon grid cells)"),
    (geo("LineString", [[113.3, 34.8], [113.4, 34.8]]), "geometry type 'LineString'"),
    (geo("Polygon", []), "feature 1 (410106001001009): polygon 0 has no rings"),
    (geo("MultiPolygon", []), "feature 1 (410106001001009): MultiPolygon has no coordinates"),
    (geo("Polygon", [degrees(sq(0, 0, 10, 10))]),
     "feature 1 (410106001001009): polygon 0 outer ring is not closed: first position "
     "[113.26, 34.78] is not the last [113.26, 34.780001]"),
    (geo("Polygon", [[[113.26, 34.78], [113.27, 34.78], [113.26, 34.78]]]),
     "polygon 0 outer ring has 3 positions; a closed ring needs at least 4"),
    (geo("Polygon", [[[113.26, 34.78], ["113.27", 34.78], [113.27, 34.79], [113.26, 34.78]]]),
     "polygon 0 outer ring position 1 is ['113.27', 34.78], not [x, y]"),
    (geo("MultiPolygon", [[degrees([*sq(5000, 0, 6000, 1000), (X + 5000, Y)])],
                          [degrees([(X + 7000, Y), (X + 8000, Y), (X + 9000, Y),
                                    (X + 7000, Y)])]]),
     "feature 1 (410106001001009): polygon 1 outer ring is degenerate: it encloses no "
     "area (all its points lie on one line)"),
    (geo("Polygon", [[[113.26, 34.78], [113.26000001, 34.78], [113.26000001, 34.78000001],
                      [113.26, 34.78]]]),
     "polygon 0 outer ring is degenerate: 1 distinct points after rounding to 1e-7 degree"),
    (geo("Polygon", [degrees([*sq(5000, 0, 6000, 1000), (X + 5000, Y)]),
                     degrees([(X + 5100, Y + 100), (X + 5200, Y + 100), (X + 5100, Y + 100),
                              (X + 5100, Y + 100)])]),
     "polygon 0 hole 1 is degenerate: 2 distinct points"),
    (geo("Polygon", [degrees([(X + 5000, Y), (X + 6000, Y + 1000), (X + 6000, Y),
                              (X + 5000, Y + 2000), (X + 5000, Y)])]),
     "feature 1 (410106001001009): invalid polygon after rounding to 1e-7 degree: "
     "Self-intersection at lon 113.2605667, lat 34.7800667"),
    (geo("MultiPolygon", [[degrees([*sq(5000, 0, 6000, 1000), (X + 5000, Y)])],
                          [degrees([*sq(5500, 500, 6500, 1500), (X + 5500, Y + 500)])]]),
     "feature 1 (410106001001009): invalid polygon after rounding to 1e-7 degree: "
     "Self-intersection"),
    (geo("Polygon", [degrees([*sq(5000, 0, 6000, 1000), (X + 5000, Y)]),
                     degrees([*sq(7000, 0, 7100, 100), (X + 7000, Y)])]),
     "feature 1 (410106001001009): invalid polygon after rounding to 1e-7 degree: "
     "Hole lies outside shell"),
])
def test_bad_features_are_named_with_their_problem(bad, message):
    text = rejected(collection(ok(D + "001"), bad))
    assert message in text, text


def test_absurd_numbers_are_errors_not_crashes():
    layer = collection(ok(D + "001"), geo("Polygon", [[[113.26, 34.78], [10**400, 34.78],
                                                       [113.27, 34.79], [113.26, 34.78]]]))
    assert "feature 1 (410106001001009): polygon 0 outer ring position 1 has a coordinate " \
        "too large to be one" in rejected(layer)
    layer = collection(ok(D + "001"), geo("Polygon", [[[113.26, 34.78], [float("nan"), 34.78],
                                                       [113.27, 34.79], [113.26, 34.78]]]))
    assert "position 1 [nan, 34.78] is not a place on Earth" in rejected(layer)
    assert "bucket scale must be a positive number, not 0" in \
        rejected(collection(ok(D + "001")), bucket_scale=0)


def test_overlapping_cells_are_rejected_naming_both():
    text = rejected(collection(ok(D + "001"), feature(D + "002", [sq(500, 500, 1500, 1500)]),
                               ok(D + "003", x=5000),
                               feature(D + "004", [sq(5200, 200, 5800, 800)])))
    assert "feature 1 (410106001001002) overlaps feature 0 (410106001001001)" in text
    assert "feature 3 (410106001001004) overlaps feature 2 (410106001001003)" in text


def test_touching_and_t_junction_cells_are_not_overlaps():
    # 002 and 003 meet 001's top edge at a point that is not one of 001's vertices.
    data, stats = compile_layer(collection(
        ok(D + "001"), feature(D + "002", [sq(0, 1000, 400, 2000)]),
        feature(D + "003", [sq(400, 1000, 1000, 2000)])))
    assert stats["cells"] == 3
    assert GridMap(data).locate_e7(X + 400, Y + 1000) == D + "001"


def test_duplicate_codes_and_mixed_widths():
    assert "feature 1: grid code 410106001001001 is already used by feature 0; codes must " \
        "be unique" in rejected(collection(ok(D + "001"), ok(D + "001", x=2000)))
    assert "grid codes mix [14, 15] digits" in rejected(
        collection(ok(D + "001"), ok("41010600100102", x=2000)))


def test_every_problem_is_listed_not_just_the_first():
    text = rejected(collection(ok(D + "001"), ok("bad"), ok(D + "003", x=2000), ok("41")))
    assert text.startswith("grid layer rejected (2 problems):")
    assert "feature 1: grid code 'bad'" in text and "feature 3: grid code 41 " in text


@pytest.mark.parametrize("layer, message", [
    ([], "must be a GeoJSON FeatureCollection, not list"),
    ({"type": "Feature"}, "must be a GeoJSON FeatureCollection, not Feature"),
    ({"type": "FeatureCollection", "features": []}, "the FeatureCollection has no features"),
    ({"type": "FeatureCollection", "features": [ok(D + "001")],
      "crs": {"type": "link", "properties": {"href": "x"}}}, "linked CRSs are not supported"),
    (collection(ok(D + "001"), crs="EPSG:999999"),
     "'EPSG:999999' is not a coordinate reference system PROJ knows"),
    (collection(ok(D + "001"), crs="EPSG:4214"),
     "PROJ has no known transformation from the Beijing 1954 datum to CGCS2000"),
])
def test_bad_layers_and_crs(layer, message):
    assert message in rejected(layer)


def test_projected_coordinates_without_their_crs_are_caught():
    layer = collection(geo("Polygon", [[[432300.0, 3850500.0], [432400.0, 3850500.0],
                                        [432400.0, 3850600.0], [432300.0, 3850500.0]]]),
                       crs=None)
    text = rejected(layer)
    assert "feature 0 (410106001001009): polygon 0 outer ring position 0 [432300.0, " \
           "3850500.0] is not a place on Earth in the layer's CRS" in text
    assert compile_layer(layer, crs="EPSG:4547")[1]["cells"] == 1


def test_crs_option_must_not_contradict_the_file():
    layer = collection(ok(D + "001"), crs="urn:ogc:def:crs:EPSG::4490")
    assert "--crs EPSG:4547 contradicts the layer's \"crs\" member" in \
        rejected(layer, crs="EPSG:4547")
    assert compile_layer(layer, crs="EPSG:4490")[1]["cells"] == 1


def test_integer_codes_and_other_code_properties_are_accepted():
    f = ok(D + "001")
    f["properties"] = {"DYWGBSM": int(D + "001")}
    data, _ = compile_layer(collection(f), code_property="DYWGBSM")
    assert GridMap(data).code(0) == D + "001"


def test_the_division_table_catches_unknown_streets():
    with open("firmware/codebooks/divisions.json", encoding="utf-8") as f:
        table = json.load(f)
    layer = collection(ok(D + "001"), ok("410106009001001", x=2000))
    assert "feature 1: grid code 410106009001001: street 009 is not in the table" in \
        rejected(layer, codes=Codes(divisions=table))
    assert compile_layer(layer)[1]["cells"] == 2  # shape-only checks without the table


def test_a_layer_in_gauss_kruger_compiles_to_the_same_map_as_in_lon_lat():
    s = SyntheticLayer(12, 12, seed=7)
    to_gk = Transformer.from_crs("EPSG:4490", "EPSG:4547", always_xy=True)
    gk = json.loads(json.dumps(s.layer))
    gk["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4547"}}
    for f in gk["features"]:
        g = f["geometry"]
        polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
        for poly in polys:
            for ring in poly:
                for pos in ring:
                    pos[0], pos[1] = to_gk.transform(pos[0], pos[1])
    a, _ = compile_layer(s.layer)
    b, _ = compile_layer(gk)
    ma, mb = GridMap(a), GridMap(b)
    assert ma.n_cells == mb.n_cells
    for cell in range(ma.n_cells):
        for ra, rb in zip(ma.rings(cell), mb.rings(cell), strict=True):
            assert len(ra) == len(rb)
            assert all(abs(p[0] - q[0]) <= 1 and abs(p[1] - q[1]) <= 1
                       for p, q in zip(ra, rb, strict=True))
    pts = s.points_e7(500, seed=8)
    pts = pts[(pts[:, 0] - s.bounds[0]) % 10000 > 2500]  # away from lattice lines
    assert [ma.locate_e7(x, y) for x, y in pts.tolist()] == \
        [mb.locate_e7(x, y) for x, y in pts.tolist()]


def test_a_failed_compile_leaves_the_previous_map_intact(tmp_path):
    good, bad, out = tmp_path / "good.geojson", tmp_path / "bad.geojson", tmp_path / "m.glgm"
    good.write_text(json.dumps(collection(ok(D + "001"))))
    bad.write_text(json.dumps(collection(ok(D + "001"), ok(D + "001", x=2000))))
    stats = compile_file(good, out)
    before = out.read_bytes()
    assert stats["bytes"] == len(before)
    with pytest.raises(GridCompileError, match="already used"):
        compile_file(bad, out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.geojson", "good.geojson",
                                                          "m.glgm"]


def test_unreadable_sources_are_clear(tmp_path):
    src = tmp_path / "x.geojson"
    src.write_text('{"type": "FeatureCollection", ')
    with pytest.raises(GridCompileError, match=r"x.geojson is not valid GeoJSON text"):
        compile_file(src, tmp_path / "m.glgm")
    with pytest.raises(GridCompileError, match=r"cannot read .*missing\.geojson"):
        compile_file(tmp_path / "missing.geojson", tmp_path / "m.glgm")
    src.write_text(json.dumps(collection(ok(D + "001"))))
    with pytest.raises(GridCompileError, match=r"cannot write .*nodir/m\.glgm: No such file"):
        compile_file(src, tmp_path / "nodir" / "m.glgm")
