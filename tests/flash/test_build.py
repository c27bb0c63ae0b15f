"""``gridlink flash build`` and ``flash``: an image with a manifest of sha256 and sizes,
replaced whole or not at all, checked before it is copied, stale modules removed."""

import json

import pytest
from gridlink.flash import build as fb
from gridlink.flash.errors import FlashError
from gridlink.flash.flashing import flash_image


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "image"
    fb.build(out, board="esp32")
    return out


def test_the_manifest_lists_every_file_with_its_hash_and_size(image):
    m = json.loads((image / "manifest.json").read_text())
    files = sorted(p.relative_to(image).as_posix() for p in image.rglob("*") if p.is_file())
    assert sorted(f["path"] for f in m["files"]) == [f for f in files if f != "manifest.json"]
    for f in m["files"]:
        p = image / f["path"]
        assert (fb.sha256_file(p), p.stat().st_size) == (f["sha256"], f["bytes"])
    sources = {f["source"] for f in m["files"]}
    assert {"firmware/core/report.py", "firmware/mcu/gridnode/mqtt.py"} <= sources
    assert (m["board"], m["compiled"]) == ("esp32", True)
    assert fb.verify(image) == m


def test_a_changed_file_fails_verification_by_name(image, tmp_path):
    import shutil

    copy = tmp_path / "img"
    shutil.copytree(image, copy)
    (copy / "lib" / "gridnode" / "node.mpy").write_bytes(b"M\x06junk")
    with pytest.raises(FlashError, match=r"lib/gridnode/node\.mpy does not match its sha256"):
        fb.verify(copy)
    with pytest.raises(FlashError, match=r"lib/gridnode/node\.mpy does not match"):
        flash_image(copy, tmp_path / "board")
    assert not (tmp_path / "board").exists()


def test_a_failed_build_keeps_the_previous_image(image, tmp_path, monkeypatch):
    out = tmp_path / "img"
    fb.build(out, compile=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = tmp_path / "broken.py"
    bad.write_text("def broken(:\n")
    real = fb.sources
    monkeypatch.setattr(fb, "sources", lambda: [*real(), (bad, "lib/gridnode/broken")])
    with pytest.raises(FlashError, match=r"mpy-cross failed on .*broken\.py"):
        fb.build(out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".img")] == []


def test_flashing_removes_stale_sources_that_would_shadow_the_new_mpy(image, tmp_path):
    board = tmp_path / "flash"
    (board / "lib" / "gridnode").mkdir(parents=True)
    (board / "lib" / "gridnode" / "node.py").write_text("raise ImportError('old')\n")
    (board / "gridlink").mkdir()
    (board / "gridlink" / "config.json").write_text("{}")
    n = flash_image(image, board)
    assert not (board / "lib" / "gridnode" / "node.py").exists()
    assert (board / "lib" / "gridnode" / "node.mpy").exists()
    assert (board / "gridlink" / "config.json").read_text() == "{}"  # provisioning kept
    assert n == len(json.loads((image / "manifest.json").read_text())["files"]) + 1


def test_the_cli_builds_and_prints_sizes(tmp_path, capsys):
    from gridlink.cli import main

    assert main(["flash", "build", str(tmp_path / "img"), "--board", "pico-w"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith(f"bytes → {tmp_path / 'img'}")
    assert any(line.endswith("lib/gridnode/mqtt.mpy") for line in out)


def test_the_cli_flashes_a_verified_image(image, tmp_path, capsys):
    from gridlink.cli import main

    assert main(["flash", "flash", str(image), str(tmp_path / "flash")]) == 0
    assert capsys.readouterr().out.strip().endswith(f"files → {tmp_path / 'flash'}")
    assert fb.sha256_file(tmp_path / "flash" / "main.py") == fb.sha256_file(image / "main.py")
    assert main(["flash", "flash", str(tmp_path / "nothing"), str(tmp_path / "f2")]) == 2
    assert "no readable manifest.json" in capsys.readouterr().err
