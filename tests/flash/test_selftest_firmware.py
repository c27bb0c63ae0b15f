"""Issue 19: ``flash selftest`` passed a board that was never flashed, or that lacked a
firmware file.  It now compares the board's files with the manifest of the image flashed
onto it and prints the firmware version."""

import pytest
from gridlink.cli import main
from gridlink.flash import pki
from gridlink.flash.build import build
from gridlink.flash.flashing import flash_image
from gridlink.flash.provision import Spec, provision
from gridlink.flash.selftest import selftest


@pytest.fixture
def board(tmp_path):
    """A directory mirroring a sensor node's flash, provisioned but not flashed."""
    key, crt = pki.make_ca("district 410106 CA")
    (tmp_path / "ca.key").write_bytes(key)
    (tmp_path / "ca.pem").write_bytes(crt)
    flash = tmp_path / "flash"
    provision(Spec("sn-0001", "410106", "sensor-node", str(flash), "mqtt://127.0.0.1:1883",
                   ca_cert=str(tmp_path / "ca.pem"), ca_key=str(tmp_path / "ca.key"),
                   object_id="41010601002000001"))
    return flash


def checks_of(target):
    return {c.name: c for c in selftest(target, broker=False)}


def test_a_board_never_flashed_fails(board, capsys):
    firmware = checks_of(board)["firmware"]
    assert not firmware.ok and firmware.detail.startswith("never flashed")
    assert main(["flash", "selftest", str(board), "--offline"]) == 1
    assert "FAIL firmware  never flashed" in capsys.readouterr().out


def test_a_flashed_board_passes_with_its_version_and_a_missing_file_fails(board, tmp_path,
                                                                          capsys):
    image = tmp_path / "image"
    m = build(image, compile=False)
    flash_image(image, board)
    checks = checks_of(board)
    assert [n for n, c in checks.items() if not c.ok] == []
    assert checks["firmware"].detail == (f"firmware {m['firmware']}, {len(m['files'])} files "
                                         "match the image (any board)")
    assert main(["flash", "selftest", str(board), "--offline"]) == 0
    assert f"ok   firmware  firmware {m['firmware']}" in capsys.readouterr().out
    (board / "lib" / "gridcore" / "report.py").unlink()
    (board / "main.py").write_text("print('not ours')\n")
    firmware = checks_of(board)["firmware"]
    assert not firmware.ok
    assert firmware.detail == (f"firmware {m['firmware']}: lib/gridcore/report.py missing; "
                               "main.py changed")
