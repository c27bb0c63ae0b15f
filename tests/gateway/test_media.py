"""Media at the centre: content-addressed storage, byte ranges, clip and memo checks."""

import hashlib

import pytest
from gridlink.firmware.device import clips, memo, video
from gridlink.gateway import media
from hypothesis import given
from hypothesis import strategies as st

T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    """A real 3 s clip (320×240, 10 fps) cut by the device's code around a trigger."""
    ring = clips.PacketRing(10, 10_000_000)
    done = []
    maker = clips.EventClips(ring, tmp_path_factory.mktemp("clips"), pre_s=1, post_s=1,
                             on_clip=done.append)
    recorder = video.Recorder(video.SimulatedVideo(320, 240),
                              video.H264Encoder(320, 240, 10, 200_000, 1.0), ring, 10, maker)
    for i in range(30):
        if i == 15:
            maker.trigger(T0 + 1.5, name="c")
        recorder.step(T0 + i / 10)                      # polls the clips after each frame
    (clip,) = done
    return clip, clip.path.read_bytes()


@pytest.fixture(scope="module")
def memo_bytes():
    return memo.encode_memo(memo.synthetic_memo(3))


# ---- storage -----------------------------------------------------------------------

def test_media_is_stored_by_its_hash_and_read_back_in_ranges(tmp_path, clip_bytes):
    _clip, data = clip_bytes
    store = media.LocalMediaStore(tmp_path / "media")
    sha = store.put(data, "video/mp4")
    assert sha == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "media" / sha[:2] / f"{sha}.mp4").read_bytes() == data
    assert store.has(sha) and store.size(sha) == len(data)
    assert store.content_type(sha) == "video/mp4"
    assert store.read(sha) == data and store.read(sha, 100, 199) == data[100:200]
    assert store.put(data, "video/mp4", sha) == sha               # idempotent


def test_a_hash_mismatch_is_refused_and_nothing_is_stored(tmp_path, memo_bytes):
    store = media.LocalMediaStore(tmp_path)
    wrong = "0" * 64
    with pytest.raises(media.MediaError, match="hash mismatch"):
        store.put(memo_bytes, "audio/ogg", wrong)
    assert not store.has(hashlib.sha256(memo_bytes).hexdigest()) and not store.has(wrong)


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: s.put(b"x", "video/webm"), "not kept"),
    (lambda s: s.size("a" * 64), "no media"),
    (lambda s: s.read("a" * 64), "no media"),
    (lambda s: s.has("../../etc/passwd"), "SHA-256"),
])
def test_bad_requests_to_the_store_are_refused(tmp_path, call, message):
    with pytest.raises(media.MediaError, match=message):
        call(media.LocalMediaStore(tmp_path))


def test_the_interface_alone_stores_nothing():
    with pytest.raises(media.MediaError, match="cannot store"):
        media.MediaStore().put(b"x", "video/mp4")


# ---- ranges --------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 100, None), ("", 100, None), ("bytes=0-", 100, (0, 99)),
    ("bytes=10-19", 100, (10, 19)), ("bytes=90-200", 100, (90, 99)),
    ("bytes=-10", 100, (90, 99)), ("bytes=-500", 100, (0, 99)),
    ("bytes=0-0", 1, (0, 0)), ("items=0-1", 100, None), ("bytes=0-1,5-9", 100, None),
    ("bytes=20-10", 100, None), ("bytes=-", 100, None)])
def test_range_headers(header, size, expected):
    assert media.parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100),
                                              ("bytes=0-", 0), ("bytes=-5", 0)])
def test_a_range_beyond_the_file_is_not_satisfiable(header, size):
    with pytest.raises(media.RangeNotSatisfiable):
        media.parse_range(header, size)


BOUND = st.one_of(st.just(""), st.integers(0, 20_000).map(str))


@given(st.integers(0, 10_000),
       st.one_of(st.text(max_size=30),
                 st.builds(lambda a, b: f"bytes={a}-{b}", BOUND, BOUND)))
def test_any_range_header_gives_a_range_inside_the_file_or_a_clear_answer(size, header):
    try:
        got = media.parse_range(header, size)
    except media.RangeNotSatisfiable:
        return
    if got is not None:
        start, end = got
        assert 0 <= start <= end < size


# ---- checks ----------------------------------------------------------------------------

def test_a_device_clip_passes_with_its_trigger_offset(clip_bytes):
    clip, data = clip_bytes
    info = media.check_clip(data)
    assert info["frames"] == clip.frames and (info["width"], info["height"]) == (320, 240)
    assert info["trigger_offset_s"] == pytest.approx(clip.pre_s, abs=0.001)
    assert info["seconds"] == pytest.approx(clip.end_t - clip.start_t, abs=0.11)
    assert media.mp4_boxes(data)[:1] == ["ftyp"]


@pytest.mark.parametrize("cut", [1, 10, 1000, 0.5, 0.99])
def test_a_truncated_clip_is_refused(clip_bytes, cut):
    _clip, data = clip_bytes
    keep = round(len(data) * cut) if isinstance(cut, float) else len(data) - cut
    with pytest.raises(media.MediaError, match=r"truncated|not a complete"):
        media.check_clip(data[:keep])


def test_a_clip_over_the_limit_or_of_another_kind_is_refused(clip_bytes, memo_bytes):
    _clip, data = clip_bytes
    with pytest.raises(media.MediaError, match="over the limit"):
        media.check_clip(data, max_bytes=len(data) - 1)
    with pytest.raises(media.MediaError):
        media.check_clip(memo_bytes)
    with pytest.raises(media.MediaError):
        media.check_clip(b"\xff\xd8\xff" + bytes(5000))


def test_a_memo_passes_and_a_broken_one_is_refused(memo_bytes, clip_bytes):
    info = media.check_memo(memo_bytes)
    assert info["codec"] == "opus" and info["seconds"] == pytest.approx(3, abs=0.05)
    with pytest.raises(media.MediaError, match="over the limit"):
        media.check_memo(memo_bytes, max_bytes=100)
    for bad in (memo_bytes[:150], clip_bytes[1], b"OggS" + bytes(300)):
        with pytest.raises(media.MediaError):
            media.check_memo(bad)
