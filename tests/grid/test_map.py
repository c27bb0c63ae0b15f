"""The grid map reader: the boundary rule on hand-made cells, holes, MultiPolygons, wide
cells, file vs buffer reading, and clear errors for damaged files."""

import io
import struct

import pytest
from gridlink.firmware.core import gridmap as fmt
from gridlink.firmware.core.gridmap import GridMap, GridMapError, quantise
from gridlink.firmware.maps.synthetic import SyntheticLayer, collection, feature
from gridlink.host.gridcompile import compile_layer
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.shapely_grid import shapely_reference

X, Y = 1132600000, 347800000  # 113.26 E, 34.78 N in 1e-7 degree
D = "410106001001"            # a real community prefix


def sq(x0, y0, x1, y1):
    return [(X + x0, Y + y0), (X + x1, Y + y0), (X + x1, Y + y1), (X + x0, Y + y1)]


def tri(*pts):
    return [(X + x, Y + y) for x, y in pts]


def build(*features):
    data, _ = compile_layer(collection(*features))
    return GridMap(data)


def at(m, x, y):
    return m.locate_e7(X + x, Y + y)


def test_a_point_on_a_shared_edge_or_vertex_belongs_to_the_smallest_code():
    m = build(feature(D + "002", [sq(0, 0, 1000, 1000)]),
              feature(D + "001", [sq(1000, 0, 2000, 1000)]),
              feature(D + "003", [sq(0, 1000, 2000, 2000)]))
    assert at(m, 500, 500) == D + "002"
    assert at(m, 1000, 500) == D + "001"      # edge shared by 001 and 002
    assert at(m, 1000, 1000) == D + "001"     # vertex of all three
    assert at(m, 500, 1000) == D + "002"      # edge 002 | 003
    assert at(m, 1500, 1000) == D + "001"     # edge 001 | 003
    assert at(m, 1500, 1500) == D + "003"
    assert at(m, 2000, 2000) == D + "003"     # outer corner: covered
    assert at(m, 2001, 500) is None
    assert at(m, 0, -1) is None


def test_sloped_edges_are_exact():
    m = build(feature(D + "005", [tri((0, 0), (3000, 0), (0, 3000))]),
              feature(D + "004", [tri((3000, 0), (3000, 3000), (0, 3000))]))
    assert at(m, 1500, 1500) == D + "004"     # on the diagonal: both cover, 004 < 005
    assert at(m, 1500, 1499) == D + "005"
    assert at(m, 1500, 1501) == D + "004"
    assert at(m, 1, 2998) == D + "005"        # one unit below the diagonal, near its end
    assert at(m, 1, 2999) == D + "004"        # on it
    assert at(m, 1, 3000) == D + "004"


def test_holes_islands_and_their_edges():
    m = build(feature(D + "002", [sq(0, 0, 3000, 3000), sq(1000, 1000, 2000, 2000)]),
              feature(D + "003", [sq(1200, 1200, 1800, 1800)]))
    assert at(m, 500, 500) == D + "002"
    assert at(m, 1100, 1100) is None          # in the hole, not on the island
    assert at(m, 1000, 1500) == D + "002"     # on the hole's edge: the cell covers it
    assert at(m, 2000, 2000) == D + "002"     # a hole vertex
    assert at(m, 1500, 1500) == D + "003"
    assert at(m, 1200, 1500) == D + "003"     # island edge, inside the hole: island only


def test_a_multipolygon_cell_touching_itself_at_a_vertex():
    m = build(feature(D + "007", [sq(0, 0, 1000, 1000)], [sq(1000, 1000, 2000, 2000)]),
              feature(D + "008", [sq(1000, 0, 2000, 1000)]))
    assert at(m, 500, 500) == D + "007"
    assert at(m, 1500, 1500) == D + "007"
    assert at(m, 1000, 1000) == D + "007"
    assert at(m, 1500, 500) == D + "008"
    assert at(m, 500, 1500) is None


def test_cells_wider_than_16_bit_offsets_use_32_bit_coordinates():
    big = 200_000  # 0.02 degree: past the 16-bit cell-relative range
    m = build(feature(D + "001", [sq(0, 0, big, 1000)]),
              feature(D + "002", [sq(0, 1000, 1000, 2000)]))
    assert at(m, big - 1, 500) == D + "001"
    assert at(m, big, 1000) == D + "001"
    assert at(m, big + 1, 500) is None
    assert m.rings(0) == [sq(0, 0, big, 1000)]


def test_rings_read_back_are_the_rounded_input_without_repeats():
    ring = sq(0, 0, 1000, 1000)
    ring.insert(2, ring[1])  # a repeated point is dropped
    m = build(feature(D + "001", [ring, sq(100, 100, 200, 200)]))
    assert m.rings(0) == [sq(0, 0, 1000, 1000), sq(100, 100, 200, 200)]
    assert m.code(0) == D + "001"
    with pytest.raises(GridMapError, match="cell 1 is not in this map"):
        m.code(1)


def test_14_digit_codes():
    m = build(feature("41010600100101", [sq(0, 0, 1000, 1000)]),
              feature("41010600100102", [sq(1000, 0, 2000, 1000)]))
    assert m.code_width == 14
    assert at(m, 1000, 0) == "41010600100101"


def test_locate_rounds_degrees_half_up_to_1e_7():
    m = build(feature(D + "001", [sq(0, 0, 1000, 1000)]))
    assert quantise(113.26000005) == X + 1 and quantise(113.26000004) == X
    assert m.locate(113.26, 34.78) == D + "001"          # the corner
    assert m.locate(113.2599999, 34.78) is None
    assert m.locate(113.25999995, 34.78) == D + "001"    # rounds onto the corner


@pytest.mark.parametrize("lon, lat", [(float("nan"), 34.8), (113.3, float("inf")),
                                      (181.0, 34.8), (113.3, -90.5)])
def test_locate_rejects_non_coordinates(lon, lat):
    m = build(feature(D + "001", [sq(0, 0, 1000, 1000)]))
    with pytest.raises(GridMapError, match="not a valid lon/lat"):
        m.locate(lon, lat)


def test_file_object_and_buffer_give_the_same_answers(tmp_path):
    s = SyntheticLayer(20, 20, seed=5, triangles=0.2, holes=0.1, multis=0.1, gaps=0.05)
    data, _ = compile_layer(s.layer)
    path = tmp_path / "m.glgm"
    path.write_bytes(data)
    pts = s.points_e7(3000, seed=6).tolist()
    from_buffer = GridMap(memoryview(data))
    with open(path, "rb") as f:
        from_file = GridMap(f)
        assert [from_file.locate_e7(x, y) for x, y in pts] == \
            [from_buffer.locate_e7(x, y) for x, y in pts]
    assert from_buffer.bbox[0] == pytest.approx(s.bounds[0] / 1e7)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cols=st.integers(1, 7), rows=st.integers(1, 7),
       scale=st.sampled_from([0.3, 1.0, 3.0]))
def test_random_small_layers_agree_with_shapely(seed, cols, rows, scale):
    s = SyntheticLayer(cols, rows, seed=seed, triangles=0.25, holes=0.2, multis=0.2,
                       gaps=0.1)
    if not s.layer["features"]:
        return
    data, _ = compile_layer(s.layer, bucket_scale=scale)
    m = GridMap(data)
    pts = s.points_e7(300, seed=seed)
    lon, lat = (pts[:, 0] / 1e7).tolist(), (pts[:, 1] / 1e7).tolist()
    expected, _ = shapely_reference(s.layer, lon, lat)
    assert [m.locate(x, y) for x, y in zip(lon, lat, strict=True)] == expected


# -- damaged files ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def good():
    data, _ = compile_layer(collection(feature(D + "001", [sq(0, 0, 1000, 1000)]),
                                       feature(D + "002", [sq(1000, 0, 2000, 1000)])))
    return data


def test_a_good_map_opens_from_bytes_and_from_a_stream(good):
    assert GridMap(good).n_cells == 2
    assert GridMap(io.BytesIO(good)).locate_e7(X + 10, Y + 10) == D + "001"


@pytest.mark.parametrize("damage, message", [
    (lambda d: b"", "shorter than the header"),
    (lambda d: b"PK\x03\x04" + d[4:], "not a grid map: magic"),
    (lambda d: d[:4] + struct.pack("<H", 2) + d[6:], "version 2 is not supported"),
    (lambda d: d[:-1], "truncated or padded"),
    (lambda d: d + b"\0", "truncated or padded"),
    (lambda d: d[:-3] + bytes([d[-3] ^ 0x10]) + d[-2:], "checksum mismatch"),
    (lambda d: d[:fmt.HEADER_SIZE + 3] + b"X" + d[fmt.HEADER_SIZE + 4:], "checksum mismatch"),
])
def test_damaged_maps_are_refused_clearly(good, damage, message):
    for source in (damage(good), io.BytesIO(damage(good))):
        with pytest.raises(GridMapError, match=message):
            GridMap(source)


def test_inconsistent_layout_is_refused_even_without_the_checksum(good):
    header = list(struct.unpack_from(fmt.HEADER_FORMAT, good))
    header[19] += 8  # the directory offset
    bad = struct.pack(fmt.HEADER_FORMAT, *header) + good[fmt.HEADER_SIZE:]
    with pytest.raises(GridMapError, match="layout is inconsistent"):
        GridMap(bad, verify=False)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_with_a_grid_map_error(data):
    with pytest.raises(GridMapError):
        GridMap(data)


@given(st.data())
def test_any_single_byte_change_is_caught(good, data):
    at = data.draw(st.integers(0, len(good) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = bytearray(good)
    damaged[at] ^= flip
    for source in (bytes(damaged), io.BytesIO(bytes(damaged))):
        with pytest.raises(GridMapError):
            GridMap(source)


# -- the one loader of map files (firmware/maps) ---------------------------------------

def test_the_loader_opens_a_path_its_memory_map_or_bytes_alike(good, tmp_path):
    from gridlink.firmware.maps import open_map

    path = tmp_path / "two.glgm"
    path.write_bytes(good)
    for m in (open_map(path), open_map(str(path), mapped=True), open_map(good)):
        assert m.n_cells == 2 and m.locate_e7(X + 1010, Y + 10) == D + "002"


def test_the_loader_names_the_file_it_cannot_use(good, tmp_path):
    from gridlink.firmware.maps import open_map

    damaged, empty = tmp_path / "damaged.glgm", tmp_path / "empty.glgm"
    damaged.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    empty.write_bytes(b"")
    for mapped in (False, True):
        with pytest.raises(GridMapError, match=r"damaged\.glgm: grid map checksum mismatch"):
            open_map(damaged, mapped=mapped)
        with pytest.raises(GridMapError, match=r"empty\.glgm: .*not a grid map"):
            open_map(empty, mapped=mapped)
        with pytest.raises(GridMapError, match=r"grid map .*none\.glgm: No such file"):
            open_map(tmp_path / "none.glgm", mapped=mapped)
    assert open_map(damaged, verify=False).n_cells == 2


def test_the_shipped_map_is_found_by_its_district():
    from gridlink.firmware.maps import default_map, open_map

    path = default_map("410106")
    assert path is not None and path.name == "shangjie.glgm"
    assert open_map(path).code(0).startswith("410106")
    assert default_map("110101") is None
