"""Finding a report photo's file by its SHA-256, what kind of image it is, and a JPEG of
it (with its EXIF: GNSS position and time) for systems that take only JPEG."""

import io
import re
from pathlib import Path

from .queue import Invalid, NotFound
from .store.sql import one, run

_SHA256 = re.compile(r"[0-9a-f]{64}")
_IMAGE_TYPES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
                (b"GIF8", "image/gif"))


def photo_path(store, root, sha256):
    """The file of the complete photo ``sha256``: the path its row names (relative to
    ``root``), else where ``PhotoDir`` files it under ``root``; NotFound when none is."""
    if not _SHA256.fullmatch(sha256):
        raise Invalid("sha256: 64 lowercase hex digits")
    with store.connect() as conn:
        found = one(run(store, conn, "SELECT path, complete FROM photos WHERE sha256 = ?",
                        [sha256]))
    candidates = []
    if found and found["complete"] and found["path"]:
        path = Path(found["path"])
        candidates.append(path if path.is_absolute() or root is None else root / path)
    if root is not None:
        candidates += [root / sha256[:2] / f"{sha256}{ext}" for ext in (".jpg", ".webp", ".bin",
                                                                        "")]
    for path in candidates:
        if path.is_file():
            return path
    raise NotFound(f"no complete photo {sha256}")


def media_type(path):
    """The image type of the file at ``path`` from its first bytes."""
    with path.open("rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((t for magic, t in _IMAGE_TYPES if head.startswith(magic)),
                "application/octet-stream")


JPEG_QUALITY = 90   # a JPEG made from a WebP photo: near the WebP's own quality


def as_jpeg(path):
    """The photo at ``path`` as JPEG bytes: a JPEG as it is; another image decoded and
    encoded as JPEG (quality ``JPEG_QUALITY``) with its EXIF carried over; ``Invalid``
    for a file that is not an image."""
    data = path.read_bytes()
    if data.startswith(b"\xff\xd8\xff"):
        return data
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            exif = img.info.get("exif", b"")
            if exif and not exif.startswith(b"Exif\x00\x00"):   # WebP's chunk has no header
                exif = b"Exif\x00\x00" + exif
            out = io.BytesIO()
            img.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY, optimize=True,
                                    exif=exif)
    except (UnidentifiedImageError, OSError) as exc:
        raise Invalid(f"photo {path.stem[:16]}… is not an image that converts to JPEG: "
                      f"{exc}") from None
    return out.getvalue()
