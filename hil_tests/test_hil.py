"""HIL tests: the same on the simulated rig (default) and on a bench (``--rig bench``).

1. flash build → flash → provision → selftest passes on the rig's board;
2. tilt (relay closes the contact) → the report reaches the broker with the component id
   the board was provisioned with, and once acknowledged it is never sent again;
3. a real receiver capture replayed through a real serial line (a pty here, USB-serial
   on the bench) and read with pyserial decodes to the fixes gpsd found in it.
"""

import json

import pytest
from gridlink.flash.build import build
from gridlink.flash.flashing import flash_image
from gridlink.flash.provision import Spec, provision
from gridlink.flash.selftest import selftest

from tests.support.shared import shared_file

OBJECT = "41010601002999001"  # 410106 上街区 · 01002 污水井盖 · sequence 999001
DEVICE = "sn-hil1"


@pytest.fixture
def provisioned(rig, tmp_path, request):
    """The board flashed with a fresh image and provisioned as a sensor node."""
    image = tmp_path / "image"
    build(image)
    flash_image(image, rig.board_url)
    opt = request.config.getoption
    wifi = (opt("hil_wifi_ssid"), opt("hil_wifi_psk")) if opt("hil_wifi_ssid") else None
    info = provision(Spec(DEVICE, "410106", "sensor-node", rig.board_url, rig.broker_url,
                          ca_cert=opt("hil_ca_cert"), ca_key=opt("hil_ca_key"),
                          object_id=OBJECT, wifi=wifi))
    return info


def test_build_flash_provision_selftest(rig, provisioned):
    checks = selftest(rig.board_url)
    rig.console_done()
    assert [c for c in checks if not c.ok] == []
    assert {c.name for c in checks} == {"firmware", "files", "profile", "cert", "grid",
                                        "codebook", "broker"}
    assert next(c for c in checks if c.name == "firmware").detail.startswith("firmware 0.1.0")
    assert provisioned["device"] == DEVICE


def test_tilt_reaches_the_broker_with_the_bound_component_id(rig, provisioned):
    gw = rig.listener()
    try:
        rig.tilt(True)
        rig.wake()
        rep = gw.wait_report(lambda r: r["object"] == OBJECT, rig.report_timeout)
        assert (rep["device"], rep["kind"], rep["code"], rep["source"]) == (
            DEVICE, "component", OBJECT[6:11], "sensor")
        # acknowledged, so the next wake sends nothing again (still tilted: no new report)
        rig.wake()
        rig.tilt(False)
        rig.wake()
        assert [r["id"] for r in gw.reports] == [rep["id"]]
    finally:
        gw.close()


def gpsd_fixes(chk):
    """time → (lat, lon) of every gpsd TPV with a position, from its .chk oracle."""
    out = {}
    for line in chk.read_text().splitlines():
        if line.startswith("{"):
            tpv = json.loads(line)
            if tpv.get("class") == "TPV" and "lat" in tpv and "time" in tpv:
                out[tpv["time"]] = (tpv["lat"], tpv["lon"])
    return out


@pytest.mark.parametrize("capture", ["beidou-bd.log", "ublox-8.log"])
def test_gnss_replay_over_a_serial_line_decodes_the_expected_fixes(rig, capture):
    import serial
    from gridlink.firmware.core.nmea import NmeaDecoder

    log = shared_file("nmea", capture)
    dec = NmeaDecoder(min_year=1980)
    fixes = []
    with rig.gnss_feed(log) as feed, \
            serial.Serial(feed.port, 9600, timeout=0.3) as s:
        feed.start()
        while True:
            data = s.read(4096)
            fixes.extend(dec.feed(data))
            if not data and not feed.running():
                break
    fixes.extend(dec.flush())
    ours = {f.time: (f.lat, f.lon) for f in fixes if f.time and f.lat is not None}
    expected = gpsd_fixes(shared_file("nmea", capture + ".chk"))
    assert expected, "the oracle has fixes"
    agree = [t for t, (lat, lon) in expected.items()
             if t in ours and abs(ours[t][0] - lat) <= 1e-7 and abs(ours[t][1] - lon) <= 1e-7]
    assert len(agree) / len(expected) >= 0.99, sorted(set(expected) - set(agree))[:5]
