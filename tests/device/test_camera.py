"""Photos: the size budget on real photographs, EXIF position and time, the backends."""

import io
from pathlib import Path

import piexif
import pytest
import skimage
from gridlink.firmware.device import camera
from gridlink.firmware.device.hardware import Hardware
from gridlink.firmware.device.profile import load_profile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

PHOTOS = Path(skimage.__file__).parent / "data"
REAL = ["astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "rocket.jpg",
        "retina.jpg", "hubble_deep_field.jpg"]
BUDGET = 150 * 1024


@pytest.mark.parametrize("name", REAL)
def test_real_photograph_fits_the_budget_at_the_best_quality(name):
    img = Image.open(PHOTOS / name)
    data, quality = camera.encode_jpeg(img, (1280, 960), BUDGET)
    assert len(data) <= BUDGET
    out = Image.open(io.BytesIO(data))
    assert out.format == "JPEG" and (out.width == 1280 or out.height == 960)
    assert out.width <= 1280 and out.height <= 960
    if quality < camera.MAX_QUALITY:      # one step better would break the budget
        resized = img.convert("RGB").resize(out.size)
        assert len(camera.save_jpeg(resized, quality + 1, b"")) > BUDGET


def test_tight_budget_shrinks_the_picture_instead_of_failing():
    img = Image.open(PHOTOS / "astronaut.png")
    data, quality = camera.encode_jpeg(img, (1280, 960), 20_000)
    assert len(data) <= 20_000 and quality >= camera.MIN_QUALITY
    assert Image.open(io.BytesIO(data)).width < 960


def test_exif_carries_position_altitude_and_utc_time():
    when = 1_764_296_107.25                            # 2025-11-28T02:15:07.25Z
    exif = camera.exif_bytes({"lat": 34.8095123, "lon": -113.2965, "alt": -12.5, "hdop": 0.9},
                             when, "pv-0001")
    data, _ = camera.encode_jpeg(Image.open(PHOTOS / "coffee.png"), exif=exif)
    lat, lon = camera.exif_position(data)
    assert lat == pytest.approx(34.8095123, abs=1e-7) and lon == pytest.approx(-113.2965)
    tags = piexif.load(data)
    gps = tags["GPS"]
    assert gps[piexif.GPSIFD.GPSAltitudeRef] == 1
    assert gps[piexif.GPSIFD.GPSAltitude] == (1250, 100)
    assert gps[piexif.GPSIFD.GPSDateStamp] == b"2025:11:28"
    assert gps[piexif.GPSIFD.GPSTimeStamp][:2] == ((2, 1), (15, 1))
    assert tags["Exif"][piexif.ExifIFD.DateTimeOriginal] == b"2025:11:28 02:15:07"
    assert tags["0th"][piexif.ImageIFD.Artist] == b"pv-0001"


def test_no_fix_means_no_gps_tags():
    data, _ = camera.encode_jpeg(Image.open(PHOTOS / "chelsea.png"),
                                 exif=camera.exif_bytes(None, 0))
    assert camera.exif_position(data) is None


def test_synthetic_camera_writes_distinct_real_jpegs():
    cam = camera.make_camera("synthetic", (640, 480))
    a, b = cam.capture(), cam.capture()
    assert a.size == (640, 480) and a.tobytes() != b.tobytes()
    data, _ = camera.encode_jpeg(a, (640, 480), BUDGET)
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_sim_replaces_hardware_cameras_and_none_stays_none():
    prof = load_profile("patrol-vehicle")              # picamera2 on the pi backend
    sim = Hardware(prof, "sim")
    shot = sim.camera()
    assert isinstance(shot, camera.SyntheticCamera) and shot.size == (1280, 960)
    assert shot.is_alive()
    shot.close()
    assert not shot.is_alive()
    prof["camera"]["backend"] = "none"
    assert sim.camera() is None and Hardware(prof, "pi").camera() is None


@pytest.mark.parametrize("backend, hint", [("picamera2", "picamera2"), ("opencv", "OpenCV")])
def test_missing_camera_stack_is_a_clear_error(backend, hint):
    pytest.importorskip("sys")
    try:
        __import__("picamera2" if backend == "picamera2" else "cv2")
    except ImportError:
        with pytest.raises(camera.CameraError, match=hint):
            camera.make_camera(backend)
    else:
        pytest.skip(f"{backend} is installed here")


# ---- WebP (camera.format webp) ---------------------------------------------------------

def _ssim(source, data):
    import numpy as np
    from skimage.metrics import structural_similarity

    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return structural_similarity(np.asarray(source), decoded, channel_axis=-1, data_range=255)


@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png"])
def test_a_webp_photo_is_at_most_0_8_of_the_jpeg_and_no_worse(name):
    img = Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB")
    budget = round(camera.DEFAULT_MAX_BYTES * img.width * img.height / (1280 * 960))
    exif = camera.exif_bytes({"lat": 34.81, "lon": 113.29}, 1_800_000_000)
    jpeg, _ = camera.encode_photo(img, img.size, budget, exif, "jpeg")
    webp, quality = camera.encode_photo(img, img.size, budget, exif, "webp")
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP" and 1 <= quality <= 100
    assert len(webp) <= camera.WEBP_RATIO * len(jpeg)
    assert _ssim(img, webp) >= _ssim(img, jpeg)
    assert camera.exif_position(webp) == pytest.approx((34.81, 113.29), abs=1e-6)
    assert Image.open(io.BytesIO(webp)).size == img.size


def test_when_no_webp_fits_the_jpeg_is_sent_and_an_unknown_format_is_refused(monkeypatch):
    img = camera.SyntheticCamera((320, 240)).capture()
    jpeg = camera.encode_photo(img, (320, 240), 30_000, b"", "jpeg")
    monkeypatch.setattr(camera, "WEBP_RATIO", 0.001)
    assert camera.encode_photo(img, (320, 240), 30_000, b"", "webp") == jpeg
    with pytest.raises(camera.CameraError, match="unknown photo format 'avif'"):
        camera.encode_photo(img, (320, 240), 30_000, b"", "avif")


@settings(max_examples=25, deadline=None)
@given(cap=st.integers(200, 12_000), start=st.integers(-20, 130))
def test_the_webp_search_stays_within_its_cap_and_its_tries(cap, start):
    img = _SMALL
    calls = []

    def counting(picture, quality, exif=b""):
        assert 1 <= quality <= 100
        calls.append(quality)
        return camera.save_webp(picture, quality, exif)

    found = camera._webp_within(img, cap, start, b"", encode=counting)
    assert len(calls) <= camera.WEBP_TRIES
    if found is not None:
        data, quality = found
        assert len(data) <= cap and quality in calls
        above = [q for q in calls if q > quality]      # every try above it was over the cap
        assert all(len(camera.save_webp(img, q)) > cap for q in above)


_SMALL = camera.SyntheticCamera((96, 72)).capture()


@given(st.floats(min_value=-180, max_value=180, allow_nan=False))
def test_exif_degrees_minutes_seconds_carry_and_keep_the_angle(deg):
    (d, one), (m, one_m), (s, thousand) = camera._dms(deg)
    assert (one, one_m, thousand) == (1, 1, 1000)
    assert 0 <= m < 60 and 0 <= s < 60_000           # never 60 minutes or 60 seconds
    assert d + m / 60 + s / 3_600_000 == pytest.approx(abs(deg), abs=0.5 / 3_600_000 + 1e-12)


def test_seconds_that_round_up_to_sixty_carry_into_the_minutes():
    assert camera._dms(34.8 - 1e-9) == ((34, 1), (48, 1), (0, 1000))
    assert camera._dms(-113.99999999) == ((114, 1), (0, 1), (0, 1000))
