"""The device with a ``clips`` section, as a real process in simulation: the synthetic
camera records into the ring; a button report's clip (seconds before the press included)
and voice memo, and a ``clip`` task's "last 30 s", reach a stand-in gateway as media of
their reports, after the reports.  Tiny frames and a short ring: the machine is shared."""

import json
import time
from pathlib import Path

import pytest
from gridlink.firmware.core import messages
from gridlink.firmware.device.memo import memo_info
from gridlink.gateway.media import check_clip

from tests.support.clips import tiny_clip
from tests.support.device_rig import DeviceProc, GatewayAcker
from tests.support.paths import ROOT
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


def clip_profile(tmp_path, memo=False, fps=5):
    profile = json.loads((ROOT / "device_profiles" / "patrol-vehicle.json").read_text())
    profile.pop("$schema")
    profile["clips"] = {"pre_s": 2, "post_s": 1, "width": 160, "height": 120, "fps": fps,
                        "gop_s": 1, "bit_rate": 100000, "ring_bytes": 1000000,
                        "upload_bytes_per_s": 200000}
    profile["sim"]["clips"] = True        # the shipped profile records none in simulation
    if memo:
        profile["memo"] = {"seconds": 2}
    profile["camera"]["keep_delivered_s"] = 1             # delivered media pruned soon
    path = tmp_path / "clip-vehicle.json"
    path.write_text(json.dumps(profile, ensure_ascii=False))
    return path


def test_a_report_and_a_clip_task_each_bring_their_clip(tmp_path, broker):
    gw = GatewayAcker(broker).start()
    dev = DeviceProc(tmp_path, broker, profile=str(clip_profile(tmp_path, memo=True)),
                     extra=["--sim", "--cancel-grace", "0"])
    try:
        with dev:
            time.sleep(3)                            # the ring fills: 2 s before the press
            status = dev.status()
            assert status["alive"]["recorder"] is True   # the watchdog vouches for it too
            assert status["media"] == {"pending": 0, "bytes": 0, "recorder_error": None}
            dev.press("garbage")
            (rep,) = wait_until(gw.unique_reports, 20, "the button report")
            media = dict(wait_until(lambda: len(gw.media_of(rep["id"])) == 2
                                    and gw.media_of(rep["id"]), 30,
                                    f"the report's clip and memo (log {dev.log_path})"))
            assert 1.9 <= memo_info(media["memo"])["seconds"] <= 2.1
            info = check_clip(media["clip"])
            assert (info["width"], info["height"]) == (160, 120)
            assert 2.0 <= info["trigger_offset_s"] <= 3.5     # pre_s plus < one GOP
            assert info["seconds"] >= info["trigger_offset_s"] + 0.5

            task = messages.make_task("T-20261206-clip01", "clip", 34.81, 113.29,
                                      text="最近30秒")
            gw.publish_task("410106", "pv-0001", task)
            result = wait_until(lambda: [r for r in gw.unique_reports()
                                         if r.get("task") == task["task"]], 20,
                                "the task's result")[0]
            assert result["result"] == "recorded" and result["source"] == "task"
            (kind, last), = wait_until(lambda: gw.media_of(result["id"]), 30,
                                       "the task's clip")
            info = check_clip(last)
            assert kind == "clip"
            # all the ring holds (pre 2 + post 1 + 2 GOPs = 5 s, less than 30), before "now"
            assert 3.0 <= info["seconds"] <= 6.5 and info["trigger_offset_s"] >= 3.0
            assert gw.errors == []
            wait_until(lambda: not list((dev.data_dir / "media").glob("*.mp4")), 10,
                       "delivered clips pruned on the device")
    finally:
        gw.stop()


def test_a_clip_task_to_a_device_without_a_recorder_is_answered_no_clip(tmp_path, broker):
    gw = GatewayAcker(broker).start()
    try:
        with DeviceProc(tmp_path, broker, extra=["--sim"]):  # the shipped profile: no clips
            task = messages.make_task("T-20261206-clip02", "clip", 34.81, 113.29)
            gw.publish_task("410106", "pv-0001", task)
            (result,) = wait_until(lambda: [r for r in gw.unique_reports()
                                            if r.get("task") == task["task"]], 20,
                                   "the task's result")
            assert (result["result"], result["photos"]) == ("no_clip", [])
            time.sleep(1)
            assert gw.media_of(result["id"]) == [] and gw.errors == []
    finally:
        gw.stop()


def test_a_cancelled_reports_clip_is_not_sent(tmp_path, broker):
    gw = GatewayAcker(broker).start()
    dev = DeviceProc(tmp_path, broker, profile=str(clip_profile(tmp_path)),
                     extra=["--sim", "--cancel-grace", "6"])
    try:
        with dev:
            time.sleep(1)
            dev.press("garbage")
            time.sleep(2.5)                          # its clip (1 s after) is written …
            dev.press("garbage", hold=True)          # … and the report taken back
            wait_until(lambda: dev.status()["counters"]["cancelled"] == 1, 10, "cancelled")
            dev.press("road")
            (rep,) = wait_until(gw.unique_reports, 20, "the second report")
            assert rep["code"] == "06013"
            wait_until(lambda: gw.media_of(rep["id"]), 30, "the second report's clip")
            assert len(gw.media) == 1                # nothing of the cancelled one
            wait_until(lambda: not list((dev.data_dir / "media").glob("*.mp4")), 10,
                       "the delivered clip pruned, the cancelled one never kept")
    finally:
        gw.stop()


def results_of(gw, task_id):
    return [r for r in gw.unique_reports() if r.get("task") == task_id]


def pending_tasks(data_dir):
    path = Path(data_dir) / "clip_tasks.json"
    return json.loads(path.read_text())["pending"] if path.exists() else []


def test_clip_tasks_taken_before_a_restart_are_finished_after_it(tmp_path, broker):
    """A data dir as a killed device leaves it: one task whose clip was never written,
    one whose clip was written but not yet answered, one answered already."""
    lost, written, answered = (messages.make_task(f"T-20261206-rst0{n}", "clip", 34.81,
                                                  113.29) for n in range(3))
    dev = DeviceProc(tmp_path, broker, extra=["--sim"])     # recording or not: the same
    (dev.data_dir / "clips").mkdir(parents=True)
    clip = tiny_clip(tmp_path)
    (dev.data_dir / "clips" / f"t-{written['task']}.mp4").write_bytes(clip)
    (dev.data_dir / "clip_tasks.json").write_text(json.dumps({
        "pending": [{"task": lost, "asked": time.time() - 5, "pre_s": 30},
                    {"task": written, "asked": time.time() - 4, "pre_s": 30}],
        "answered": [answered["task"]]}))
    gw = GatewayAcker(broker).start()
    try:
        with dev:
            (no,) = wait_until(lambda: results_of(gw, lost["task"]), 20, "the lost task's result")
            assert no["result"] == "no_clip" and no["source"] == "task"
            assert "restarted before the clip was written" in no["text"]
            (yes,) = wait_until(lambda: results_of(gw, written["task"]), 20,
                                "the written clip's task result")
            assert yes["result"] == "recorded"
            assert wait_until(lambda: gw.media_of(yes["id"]), 20, "its clip") == [("clip", clip)]
            for again in (lost, written, answered):             # the broker sends it again
                gw.publish_task("410106", "pv-0001", again)
            time.sleep(2)
            assert [len(results_of(gw, t["task"])) for t in (lost, written, answered)] \
                == [1, 1, 0]
            assert pending_tasks(dev.data_dir) == [] and gw.errors == []
            assert not (dev.data_dir / "clips" / f"t-{written['task']}.mp4").exists()
    finally:
        gw.stop()


def test_a_clip_task_survives_a_kill_before_its_clip_is_written(tmp_path, broker):
    """SIGKILL as soon as the task is on disk (at 1 frame/s its clip is written up to a
    second later): after the restart the task is answered once, no_clip with the reason
    if its clip was not written, else with the clip."""
    gw = GatewayAcker(broker).start()
    task = messages.make_task("T-20261206-kill1", "clip", 34.81, 113.29)
    profile = str(clip_profile(tmp_path, fps=1))
    try:
        dev = DeviceProc(tmp_path, broker, profile=profile, extra=["--sim"])
        with dev:
            time.sleep(2)                                # a frame or two in the ring
            gw.publish_task("410106", "pv-0001", task)
            wait_until(lambda: pending_tasks(dev.data_dir), 20, "the task on disk",
                       interval=0.005)
            dev.kill()
        written = (dev.data_dir / "clips" / f"t-{task['task']}.mp4").exists()
        answered_before = results_of(gw, task["task"])
        with DeviceProc(tmp_path, broker, profile=profile, extra=["--sim"]) as again:
            (result,) = wait_until(lambda: results_of(gw, task["task"]), 20,
                                   f"the task's one result (log {again.log_path})")
            time.sleep(1.5)
            assert len(results_of(gw, task["task"])) == 1
            if written or answered_before:
                assert result["result"] == "recorded"
                wait_until(lambda: gw.media_of(result["id"]), 20, "its clip")
            else:
                assert result["result"] == "no_clip"
                assert "restarted before the clip was written" in result["text"]
            assert pending_tasks(again.data_dir) == []
    finally:
        gw.stop()
