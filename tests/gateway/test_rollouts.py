"""Staged rollouts (SQLite and PostgreSQL): the canary first, the next stage only when a
stage's devices report the version installed, an automatic pause past the failure
threshold, resume and abort, devices outside the stage neither offered nor counted, and
downgrades refused.  Offers are what the gateway publishes (recorded here; the device
side of the wire is tests/device/test_ota_runtime.py)."""

import threading

import pytest
from gridlink.firmware.core import messages
from gridlink.gateway.api import create_app
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.queue import Conflict, Invalid
from gridlink.gateway.rollouts import Rollouts, stage_of
from gridlink.gateway.update_repo import UpdateRepository

from tests.support.fleet import make_repo
from tests.support.intake_api import Api, Tokens
from tests.support.rollouts import Wire, set_device, status


@pytest.fixture
def fleet(store):
    store.migrate(extra=create_app.__globals__["MIGRATIONS"])
    for i in range(20):
        set_device(store, f"pv-{i:04d}", status())
    set_device(store, "sn-0001", profile="sensor-node")        # a node: never a pi target
    wire = Wire()
    return Rollouts(store, publisher=wire), wire


def stage_devices(rollouts, rid, stage):
    return [d["device"] for d in rollouts.get(rid)["devices"] if d["stage"] == stage - 1]


def report(store, devices, **ota):
    for d in devices:
        set_device(store, d, status(**ota))


def test_stages_split_the_group_canary_first():
    assert [stage_of(i, 20, [5, 50, 100]) for i in range(20)] == [0] + [1] * 9 + [2] * 10
    assert [stage_of(i, 3, [5, 50, 100]) for i in range(3)] == [0, 1, 2]
    assert [stage_of(i, 1, [5, 100]) for i in range(1)] == [0]


def test_the_canary_first_then_each_stage_once_the_one_before_installed(fleet, store):
    rollouts, wire = fleet
    r = rollouts.create(kind="pi", version="1.1", target={"district": "410106"},
                        stages=[5, 50, 100], operator="tech")
    assert (r["state"], r["stage"]) == ("running", 1)
    canary = stage_devices(rollouts, r["id"], 1)
    assert wire.offered() == canary and len(canary) == 1
    topic_payload = messages.decode_for("update", wire.sent[0][1])
    assert topic_payload == {"v": 1, "rollout": r["id"], "kind": "pi", "version": "1.1"}
    report(store, canary, version="1.1", pending="1.1")         # on trial: not yet
    assert rollouts.sync() == [] and rollouts.get(r["id"])["stage"] == 1
    report(store, canary, version="1.1")                         # marked good
    rollouts.sync()
    second = stage_devices(rollouts, r["id"], 2)
    assert rollouts.get(r["id"])["stage"] == 2 and len(second) == 9
    assert wire.offered() == canary + second
    report(store, second, version="1.1")
    rollouts.sync()
    third = stage_devices(rollouts, r["id"], 3)
    assert sorted(wire.offered()) == sorted(canary + second + third) and len(third) == 10
    report(store, third, version="1.1")
    done = rollouts.get(r["id"]) if rollouts.sync() else None
    assert done["state"] == "done" and done["progress"] == [
        {"stage": 1, "percent": 5, "devices": 1, "installed": 1},
        {"stage": 2, "percent": 50, "devices": 9, "installed": 9},
        {"stage": 3, "percent": 100, "devices": 10, "installed": 10}]
    assert len(wire.sent) == 20                                  # each device offered once


def test_a_device_outside_the_stage_is_not_offered_and_counts_for_nothing(fleet, store):
    rollouts, wire = fleet
    r = rollouts.create(kind="pi", version="1.1", target={"district": "410106"},
                        stages=[5, 50, 100], failure_threshold=0)
    later = stage_devices(rollouts, r["id"], 3)
    report(store, later[:3], failed=("1.1", "hash"))            # would pause stage 1
    report(store, later[3:], version="1.1")                      # installed by hand
    rollouts.sync()
    shown = rollouts.get(r["id"])
    assert (shown["state"], shown["stage"]) == ("running", 1)
    assert not set(wire.offered()) & set(later)
    assert {d["outcome"] for d in shown["devices"] if d["device"] in later} == {"waiting"}


def test_failures_past_the_threshold_pause_the_rollout_until_resumed(fleet, store):
    rollouts, wire = fleet
    r = rollouts.create(kind="pi", version="1.1", target={"district": "410106"},
                        stages=[10, 100], failure_threshold=40)
    canary = stage_devices(rollouts, r["id"], 1)
    assert len(canary) == 2
    report(store, canary[:1], failed=("1.1", "health check not passed within its boots"))
    rollouts.sync()
    shown = rollouts.get(r["id"])
    assert shown["state"] == "paused"
    assert shown["reason"] == ("stage 1 (10%): 1 of 2 devices failed, over the 40% threshold")
    report(store, canary[1:], version="1.1")
    assert rollouts.sync() == [r["id"]]                # its outcome is kept up to date,
    assert wire.offered() == canary                    # but paused: nothing offered
    assert rollouts.get(r["id"])["progress"][0] == {"stage": 1, "percent": 10, "devices": 2,
                                                    "installed": 1, "failed": 1}
    failed = next(d for d in shown["devices"] if d["device"] == canary[0])
    assert (failed["outcome"], failed["reason"]) == (
        "failed", "health check not passed within its boots")
    with pytest.raises(Conflict, match="is paused: it cannot be paused"):
        rollouts.pause(r["id"], operator="tech")
    resumed = rollouts.resume(r["id"], operator="tech")         # the failure is accepted
    assert (resumed["state"], resumed["stage"]) == ("running", 2)
    assert len(wire.offered()) == 20


def test_the_threshold_allows_what_it_says(fleet, store):
    rollouts, _wire = fleet
    r = rollouts.create(kind="pi", version="1.1", target={"district": "410106"},
                        stages=[50, 100], failure_threshold=10)
    first = stage_devices(rollouts, r["id"], 1)
    report(store, first[:1], failed=("1.1", "disk"))             # 1 of 10: 10 %, allowed
    report(store, first[1:], version="1.1")
    rollouts.sync()
    assert (rollouts.get(r["id"])["state"], rollouts.get(r["id"])["stage"]) == ("running", 2)


def test_abort_withdraws_open_offers_and_stops_for_good(fleet, store):
    rollouts, wire = fleet
    r = rollouts.create(kind="pi", version="1.1", target={"district": "410106"},
                        stages=[50, 100])
    first = stage_devices(rollouts, r["id"], 1)
    report(store, first[:4], version="1.1")
    rollouts.sync()
    aborted = rollouts.abort(r["id"], operator="tech")
    assert aborted["state"] == "aborted" and aborted["reason"] == "aborted by tech"
    assert sorted(wire.withdrawn()) == sorted(first[4:])        # those that had not yet
    report(store, first[4:], version="1.1")
    assert rollouts.sync() == [] and len(wire.offered()) == 10
    for act in (rollouts.pause, rollouts.resume, rollouts.abort):
        with pytest.raises(Conflict, match="is aborted"):
            act(r["id"], operator="tech")


def test_a_restarted_gateway_sends_the_open_offers_again(fleet, store):
    rollouts, _wire = fleet
    r = rollouts.create(kind="pi", version="1.1", target={"district": "410106"},
                        stages=[50, 100])
    first = stage_devices(rollouts, r["id"], 1)
    report(store, first[:4], version="1.1")
    rollouts.sync()
    again = Wire()                                 # a new gateway process, its first sync
    assert Rollouts(store, publisher=again).sync() == []
    assert sorted(again.offered()) == sorted(first[4:])
    assert Rollouts(store).sync() == []            # no link: nothing to send, no error


def test_only_devices_of_the_kind_and_able_to_install_are_in_the_group(fleet, store):
    rollouts, wire = fleet
    set_device(store, "pv-0100")                   # a Pi that sends no ota: no slots
    r = rollouts.create(kind="pi", version="1.1", target={"district": "410106"},
                        stages=[100])
    members = {d["device"]: d for d in r["devices"]}
    assert len(members) == 21 and "sn-0001" not in members
    assert (members["pv-0100"]["outcome"], members["pv-0100"]["reason"]) == (
        "skipped", "reports no update slots")
    assert "pv-0100" not in wire.offered() and len(wire.offered()) == 20


def test_a_downgrade_is_refused_and_a_device_on_a_newer_version_skipped(fleet, store):
    rollouts, _wire = fleet
    set_device(store, "pv-0000", status(version="1.5"))
    r = rollouts.create(kind="pi", version="1.4", target={"district": "410106"},
                        stages=[100])
    skipped = next(d for d in rollouts.get(r["id"])["devices"] if d["device"] == "pv-0000")
    assert (skipped["outcome"], skipped["reason"]) == ("skipped", "runs 1.5, newer")
    for older in ("1.3", "1.4", "1.3.9"):
        with pytest.raises(Conflict, match=f"downgrade refused: rollout {r['id']} has pi 1.4"):
            rollouts.create(kind="pi", version=older, target={"district": "410106"})
    assert rollouts.create(kind="mcu", version="1.0", target={"devices": ["sn-0001"]})
    rollouts.abort(r["id"], operator="tech")
    assert rollouts.create(kind="pi", version="1.3", target={"devices": ["pv-0001"]})
    assert len(rollouts.list()) == 3


def test_rollouts_created_at_once_pass_the_downgrade_check_one_at_a_time(fleet, store):
    created, refused = [], []

    def create():
        try:
            created.append(Rollouts(store).create(kind="pi", version="1.1",
                                                  target={"devices": ["pv-0001"]})["id"])
        except Conflict:
            refused.append(1)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1 and len(refused) == 5
    assert [r["id"] for r in fleet[0].list()] == created


@pytest.mark.parametrize("kw,message", [
    ({"stages": [50, 5, 100]}, "rising percentages ending at 100"),
    ({"stages": [5, 50]}, "rising percentages ending at 100"),
    ({"stages": [0, 100]}, "whole percentages between 1 and 100"),
    ({"stages": []}, "a list of 1 to 10 percentages"),
    ({"target": {"devices": ["pv-0001", "pv-9999"]}}, "no such device pv-9999"),
    ({"target": {"district": "410107"}}, "no pi device has district 410107"),
    ({"target": {"profile": "fixed-terminal"}}, "no pi device has profile fixed-terminal"),
    ({"target": {"profile": "sensor-node"}}, "no pi device has profile sensor-node"),
    ({"target": {"devices": ["pv-0001", "sn-0001"]}}, "not pi devices: sn-0001"),
    ({"kind": "mcu", "target": {"devices": ["pv-0001"]}}, "not mcu devices: pv-0001"),
    ({"target": {"district": "410106", "profile": "x"}}, "one of district, profile"),
    ({"target": {"devices": ["PV 1"]}}, "a list of device ids"),
    ({"version": "1.x"}, "a version like 1.4"),
    ({"kind": "esp"}, "kind: one of pi, mcu"),
    ({"failure_threshold": 120}, "a percentage of a stage's devices"),
])
def test_bad_input_is_refused_saying_why_and_stores_nothing(fleet, store, kw, message):
    rollouts, wire = fleet
    good = rollouts.create(kind="pi", version="1.1", target={"devices": ["pv-0001"]})
    args = {"kind": "pi", "version": "2.0", "target": {"district": "410106"}, **kw}
    with pytest.raises(Invalid, match=message):
        rollouts.create(**args)
    assert [r["id"] for r in rollouts.list()] == [good["id"]]
    assert wire.offered() == ["pv-0001"]


def test_a_release_the_served_repository_lacks_is_refused(store, tmp_path):
    store.migrate(extra=create_app.__globals__["MIGRATIONS"])
    set_device(store, "pv-0001", status())
    _keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    rollouts = Rollouts(store, repository=UpdateRepository(repo.path))
    with pytest.raises(Invalid, match=r"holds no pi release 1\.2"):
        rollouts.create(kind="pi", version="1.2", target={"devices": ["pv-0001"]})
    with pytest.raises(Invalid, match=r"holds no mcu release 1\.1"):
        rollouts.create(kind="mcu", version="1.1", target={"devices": ["pv-0001"]})
    assert rollouts.create(kind="pi", version="1.1", target={"devices": ["pv-0001"]})


def test_the_api_is_a_technicians_and_every_act_is_audited(store):
    for i in range(4):
        set_device(store, f"pv-{i:04d}", status())
    wire = Wire()
    app = create_app(store, publisher=wire)
    tokens = Tokens(store, roles={"tech": ("technician",), "screen": ("viewer",)})
    with BackgroundServer(app) as srv:
        api = Api(srv.url, tokens)
        body = {"kind": "pi", "version": "1.1", "target": {"profile": "patrol-vehicle"},
                "stages": [25, 100], "failure_threshold": 0}
        code, answer = api.call("POST", "/api/rollouts", body, user="screen")
        assert code == 403 and "'fleet'" in answer["detail"]
        code, created = api.call("POST", "/api/rollouts", body, user="tech")
        assert code == 201, created
        rid = created["id"]
        code, answer = api.call("POST", "/api/rollouts",
                                {**body, "target": {"district": "410106", "profile": "x"}},
                                user="tech")
        assert code == 400 and answer["detail"].startswith("target: one of district")
        code, answer = api.call("POST", "/api/rollouts", {**body, "version": "1.0"}, user="tech")
        assert code == 409 and "downgrade refused" in answer["detail"]
        (canary,) = wire.offered()
        set_device(store, canary, status(failed=("1.1", "older-than-installed")))
        code, shown = api.call("GET", f"/api/rollouts/{rid}", user="screen")
        assert code == 200 and shown["state"] == "paused"
        code, answer = api.call("POST", f"/api/rollouts/{rid}/pause", user="tech")
        assert code == 409
        for act, state in (("resume", "running"), ("pause", "paused"), ("abort", "aborted")):
            code, answer = api.call("POST", f"/api/rollouts/{rid}/{act}", user="tech")
            assert code == 200 and answer["state"] == state, answer
        code, answer = api.call("GET", "/api/rollouts/R-nope", user="screen")
        assert code == 404 and "no rollout 'R-nope'" in answer["detail"]
        code, devices = api.call("GET", "/api/devices", user="screen")
        assert next(d for d in devices if d["device"] == canary)["ota"]["failed"] == {
            "version": "1.1", "reason": "older-than-installed"}
    trail = [(e["actor"], e["action"], e["target"]) for e in app.state.audit.entries()
             if e["action"].startswith("rollout.")]
    assert trail == [("tech", f"rollout.{a}", f"rollout:{rid}")
                     for a in ("create", "resume", "pause", "abort")]
