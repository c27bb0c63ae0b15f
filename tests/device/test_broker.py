"""The Pi device end to end: a real device subprocess, a real Mosquitto, real ptys.

The gateway is another package; here ``GatewayAcker`` (tests/support/device_rig.py) plays
only its acknowledgement role.  Every message the broker carries is validated against
docs/schemas and the core validators by the acker; ``acker.errors`` must stay empty.
"""

import datetime
import hashlib
import json
import os
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core import messages, topics
from gridlink.firmware.core.track import distance_m
from gridlink.firmware.device.camera import exif_position
from gridlink.firmware.device.profile import load_profile
from gridlink.firmware.sim.replay import find_capture, open_pty, read_capture
from gridlink.mosquitto import Mosquitto

from tests.support import device_clock
from tests.support.device_rig import DeviceProc, GatewayAcker
from tests.support.paths import ROOT
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

ORIGIN = (34.8095, 113.2965)
FAST = ["--sim", "--sim-speed", "10", "--status-interval", "5", "--reconnect-max", "1"]


@pytest.fixture(scope="module")
def shapely_grid():
    """An independent grid lookup: shapely polygons from the map's source GeoJSON layer
    (EPSG:4547 metres, reprojected with pyproj), the same covers / smallest-code rule."""
    import numpy as np
    import shapely
    from gridlink.host.make_shangjie import make_layer
    from pyproj import Transformer
    from shapely import STRtree
    from shapely.geometry import shape

    to_deg = Transformer.from_crs("EPSG:4547", "EPSG:4490", always_xy=True).transform
    feats = make_layer()["features"]
    polys = [shapely.transform(shape(f["geometry"]),
                               lambda xy: np.column_stack(to_deg(xy[:, 0], xy[:, 1])))
             for f in feats]
    codes = [f["properties"]["DYWGBSM"] for f in feats]
    tree = STRtree(polys)

    def lookup(lon, lat):
        from shapely.geometry import Point

        pt = Point(lon, lat)
        near = [codes[i] for i in tree.query(pt.buffer(2e-7))
                if polys[i].distance(pt) <= 2e-7]
        return sorted(near)

    return lookup


@pytest.fixture
def broker():
    """The shared fixture's Mosquitto, in a folder its own user can write.

    Started as root, mosquitto drops to the "mosquitto" user, which cannot reach pytest's
    0700 tmp folders: it then saves no persistence and a restart forgets every session
    (the conftest ``broker`` has this problem; reported).  These tests restart the broker.
    """
    workdir = Path(tempfile.mkdtemp(prefix="gridlink-device-broker-"))
    workdir.chmod(0o777)
    try:
        with Mosquitto(workdir) as b:
            yield b
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def acker(broker):
    a = GatewayAcker(broker).start()
    a.client.reconnect_delay_set(0.1, 1)
    yield a
    a.stop()


def test_patrol_vehicle_replays_a_real_capture_and_every_message_validates(
        tmp_path, broker, acker, shapely_grid):
    # The replay's times follow the real clock (they never run ahead of it, whatever
    # --sim-speed), so the shipped profile's 60 s track batch would take a minute: the
    # same profile with 10 s batches.
    shipped = ROOT / "device_profiles" / "patrol-vehicle.json"
    profile = json.loads(shipped.read_text(encoding="utf-8"))
    profile["track"]["batch_s"] = 10
    fast_track = tmp_path / "patrol-vehicle-10s-track.json"
    fast_track.write_text(json.dumps(profile, ensure_ascii=False))
    with DeviceProc(tmp_path, broker, profile=str(fast_track),
                    extra=[*FAST, "--cancel-grace", "0.5"]) as dev:
        wait_until(lambda: dev.status()["gnss"]["state"] == "ok", 20, "GNSS fixes")
        made = [dev.press(name)["last"] for name in ("garbage", "parking", "road")]
        assert all(made) and len(set(made)) == 3
        wait_until(lambda: len(acker.unique_reports()) == 3, 30, "three reports")
        wait_until(lambda: all(acker.photo(r) for r in made), 30, "all photos")
        wait_until(lambda: acker.tracks, 30, "a track batch")
        wait_until(lambda: dev.status()["outbox"]["reports"] == 0, 20, "outbox drained")
        assert dev.alive()
    assert acker.errors == []
    reports = acker.unique_reports()
    assert [r["id"] for r in reports] == made
    assert [r["code"] for r in reports] == ["06010", "09009", "06013"]
    for rep in reports:
        assert rep["source"] == "button" and rep["time_source"] == "gnss"
        assert rep["flags"] == [] and rep["fix"]["mode"] >= 2
        # the replay was moved onto the district: within a few hundred metres of its origin
        assert distance_m(rep["fix"]["lat"], rep["fix"]["lon"], *ORIGIN) < 500
        near = shapely_grid(rep["fix"]["lon"], rep["fix"]["lat"])
        assert near and rep["grid"] == near[0], (rep["grid"], near)
        photo = acker.photo(rep["id"])
        assert hashlib.sha256(photo).hexdigest() == rep["photos"][0]["sha256"]
        assert len(photo) == rep["photos"][0]["bytes"] <= 150 * 1024
        assert photo[8:12] == b"WEBP"        # the shipped camera.format, made after the report
        lat, lon = exif_position(photo)
        assert abs(lat - rep["fix"]["lat"]) < 1e-4 and abs(lon - rep["fix"]["lon"]) < 1e-4
    for batch in acker.tracks:
        assert batch["device"] == "pv-0001"
        for p in batch["pts"]:
            assert distance_m(p[1] / 1e6, p[2] / 1e6, *ORIGIN) < 500
    online = [s for s in acker.statuses if s["state"] in ("online", "buffering")]
    assert online and online[-1]["codebook"].startswith("GB/T 47678.5-2026@")


def test_broker_outage_buffers_reports_then_delivers_them_in_order(tmp_path, broker, acker):
    with DeviceProc(tmp_path, broker, extra=[*FAST, "--cancel-grace", "0"]) as dev:
        first = dev.press("garbage")["last"]
        wait_until(lambda: len(acker.unique_reports()) == 1, 20, "first report")
        wait_until(lambda: dev.status()["outbox"]["reports"] == 0, 20, "first report acked")
        broker.stop()
        wait_until(lambda: not dev.status()["connected"], 20, "device notices the outage")
        during = [dev.press(n)["last"] for n in ("parking", "road", "flyposting", "garbage")]
        st = dev.status()
        assert st["outbox"]["reports"] == 4 and st["state"] == "buffering"
        broker.start()
        wait_until(lambda: len(acker.unique_reports()) == 5, 60, "buffered reports")
        wait_until(lambda: dev.status()["outbox"]["reports"] == 0, 20, "outbox drained")
    ids = [r["id"] for r in acker.unique_reports()]
    assert ids == [first, *during]          # first arrivals in the order they were made
    assert acker.errors == []


def test_sigkill_during_capture_loses_nothing_and_duplicates_nothing(tmp_path, broker, acker):
    dev = DeviceProc(tmp_path, broker, extra=[*FAST, "--cancel-grace", "0"])
    with dev:
        broker.stop()              # nothing leaves: everything made is only in the outbox
        made = [dev.press(n)["last"] for n in ("garbage", "parking", "road")]
        dev.kill()
    broker.start()
    again = DeviceProc(tmp_path, broker, data_dir=dev.data_dir,
                       extra=[*FAST, "--cancel-grace", "0"])
    with again:
        wait_until(lambda: len(acker.unique_reports()) == 3, 60, "reports made before the kill")
        made.append(again.press("garbage")["last"])
        wait_until(lambda: len(acker.unique_reports()) == 4, 30, "report after restart")
        wait_until(lambda: again.status()["outbox"]["reports"] == 0, 20, "outbox drained")
        # and once more: kill while delivery is running, restart, nothing doubles in the queue
        again.kill()
    with DeviceProc(tmp_path, broker, data_dir=dev.data_dir, extra=FAST) as third:
        wait_until(lambda: third.status()["connected"], 20, "third start connected")
        assert third.status()["outbox"]["reports"] == 0
    # each report once; their order of arrival is not the order made (a report whose WebP
    # is made after it was stored goes when its photo is ready)
    ids = sorted(r["id"] for r in acker.unique_reports())
    assert ids == sorted(made)
    seqs = [int(i.split(":")[1]) for i in ids]
    assert seqs == list(range(seqs[0], seqs[0] + 4))   # seq survived the kill: no gap, no repeat
    assert acker.errors == []


def test_garbage_and_silence_on_the_serial_line_are_reported_not_fatal(tmp_path, broker, acker):
    master, slave, path = open_pty()
    try:
        with DeviceProc(tmp_path, broker,
                        extra=[*FAST, "--gnss-port", path, "--cancel-grace", "0"]) as dev:
            noise = bytes(range(256)) * 4 + b"$GPGGA,garbage*00\r\n$GPRMC,,,,*ZZ\r\n" * 20
            deadline = time.monotonic() + 20
            while dev.status()["gnss"]["state"] != "garbage":
                os.write(master, noise)
                time.sleep(0.2)
                assert time.monotonic() < deadline, dev.status()["gnss"]
            garbage = dev.status()["gnss"]
            assert garbage["accepted"] == 0 and garbage["rejected"]
            no_fix = dev.press("garbage")["last"]
            # silence: nothing more arrives
            wait_until(lambda: dev.status()["gnss"]["state"] == "silent", 20, "silent state")
            # then a real receiver talks again: positions come back
            lines = read_capture(find_capture("nmea-rtk.log"))
            os.write(master, b"".join(lines[:60]))
            wait_until(lambda: dev.status()["fix"] is not None, 20, "a fix again")
            wait_until(lambda: len(acker.unique_reports()) == 1, 20, "the no-fix report")
            assert dev.alive()
    finally:
        os.close(master)
        os.close(slave)
    rep = acker.unique_reports()[0]
    assert rep["id"] == no_fix and rep["fix"] is None
    assert rep["flags"] == ["clock_fallback", "no_fix"] and rep["time_source"] == "system"
    log = dev.log()
    assert "no valid NMEA sentence" in log and "no bytes from the receiver" in log
    assert "Traceback" not in log


def test_long_press_cancels_the_last_report_within_its_grace(tmp_path, broker, acker):
    with DeviceProc(tmp_path, broker, extra=[*FAST, "--cancel-grace", "4"]) as dev:
        doomed = dev.press("garbage")["last"]
        held = dev.press("garbage", hold=True)
        assert held["reports"] == 0 and held["cancelled"] == 1
        kept = dev.press("parking")["last"]
        wait_until(lambda: len(acker.unique_reports()) == 1, 30, "the kept report")
        time.sleep(0.5)
        cancelled = [json.loads(x) for x in
                     (dev.data_dir / "cancelled.jsonl").read_text().splitlines()]
    assert [r["id"] for r in acker.unique_reports()] == [kept]
    assert [c["report"]["id"] for c in cancelled] == [doomed]     # kept locally, not sent


def test_task_is_shown_and_answered_with_a_result_report(tmp_path, broker, acker):
    with DeviceProc(tmp_path, broker, extra=[*FAST, "--cancel-grace", "0"]) as dev:
        wait_until(lambda: dev.status()["connected"], 20, "connected")
        # the task names its report's class (06034 废弃车辆): the result is coded with it,
        # not with the profile's own task_result class (06010)
        task = messages.make_task("T-20261128-0001", "verify", ORIGIN[0], ORIGIN[1],
                                  text="核实: 废弃车辆", grid="410106001001001",
                                  kind="event", code="06034")
        acker.publish_task("410106", "pv-0001", task)
        wait_until(lambda: dev.status()["tasks"], 20, "the task on the device")
        assert dev.status()["tasks"][0]["task"] == "T-20261128-0001"
        dev.press("yes")                     # the operator's button
        wait_until(lambda: acker.unique_reports(), 20, "the result report")
        wait_until(lambda: dev.status()["outbox"]["reports"] == 0, 20, "result acked")
        assert dev.status()["tasks"] == []
    rep = acker.unique_reports()[0]
    assert (rep["source"], rep["task"], rep["result"]) == ("task", "T-20261128-0001",
                                                           "confirmed")
    assert (rep["kind"], rep["code"]) == ("event", "06034")
    leafs = [leaf for leaf, dev_id, payload, _r in acker.messages
             if leaf == "task/result" and json.loads(payload)["id"] == rep["id"]]
    assert leafs and rep["photos"]
    assert "TASK T-20261128-0001 核实" in dev.log()
    assert acker.errors == []


def test_sigterm_publishes_offline_status_and_exits_cleanly(tmp_path, broker, acker):
    dev = DeviceProc(tmp_path, broker, extra=FAST)
    with dev:
        wait_until(lambda: dev.status()["connected"], 20, "connected")
        assert dev.terminate(timeout=40) == 0   # a loaded CI machine is slow to wind down
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="status-reader")
    c.on_message = lambda cl, u, m: got.append((m.retain, json.loads(m.payload)))
    c.on_connect = lambda cl, *a: cl.subscribe(topics.topic("410106", "pv-0001", "status"), 1)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        wait_until(lambda: got, 10, "retained status")
    finally:
        c.loop_stop()
    retained, status = got[0]
    assert retained and status == {"v": 1, "device": "pv-0001", "state": "offline"}
    assert "device pv-0001 stopped" in dev.log()


def test_fixed_terminal_reports_motion_at_its_position_and_answers_on_the_kiosk(
        tmp_path, broker, acker, shapely_grid):
    with DeviceProc(tmp_path, broker, profile="fixed-terminal", device_id="ft-0001",
                    extra=["--sim", "--kiosk-port", "0", "--cancel-grace", "0"]) as dev:
        dev.press("pir")
        wait_until(lambda: acker.unique_reports(), 20, "the motion report")
        motion = acker.unique_reports()[0]
        # a class this terminal's code book lacks: the profile's class, and a log line
        acker.publish_task("410106", "ft-0001", messages.make_task(
            "T-20261128-0002", "check", 34.8095, 113.2965, text="核查: 积存垃圾渣土",
            kind="event", code="99999"))
        wait_until(lambda: dev.status()["tasks"], 20, "the task")
        kiosk = dev.status()["kiosk"]
        page = urllib.request.urlopen(kiosk, timeout=5).read().decode()
        assert "T-20261128-0002" in page and "核查" in page and "resolved" in page
        form = urllib.parse.urlencode({"task": "T-20261128-0002", "result": "resolved"})
        answer = urllib.request.urlopen(kiosk + "answer", form.encode(), timeout=10).read()
        assert b"answered" in answer
        wait_until(lambda: len(acker.unique_reports()) == 2, 20, "the result report")
        log = dev.log()
    assert motion["source"] == "sensor" and motion["code"] == "06011"
    assert motion["flags"] == ["clock_fallback", "fixed_position", "no_fix"]
    assert motion["grid"] == load_profile("fixed-terminal")["grid"]
    assert [motion["grid"]] == shapely_grid(motion["fix"]["lon"], motion["fix"]["lat"])
    assert (motion["fix"]["lat"], motion["fix"]["lon"]) == (34.8095, 113.2965)
    result = acker.unique_reports()[1]
    assert (result["task"], result["result"]) == ("T-20261128-0002", "resolved")
    assert (result["kind"], result["code"]) == ("event", "06011")
    assert "names class event 99999, not in" in log
    assert acker.errors == []


def test_a_citizen_files_a_report_on_the_fixed_terminals_kiosk(tmp_path, broker, acker):
    """The kiosk's form: a class picked on the screen, a few words and the terminal's
    camera's photo make a report (source citizen) that leaves through the outbox."""
    with DeviceProc(tmp_path, broker, profile="fixed-terminal", device_id="ft-0001",
                    extra=["--sim", "--kiosk-port", "0"]) as dev:
        kiosk = dev.status()["kiosk"]
        page = urllib.request.urlopen(kiosk + "report", timeout=5).read().decode()
        assert "废弃车辆" in page and "供水井盖" in page     # profile text, code book name
        form = urllib.parse.urlencode({"code": "06034", "text": "路边 旧车", "photo": "1"})
        filed = urllib.request.urlopen(kiosk + "report", form.encode(), timeout=10).read()
        assert "已提交".encode() in filed
        wait_until(lambda: acker.unique_reports(), 20, "the citizen's report")
        (rep,) = acker.unique_reports()
        wait_until(lambda: acker.photo(rep["id"]), 20, "its photo")
    assert (rep["source"], rep["kind"], rep["code"], rep["text"]) == (
        "citizen", "event", "06034", "路边 旧车")
    assert rep["grid"] == load_profile("fixed-terminal")["grid"]
    assert hashlib.sha256(acker.photo(rep["id"])).hexdigest() == rep["photos"][0]["sha256"]
    assert acker.errors == []


def test_the_cancel_grace_runs_in_elapsed_time_whatever_the_clock_does(tmp_path, broker,
                                                                        acker):
    """A button report's grace is 4 s of elapsed time: the device clock stepping three
    hours ahead inside it does not end it (a long press still cancels), and stepping
    back to 2019 inside it does not hold the report, and every one behind it, until the
    clock has caught up again (a step back of seven years: seven years)."""
    if why := device_clock.available():
        pytest.skip(f"a device clock cannot be moved here: {why}")
    clock = device_clock.DeviceClock(tmp_path)
    with DeviceProc(tmp_path, broker, extra=[*FAST, "--cancel-grace", "4"],
                    clock=clock) as dev:
        doomed = dev.press("garbage")["last"]
        clock.set(3 * 3600)
        held = dev.press("garbage", hold=True)
        assert held["reports"] == 0 and held["cancelled"] == 1
        kept = dev.press("parking")["last"]
        clock.set(-(time.time() - datetime.datetime(2019, 6, 1, 8).timestamp()))
        behind = dev.press("road")["last"]
        wait_until(lambda: len(acker.unique_reports()) == 2, 30, "the kept reports")
        wait_until(lambda: dev.status()["outbox"]["reports"] == 0, 20, "outbox drained")
        cancelled = [json.loads(x) for x in
                     (dev.data_dir / "cancelled.jsonl").read_text().splitlines()]
    assert [r["id"] for r in acker.unique_reports()] == [kept, behind]
    assert [c["report"]["id"] for c in cancelled] == [doomed]
    assert acker.errors == []
