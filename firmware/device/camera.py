"""Photos: camera backends behind one factory, JPEG within a size budget, GNSS in EXIF.

Backends (``camera.backend`` in the profile): ``picamera2`` (CSI camera, imported only
when chosen), ``opencv`` (USB camera through OpenCV, imported only when chosen),
``synthetic`` (simulation: draws a street-like scene with Pillow and writes a real JPEG;
``hardware.Hardware`` puts it in place of a real camera on the sim backend) and
``none``.  Every backend returns a Pillow image; ``encode_jpeg`` fits it into
``max_bytes`` by choosing the highest JPEG quality that fits (binary search), shrinking
the picture only when even the lowest quality is too big.  ``encode_photo`` gives the
profile's ``camera.format``: that JPEG, or a WebP of at most ``WEBP_RATIO`` of its bytes
(the highest WebP quality that fits), which measured at least the JPEG's SSIM on every
photograph of ``benchmarks/bench_media.py``; both carry the same EXIF.
"""

import io
import math
import random
import time

from ..errors import DeviceError

DEFAULT_SIZE = (1280, 960)
DEFAULT_MAX_BYTES = 150 * 1024
MIN_QUALITY, MAX_QUALITY = 25, 92
JPEG_OPTIONS = {"optimize": True}
FORMATS = ("jpeg", "webp")
WEBP_RATIO = 0.8                 # a WebP photo is at most this share of the JPEG's bytes
WEBP_OPTIONS = {"method": 4}     # libwebp's default effort: method 6 was not smaller here
WEBP_GROWTH = 0.03               # WebP bytes grow ~3 % a quality step (a first guess)
WEBP_TRIES = 4                   # WebP encodings at most for one photo
WEBP_START = 5                   # the first WebP quality tried: the JPEG's plus this


class CameraError(DeviceError):
    """The camera could not be opened or gave no picture."""


def make_camera(backend, size=DEFAULT_SIZE, device=0):
    """The camera of ``backend`` (the profile's ``camera.backend``) taking ``size``
    pictures; ``device`` is the USB camera's index.  None for ``none``."""
    if backend == "picamera2":
        return Picamera2Camera(size)
    if backend == "opencv":
        return OpenCVCamera(device, size)
    if backend == "synthetic":
        return SyntheticCamera(size)
    if backend == "none":
        return None
    raise CameraError(f"unknown camera backend {backend!r}")


class Picamera2Camera:
    """The Raspberry Pi CSI camera (libcamera through picamera2)."""

    def __init__(self, size):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CameraError("camera backend picamera2 needs the picamera2 package "
                              "(apt install python3-picamera2, or pip install gridlink[pi])"
                              ) from None
        self.cam = Picamera2()
        self.cam.configure(self.cam.create_still_configuration(main={"size": size}))
        self.cam.start()

    def capture(self):
        from PIL import Image

        return Image.fromarray(self.cam.capture_array("main")).convert("RGB")

    def is_alive(self):
        """True while the camera is open and streaming."""
        return bool(self.cam.is_open and self.cam.started)

    def close(self):
        self.cam.stop()
        self.cam.close()


def open_uvc(device, size):
    """(cv2, an open ``VideoCapture``) of USB camera ``device`` asked for ``size``;
    CameraError when OpenCV is missing or the camera does not open."""
    try:
        import cv2
    except ImportError:
        raise CameraError("camera backend opencv needs OpenCV "
                          "(pip install gridlink[usbcam])") from None
    cap = cv2.VideoCapture(device)
    if not cap.isOpened():
        raise CameraError(f"USB camera {device} could not be opened")
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
    return cv2, cap


class OpenCVCamera:
    """A USB (UVC) camera through OpenCV."""

    def __init__(self, device, size):
        self.cv2, self.cap = open_uvc(device, size)

    def capture(self):
        from PIL import Image

        ok, frame = self.cap.read()
        if not ok:
            raise CameraError("USB camera gave no frame")
        return Image.fromarray(self.cv2.cvtColor(frame, self.cv2.COLOR_BGR2RGB))

    def is_alive(self):
        """True while the capture device is open."""
        return self.cap.isOpened()

    def close(self):
        self.cap.release()


class SyntheticCamera:
    """Simulation: a street-like scene (sky, buildings, road, noise) drawn with Pillow."""

    def __init__(self, size):
        self.size = size
        self.shots = 0
        self.closed = False

    def capture(self):
        from PIL import Image, ImageDraw, ImageFilter

        w, h = self.size
        rng = random.Random(self.shots)
        self.shots += 1
        img = Image.new("RGB", (w, h))
        draw = ImageDraw.Draw(img)
        for y in range(h // 2):
            shade = int(150 + 80 * y / (h / 2))
            draw.line([(0, y), (w, y)], fill=(shade // 2, shade - 20, 235))
        x = 0
        while x < w:
            bw, bh = rng.randint(60, 220), rng.randint(h // 6, h // 2)
            colour = tuple(rng.randint(60, 200) for _ in range(3))
            draw.rectangle([x, h // 2 - bh, x + bw, h // 2], fill=colour)
            for wy in range(h // 2 - bh + 10, h // 2 - 20, 28):
                for wx in range(x + 8, x + bw - 16, 24):
                    draw.rectangle([wx, wy, wx + 12, wy + 16], fill=(40, 50, 70))
            x += bw + rng.randint(0, 20)
        draw.polygon([(0, h), (w, h), (w * 0.6, h // 2), (w * 0.4, h // 2)], fill=(90, 90, 95))
        for i in range(8):
            y0 = h // 2 + (h // 2) * (i / 8) ** 1.5
            draw.line([(w / 2, y0), (w / 2, y0 + 12 + i * 6)], fill=(240, 240, 240), width=2 + i)
        for _ in range(rng.randint(3, 7)):  # the problem: litter on the pavement
            cx, cy = rng.randint(0, w), rng.randint(int(h * 0.6), h)
            r = rng.randint(8, 40)
            draw.ellipse([cx - r, cy - r // 2, cx + r, cy + r // 2],
                         fill=tuple(rng.randint(0, 255) for _ in range(3)))
        noise = Image.effect_noise((w, h), 28).convert("RGB")
        img = Image.blend(img, noise, 0.12).filter(ImageFilter.SMOOTH)
        draw = ImageDraw.Draw(img)
        draw.text((12, 12), f"gridlink synthetic camera #{self.shots} "
                            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}Z",
                  fill=(255, 255, 0))
        return img

    def is_alive(self):
        return not self.closed

    def close(self):
        self.closed = True


def _rational(x, den=1):
    return (round(x * den), den)


def _dms(deg):
    """|deg| as EXIF (degrees, minutes, seconds) rationals, seconds in thousandths: the
    rounding carries into minutes and degrees, so no field ever reads 60."""
    ms = round(abs(deg) * 3_600_000)          # thousandths of an arc second
    d, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    return ((d, 1), (m, 1), (ms, 1000))


def exif_bytes(fix=None, when=None, device=None):
    """EXIF with the GNSS position (GPS IFD) and the capture time (UTC) — piexif."""
    import piexif

    when = time.time() if when is None else when
    stamp = time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(when))
    zeroth = {piexif.ImageIFD.Software: b"gridlink", piexif.ImageIFD.DateTime: stamp}
    if device:
        zeroth[piexif.ImageIFD.Artist] = device.encode()
    exif = {piexif.ExifIFD.DateTimeOriginal: stamp,
            piexif.ExifIFD.OffsetTimeOriginal: b"+00:00"}
    gps = {}
    if fix and fix.get("lat") is not None and fix.get("lon") is not None:
        g = time.gmtime(when)
        gps = {
            piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
            piexif.GPSIFD.GPSLatitudeRef: b"N" if fix["lat"] >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _dms(fix["lat"]),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if fix["lon"] >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _dms(fix["lon"]),
            piexif.GPSIFD.GPSMapDatum: b"WGS-84",
            piexif.GPSIFD.GPSDateStamp: time.strftime("%Y:%m:%d", g).encode(),
            piexif.GPSIFD.GPSTimeStamp: ((g.tm_hour, 1), (g.tm_min, 1),
                                         _rational(when % 60, 1000)),
        }
        if fix.get("alt") is not None:
            gps[piexif.GPSIFD.GPSAltitudeRef] = 0 if fix["alt"] >= 0 else 1
            gps[piexif.GPSIFD.GPSAltitude] = _rational(abs(fix["alt"]), 100)
        if fix.get("hdop") is not None:
            gps[piexif.GPSIFD.GPSDOP] = _rational(fix["hdop"], 100)
    return piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps})


def exif_position(jpeg):
    """(lat, lon) from a JPEG's EXIF GPS IFD, or None (used by tests and tools)."""
    import piexif

    gps = piexif.load(jpeg).get("GPS") or {}
    if piexif.GPSIFD.GPSLatitude not in gps:
        return None

    def deg(v, ref, neg):
        d = sum(n / q / f for (n, q), f in zip(v, (1, 60, 3600), strict=True))
        return -d if ref == neg else d

    return (deg(gps[piexif.GPSIFD.GPSLatitude], gps[piexif.GPSIFD.GPSLatitudeRef], b"S"),
            deg(gps[piexif.GPSIFD.GPSLongitude], gps[piexif.GPSIFD.GPSLongitudeRef], b"W"))


def save_jpeg(img, quality, exif=b""):
    """``img`` as a JPEG at ``quality`` with the device's encoder settings."""
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, exif=exif, **JPEG_OPTIONS)
    return out.getvalue()


def save_webp(img, quality, exif=b""):
    """``img`` as a lossy WebP at ``quality`` (EXIF in the RIFF container)."""
    out = io.BytesIO()
    img.save(out, "WEBP", quality=quality, exif=exif, **WEBP_OPTIONS)
    return out.getvalue()


def encode_jpeg(img, size=DEFAULT_SIZE, max_bytes=DEFAULT_MAX_BYTES, exif=b""):
    """(jpeg bytes, quality): the image at ``size`` (aspect kept) within ``max_bytes``."""
    data, quality, _img = _fit_jpeg(img, size, max_bytes, exif)
    return data, quality


def encode_photo(img, size=DEFAULT_SIZE, max_bytes=DEFAULT_MAX_BYTES, exif=b"",
                 fmt="jpeg"):
    """(bytes, quality) of the photo in ``fmt`` (``FORMATS``): the JPEG of
    ``encode_jpeg``; or a WebP of the same picture within ``WEBP_RATIO`` of that JPEG's
    bytes, at the highest quality ``_webp_within`` finds, the JPEG itself should none
    fit."""
    if fmt not in FORMATS:
        raise CameraError(f"unknown photo format {fmt!r}: one of {', '.join(FORMATS)}")
    jpeg, quality, img = _fit_jpeg(img, size, max_bytes, exif)
    if fmt == "jpeg":
        return jpeg, quality
    return transcode_webp(img, len(jpeg), quality, exif) or (jpeg, quality)


def fit_jpeg(img, size=DEFAULT_SIZE, max_bytes=DEFAULT_MAX_BYTES, exif=b""):
    """(jpeg bytes, quality, the picture encoded): ``encode_jpeg`` keeping the (resized)
    picture for ``transcode_webp`` later."""
    return _fit_jpeg(img, size, max_bytes, exif)


def transcode_webp(img, jpeg_bytes, quality, exif=b""):
    """(webp, quality) of the picture a JPEG of ``jpeg_bytes`` bytes at ``quality`` was
    made of, within ``WEBP_RATIO`` of its bytes; None when no WebP fits (the JPEG goes)."""
    return _webp_within(img, int(jpeg_bytes * WEBP_RATIO), quality + WEBP_START, exif)


def _webp_within(img, cap, start, exif, tries=WEBP_TRIES, encode=None):
    """(webp, quality) at the highest quality found within ``cap`` bytes in ``tries``
    encodings, or None: from ``start``, each next quality estimated on the log of the
    bytes (about ``WEBP_GROWTH`` more a quality step, a step of twice that guess until
    the cap is bracketed, then the slope measured between the two nearest tries), until
    a fitting quality and the one above it are known."""
    encode = encode or save_webp
    fits = over = None                  # (quality, bytes or data) either side of the cap
    q = max(1, min(100, start))
    for _ in range(tries):
        data = encode(img, q, exif)
        if len(data) <= cap:
            fits = (q, data) if fits is None or q > fits[0] else fits
        else:
            over = (q, len(data)) if over is None or q < over[0] else over
        if (fits and over and over[0] - fits[0] <= 1) or (fits and fits[0] == 100) \
                or (over and over[0] == 1 and not fits):
            break
        if fits and over:
            slope = max(1e-3, math.log(over[1] / len(fits[1])) / (over[0] - fits[0]))
            q = fits[0] + math.log(cap / len(fits[1])) / slope
            q = min(over[0] - 1, max(fits[0] + 1, round(q)))
        else:                            # not bracketed yet: a bold step (twice the guess)
            q += round(2 * math.log(cap / len(data)) / WEBP_GROWTH) or (1 if fits else -1)
            q = max(1, min(100, q))
    return (fits[1], fits[0]) if fits else None


def _fit_jpeg(img, size, max_bytes, exif):
    """(jpeg bytes, quality, the picture encoded) — ``encode_jpeg``'s search."""
    img = img.convert("RGB")
    if img.size != tuple(size):
        scale = min(size[0] / img.width, size[1] / img.height)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    while True:
        lo, hi, best = MIN_QUALITY, MAX_QUALITY, None
        while lo <= hi:
            q = (lo + hi) // 2
            data = save_jpeg(img, q, exif)
            if len(data) <= max_bytes:
                best, lo = (data, q), q + 1
            else:
                hi = q - 1
        if best is not None:
            return (*best, img)
        if img.width < 160:
            raise CameraError(f"cannot fit a photo into {max_bytes} bytes")
        shrink = math.sqrt(0.7)
        img = img.resize((round(img.width * shrink), round(img.height * shrink)))
