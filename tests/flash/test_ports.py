"""Issue 19: port-like names are ports.  ``ttyACM0`` without ``/dev/`` used to become a
new local folder holding a device key, reported "ok"; a missing port was blamed on
"in use".  Now it is the port, and a missing one is named as missing with the ports the
machine has."""

import os

import pytest
from gridlink.cli import main
from gridlink.flash import pki, targets
from gridlink.flash.build import build

MISSING = next(n for n in (f"ttyACM{i}" for i in range(40, 99))
               if not os.path.exists(f"/dev/{n}"))


@pytest.mark.parametrize("name", ["ttyACM0", "ttyUSB12", "ttyS3", "ttyAMA0", "COM3", "com7",
                                  "cu.usbmodem1101", "/dev/ttyACM0", "socket://h:1"])
def test_port_like_names_are_ports(name):
    assert targets.is_serial(name)


@pytest.mark.parametrize("name", ["./ttyACM0", "boards/ttyACM0", "ttyACM", "data", "COMX"])
def test_folders_stay_folders(name):
    assert not targets.is_serial(name)


def test_a_bare_port_name_is_the_port_and_a_missing_one_is_named(tmp_path, monkeypatch,
                                                                 capsys):
    monkeypatch.chdir(tmp_path)
    key, crt = pki.make_ca("district 410106 CA")
    (tmp_path / "ca.key").write_bytes(key)
    (tmp_path / "ca.pem").write_bytes(crt)
    rc = main(["flash", "provision", "--target", MISSING, "--device", "sn-0001",
               "--district", "410106", "--profile", "sensor-node", "--object",
               "41010601002000001", "--broker", "mqtt://127.0.0.1:1883",
               "--ca-cert", "ca.pem", "--ca-key", "ca.key"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"/dev/{MISSING}: no such port (is the board plugged in?); connected ports: " in err
    assert "in use" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem"]
    build(tmp_path / "image", compile=False)
    for argv in (["flash", "selftest", MISSING], ["flash", "flash", "image", MISSING]):
        assert main(argv) == 2
        assert f"/dev/{MISSING}: no such port" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem", "image"]
