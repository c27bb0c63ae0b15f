"""A Pi device with the district's local code book (``--codebook-overlay``): a profile may
map an input to a local class, a retired class is refused on the device, the status names
the book with the local one applied, and a changed local book stops the start clearly."""

import json

import pytest
from gridlink.cli import main
from gridlink.firmware.core.codebook import CodeError
from gridlink.firmware.device import codebook
from gridlink.firmware.device.profile import load_profile, resolve
from gridlink.firmware.errors import ProfileError

from tests.codes.test_overlay import overlay


@pytest.fixture
def local_file(tmp_path):
    path = tmp_path / "local-410106.json"
    path.write_text(json.dumps(overlay(), ensure_ascii=False), encoding="utf-8")
    yield path
    codebook.use_overlays([])


@pytest.fixture
def local_profile(tmp_path):
    prof = json.loads(resolve("fixed-terminal").read_text(encoding="utf-8"))
    prof["call_button"]["code"] = "21001"
    path = tmp_path / "kiosk-local.json"
    path.write_text(json.dumps(prof, ensure_ascii=False), encoding="utf-8")
    return path


def test_a_profile_may_map_an_input_to_a_local_class_only_with_the_local_book(
        local_file, local_profile):
    with pytest.raises(ProfileError, match="21001"):
        load_profile(local_profile)
    codebook.use_overlays([local_file])
    assert load_profile(local_profile)["call_button"]["code"] == "21001"
    assert codebook.check_code("GB/T 47678.5-2026", "event", "21001")
    with pytest.raises(CodeError, match="retired by the local book zz-410106"):
        codebook.check_code("GB/T 47678.5-2026", "event", "06052")
    assert codebook.version("GB/T 47678.5-2026").endswith(
        f"+zz-410106.{overlay()['version']}")
    codebook.use_overlays([])
    assert codebook.check_code("GB/T 47678.5-2026", "event", "06052")


def test_a_changed_local_book_stops_the_device_before_it_starts(local_file, tmp_path,
                                                                capsys):
    doc = json.loads(local_file.read_text(encoding="utf-8"))
    doc["add"]["event"]["21001"] = "改过的名称"
    local_file.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    assert main(["device", "run", "--profile", "fixed-terminal", "--data-dir",
                 str(tmp_path / "data"), "--broker", "mqtt://127.0.0.1:9", "--sim",
                 "--codebook-overlay", str(local_file)]) == 2
    assert "does not match its content" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
    assert codebook.check_code("GB/T 47678.5-2026", "event", "06052")   # nothing changed
