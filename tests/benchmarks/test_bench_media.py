"""The photo comparison in ``benchmarks/bench_media.py``: equal SSIM, bytes compared."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_media",
                                                  ROOT / "benchmarks" / "bench_media.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_ssim_finds_the_cheapest_quality_that_reaches_the_target(bench):
    img = bench.photo_source("chelsea.png")
    jpeg = bench.encoders()["jpeg_today"]
    target = bench.ssim(img, jpeg(img, 70))
    size, quality, reached = bench.at_equal_ssim(jpeg, img, target)
    assert reached >= target and quality <= 70 and size <= len(jpeg(img, 70))
    below = [q for q in range(1, quality) if bench.ssim(img, jpeg(img, q)) >= target]
    assert all(len(jpeg(img, q)) >= size for q in below)


def test_an_unreachable_target_reports_the_best_quality(bench):
    img = bench.photo_source("chelsea.png")
    jpeg = bench.encoders()["jpeg_today"]
    size, quality, reached = bench.at_equal_ssim(jpeg, img, 1.01)
    assert quality == 100 and reached < 1.01 and size == len(jpeg(img, 100))


def test_webp_at_equal_ssim_beats_todays_jpeg_on_a_real_photograph(bench):
    img = bench.photo_source("astronaut.png")
    encoders = bench.encoders()
    ref = encoders["jpeg_today"](img, 60)
    size, _q, _s = bench.at_equal_ssim(encoders["webp"], img, bench.ssim(img, ref))
    assert size < 0.8 * len(ref)


def test_the_device_budget_scales_with_the_pixels(bench):
    from gridlink.firmware.device import camera
    from PIL import Image

    assert bench.device_budget(Image.new("RGB", camera.DEFAULT_SIZE)) == \
        camera.DEFAULT_MAX_BYTES
    assert bench.device_budget(Image.new("RGB", (640, 480))) == camera.DEFAULT_MAX_BYTES // 4


def test_the_device_encoder_row_compares_with_todays_jpeg(bench):
    img = bench.photo_source("chelsea.png")
    ref, quality = bench.today_reference(img, bench.device_budget(img),
                                         bench.encoders()["jpeg_today"])
    today = {"bytes": len(ref), "quality": quality, "ssim": round(bench.ssim(img, ref), 4)}
    d = bench.bench_device_photo(["chelsea.png"], {"chelsea.png": {"today": today}})
    row = d["photos"]["chelsea.png"]
    assert d["format"] == "webp" and row["ratio"] == d["ratio_total_bytes"]
    assert row["ratio"] == round(row["bytes"] / today["bytes"], 3) <= 0.8
    assert row["ssim_vs_today"] == round(row["ssim"] - today["ssim"], 4) >= 0
    assert d["meets_goal"] and set(d["cpu_ms_1280x960"]) == {"jpeg", "webp"}
