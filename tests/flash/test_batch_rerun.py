"""Issue 19: a batch re-run skipped a row whose content had been corrected, listed no
failures at the end and left no report.  Each finished row's content is remembered (a
digest in the journal): a changed row is redone and says so; the run ends with the failed
rows and writes a report (row, device, target, serial, firmware, result, detail)."""

import csv
import json
from pathlib import Path

import pytest
from gridlink.flash import pki
from gridlink.flash.build import build
from gridlink.flash.flashing import flash_image
from gridlink.flash.provision import provision_batch


@pytest.fixture
def ca(tmp_path):
    key, crt = pki.make_ca("district 410106 CA")
    (tmp_path / "ca.key").write_bytes(key)
    (tmp_path / "ca.pem").write_bytes(crt)
    return {"ca_cert": str(tmp_path / "ca.pem"), "ca_key": str(tmp_path / "ca.key"),
            "broker": "mqtt://127.0.0.1:1883"}


def run(sheet, defaults):
    out = []
    counts = provision_batch(sheet, defaults, out=out.append)
    with open(f"{sheet}.report.csv", newline="") as f:
        return counts, out, {r["device"]: r for r in csv.DictReader(f)}


def cert_serial(path):
    return pki.info(path.read_bytes()).serial


def test_a_corrected_row_is_redone_and_the_report_says_what_each_row_got(tmp_path, ca):
    image = tmp_path / "image"
    m = build(image, compile=False)
    board = tmp_path / "sn1"
    flash_image(image, board)
    sheet = tmp_path / "devices.csv"
    sheet.write_text("device,district,profile,target,object\n"
                     f"pv-0001,410106,patrol-vehicle,{tmp_path}/pi1,\n"
                     f"sn-0001,410106,sensor-node,{board},41010601002000001\n"
                     f"pv-0002,999999,patrol-vehicle,{tmp_path}/pi2,\n")
    (ok, skipped, failed), out, report = run(sheet, ca)
    assert (ok, skipped, failed) == (2, 0, 1)
    assert out[-2:] == ["failed rows (1):", "  row 4 pv-0002: FAILED row 4: district: 999999 "
                        "is not in the GB/T 2260 table the code books carry (divisions.json: "
                        "320508, 410106): no grid map or division names for it"]
    header = Path(f"{sheet}.report.csv").read_text().splitlines()[0]
    assert header.split(",") == [
        "row", "device", "target", "serial", "firmware", "result", "detail"]
    assert report["pv-0001"]["serial"] == cert_serial(tmp_path / "pi1/etc/gridlink/device.pem")
    assert (report["pv-0001"]["firmware"], report["pv-0001"]["result"]) == ("", "ok")
    first_sn = cert_serial(board / "gridlink/device.pem")
    assert report["sn-0001"]["serial"] == first_sn
    assert (report["sn-0001"]["firmware"], report["sn-0001"]["result"]) == (m["firmware"], "ok")
    assert report["pv-0002"]["result"] == "failed"
    assert "999999" in report["pv-0002"]["detail"]

    # the technician corrects the sensor node's component id and the district: both rerun
    sheet.write_text(sheet.read_text().replace("41010601002000001", "41010601002000007")
                     .replace("999999", "410106"))
    (ok, skipped, failed), out, report = run(sheet, ca)
    assert (ok, skipped, failed) == (2, 1, 0)
    [sn] = [line for line in out if line.startswith("row 3 sn-0001")]
    assert sn.startswith("row 3 sn-0001: ok → ") and "redone: its row changed" in sn
    assert out[-2] == ("3 devices: 2 provisioned (1 redone: row changed), 1 skipped "
                       "(done before), 0 failed")
    assert out[-1] == f"report → {sheet}.report.csv"
    cfg = json.loads((board / "gridlink/config.json").read_text())
    assert cfg["tilt"]["object"] == "41010601002000007"
    assert report["sn-0001"]["result"] == "redone"
    assert report["sn-0001"]["serial"] == cert_serial(board / "gridlink/device.pem") != first_sn
    assert report["pv-0001"]["result"] == "skipped"
    assert report["pv-0001"]["serial"] == cert_serial(tmp_path / "pi1/etc/gridlink/device.pem")
    assert report["pv-0002"]["result"] == "ok"
    # and an unchanged sheet is all skipped
    (ok, skipped, failed), out, report = run(sheet, ca)
    assert (ok, skipped, failed) == (0, 3, 0)
