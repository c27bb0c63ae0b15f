"""A button's class changed for a group, end to end: a fleet technician sets it over the
gateway's API, the gateway signs a document per device and publishes it (a private
Mosquitto), three running devices (``gridlink device run --sim``: the real runtime and
Delivery, simulated hardware) apply it, and each reports the new version within one
status interval — and its next press carries the new class into the intake queue."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gridlink.firmware.core import desired
from gridlink.firmware.device.control import request
from gridlink.fleet.config import make_key
from gridlink.gateway.service import Gateway

from tests.support.gateway_rig import Publisher
from tests.support.intake_api import Api, Tokens
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
GRIDLINK = [sys.executable, "-c", "import sys; from gridlink.cli import main; sys.exit(main())"]
DEVICES = ("pv-0001", "pv-0002", "pv-0003")
STATUS_INTERVAL = 30.0


@pytest.fixture
def centre(broker, tmp_path):
    make_key(tmp_path / "config.pem")
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 http="127.0.0.1:0", photos=str(tmp_path / "photos"),
                 config_key=str(tmp_path / "config.pem"))
    gw.start()
    tokens = Tokens(gw.store, roles={"tech": ("technician",)})
    yield Api(gw.http.url, tokens), gw, tmp_path / "config.pem.pub"
    gw.stop()


@pytest.fixture
def fleet(broker, tmp_path, centre):
    _, _, keys = centre
    procs, dirs = [], {}
    for device in DEVICES:
        data = tmp_path / device
        dirs[device] = data
        log = open(tmp_path / f"{device}.log", "ab")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(
            [*GRIDLINK, "device", "run", "--profile", "patrol-vehicle", "--sim",
             "--data-dir", str(data), "--broker", broker.url, "--device-id", device,
             "--cancel-grace", "0", "--reconnect-max", "1", "--config-keys", str(keys),
             "--status-interval", str(STATUS_INTERVAL)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log))
    for device, data in dirs.items():
        wait_until(lambda d=data: _answers(d), 120, f"{device} to answer")
    yield dirs
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _answers(data_dir):
    try:
        return request(data_dir, {"cmd": "status"}, timeout=5)["ok"]
    except Exception:
        return False


def test_a_group_gets_a_new_button_class_within_one_status_interval(centre, fleet, tmp_path):
    api, gw, _ = centre

    def seen():
        status, devices = api.get("/api/devices")
        return status == 200 and {d["device"] for d in devices} >= set(DEVICES)

    wait_until(seen, 120, "every device's first status at the gateway")
    start = time.monotonic()
    status, change = api.post("/api/fleet/config", {
        "scope": "profile", "target": "patrol-vehicle", "operator": "tech",
        "settings": {"buttons": {"garbage": {"kind": "event", "code": "07001",
                                             "text": "非法小广告"}}}})
    assert status == 201, change
    assert change["devices"] == list(DEVICES) and change["sent"] == list(DEVICES)

    def all_applied():
        states = api.get("/api/fleet/config/devices")[1]
        return all(s["reported"] == change["version"] and not s["drift"] for s in states)

    wait_until(all_applied, STATUS_INTERVAL, "every device reporting the new version")
    took = time.monotonic() - start
    print(f"{len(DEVICES)} devices reported configuration version {change['version']} "
          f"{took:.2f} s after the change (status interval {STATUS_INTERVAL:.0f} s)")
    for data in fleet.values():
        local = request(data, {"cmd": "config"})
        assert local["config"] == {"version": change["version"], "refused": None}
        assert local["profile"]["buttons"][0]["code"] == "07001"
    # the new class is what the button reports now
    rid = request(fleet["pv-0002"], {"cmd": "report", "input": "garbage"})["report"]

    def stored():
        with gw.store.connect() as conn:
            row = conn.execute("SELECT kind, code, text FROM reports WHERE id = ?",
                               (rid,)).fetchone()
        return row and tuple(row)

    assert wait_until(stored, 60, "the report in the queue") == ("event", "07001", "非法小广告")


def test_a_forged_document_is_refused_and_the_refusal_shows_in_the_fleet_view(
        centre, fleet, broker):
    api, _, _ = centre
    wait_until(lambda: len(api.get("/api/devices")[1]) == len(DEVICES), 120, "the fleet")
    forger = Ed25519PrivateKey.generate()
    doc = desired.document("pv-0001", "410106", 9, {"status_interval_s": 5}, 1765000000)
    pub = Publisher(broker.port, client_id="forger")
    try:
        pub.publish("gridlink/v1/410106/pv-0001/config",
                    desired.envelope(doc, forger.sign(desired.digest(doc))), retain=True)
        pub.wait_acked(1)
    finally:
        pub.close()

    def refused():
        devices = {d["device"]: d for d in api.get("/api/devices")[1]}
        return devices["pv-0001"]["config"]["last_refused"]

    got = wait_until(refused, STATUS_INTERVAL, "the refusal in the fleet view")
    assert (got["version"], got["reason"]) == (9, "signature")
    local = request(fleet["pv-0001"], {"cmd": "config"})
    assert local["config"]["version"] is None and local["profile"]["status_interval_s"] == 60
    assert request(fleet["pv-0001"], {"cmd": "report", "input": "garbage"})["ok"]
