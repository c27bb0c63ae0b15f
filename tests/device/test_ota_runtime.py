"""The Pi runtime's side of an over-the-air update, end to end: a real gateway serves the
repository and runs a rollout; the device, started through the A/B launcher as its unit
does, reports its slots in its status, takes the offer, installs into its other slot,
exits to restart, boots the new slot on trial, passes its health check after READY and
marks it good; the rollout sees it and finishes.  A trial that fails its health check
rolls back when its boots run out, and the rollout pauses on it.  A downgrade or another
kind's release offered is refused and the refusal shows in the status."""

import json
import shutil
import sys

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core import messages, topics
from gridlink.firmware.device.runtime import RESTART_INTO_UPDATE
from gridlink.firmware.device.slots import Slots
from gridlink.gateway.service import Gateway, WebOptions

from tests.support.device_rig import DeviceProc
from tests.support.fleet import make_repo, provision
from tests.support.intake_api import Api, Tokens
from tests.support.waiting import wait_until


class Unit(DeviceProc):
    """The device's unit: ``python -m gridlink.firmware.device.launch DATA -- device run …``
    as a real process (the launcher boots the current slot, then runs the device)."""

    start_timeout = 30

    def __init__(self, tmp_path, broker, data_dir, repo_url, health_deadline=60,
                 extra=()):
        super().__init__(tmp_path, broker, data_dir=data_dir)
        self.log_path = tmp_path / "device.log"
        self.args = [sys.executable, "-m", "gridlink.firmware.device.launch", str(data_dir),
                     "--", "device", "run", "--profile", "patrol-vehicle", "--sim",
                     "--data-dir", str(data_dir), "--broker", broker.url,
                     "--device-id", "pv-0001", "--status-interval", "1",
                     "--update-repo", repo_url, "--health-deadline", str(health_deadline),
                     "--reconnect-max", "1", *extra]


@pytest.fixture
def rig(broker, tmp_path):
    _keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 photos=tmp_path / "photos", http="127.0.0.1:0",
                 web=WebOptions(update_repo=repo.path)).start()
    units = []

    def unit(version, repo_url=None, **kw):
        data = provision(tmp_path / "pv-0001", repo, version)
        shutil.rmtree(data / "outbox")         # the device makes its own outbox
        made = Unit(tmp_path, broker, data, repo_url or gw.http_url + "/ota", **kw)
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
    # the status batch itself moved the rollout on (the runtime's on_commit), no read did
    wait_until(lambda: gw.store.fetchall("SELECT state FROM ota_rollouts") == [
        {"state": "done"}], 30, "the rollout done")
    code, shown = api.call("GET", f"/api/rollouts/{rollout['id']}", user="tech")
    assert shown["state"] == "done" and shown["devices"][0]["outcome"] == "installed"
    code, devices = api.call("GET", "/api/devices", user="tech")
    assert devices[0]["ota"] == {"installed": "1.1", "slot": "b",
                                 "slots": {"a": "1.0", "b": "1.1"}, "pending": None,
                                 "failed": None}
    assert "update 1.1 passed its health check and is kept" in device.log()


def test_an_unhealthy_trial_rolls_back_and_pauses_the_rollout(rig, broker):
    gw, _repo, unit = rig
    device = unit("1.0", health_deadline=3).start()
    wait_until(lambda: gateway_sees(gw, installed="1.0"), 30, "the gateway sees pv-0001")
    api = Api(gw.http_url, Tokens(gw.store, roles={"tech": ("technician",)}))
    code, rollout = api.call("POST", "/api/rollouts", {
        "kind": "pi", "version": "1.1", "target": {"devices": ["pv-0001"]}, "stages": [100],
        "failure_threshold": 0}, user="tech")
    assert code == 201, rollout
    assert device.proc.wait(120) == RESTART_INTO_UPDATE, device.log()
    slots = Slots(device.data_dir / "ota")
    broker.stop()                                  # the new version cannot reach it
    for boots_left in (2, 1, 0):
        device.start()
        assert device.proc.wait(60) == 1, device.log()        # unhealthy: exits
        assert slots.status()["boots_left"] == boots_left
    errors = [line for line in device.log().splitlines() if " ERROR " in line]
    unhealthy = ("update 1.1 is not healthy (broker: ConnectionError: not connected to the "
                 "broker): exiting; the boot counter decides")
    assert errors and errors[-1].endswith(unhealthy), errors
    device.start()                                 # boots ran out: 1.0 comes back
    assert slots.status() == {"installed": "1.0", "slot": "a", "pending": None,
                              "boots_left": None, "failed": [
                                  {"version": "1.1",
                                   "reason": "health check not passed within its boots"}]}
    broker.start()
    wait_until(lambda: gateway_sees(gw, installed="1.0", failed={
        "version": "1.1", "reason": "health check not passed within its boots"}),
        60, "the gateway sees the rollback")
    wait_until(lambda: api.call("GET", f"/api/rollouts/{rollout['id']}",
                                user="tech")[1]["state"] == "paused", 30, "rollout paused")
    code, shown = api.call("GET", f"/api/rollouts/{rollout['id']}", user="tech")
    assert shown["reason"] == "stage 1 (100%): 1 of 1 devices failed, over the 0% threshold"
    assert device.proc.poll() is None                     # 1.0 runs on
    assert device.status()["ota"]["slots"] == {"a": "1.0", "b": "1.1"}


def test_a_download_cut_is_tried_again_and_the_update_goes_on(rig, broker):
    from hil_tests.shaper import Shaper

    gw, _repo, unit = rig
    link = Shaper(gw.http.port)
    try:
        device = unit("1.0", repo_url=f"http://127.0.0.1:{link.port}/ota",
                      extra=("--update-retry", "2")).start()
        link.cut(mode="reset")                       # the gateway out of reach
        offer(broker, "R-test-3", "pi", "1.1")
        wait_until(lambda: last_failure(device) is not None, 60, "the cut download")
        assert last_failure(device)["reason"] == "download"
        assert device.proc.poll() is None
        link.restore()
        assert device.proc.wait(60) == RESTART_INTO_UPDATE, device.log()
    finally:
        link.close()
    assert "retrying the download of 1.1 (rollout R-test-3)" in device.log()
    assert Slots(device.data_dir / "ota").status()["pending"] == "1.1"


def offer(broker, rollout, kind, version):
    """A retained offer on pv-0001's …/update, as the gateway publishes it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="offer")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(topics.topic("410106", "pv-0001", "update"),
                       messages.encode(messages.make_update(rollout, kind, version)),
                       qos=1, retain=True).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def last_failure(device):
    return device.status()["ota"]["failed"]


def test_a_downgrade_or_another_kind_offered_is_refused_and_the_status_says_why(rig, broker):
    gw, _repo, unit = rig
    device = unit("1.1").start()
    offer(broker, "R-test-1", "pi", "1.0")
    wait_until(lambda: last_failure(device) is not None, 60, "the refusal in the status")
    assert last_failure(device) == {"version": "1.0", "reason": "older-than-installed"}
    wait_until(lambda: gateway_sees(gw, failed={"version": "1.0",
                                                "reason": "older-than-installed"}),
               30, "the gateway sees the refusal")
    offer(broker, "R-test-2", "mcu", "2.0")
    wait_until(lambda: last_failure(device)["version"] == "2.0", 60, "the second refusal")
    assert last_failure(device) == {"version": "2.0", "reason": "wrong-kind"}
    assert device.proc.poll() is None                  # still running 1.1 from slot a
    assert Slots(device.data_dir / "ota").status()["installed"] == "1.1"
    assert not (device.data_dir / "ota" / "slots" / "b").exists()


def test_an_update_state_the_protocol_cannot_carry_is_left_out_of_the_status(tmp_path,
                                                                              caplog):
    from gridlink.firmware.device.profile import load_profile
    from gridlink.firmware.device.runtime import Device

    _keydir, repo = make_repo(tmp_path, versions=("1.0",))
    data = provision(tmp_path / "pv-0001", repo, "1.0")
    device = Device(load_profile("patrol-vehicle"), data, "mqtt://127.0.0.1:1",
                    device_id="pv-0001")
    device.slots = Slots(data / "ota")
    assert device.ota_status()["installed"] == "1.0"
    device.slots.record_failure("1.1-beta", "hash")        # a state written by hand
    assert device.ota_status() is None
    assert "the update state cannot go in the status (ota.failed.version: must be a " \
        "version like 1.4 or 2.0.3 (got '1.1-beta')); left out" in caplog.text
    state = json.loads((data / "ota" / "state.json").read_text())
    assert state["failed"][-1]["version"] == "1.1-beta"   # kept as it was
