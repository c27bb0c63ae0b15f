"""Issue 19: ``flash build DIR`` replaces DIR whole, so it must never delete a folder
that is not a previous image (it used to delete whatever folder it was given)."""

import json

import pytest
from gridlink.cli import main
from gridlink.flash.build import IMAGE_FORMAT, build
from gridlink.flash.errors import FlashError


def tree(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


@pytest.mark.parametrize("content", [
    {"notes.txt": b"field day 3"},                                        # someone's folder
    {"manifest.json": b'{"format": "something-else/1"}', "a.bin": b"x"},   # another manifest
    {"manifest.json": b"not json", "a.bin": b"x"},
])
def test_a_folder_that_is_not_an_image_is_refused_and_kept(tmp_path, capsys, content):
    out = tmp_path / "home"
    out.mkdir()
    for name, data in content.items():
        (out / name).write_bytes(data)
    with pytest.raises(FlashError, match=r"is not a gridlink image .* nothing was deleted"):
        build(out, compile=False)
    assert tree(out) == content
    assert main(["flash", "build", str(out), "--source"]) == 2
    assert "nothing was deleted" in capsys.readouterr().err
    assert tree(out) == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no temp folder left


def test_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("keep")
    with pytest.raises(FlashError, match="exists and is not a folder"):
        build(tmp_path / "f", compile=False)
    assert (tmp_path / "f").read_text() == "keep"


def test_a_previous_image_or_an_empty_folder_is_replaced(tmp_path):
    out = tmp_path / "image"
    out.mkdir()
    build(out, compile=False)
    (out / "lib" / "stale.py").write_text("old")
    m = build(out, compile=False)
    assert json.loads((out / "manifest.json").read_text()) == m
    assert m["format"] == IMAGE_FORMAT and not (out / "lib" / "stale.py").exists()
