"""The Pi runtime's side of an over-the-air update, end to end: a real gateway serves the
repository and runs a rollout; the device, started through the A/B launcher as its unit
does, reports its slots in its status, takes the offer, installs into its other slot,
exits to restart, boots the new slot on trial, passes its health check after READY and
marks it good; the rollout sees it and finishes.  A downgrade offered is refused and the
refusal shows in the status."""

import json
import shutil
import subprocess
import sys

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core import messages, topics
from gridlink.firmware.device.control import request
from gridlink.firmware.device.runtime import RESTART_INTO_UPDATE
from gridlink.firmware.device.slots import Slots
from gridlink.gateway.service import Gateway, WebOptions

from tests.support.fleet import make_repo, provision
from tests.support.intake_api import Api, Tokens
from tests.support.paths import ROOT
from tests.support.waiting import wait_until


class Unit:
    """The device's unit: ``python -m gridlink.firmware.device.launch DATA -- device run …``
    as a real process (the launcher boots the current slot, then runs the device)."""

    def __init__(self, tmp_path, broker, data_dir, repo_url):
        self.data_dir = data_dir
        self.log_path = tmp_path / "device.log"
        self.args = [sys.executable, "-m", "gridlink.firmware.device.launch", str(data_dir),
                     "--", "device", "run", "--profile", "patrol-vehicle", "--sim",
                     "--data-dir", str(data_dir), "--broker", broker.url,
                     "--device-id", "pv-0001", "--status-interval", "1",
                     "--update-repo", repo_url, "--health-deadline", "60"]
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=ROOT)
        wait_until(self.answers, 30, "device up")
        return self

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"device exited {self.proc.returncode}:\n{self.log()}")
        try:
            return request(self.data_dir, {"cmd": "status"}, timeout=5)["ok"]
        except Exception:
            return False

    def status(self):
        return request(self.data_dir, {"cmd": "status"})["status"]

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@pytest.fixture
def rig(broker, tmp_path):
    _keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 photos=tmp_path / "photos", http="127.0.0.1:0",
                 web=WebOptions(update_repo=repo.path)).start()
    units = []

    def unit(version):
        data = provision(tmp_path / "pv-0001", repo, version)
        shutil.rmtree(data / "outbox")         # the device makes its own outbox
        made = Unit(tmp_path, broker, data, gw.http_url + "/ota")
        units.append(made)
        return made

    try:
        yield gw, repo, unit
    finally:
        for u in units:
            u.stop()
        gw.stop()


def gateway_sees(gw, **ota):
    rows = gw.store.fetchall("SELECT status FROM devices WHERE device = 'pv-0001'")
    got = json.loads(rows[0]["status"]).get("ota") if rows else None
    return got is not None and all(got[k] == v for k, v in ota.items())


def test_a_rollout_updates_a_running_device_which_keeps_the_new_version(rig):
    gw, _repo, unit = rig
    device = unit("1.0").start()
    assert device.status()["ota"] == {"installed": "1.0", "slot": "a",
                                      "slots": {"a": "1.0", "b": None}, "pending": None,
                                      "failed": None}
    wait_until(lambda: gateway_sees(gw, installed="1.0"), 30, "the gateway sees pv-0001")
    api = Api(gw.http_url, Tokens(gw.store, roles={"tech": ("technician",)}))
    code, rollout = api.call("POST", "/api/rollouts", {
        "kind": "pi", "version": "1.1", "target": {"devices": ["pv-0001"]}, "stages": [100]},
        user="tech")
    assert code == 201, rollout
    # the offer arrives, the device installs into slot b and exits to restart into it
    assert device.proc.wait(120) == RESTART_INTO_UPDATE, device.log()
    slots = Slots(device.data_dir / "ota")
    assert slots.status()["pending"] == "1.1" and slots.current() == "b"
    device.start()                                 # the unit restarts it: boot 1 of 3
    wait_until(lambda: slots.status()["pending"] is None, 90, "the trial marked good")
    assert slots.state()["good"] == "b"
    wait_until(lambda: gateway_sees(gw, installed="1.1", pending=None), 30, "status 1.1")
    code, shown = api.call("GET", f"/api/rollouts/{rollout['id']}", user="tech")
    assert shown["state"] == "done" and shown["devices"][0]["outcome"] == "installed"
    code, devices = api.call("GET", "/api/devices", user="tech")
    assert devices[0]["ota"] == {"installed": "1.1", "slot": "b",
                                 "slots": {"a": "1.0", "b": "1.1"}, "pending": None,
                                 "failed": None}
    assert "update 1.1 passed its health check and is kept" in device.log()


def test_a_downgrade_offered_is_refused_and_the_status_says_why(rig, broker):
    gw, _repo, unit = rig
    device = unit("1.1").start()
    offer = messages.encode(messages.make_update("R-test-1", "pi", "1.0"))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="offer")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(topics.topic("410106", "pv-0001", "update"), offer, qos=1,
                       retain=True).wait_for_publish(10)
        wait_until(lambda: (device.status()["ota"]["failed"] or {}).get("version") == "1.0",
                   60, "the refusal in the status")
    finally:
        client.loop_stop()
        client.disconnect()
    assert device.status()["ota"]["failed"] == {"version": "1.0",
                                                "reason": "older-than-installed"}
    assert device.proc.poll() is None                  # still running 1.1 from slot a
    assert Slots(device.data_dir / "ota").status()["installed"] == "1.1"
    wait_until(lambda: gateway_sees(gw, failed={"version": "1.0",
                                                "reason": "older-than-installed"}),
               30, "the gateway sees the refusal")
