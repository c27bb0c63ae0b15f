"""Finding a report photo's file by its SHA-256, and what kind of image it is."""

import re
from pathlib import Path

from .queue import Invalid, NotFound
from .store.sql import one, run

_SHA256 = re.compile(r"[0-9a-f]{64}")
_IMAGE_TYPES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
                (b"GIF8", "image/gif"), (b"RIFF", "image/webp"))


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
        candidates += [root / sha256[:2] / f"{sha256}{ext}" for ext in (".jpg", ".bin", "")]
    for path in candidates:
        if path.is_file():
            return path
    raise NotFound(f"no complete photo {sha256}")


def media_type(path):
    """The image type of the file at ``path`` from its first bytes."""
    with path.open("rb") as f:
        head = f.read(12)
    return next((t for magic, t in _IMAGE_TYPES if head.startswith(magic)),
                "application/octet-stream")
