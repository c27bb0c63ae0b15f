"""The sensor node's signed manifest (format in gridlink.firmware.core.signed_manifest):
made from a board image and signed with an Ed25519 key (the targets key), the signature
over the manifest's SHA-256 digest."""

import datetime
import hashlib
from pathlib import Path

from gridlink.firmware.core.signed_manifest import encode

LIFETIME = datetime.timedelta(days=90)


def make(image_dir, kind, version, expires=None):
    """Manifest bytes for every file under ``image_dir``; expiry in 90 days by default."""
    image_dir = Path(image_dir)
    if expires is None:
        expires = datetime.datetime.now(datetime.UTC) + LIFETIME
    files = [(p.relative_to(image_dir).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest(),
              p.stat().st_size) for p in sorted(image_dir.rglob("*")) if p.is_file()]
    return encode(kind, version, int(expires.timestamp()), files)


def sign(data, private_key):
    """The hex signature line (``manifest.sig``) of manifest bytes."""
    return (private_key.sign(hashlib.sha256(data).digest()).hex() + "\n").encode()


def public_bytes(private_key):
    """The 32 raw bytes a board stores to check manifests."""
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)
