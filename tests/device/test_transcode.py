"""camera.format webp: the report is stored at once naming its JPEG and held back; the
worker's WebP then replaces it in the outbox before anything is sent; a cancel, a failure
or a power cut in the middle loses nothing.  In process, with no broker reachable (the
outbox is what is checked), the simulated camera and real encoders."""

import json
import threading

import piexif
import pytest
from gridlink.firmware.core.messages import make_task
from gridlink.firmware.core.outbox import PHOTO_PROGRESS, REPORT, TASK_RESULT, Outbox
from gridlink.firmware.device import camera as cam
from gridlink.firmware.device import clips
from gridlink.firmware.device.hardware import Hardware, Replay
from gridlink.firmware.device.profile import load_profile
from gridlink.firmware.device.runtime import Device
from gridlink.firmware.device.store import Store

from tests.support.waiting import wait_until

SIZE = (320, 240)          # small pictures: the machine is shared


@pytest.fixture
def device(tmp_path):
    prof = load_profile("patrol-vehicle")
    prof["camera"].update(backend="synthetic", width=SIZE[0], height=SIZE[1],
                          max_bytes=20_000, format="webp")
    hw = Hardware(prof, "sim", replay=Replay.of(prof, speed=5))
    dev = Device(prof, tmp_path / "dev", "mqtt://127.0.0.1:9", hardware=hw, console=False,
                 cancel_grace=30)
    dev.start()
    yield dev
    dev.stop()


def outbox(dev):
    with dev.store.lock:
        reports = [json.loads(p) for _s, _k, p in dev.store.pending((REPORT, TASK_RESULT))]
        jobs = [json.loads(p) for _s, _k, p in dev.store.pending((PHOTO_PROGRESS,))]
    return reports, jobs


@pytest.fixture
def gate(monkeypatch):
    """Hold the WebP encoder until the test opens the gate."""
    opened, encode = threading.Event(), cam.transcode_webp

    def held(*args):
        assert opened.wait(30)
        return encode(*args)

    monkeypatch.setattr(cam, "transcode_webp", held)
    return opened


def test_the_report_is_stored_at_once_and_names_the_webp_before_it_leaves(device, gate):
    rep = device.report("button", "event", "06010")
    (stored,), (job,) = outbox(device)
    jpeg = stored["photos"][0]
    assert stored["id"] == rep["id"] and job["sha256"] == jpeg["sha256"]
    assert device.store.photo_path(jpeg["sha256"]).read_bytes()[:2] == b"\xff\xd8"
    assert device._hold_until(rep["id"]) == float("inf")    # the delivery holds it back
    gate.set()
    wait_until(lambda: outbox(device)[0][0]["photos"] != [jpeg], 30, "the WebP swap")
    (stored,), (job,) = outbox(device)
    webp = stored["photos"][0]
    assert {**stored, "photos": [jpeg]} == rep               # the same report otherwise
    assert job == {"report": rep["id"], "sha256": webp["sha256"], "size": webp["bytes"],
                   "done": []}
    data = device.store.photo_path(webp["sha256"]).read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) == webp["bytes"]
    assert webp["bytes"] <= cam.WEBP_RATIO * jpeg["bytes"]
    assert piexif.load(data)["0th"][piexif.ImageIFD.Software] == b"gridlink"  # EXIF kept
    assert not device.store.photo_path(jpeg["sha256"]).exists()
    device._settle_photos()                                   # the delivery's next round
    assert device._hold_until(rep["id"]) < float("inf")


def test_a_report_cancelled_while_its_webp_is_made_stays_cancelled(device, gate):
    rep = device.report("button", "event", "06010")
    assert device.cancel_last() == rep["id"]
    gate.set()
    wait_until(lambda: device.transcoder.take_done(), 30, "the worker to finish")
    assert outbox(device)[0] == []
    webps = [p for p in (device.store.dir / "photos").glob("*.jpg")
             if p.read_bytes()[:4] == b"RIFF"]
    assert webps == []


def test_when_no_webp_fits_the_report_goes_with_its_jpeg(device, monkeypatch):
    monkeypatch.setattr(cam, "transcode_webp", lambda *args: None)
    rep = device.report("button", "event", "06010")
    wait_until(lambda: device.transcoder.take_done(), 30, "the worker to finish")
    (stored,), (job,) = outbox(device)
    assert stored == rep and job["sha256"] == rep["photos"][0]["sha256"]


def _record(ob, kind, obj):
    ob.append(kind, json.dumps(obj, separators=(",", ":")).encode())


@pytest.mark.parametrize("cut_after", ["new report", "new upload"])
def test_a_cut_in_the_middle_of_a_swap_leaves_one_whole_report(tmp_path, cut_after):
    rep = {"id": "pv-0001:7", "photos": [{"sha256": "a" * 64, "bytes": 100}]}
    webp = {**rep, "photos": [{"sha256": "b" * 64, "bytes": 70}]}
    with Outbox(str(tmp_path / "outbox")) as ob:
        _record(ob, REPORT, rep)
        _record(ob, PHOTO_PROGRESS, {"report": rep["id"], "sha256": "a" * 64, "size": 100,
                                     "done": []})
        _record(ob, REPORT, webp)
        if cut_after == "new upload":
            _record(ob, PHOTO_PROGRESS, {"report": rep["id"], "sha256": "b" * 64,
                                         "size": 70, "done": []})
    store = Store(tmp_path)
    try:
        (kept,) = [json.loads(p) for _s, _k, p in store.pending((REPORT,))]
        assert kept == (webp if cut_after == "new upload" else rep)
    finally:
        store.close()


def test_a_clip_task_whose_window_holds_no_video_is_answered_at_once(tmp_path):
    prof = load_profile("patrol-vehicle")
    prof["camera"]["backend"] = "none"
    dev = Device(prof, tmp_path / "dev", "mqtt://127.0.0.1:9",
                 hardware=Hardware(prof, "sim", replay=Replay.of(prof, speed=5)),
                 console=False)
    dev.start()
    try:      # a recorder that has given no video yet: its ring is empty
        dev.clips = clips.EventClips(clips.PacketRing(60, 1_000_000), tmp_path / "clips",
                                     pre_s=2, post_s=1, late_s=0, on_missed=dev._on_no_clip)
        task = make_task("T-20261206-clip02", "clip", 34.81, 113.29, text="最近30秒")
        dev._on_task(task)
        assert [e["task"]["task"] for e in dev.cliptasks.pending()] == [task["task"]]
        dev.clips.poll(dev.clips.clock() + 120)
        (answer,) = outbox(dev)[0]
        assert answer["task"] == task["task"] and answer["result"] == "no_clip"
        assert "no video was recorded" in answer["text"]
        assert "restarted" not in answer["text"]
        assert dev.cliptasks.pending() == []
    finally:
        dev.stop()


def test_an_urgent_report_leaves_with_its_jpeg_unheld(device, gate):
    rep = device.report("button", "event", "06010", urgent=True)
    (stored,), (job,) = outbox(device)
    assert stored == rep and job["sha256"] == rep["photos"][0]["sha256"]
    assert device.store.photo_path(job["sha256"]).read_bytes()[:2] == b"\xff\xd8"
    assert not device.transcoder.holds(rep["id"]) and device.transcoder.busy() == 0
    assert device._hold_until(rep["id"]) < float("inf")


def test_a_report_whose_webp_is_made_later_leaves_behind_those_stored_meanwhile(device,
                                                                             monkeypatch):
    """Outbox order, which the delivery sends in, is not capture order: a report named
    again with its WebP is stored behind a report stored while the WebP was made that
    kept its JPEG (no WebP fitted)."""
    opened, encode, calls = threading.Event(), cam.transcode_webp, []

    def first_waits_the_second_does_not_fit(*args):
        calls.append(args)
        if len(calls) == 1:
            assert opened.wait(30)
            return encode(*args)
        return None

    monkeypatch.setattr(cam, "transcode_webp", first_waits_the_second_does_not_fit)
    first = device.report("button", "event", "06010")
    second = device.report("button", "event", "07001")
    assert [r["id"] for r in outbox(device)[0]] == [first["id"], second["id"]]
    opened.set()
    wait_until(lambda: [r["id"] for r in outbox(device)[0]] == [second["id"], first["id"]],
               30, "the first report stored again with its WebP")
    assert first["seq"] < second["seq"]
