"""Media budgets: photo bytes at equal quality, the event-clip ring buffer, voice memos.

    .venv/bin/python benchmarks/bench_media.py [--quick]

- Photos (issue 17 item 5, goal ≤ 0.8× today's bytes at equal SSIM): scikit-image's real
  photographs, each encoded as the device did before issue 17 (Pillow JPEG, optimize=True,
  the highest quality within the device's byte budget scaled to the picture's pixels) —
  that is the reference, its SSIM to the source the target.  Every other encoder gets the
  lowest quality whose SSIM (skimage.metrics.structural_similarity, RGB) reaches that
  target (binary search); its bytes over the reference's are the ratio printed.  Encoders:
  Pillow JPEG variants (progressive, the device's encoder now), WebP, AVIF (when
  Pillow has libavif), jpegli (``pyjpegli``) and MozJPEG's lossless optimisation
  (``mozjpeg-lossless-optimization``) when those packages are installed.
- Clips: the ring buffer fed by PyAV H.264 from the simulated camera at 720p and 480p —
  bit rate, bytes per clip, CPU share of one core and memory held by the ring.
- Memos: a synthetic 10 s memo as Opus in Ogg — bytes and bit rate.

Writes benchmarks/results/media.json.
"""

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "media.json"
sys.path.insert(0, str(ROOT))

PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "rocket.jpg"]
GOAL_RATIO = 0.8
CLIP_GOAL_KBIT_720P = 1000


# ---- photos ------------------------------------------------------------------------

def _pillow(fmt, **opts):
    def encode(img, quality):
        out = io.BytesIO()
        img.save(out, fmt, quality=quality, **opts)
        return out.getvalue()
    return encode


def _jpegli(img, quality):
    import pyjpegli

    return pyjpegli.encode(img.tobytes(), img.width, img.height, quality)


def _mozjpeg_lossless(img, quality):
    import mozjpeg_lossless_optimization as moz

    return moz.optimize(_pillow("JPEG", optimize=True)(img, quality))


def encoders():
    """name → encode(img, quality) → bytes, for every encoder found here.  Pillow's JPEG
    default is already 4:2:0 subsampling, so no separate 4:2:0 variant is listed."""
    from gridlink.firmware.device import camera
    from PIL import features

    found = {
        "jpeg_today": _pillow("JPEG", optimize=True),
        "jpeg_progressive": _pillow("JPEG", optimize=True, progressive=True),
        "jpeg_device_now": lambda img, q: camera.save_jpeg(img, q, b""),
        "webp": _pillow("WEBP", method=6),
    }
    if features.check("avif"):
        found["avif"] = _pillow("AVIF", speed=6)
    try:
        import pyjpegli  # noqa: F401

        found["jpeg_jpegli"] = _jpegli
    except ImportError:
        pass
    try:
        import mozjpeg_lossless_optimization  # noqa: F401

        found["jpeg_mozjpeg_lossless"] = _mozjpeg_lossless
    except ImportError:
        pass
    return found


def ssim(source, data):
    """SSIM of the decoded ``data`` to ``source`` (both RGB, same size)."""
    import numpy as np
    from PIL import Image
    from skimage.metrics import structural_similarity

    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return structural_similarity(np.asarray(source), decoded, channel_axis=-1,
                                 data_range=255)


def at_equal_ssim(encode, source, target, lo=1, hi=100, below=4):
    """(bytes, quality, ssim) at the lowest quality whose SSIM reaches ``target``: a
    binary search, then the ``below`` qualities under its answer are tried too, since
    SSIM over quality has small dips (JPEG's quantisation tables round unevenly); the
    highest quality's figures when none reaches it."""
    best = None
    while lo <= hi:
        q = (lo + hi) // 2
        data = encode(source, q)
        s = ssim(source, data)
        if s >= target:
            best, hi = (len(data), q, s), q - 1
        else:
            lo = q + 1
    if best is None:
        data = encode(source, 100)
        return len(data), 100, ssim(source, data)
    for q in range(best[1] - 1, max(0, best[1] - below - 1), -1):
        data = encode(source, q)
        s = ssim(source, data)
        if s >= target and len(data) < best[0]:
            best = (len(data), q, s)
    return best


def photo_source(name):
    import skimage
    from PIL import Image

    return Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB")


def device_budget(img):
    """The device's byte budget scaled from its 1280×960 picture to ``img``'s pixels."""
    from gridlink.firmware.device import camera

    w, h = camera.DEFAULT_SIZE
    return round(camera.DEFAULT_MAX_BYTES * img.width * img.height / (w * h))


def bench_photos(names):
    found = encoders()
    today_encode = found["jpeg_today"]
    per_photo = {}
    for name in names:
        img = photo_source(name)
        budget = device_budget(img)
        lo, hi, quality = 25, 92, 25          # the device's search, with today's settings
        while lo <= hi:
            q = (lo + hi) // 2
            if len(today_encode(img, q)) <= budget:
                quality, lo = q, q + 1
            else:
                hi = q - 1
        ref = today_encode(img, quality)
        target = ssim(img, ref)
        row = {"pixels": f"{img.width}x{img.height}", "budget_bytes": budget,
               "today": {"bytes": len(ref), "quality": quality, "ssim": round(target, 4)}}
        for enc, encode in found.items():
            if enc == "jpeg_today":
                continue
            size, q, s = at_equal_ssim(encode, img, target)
            t0 = time.perf_counter()
            encode(img, q)
            row[enc] = {"bytes": size, "quality": q, "ssim": round(s, 4),
                        "ratio": round(size / len(ref), 3),
                        "encode_ms": round((time.perf_counter() - t0) * 1000, 1)}
        per_photo[name] = row
    summary = {}
    for enc in found:
        if enc == "jpeg_today":
            continue
        ratios = [per_photo[n][enc]["ratio"] for n in names]
        total = sum(per_photo[n][enc]["bytes"] for n in names) / \
            sum(per_photo[n]["today"]["bytes"] for n in names)
        summary[enc] = {"ratio_mean": round(statistics.mean(ratios), 3),
                        "ratio_max": round(max(ratios), 3),
                        "ratio_total_bytes": round(total, 3),
                        "jpeg": enc.startswith("jpeg"),
                        "meets_goal": total <= GOAL_RATIO}

    def best(jpeg):
        enc = min((e for e in summary if summary[e]["jpeg"] == jpeg),
                  key=lambda e: summary[e]["ratio_total_bytes"])
        return {"encoder": enc, "ratio": summary[enc]["ratio_total_bytes"]}

    return {"photos": per_photo, "encoders": summary, "goal_ratio": GOAL_RATIO,
            "best_jpeg": best(True), "best_other": best(False),
            "device_encoder_ratio": summary["jpeg_device_now"]["ratio_total_bytes"]}


def print_photos(res):
    print(f"photo bytes at equal SSIM vs today's encoder (goal ≤ {GOAL_RATIO}×):")
    for enc, s in sorted(res["encoders"].items(), key=lambda kv: kv[1]["ratio_total_bytes"]):
        print(f"  {enc:24} {s['ratio_total_bytes']:6.3f}×  (per photo mean "
              f"{s['ratio_mean']:.3f}, worst {s['ratio_max']:.3f})  "
              f"{'meets' if s['meets_goal'] else 'misses'}"
              f"{'' if s['jpeg'] else '  (not JPEG: the centre systems need a JPEG)'}")


# ---- main --------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer photos, shorter clips")
    args = parser.parse_args(argv)
    results = {"quick": args.quick}
    results["photo"] = bench_photos(PHOTOS[:2] if args.quick else PHOTOS)
    print_photos(results["photo"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
