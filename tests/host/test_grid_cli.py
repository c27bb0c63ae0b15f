"""``gridlink grid compile / locate / info``: exit statuses, outputs and clear errors."""

import json
import subprocess
import sys

import pytest
from gridlink.cli import main
from gridlink.firmware.maps.synthetic import collection, feature
from gridlink.host.grid_cli import _point_of
from gridlink.host.make_shangjie import MAP as SAMPLE
from hypothesis import given
from hypothesis import strategies as st

X, Y = 1132600000, 347800000
D = "410106001001"


def sq(x0, y0, x1, y1):
    return [(X + x0, Y + y0), (X + x1, Y + y0), (X + x1, Y + y1), (X + x0, Y + y1)]


@pytest.fixture
def layer(tmp_path):
    path = tmp_path / "grid.geojson"
    path.write_text(json.dumps(collection(
        feature(D + "002", [sq(0, 0, 1000, 1000)], prop="DYWGBSM"),
        feature(D + "001", [sq(1000, 0, 2000, 1000)], prop="DYWGBSM"))))
    return path


@pytest.fixture
def grid_map(tmp_path, layer):
    out = tmp_path / "grid.glgm"
    assert main(["grid", "compile", str(layer), "-o", str(out),
                 "--code-property", "DYWGBSM"]) == 0
    return out


def test_compile_prints_a_summary(tmp_path, layer, capsys):
    out = tmp_path / "m.glgm"
    assert main(["grid", "compile", str(layer), "-o", str(out), "--code-property",
                 "DYWGBSM", "--divisions"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{out}: 2 cells, 2 rings, 8 vertices, 15-digit codes, ")
    assert "lon 113.2600000–113.2602000, lat 34.7800000–34.7801000" in text


def test_compile_errors_are_one_clear_message_and_exit_2(tmp_path, layer, capsys):
    out = tmp_path / "m.glgm"
    assert main(["grid", "compile", str(layer), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gridlink grid: error: grid layer rejected (2 problems):\n"
                          "  feature 0: no 'code' property (it has: DYWGBSM)")
    assert not out.exists()


def test_locate_prints_the_code_and_exits_3_outside(grid_map, capsys):
    assert main(["grid", "locate", str(grid_map), "113.2601", "34.78005"]) == 0
    assert capsys.readouterr().out == D + "001\n"  # on the shared edge: the smaller code
    assert main(["grid", "locate", str(grid_map), "113.27", "34.78"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "lon 113.27, lat 34.78 is outside the map" in captured.err


def test_locate_points_keeps_good_lines_and_names_bad_ones(grid_map, tmp_path, capsys):
    src = tmp_path / "fixes.jsonl"
    src.write_bytes(b'{"lon": 113.26005, "lat": 34.78005, "id": "a"}\n'
                    b'\n'
                    b'{"lon": 113.26015, "lat": 34.78005}\n'
                    b'{"lon": 113.3, "lat": 34.9}\n'
                    b'{"lat": 34.78}\n'
                    b'{"lon": "113.26", "lat": 34.78}\n'
                    b'[113.26, 34.78]\n'
                    b'{"lon": 113.26, "lat": 95}\n'
                    b'{"lon": 113.26\n'
                    b'\xff\xfe\n'
                    b'{"lon": 113.2601, "lat": 34.7801, "id": "last"}\n')
    assert main(["grid", "locate", str(grid_map), "--points", str(src)]) == 2
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert lines == [
        {"lon": 113.26005, "lat": 34.78005, "id": "a", "grid": D + "002"},
        {"lon": 113.26015, "lat": 34.78005, "grid": D + "001"},
        {"lon": 113.3, "lat": 34.9, "grid": None},
        {"lon": 113.2601, "lat": 34.7801, "id": "last", "grid": D + "001"}]
    assert captured.err.splitlines() == [
        f'{src} line 5: no "lon"; skipped',
        f'{src} line 6: "lon" "113.26" is not a number; skipped',
        f'{src} line 7: expected an object with "lon" and "lat", got list; skipped',
        f'{src} line 8: "lat" 95 is outside ±90 degrees; skipped',
        f"{src} line 9: not JSON (Expecting ',' delimiter at column 15); skipped",
        f"{src} line 10: not UTF-8 (byte 1); skipped",
        f"{src}: 4 points located, 6 bad lines skipped"]


def test_locate_points_to_a_file_with_a_clean_input_exits_0(grid_map, tmp_path):
    src, dest = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"lon": 113.26, "lat": 34.78}\n')
    assert main(["grid", "locate", str(grid_map), "--points", str(src), "-o", str(dest)]) == 0
    assert json.loads(dest.read_text()) == {"lon": 113.26, "lat": 34.78, "grid": D + "002"}


@pytest.mark.parametrize("argv, message", [
    (["113.26"], "give either LON LAT or --points FILE"),
    ([], "give either LON LAT or --points FILE"),
    (["113.26", "34.78", "--points", "x"], "give either LON LAT or --points FILE"),
    (["nan", "34.78"], "not a valid lon/lat"),
    (["--points", "/nonexistent/p.jsonl"], "cannot read or write points: /nonexistent/p.jsonl"),
])
def test_locate_usage_errors(grid_map, capsys, argv, message):
    assert main(["grid", "locate", str(grid_map), *argv]) == 2
    assert message in capsys.readouterr().err


def test_bad_map_files_are_clear(tmp_path, grid_map, capsys):
    damaged = tmp_path / "damaged.glgm"
    data = bytearray(grid_map.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    empty = tmp_path / "empty.glgm"
    empty.write_bytes(b"")
    for path, message in ((damaged, "damaged.glgm: grid map checksum mismatch"),
                          (empty, "empty file, not a grid map"),
                          (tmp_path / "none.glgm", "none.glgm: No such file or directory")):
        assert main(["grid", "locate", str(path), "113.26", "34.78"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gridlink grid: error: ") and message in err


def test_info_shows_the_header(grid_map, capsys):
    assert main(["grid", "info", str(grid_map)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cells"] == 2 and info["checksum"] == "ok" and info["crs"] == "EPSG:4490"
    assert (info["first_code"], info["last_code"]) == (D + "001", D + "002")
    assert info["bytes"] == grid_map.stat().st_size


def test_the_installed_command_locates_on_the_sample_map():
    cmd = [sys.executable, "-m", "gridlink.cli", "grid", "locate", str(SAMPLE)]
    inside = subprocess.run([*cmd, "113.29141", "34.80631"], capture_output=True, text=True)
    assert inside.returncode == 0 and inside.stdout.startswith("410106")
    outside = subprocess.run([*cmd, "--", "-113.29", "34.8"], capture_output=True, text=True)
    assert outside.returncode == 3 and "outside the map" in outside.stderr


@given(st.binary(max_size=80) | st.text(max_size=60).map(str.encode))
def test_any_line_is_a_point_or_a_value_error(raw):
    try:
        obj, lon, lat = _point_of(raw)
    except ValueError as exc:
        assert str(exc)
    else:
        assert isinstance(obj, dict) and -180 <= lon <= 180 and -90 <= lat <= 90
