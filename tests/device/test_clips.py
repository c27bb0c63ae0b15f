"""Event clips: the packet ring's bounds, cutting around triggers, real H.264 into MP4."""

import io
import time

import av
import numpy as np
import pytest
from gridlink.firmware.device import clips, video
from gridlink.firmware.device.camera import CameraError
from gridlink.firmware.device.profile import load_profile, with_defaults
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = 1_800_000_000.0        # a wall-clock second, as the recorder stamps packets
FPS, GOP = 10, 10            # ten frames a second, a keyframe every second
W, H = 320, 240


def fake_stream(seconds, size=100, fps=FPS, gop=GOP, t0=T0):
    """(t, key, data) of a stream without real video: keyframes every ``gop`` frames."""
    return [(t0 + i / fps, i % gop == 0, bytes([i % 256]) * (size * (5 if i % gop == 0 else 1)))
            for i in range(round(seconds * fps))]


def fill(ring, stream):
    for t, key, data in stream:
        ring.append(t, key, data)


@pytest.fixture(scope="module")
def h264():
    """14 s of real H.264 from the simulated camera at 320×240, with the frames' source."""
    src = video.SimulatedVideo(W, H)
    enc = video.H264Encoder(W, H, FPS, bit_rate=300_000, gop_s=GOP / FPS)
    packets = []
    for i in range(14 * FPS):
        packets += enc.encode(src.frame(T0 + i / FPS), T0 + i / FPS)
    packets += enc.flush()
    return src, packets


def decode(path_or_bytes):
    """(frames as RGB arrays, container duration in s) of an MP4."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    with av.open(io.BytesIO(data)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        return frames, c.duration / 1e6


# ---- the ring ------------------------------------------------------------------------

def test_time_bound_keeps_at_least_the_seconds_and_less_than_one_gop_more():
    ring = clips.PacketRing(3.0, 10_000_000)
    fill(ring, fake_stream(10))
    s = ring.stats()
    assert 3.0 <= s["seconds"] < 3.0 + GOP / FPS
    first = ring.window(0, float("inf"))[0]
    assert first.key and first.t == pytest.approx(T0 + 6.0, abs=1e-6)
    assert ring.evicted == 10 * FPS - s["packets"]


def test_byte_bound_is_never_exceeded_and_the_ring_starts_at_a_keyframe():
    ring = clips.PacketRing(60.0, 5_000)
    for t, key, data in fake_stream(10):
        ring.append(t, key, data)
        held = ring.window(0, float("inf"))
        assert ring.stats()["bytes"] <= 5_000
        assert sum(len(p.data) for p in held) == ring.stats()["bytes"]
        assert not held or held[0].key


def test_packets_before_the_first_keyframe_wait_and_are_counted():
    ring = clips.PacketRing(10, 1_000_000)
    assert ring.append(T0, False, b"p") is False
    assert ring.append(T0 + 0.1, False, b"p") is False
    assert ring.append(T0 + 0.2, True, b"k") is True
    assert ring.waiting == 2 and ring.stats()["packets"] == 1


def test_a_gop_over_the_byte_bound_is_dropped_until_the_next_keyframe():
    ring = clips.PacketRing(10, 1_000)
    assert ring.append(T0, True, b"k" * 2_000) is False
    assert ring.append(T0 + 0.1, False, b"p" * 10) is False
    assert ring.append(T0 + 0.2, True, b"k" * 500) is True
    assert ring.stats()["packets"] == 1 and ring.waiting == 1


@pytest.mark.parametrize(("args", "message"), [
    ((0, 100), "positive"), ((10, 0), "positive"), ((-1, 100), "positive")])
def test_bad_ring_bounds_are_refused(args, message):
    with pytest.raises(clips.ClipError, match=message):
        clips.PacketRing(*args)


def test_bad_packets_are_refused_and_the_ring_is_unchanged():
    ring = clips.PacketRing(10, 1_000_000)
    ring.append(T0 + 1, True, b"k")
    with pytest.raises(clips.ClipError, match="must not go back"):
        ring.append(T0, False, b"p")
    with pytest.raises(clips.ClipError, match="empty"):
        ring.append(T0 + 2, False, b"")
    assert ring.stats()["packets"] == 1 and ring.newest == T0 + 1


def test_a_window_starts_at_the_keyframe_at_or_before_its_start():
    ring = clips.PacketRing(60, 10_000_000)
    fill(ring, fake_stream(5))
    w = ring.window(T0 + 2.5, T0 + 3.5)
    assert w[0].key and w[0].t == pytest.approx(T0 + 2.0, abs=1e-6)
    assert w[-1].t <= T0 + 3.5 and w[-1].t == pytest.approx(T0 + 3.5, abs=1e-6)
    early = ring.window(T0 - 100, T0 + 1)
    assert early[0].t == T0 and len(early) == FPS + 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.5), st.booleans(), st.integers(1, 400)),
                max_size=120),
       st.floats(0.1, 5), st.integers(100, 3_000))
def test_ring_invariants_hold_for_any_stream(steps, max_seconds, max_bytes):
    ring = clips.PacketRing(max_seconds, max_bytes)
    t, accepted = T0, []
    for gap, key, size in steps:
        t += gap
        if ring.append(t, key, bytes(size)):
            accepted.append(t)
        held = ring.window(-1, float("inf"))
        assert sum(len(p.data) for p in held) <= max_bytes
        if held:
            assert held[0].key
            assert held[-1].t == t                          # the newest is always kept
            keys = [p.t for p in held if p.key]
            # evicted only while the GOP after it already reaches back max_seconds
            assert len(keys) < 2 or keys[1] > t - max_seconds or \
                sum(len(p.data) for p in held) > max_bytes
            times = [p.t for p in held]
            assert times == sorted(times)


# ---- clips from real H.264 -----------------------------------------------------------

def test_a_trigger_keeps_the_seconds_before_and_after_as_a_playable_mp4(h264, tmp_path):
    src, packets = h264
    ring = clips.PacketRing(8, 10_000_000)
    got = []
    maker = clips.EventClips(ring, tmp_path, pre_s=3, post_s=2, on_clip=got.append)
    trigger = T0 + 6.55
    for t, key, data in packets:
        if t >= trigger and not maker.pending and not got:
            maker.trigger(trigger, name="r1")
        ring.append(t, key, data)
        maker.poll(t)
    (clip,) = got
    assert clip.path == tmp_path / "r1.mp4" and clip.path.stat().st_size == clip.bytes
    assert T0 + 3.55 - GOP / FPS < clip.start_t <= T0 + 3.55      # from the keyframe before
    assert clip.pre_s >= 3 and clip.post_s >= 2
    frames, duration = decode(clip.path)
    assert len(frames) == clip.frames
    assert 5 - 0.01 <= duration <= 5 + GOP / FPS + 0.01
    # the pre-trigger part is really there: the first frame is the one captured at start
    first = np.asarray(src.frame(clip.start_t), dtype=int)
    at_trigger = np.asarray(src.frame(trigger), dtype=int)
    assert np.abs(frames[0] - first).mean() < 0.5 * np.abs(frames[0] - at_trigger).mean()
    with av.open(str(clip.path)) as c:
        assert c.metadata["comment"] == f"gridlink trigger at {clip.pre_s:.3f} s"


def test_a_trigger_at_start_up_gets_what_the_ring_has(h264, tmp_path):
    _src, packets = h264
    ring = clips.PacketRing(30, 10_000_000)
    maker = clips.EventClips(ring, tmp_path, pre_s=10, post_s=1)
    fill(ring, [p for p in packets if p[0] < T0 + 1.5])
    maker.trigger(T0 + 1.5, name="early")
    assert maker.poll(T0 + 1.5) == []                  # the post part is not recorded yet
    fill(ring, [p for p in packets if T0 + 1.5 <= p[0] < T0 + 3])
    (clip,) = maker.poll(T0 + 3)
    assert clip.start_t == T0 and clip.pre_s == pytest.approx(1.5)
    frames, duration = decode(clip.path)
    assert duration == pytest.approx(2.6, abs=0.11) and len(frames) == clip.frames


def test_overlapping_triggers_each_get_their_clip(h264, tmp_path):
    _src, packets = h264
    ring = clips.PacketRing(10, 10_000_000)
    maker = clips.EventClips(ring, tmp_path, pre_s=2, post_s=3)
    done = []
    for t, key, data in packets:
        if abs(t - (T0 + 5)) < 1e-6:
            maker.trigger(t, name="a")
        if abs(t - (T0 + 6.5)) < 1e-6:
            maker.trigger(t, name="b")
        ring.append(t, key, data)
        done += maker.poll(t)
    a, b = sorted(done, key=lambda c: c.name)
    assert a.start_t == pytest.approx(T0 + 3, abs=1e-6)
    assert b.start_t == pytest.approx(T0 + 4, abs=1e-6)
    assert a.end_t > b.start_t                           # they overlap, each whole
    for clip in (a, b):
        frames, duration = decode(clip.path)
        assert len(frames) == clip.frames and duration >= 5 - 0.01


def test_a_stalled_recorder_still_gets_its_clip_late(h264, tmp_path):
    _src, packets = h264
    ring = clips.PacketRing(30, 10_000_000)
    maker = clips.EventClips(ring, tmp_path, pre_s=1, post_s=20, late_s=2)
    fill(ring, [p for p in packets if p[0] < T0 + 4])
    maker.trigger(T0 + 3)
    assert maker.poll(T0 + 24.9) == []                # end T0+23, late by 2 s
    (clip,) = maker.poll(T0 + 25)
    assert clip.post_s == pytest.approx(1.0, abs=0.01) and maker.pending == []


def test_clip_settings_are_checked(tmp_path):
    ring = clips.PacketRing(10, 1_000_000)
    with pytest.raises(clips.ClipError, match="give the ring at least"):
        clips.EventClips(ring, tmp_path, pre_s=10, post_s=20)
    with pytest.raises(clips.ClipError, match="negative"):
        clips.EventClips(ring, tmp_path, pre_s=-1, post_s=2)
    maker = clips.EventClips(ring, tmp_path, pre_s=1, post_s=1)
    maker.trigger(T0, name="x")
    with pytest.raises(clips.ClipError, match="already pending"):
        maker.trigger(T0 + 1, name="x")


def test_write_mp4_refuses_what_is_no_clip(h264):
    _src, packets = h264
    pk = [clips.Packet(*p) for p in packets[:20]]
    with pytest.raises(clips.ClipError, match="no packets"):
        clips.write_mp4([], io.BytesIO())
    with pytest.raises(clips.ClipError, match="keyframe"):
        clips.write_mp4(pk[1:], io.BytesIO())
    with pytest.raises(clips.ClipError, match=r"SPS|H\.264"):
        clips.write_mp4([clips.Packet(T0, True, b"\x00\x00\x00\x01\x09garbage")],
                        io.BytesIO())


# ---- the recorder --------------------------------------------------------------------

def test_the_synthetic_recorder_thread_records_real_h264_and_cuts_clips(tmp_path):
    conf = with_defaults({**load_profile("patrol-vehicle"),
                          "clips": {"width": W, "height": H, "fps": 10, "gop_s": 0.5,
                                    "pre_s": 0.5, "post_s": 0.5, "bit_rate": 200_000}})
    got = []
    maker, recorder = video.clip_recorder(conf["clips"], "synthetic", tmp_path, got.append)
    recorder.start()
    try:
        time.sleep(1.0)
        maker.trigger()
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline and recorder.is_alive():
            time.sleep(0.05)
    finally:
        recorder.stop()
    assert recorder.error is None and not recorder.is_alive()
    (clip,) = got
    frames, _duration = decode(clip.path)
    assert len(frames) == clip.frames >= 5 and clip.pre_s >= 0.5
    assert frames[0].shape == (H, W, 3)


def test_recorder_backends_fail_clearly():
    ring = clips.PacketRing(10, 1_000_000)
    with pytest.raises(CameraError, match="unknown camera backend"):
        video.make_recorder("webcam", ring)
    with pytest.raises(CameraError, match="picamera2"):
        video.make_recorder("picamera2", ring)
    assert video.make_recorder("none", ring) is None
    try:
        import cv2  # noqa: F401
    except ImportError:
        with pytest.raises(CameraError, match="OpenCV"):
            video.make_recorder("opencv", ring)


def test_a_frame_of_the_wrong_size_is_refused():
    enc = video.H264Encoder(W, H, FPS)
    from PIL import Image

    with pytest.raises(clips.ClipError, match="encoder takes"):
        enc.encode(Image.new("RGB", (W + 2, H)), T0)


def test_profile_clip_defaults_are_ten_seconds_before_and_twenty_after():
    conf = with_defaults({**load_profile("patrol-vehicle"), "clips": {}})["clips"]
    assert (conf["pre_s"], conf["post_s"]) == (10, 20)
    assert conf["width"] == 1280 and conf["height"] == 720 and conf["bit_rate"] <= 1_000_000


def test_the_last_thirty_seconds_on_request(h264, tmp_path):
    _src, packets = h264
    ring = clips.PacketRing(12, 10_000_000)
    maker = clips.EventClips(ring, tmp_path, pre_s=2, post_s=3)
    fill(ring, packets)
    now = packets[-1][0]
    maker.trigger(now, name="last", pre_s=10, post_s=0)
    (clip,) = maker.poll(now)                              # nothing to wait for
    assert clip.pre_s >= 10 and clip.start_t <= now - 10
    frames, duration = decode(clip.path)
    assert len(frames) == clip.frames and 10 <= duration <= 10 + GOP / FPS + 0.11
    with pytest.raises(clips.ClipError, match="does not fit"):
        maker.trigger(now, pre_s=30, post_s=0)


def test_a_window_with_no_video_is_answered_at_once_with_the_reason(h264, tmp_path):
    _src, packets = h264
    ring = clips.PacketRing(30, 10_000_000)
    missed = []
    maker = clips.EventClips(ring, tmp_path, pre_s=2, post_s=1, late_s=1,
                             on_missed=lambda name, why: missed.append((name, why)))
    maker.trigger(T0, name="silent")                  # the recorder has given nothing yet
    assert maker.poll(T0 + 1.9) == [] and missed == []
    assert maker.poll(T0 + 2) == [] and maker.pending == []
    assert missed == [("silent", "no video was recorded from -2.0 s to +1.0 s around the "
                                 "trigger (the ring holds no video at all)")]
    fill(ring, [p for p in packets if T0 + 5 <= p[0] < T0 + 7])   # video only after it
    maker.trigger(T0 + 1, name="before", pre_s=1, post_s=1)
    assert maker.poll(T0 + 7) == []
    name, why = missed[-1]
    assert name == "before" and "the ring holds video from +4.0 s to +5.9 s" in why
    assert list(tmp_path.iterdir()) == []              # no file for either
