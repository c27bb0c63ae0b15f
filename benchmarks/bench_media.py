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
  (``mozjpeg-lossless-optimization``) when those packages are installed.  Then the
  device's own encoder as the shipped profiles run it (``camera.format`` webp: a WebP
  within 0.8× of the JPEG's bytes): its bytes and SSIM against today's JPEG on each
  photograph, and its CPU time per 1280×960 photo beside the JPEG's.
- Report path: trigger → report stored (camera and photo included) on a device in process
  with the synthetic 1280×960 camera and ``camera.format`` webp: the WebP made after the
  report (the device now) against the same device made to encode it before the report
  is stored (the device before: ``encode_photo`` inline), in the same run; the ratio is
  printed.  ``--report-path-only`` runs just this.
- Clips: the ring buffer fed by PyAV H.264 from the simulated camera at 720p and 480p —
  bit rate, bytes per clip, CPU share of one core and memory held by the ring.
- Memos: a synthetic 10 s memo as Opus in Ogg — bytes, bit rate, encoding CPU.
- Lane: trigger → clip playable at the centre over a 1 Mbit/s link, measured through the
  real path: a 480p 10 s + 20 s clip from the simulated camera on the device's media shelf,
  its lane capped at 125 000 B/s, a private Mosquitto, the gateway (ingest, checks,
  content-addressed store) until the report's view lists it.  ``--lane-only`` runs just
  this and updates the ``lane`` entry of the results.

Writes benchmarks/results/media.json.
"""

import argparse
import io
import json
import statistics
import sys
import tempfile
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


def today_reference(img, budget, encode):
    """(bytes, quality) of today's JPEG: the device's search with today's settings."""
    lo, hi, quality = 25, 92, 25
    while lo <= hi:
        q = (lo + hi) // 2
        if len(encode(img, q)) <= budget:
            quality, lo = q, q + 1
        else:
            hi = q - 1
    return encode(img, quality), quality


def bench_photos(names):
    found = encoders()
    today_encode = found["jpeg_today"]
    per_photo = {}
    for name in names:
        img = photo_source(name)
        budget = device_budget(img)
        ref, quality = today_reference(img, budget, today_encode)
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
            "device_encoder_ratio": summary["jpeg_device_now"]["ratio_total_bytes"],
            "device": bench_device_photo(names, per_photo)}


def bench_device_photo(names, per_photo, fmt="webp"):
    """The device's own encoder in ``fmt`` (``camera.encode_photo``, as a profile with
    ``camera.format`` ``fmt`` runs it) on each photograph at the device's budget: bytes
    and SSIM against today's JPEG; and both encoders' time on a 1280×960 picture."""
    from gridlink.firmware.device import camera

    rows, sent, today, deltas = {}, 0, 0, []
    for name in names:
        img = photo_source(name)
        ref = per_photo[name]["today"]
        data, quality = camera.encode_photo(img, img.size, device_budget(img), b"", fmt)
        s = float(ssim(img, data))
        rows[name] = {"bytes": len(data), "quality": quality, "ssim": round(s, 4),
                      "ratio": round(len(data) / ref["bytes"], 3),
                      "ssim_vs_today": round(s - ref["ssim"], 4)}
        sent, today = sent + len(data), today + ref["bytes"]
        deltas.append(s - ref["ssim"])
    full = photo_source(names[0]).resize(camera.DEFAULT_SIZE)
    ms = {}
    for f in ("jpeg", fmt):
        t0 = time.process_time()
        for _ in range(3):
            camera.encode_photo(full, camera.DEFAULT_SIZE, camera.DEFAULT_MAX_BYTES, b"", f)
        ms[f] = round((time.process_time() - t0) / 3 * 1000)
    ratio = round(sent / today, 3)
    return {"format": fmt, "photos": rows, "ratio_total_bytes": ratio,
            "ssim_vs_today_min": round(min(deltas), 4),
            "meets_goal": bool(ratio <= GOAL_RATIO and min(deltas) >= -0.0005),
            "cpu_ms_1280x960": ms}


def print_photos(res):
    print(f"photo bytes at equal SSIM vs today's encoder (goal ≤ {GOAL_RATIO}×):")
    for enc, s in sorted(res["encoders"].items(), key=lambda kv: kv[1]["ratio_total_bytes"]):
        print(f"  {enc:24} {s['ratio_total_bytes']:6.3f}×  (per photo mean "
              f"{s['ratio_mean']:.3f}, worst {s['ratio_max']:.3f})  "
              f"{'meets' if s['meets_goal'] else 'misses'}"
              f"{'' if s['jpeg'] else '  (not JPEG: the centre makes one on request)'}")
    d = res["device"]
    print(f"the device's encoder (camera.format {d['format']}): {d['ratio_total_bytes']:.3f}× "
          f"today's bytes, SSIM vs today's at least {d['ssim_vs_today_min']:+.4f} on every "
          f"photo: {'meets' if d['meets_goal'] else 'misses'} the goal; CPU per 1280×960 "
          f"photo: JPEG {d['cpu_ms_1280x960']['jpeg']} ms, {d['format']} "
          f"{d['cpu_ms_1280x960'][d['format']]} ms (JPEG search included)")


# ---- the report path -----------------------------------------------------------------

def _inline_webp_photo(dev):
    """The device's ``_photo`` as it was with the WebP encoded on the report's path."""
    import hashlib

    from gridlink.firmware.device import camera

    def photo(fix):
        conf = dev.profile["camera"]
        img = dev.camera.capture()
        data, _q = camera.encode_photo(img, (conf["width"], conf["height"]),
                                       conf["max_bytes"],
                                       exif=camera.exif_bytes(None, time.time(), dev.device),
                                       fmt="webp")
        sha = hashlib.sha256(data).hexdigest()
        return sha, len(data), dev.store.save_photo(sha, data), None
    return photo


def _settled(dev, rid):
    """The delivery's next round (none runs here: no broker): True once ``rid`` is let go."""
    dev._settle_photos()
    return not dev.transcoder.holds(rid)


def bench_report_path(presses=6):
    """Median ms from ``Device.report`` called (a trigger) until it returns with the report
    stored (fsync'd), WebP made after vs before the report; each photo's WebP finished
    before the next press (the worker is idle, as between a crew's presses)."""
    from gridlink.firmware.core.outbox import REPORT
    from gridlink.firmware.device.hardware import Hardware, Replay
    from gridlink.firmware.device.profile import load_profile
    from gridlink.firmware.device.runtime import Device

    from tests.support.waiting import wait_until

    prof = load_profile("patrol-vehicle")
    prof["camera"].update(backend="synthetic", format="webp")
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for how in ("after", "before"):
            dev = Device(prof, Path(folder) / how, "mqtt://127.0.0.1:9", console=False,
                         hardware=Hardware(prof, "sim", replay=Replay.of(prof, speed=5)))
            dev.start()
            try:
                if how == "before":
                    dev._photo = _inline_webp_photo(dev)
                runs, sizes = [], []
                for _ in range(presses):
                    t0 = time.perf_counter()
                    rep = dev.report("button", "event", "06010")
                    runs.append((time.perf_counter() - t0) * 1000)
                    wait_until(lambda d=dev, rid=rep["id"]: _settled(d, rid), 30, "the WebP")
                    stored = [json.loads(p) for _s, _k, p in dev.store.pending((REPORT,))]
                    mine = next(r for r in stored if r["id"] == rep["id"])
                    sizes.append(mine["photos"][0]["bytes"])
                out[how] = {"trigger_to_stored_ms": round(statistics.median(runs), 1),
                            "photo_bytes_median": int(statistics.median(sizes))}
            finally:
                dev.stop()
    out["ratio"] = round(out["after"]["trigger_to_stored_ms"]
                         / out["before"]["trigger_to_stored_ms"], 3)
    return out


def print_report_path(res):
    print(f"trigger → report stored, 1280×960 photo as WebP (median of the presses): "
          f"WebP after the report {res['after']['trigger_to_stored_ms']} ms, before it "
          f"(inline) {res['before']['trigger_to_stored_ms']} ms: {res['ratio']:.3f}×; "
          f"photo sent {res['after']['photo_bytes_median']} B vs "
          f"{res['before']['photo_bytes_median']} B")


# ---- clips -------------------------------------------------------------------------

CLIP_SIZES = {"720p": ((1280, 720), 900_000), "480p": ((854, 480), 500_000)}


def rss_bytes():
    """This process's resident set now (Linux /proc)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_clip(size, pre_s, post_s, fps=15, bit_rate=900_000, gop_s=1.0):
    """Record ``pre_s + post_s + 2`` s of the simulated camera through the encoder into the
    ring, trigger at ``pre_s + 1``, cut the clip; CPU per frame, bit rate, ring memory."""
    from gridlink.firmware.device import clips, video

    w, h = size
    seconds = pre_s + post_s + 2
    video.H264Encoder(64, 64, fps)                  # PyAV's libraries loaded before measuring
    src = video.SimulatedVideo(w, h)
    rss0 = rss_bytes()
    enc = video.H264Encoder(w, h, fps, bit_rate, gop_s)
    rss_encoder = None
    ring = clips.PacketRing(pre_s + post_s + 2 * gop_s, 16 * 1024 * 1024)
    with tempfile.TemporaryDirectory() as folder:
        maker = clips.EventClips(ring, folder, pre_s, post_s)
        t0 = 1_800_000_000.0
        frames = [t0 + i / fps for i in range(round(seconds * fps))]
        render = encode = 0.0
        total = 0
        made = []
        for t in frames:
            if t >= t0 + pre_s + 1 and not maker.pending and not made:
                maker.trigger(t, name="bench")
            c0 = time.process_time()
            img = src.frame(t)
            c1 = time.process_time()
            for pt, key, data in enc.encode(img, t):
                ring.append(pt, key, data)
                total += len(data)
            c2 = time.process_time()
            if rss_encoder is None:
                rss_encoder = rss_bytes() - rss0
            made += maker.poll(t)
            render, encode = render + c1 - c0, encode + c2 - c1
        made += maker.poll(t0 + seconds + 60)
        clip = made[0]
        held = ring.stats()
        rss = rss_bytes() - rss0
        rss_total = rss_bytes()
    kbit = total * 8 / seconds / 1000
    return {
        "size": f"{w}x{h}", "fps": fps, "gop_s": gop_s, "bit_rate_target": bit_rate,
        "recorded_s": seconds,
        "bit_rate_kbit_s": round(kbit, 1),
        "encode_cpu_ms_per_frame": round(encode / len(frames) * 1000, 2),
        "encode_cpu_share_of_one_core": round(encode / len(frames) * fps, 3),
        "sim_render_cpu_ms_per_frame": round(render / len(frames) * 1000, 2),
        "ring": {"seconds": round(held["seconds"], 2), "bytes": held["bytes"],
                 "gops": held["gops"]},
        "rss_encoder_mb": round(rss_encoder / 1e6, 1),
        "rss_growth_encoder_and_ring_mb": round(rss / 1e6, 1),
        "rss_process_mb": round(rss_total / 1e6, 1),
        "clip": {"pre_s": round(clip.pre_s, 2), "post_s": round(clip.post_s, 2),
                 "bytes": clip.bytes, "frames": clip.frames,
                 "transfer_s_at_1_mbit": round(clip.bytes * 8 / 1e6, 1),
                 "trigger_to_clip_at_centre_s_at_1_mbit":
                     round(post_s + clip.bytes * 8 / 1e6, 1)},
    }


def bench_clips(quick):
    """Each size in a process of its own, so its memory figures are its own."""
    import subprocess

    res = {}
    for label in CLIP_SIZES:
        cmd = [sys.executable, __file__, "--one-clip", label] + (["--quick"] if quick else [])
        res[label] = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                               text=True).stdout)
    res["goal_kbit_s_720p"] = CLIP_GOAL_KBIT_720P
    return res


def print_clips(res):
    print(f"clips (ring buffer in simulation; goal ≤ {CLIP_GOAL_KBIT_720P} kbit/s at 720p):")
    for label in CLIP_SIZES:
        r = res[label]
        c = r["clip"]
        print(f"  {label}: {r['bit_rate_kbit_s']:.0f} kbit/s, encode "
              f"{r['encode_cpu_share_of_one_core']:.0%} of a core at {r['fps']} fps "
              f"(+{r['sim_render_cpu_ms_per_frame']:.1f} ms/frame drawing the sim), ring "
              f"{r['ring']['bytes'] / 1e6:.1f} MB for {r['ring']['seconds']:.0f} s, RSS +"
              f"{r['rss_growth_encoder_and_ring_mb']:.0f} MB (encoder "
              f"{r['rss_encoder_mb']:.0f} MB, process {r['rss_process_mb']:.0f} MB); "
              f"clip {c['pre_s']:.0f}+{c['post_s']:.0f} s = {c['bytes'] / 1e6:.2f} MB, "
              f"{c['transfer_s_at_1_mbit']:.0f} s at 1 Mbit/s")


# ---- memos -------------------------------------------------------------------------

def bench_memo(seconds=10):
    from gridlink.firmware.device import memo

    samples = memo.synthetic_memo(seconds)
    c0 = time.process_time()
    data = memo.encode_memo(samples)
    cpu = time.process_time() - c0
    info = memo.memo_info(data)
    return {"seconds": round(info["seconds"], 3), "codec": info["codec"],
            "bit_rate_target": memo.DEFAULT_BIT_RATE, "bytes": len(data),
            "kbit_s": round(len(data) * 8 / seconds / 1000, 1),
            "encode_cpu_ms": round(cpu * 1000, 1)}


def print_memo(res):
    print(f"voice memo: {res['seconds']:.0f} s of synthetic speech as {res['codec']} in Ogg = "
          f"{res['bytes']:,} bytes ({res['kbit_s']} kbit/s), encoded in "
          f"{res['encode_cpu_ms']:.0f} ms CPU")


# ---- main --------------------------------------------------------------------------

def lane_clip(folder, size=(854, 480), rate=500_000, pre_s=10, post_s=20, fps=15):
    """A real clip (the device's recorder, simulated camera) of ``pre_s + post_s``."""
    from gridlink.firmware.device import clips, video

    w, h = size
    ring = clips.PacketRing(pre_s + post_s + 2, 16 * 1024 * 1024)
    done = []
    maker = clips.EventClips(ring, folder, pre_s, post_s, on_clip=done.append)
    recorder = video.Recorder(video.SimulatedVideo(w, h), video.H264Encoder(w, h, fps, rate),
                              ring, fps, maker)
    t0 = 1_800_000_000.0
    for i in range((pre_s + post_s + 2) * fps):
        if i == (pre_s + 1) * fps:
            maker.trigger(t0 + pre_s + 1, name="lane")
        recorder.step(t0 + i / fps)
    return done[0]


def bench_lane(rate_bytes=125_000):
    """Seconds from a clip on the device's shelf to its report's view listing it at the
    centre, the lane capped at ``rate_bytes`` a second (1 Mbit/s)."""
    from gridlink.firmware.core.report import encode_report, make_report
    from gridlink.firmware.device.delivery import Delivery
    from gridlink.firmware.device.shelf import MediaShelf
    from gridlink.firmware.device.store import REPORT, Store
    from gridlink.gateway.media_ingest import report_media
    from gridlink.gateway.service import Gateway
    from gridlink.mosquitto import Mosquitto

    status = {"time": None, "fix": None, "reports": 0, "track": 0, "disk_free": None,
              "cpu_temp": None, "uptime": 1.0, "firmware": "0.1.0", "codebook": "bench",
              "profile": "patrol-vehicle"}
    with tempfile.TemporaryDirectory() as folder, Mosquitto(Path(folder) / "broker") as mq:
        clip = lane_clip(folder)
        gw = Gateway(broker=mq.url, db=f"sqlite:///{folder}/intake.sqlite",
                     photos=f"{folder}/photos").start()
        store = Store(Path(folder) / "dev")
        shelf = MediaShelf(Path(folder) / "dev" / "media", 64 * 1024 * 1024)
        rep = make_report("pv-0001", 1, None, time.time(), "event", "GB/T 47678.5-2026",
                          "06010", text="bench")
        store.append(REPORT, encode_report(rep))
        d = Delivery(mq.url, "pv-0001", "410106", store, status_fn=lambda: status,
                     shelf=shelf, media_rate=rate_bytes).start()
        try:
            deadline = time.monotonic() + 30
            while store.depth()["reports"] and time.monotonic() < deadline:
                time.sleep(0.05)                  # the report is acknowledged first
            t0 = time.monotonic()
            shelf.add_file(clip.path, "clip", rep["id"])
            d.kick()
            listed = []
            while not listed and time.monotonic() < t0 + 600:
                time.sleep(0.1)
                listed = report_media(gw.store, rep["id"])
            took = time.monotonic() - t0
        finally:
            d.stop()
            gw.stop()
            store.close()
    if not listed:
        raise SystemExit("the clip did not reach the centre within 600 s")
    return {"clip": "854x480 at 500 kbit/s", "pre_s": round(clip.pre_s, 2),
            "post_s": round(clip.post_s, 2), "bytes": clip.bytes,
            "cap_bytes_per_s": rate_bytes,
            "shelf_to_playable_at_centre_s": round(took, 1),
            "at_the_cap_s": round(clip.bytes / rate_bytes, 1),
            "trigger_to_playable_at_centre_s": round(clip.post_s + took, 1)}


def print_lane(res):
    print(f"lane at 1 Mbit/s: a {res['bytes'] / 1e6:.2f} MB clip ({res['pre_s']:.0f}+"
          f"{res['post_s']:.0f} s, {res['clip']}) playable at the centre "
          f"{res['shelf_to_playable_at_centre_s']:.1f} s after it was cut (the cap alone: "
          f"{res['at_the_cap_s']:.1f} s); trigger → playable "
          f"{res['trigger_to_playable_at_centre_s']:.1f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer photos, shorter clips")
    parser.add_argument("--one-clip", choices=CLIP_SIZES, help=argparse.SUPPRESS)
    parser.add_argument("--lane-only", action="store_true",
                        help="measure only the lane; update its entry in the results")
    parser.add_argument("--photos-only", action="store_true",
                        help="measure only the photos; update their entry in the results")
    parser.add_argument("--report-path-only", action="store_true",
                        help="measure only the report path; update its entry in the results")
    args = parser.parse_args(argv)
    if args.report_path_only:
        results = json.loads(OUT.read_text()) if OUT.exists() else {"quick": False}
        results["report_path"] = bench_report_path()
        print_report_path(results["report_path"])
        OUT.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {OUT.relative_to(ROOT)}")
        return 0
    if args.photos_only:
        results = json.loads(OUT.read_text()) if OUT.exists() else {"quick": False}
        results["photo"] = bench_photos(PHOTOS)
        print_photos(results["photo"])
        OUT.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {OUT.relative_to(ROOT)}")
        return 0
    if args.lane_only:
        results = json.loads(OUT.read_text()) if OUT.exists() else {"quick": False}
        results["lane"] = bench_lane()
        print_lane(results["lane"])
        OUT.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {OUT.relative_to(ROOT)}")
        return 0
    if args.one_clip:
        size, rate = CLIP_SIZES[args.one_clip]
        pre_s, post_s = (2, 4) if args.quick else (10, 20)
        print(json.dumps(bench_clip(size, pre_s, post_s, bit_rate=rate)))
        return 0
    results = {"quick": args.quick}
    results["photo"] = bench_photos(PHOTOS[:2] if args.quick else PHOTOS)
    print_photos(results["photo"])
    results["report_path"] = bench_report_path(3 if args.quick else 6)
    print_report_path(results["report_path"])
    results["clips"] = bench_clips(args.quick)
    print_clips(results["clips"])
    results["memo"] = bench_memo()
    print_memo(results["memo"])
    results["lane"] = bench_lane()
    print_lane(results["lane"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
