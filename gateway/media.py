"""Media at the centre: content-addressed storage behind an interface, byte ranges for
players, and the checks a clip or memo passes before it is kept.

``MediaStore`` is what the rest of the gateway may rely on (put by hash, has, size,
content type, read a byte range); ``LocalMediaStore`` keeps files under one folder
(``<root>/ab/abcd….mp4``), written atomically; ``S3MediaStore`` keeps them as objects
in a bucket of an S3-compatible object store (boto3).  ``open_media_store`` picks one from
the gateway's ``--media-store`` (a folder or ``s3://bucket/prefix?endpoint=…``).
``parse_range`` reads an HTTP ``Range`` header (RFC 9110, one range) for a file of a given
size.  ``check_clip`` and ``check_memo`` open the bytes with PyAV and read every packet:
a truncated MP4, a file of another kind or one over the limit is refused with a reason
(``MediaError``), meant for the dead letters (``media_ingest``; served by
``routes/media``).
"""

import base64
import hashlib
import io
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from gridlink.firmware.core import fsio

from .errors import ConfigError, GatewayError

CONTENT_TYPES = {"clip": "video/mp4", "memo": "audio/ogg", "photo": "image/jpeg"}
EXTENSIONS = {"video/mp4": ".mp4", "audio/ogg": ".ogg", "image/jpeg": ".jpg"}
MAX_CLIP_BYTES = 16 * 1024 * 1024
MAX_MEMO_BYTES = 1024 * 1024
_HASH = re.compile(r"[0-9a-f]{64}")


class MediaError(GatewayError):
    """Media refused: the reason names what is wrong with it."""


class RangeNotSatisfiable(MediaError):
    """A ``Range`` header that does not fit the file (HTTP 416)."""


class MediaStore:
    """The storage interface: content-addressed, immutable objects."""

    def put(self, data, content_type, sha256=None):
        """Store ``data``; its SHA-256 (checked against ``sha256`` when given)."""
        raise MediaError(f"{type(self).__name__} cannot store media")

    def has(self, sha256):
        return False

    def size(self, sha256):
        raise MediaError(f"no media {sha256}")

    def content_type(self, sha256):
        raise MediaError(f"no media {sha256}")

    def read(self, sha256, start=0, end=None):
        """Bytes ``start … end`` (inclusive; None: to the end) of one object."""
        raise MediaError(f"no media {sha256}")


class LocalMediaStore(MediaStore):
    """Media files under ``root``, one per hash, the extension from the content type."""

    def __init__(self, root):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"media folder {self.root}: {exc}") from exc

    def _find(self, sha256):
        if not _HASH.fullmatch(sha256 or ""):
            raise MediaError(f"not a SHA-256 in hex: {sha256!r}")
        for path in (self.root / sha256[:2]).glob(sha256 + ".*"):
            return path
        return None

    def put(self, data, content_type, sha256=None):
        if content_type not in EXTENSIONS:
            raise MediaError(f"content type {content_type!r} is not kept "
                             f"(one of {', '.join(EXTENSIONS)})")
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and sha256 != digest:
            raise MediaError(f"hash mismatch: announced {sha256}, the bytes hash to {digest}")
        if self._find(digest) is None:
            folder = self.root / digest[:2]
            folder.mkdir(exist_ok=True)
            path = folder / (digest + EXTENSIONS[content_type])
            fsio.write_file(str(path), data, str(folder))
        return digest

    def has(self, sha256):
        return self._find(sha256) is not None

    def content_type(self, sha256):
        path = self._find(sha256)
        if path is None:
            raise MediaError(f"no media {sha256}")
        return {ext: ctype for ctype, ext in EXTENSIONS.items()}[path.suffix]

    def size(self, sha256):
        path = self._find(sha256)
        if path is None:
            raise MediaError(f"no media {sha256}")
        return path.stat().st_size

    def read(self, sha256, start=0, end=None):
        path = self._find(sha256)
        if path is None:
            raise MediaError(f"no media {sha256}")
        with open(path, "rb") as f:
            f.seek(start)
            return f.read(-1 if end is None else end - start + 1)


class S3MediaStore(MediaStore):
    """Media as objects ``<prefix>ab/abcd…`` in one bucket of an S3-compatible store, the
    content type kept as the object's ``Content-Type``.  The bucket must exist (the
    gateway does not create buckets); credentials come from boto3's usual sources (the
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` environment, ``~/.aws``).  Each put
    sends the SHA-256 for the store to check (``ChecksumSHA256``) as well; an object's
    size and type are remembered once seen (objects never change)."""

    def __init__(self, bucket, prefix="", *, endpoint=None, region=None, client=None):
        self.bucket, self.prefix = bucket, prefix
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise ConfigError("an S3 media store needs boto3 "
                                  "(pip install gridlink[s3])") from None
            client = boto3.client("s3", endpoint_url=endpoint, region_name=region or "us-east-1",
                                  config=Config(retries={"max_attempts": 3},
                                                connect_timeout=5, read_timeout=30))
        self.client = client
        self._heads = {}
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (BotoCoreError, ClientError)
        try:
            client.head_bucket(Bucket=bucket)
        except self._errors as exc:
            raise ConfigError(f"S3 media bucket {bucket!r}: {_s3_reason(exc)}") from None

    def _key(self, sha256):
        if not _HASH.fullmatch(sha256 or ""):
            raise MediaError(f"not a SHA-256 in hex: {sha256!r}")
        return f"{self.prefix}{sha256[:2]}/{sha256}"

    def _head(self, sha256):
        """(size, content type), or None when there is no such object."""
        key = self._key(sha256)
        if sha256 in self._heads:
            return self._heads[sha256]
        try:
            got = self.client.head_object(Bucket=self.bucket, Key=key)
        except self._errors as exc:
            if _s3_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise MediaError(f"S3 media store: {_s3_reason(exc)}") from None
        head = (got["ContentLength"], got.get("ContentType", ""))
        if len(self._heads) > 10_000:
            self._heads.clear()
        self._heads[sha256] = head
        return head

    def put(self, data, content_type, sha256=None):
        if content_type not in EXTENSIONS:
            raise MediaError(f"content type {content_type!r} is not kept "
                             f"(one of {', '.join(EXTENSIONS)})")
        raw = hashlib.sha256(data).digest()
        digest = raw.hex()
        if sha256 is not None and sha256 != digest:
            raise MediaError(f"hash mismatch: announced {sha256}, the bytes hash to {digest}")
        if self._head(digest) is None:
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(digest), Body=data,
                                       ContentType=content_type,
                                       ChecksumSHA256=base64.b64encode(raw).decode())
            except self._errors as exc:
                raise MediaError(f"S3 media store: {_s3_reason(exc)}") from None
        return digest

    def has(self, sha256):
        return self._head(sha256) is not None

    def size(self, sha256):
        head = self._head(sha256)
        if head is None:
            raise MediaError(f"no media {sha256}")
        return head[0]

    def content_type(self, sha256):
        head = self._head(sha256)
        if head is None:
            raise MediaError(f"no media {sha256}")
        return head[1]

    def read(self, sha256, start=0, end=None):
        size = self.size(sha256)
        if start >= size or (end is not None and end < start):
            return b""
        args = {}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(sha256), **args)
            return got["Body"].read()
        except self._errors as exc:
            raise MediaError(f"S3 media store: {_s3_reason(exc)}") from None


def _s3_code(exc):
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _s3_reason(exc):
    code = _s3_code(exc)
    return f"{code} ({exc})" if code else str(exc)


def open_media_store(where):
    """The media store ``where`` names: a folder (``LocalMediaStore``), or
    ``s3://bucket[/prefix]`` with optional ``?endpoint=URL&region=NAME`` for an
    S3-compatible store (``S3MediaStore``); ``ConfigError`` for anything else."""
    where = str(where)
    if "://" not in where:
        return LocalMediaStore(where)
    url = urlsplit(where)
    if url.scheme != "s3":
        raise ConfigError(f"media store {where!r}: a folder or s3://bucket/prefix?endpoint=URL")
    if not url.netloc:
        raise ConfigError(f"media store {where!r}: no bucket named")
    query = parse_qs(url.query)
    unknown = set(query) - {"endpoint", "region"}
    if unknown:
        raise ConfigError(f"media store {where!r}: unknown option "
                          f"{', '.join(sorted(unknown))} (endpoint, region)")
    prefix = url.path.strip("/")
    return S3MediaStore(url.netloc, prefix + "/" if prefix else "",
                        endpoint=query.get("endpoint", [None])[-1],
                        region=query.get("region", [None])[-1])


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header, size):
    """(start, end inclusive) asked by an HTTP ``Range`` header for a ``size``-byte file;
    None to send the whole file (no header, another unit, several ranges, or a header this
    does not parse — RFC 9110 lets a server ignore those); ``RangeNotSatisfiable`` when the
    range lies beyond the file."""
    if not header:
        return None
    found = _RANGE.fullmatch(header.strip())
    if not found or found.group(1) == found.group(2) == "":
        return None
    first, last = found.groups()
    if first == "":                                   # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes=-{n} of a {size}-byte file")
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None                                    # invalid: ignored, whole file
    if start >= size:
        raise RangeNotSatisfiable(f"bytes={header.strip()[6:]} of a {size}-byte file")
    return start, end


def _av():
    try:
        import av
    except ImportError:
        raise MediaError("checking media needs PyAV (pip install gridlink[media])") from None
    return av


def mp4_boxes(data):
    """The top-level box types of an MP4, checking that their sizes add up to exactly the
    file (a cut anywhere, even in the last box, is found here)."""
    boxes, at = [], 0
    while at < len(data):
        if at + 8 > len(data):
            raise MediaError(f"truncated MP4: {len(data) - at} stray bytes at {at}")
        size = int.from_bytes(data[at:at + 4], "big")
        kind = data[at + 4:at + 8].decode("latin-1")
        if size == 1:
            if at + 16 > len(data):
                raise MediaError(f"truncated MP4: box {kind!r} at {at}")
            size = int.from_bytes(data[at + 8:at + 16], "big")
        elif size == 0:
            size = len(data) - at
        if size < 8 or at + size > len(data):
            raise MediaError(f"truncated MP4: box {kind!r} at {at} says {size} bytes, "
                             f"{len(data) - at} are left")
        boxes.append(kind)
        at += size
    missing = [b for b in ("ftyp", "moov", "mdat") if b not in boxes]
    if missing:
        raise MediaError(f"not a complete MP4: no {', '.join(missing)} box")
    return boxes


def check_clip(data, max_bytes=MAX_CLIP_BYTES):
    """{"seconds", "frames", "width", "height", "trigger_offset_s"} of an MP4 clip with
    one H.264 video stream, its boxes whole and every packet read; ``MediaError`` with
    the reason otherwise."""
    if len(data) > max_bytes:
        raise MediaError(f"clip of {len(data)} bytes is over the limit of {max_bytes}")
    mp4_boxes(data)
    av = _av()
    try:
        with av.open(io.BytesIO(data), format="mp4") as c:
            if not c.streams.video:
                raise MediaError("the clip has no video stream")
            stream = c.streams.video[0]
            if stream.codec_context.name != "h264":
                raise MediaError(f"the clip's video is {stream.codec_context.name}, "
                                 "not H.264")
            expected = stream.frames
            packets = [p for p in c.demux(stream) if p.size]
            width, height = stream.codec_context.width, stream.codec_context.height
            seconds = (c.duration or 0) / 1e6
            comment = c.metadata.get("comment", "")
    except av.FFmpegError as exc:
        raise MediaError(f"not a complete MP4: {exc}") from None
    if not packets:
        raise MediaError("the clip holds no frames")
    if expected and len(packets) < expected:
        raise MediaError(f"truncated clip: {len(packets)} of {expected} frames present")
    found = re.fullmatch(r"gridlink trigger at (\d+(?:\.\d+)?) s", comment)
    return {"seconds": round(seconds, 3), "frames": len(packets), "width": width,
            "height": height, "trigger_offset_s": float(found.group(1)) if found else None}


def check_memo(data, max_bytes=MAX_MEMO_BYTES):
    """{"seconds", "codec"} of an Ogg memo (Opus or Vorbis), every packet decoded."""
    if len(data) > max_bytes:
        raise MediaError(f"memo of {len(data)} bytes is over the limit of {max_bytes}")
    av = _av()
    try:
        with av.open(io.BytesIO(data), format="ogg") as c:
            if not c.streams.audio:
                raise MediaError("the memo has no audio stream")
            stream = c.streams.audio[0]
            codec = stream.codec_context.name
            if codec not in ("opus", "vorbis"):
                raise MediaError(f"the memo is {codec}, not Opus or Vorbis")
            samples = sum(f.samples for f in c.decode(stream))
            rate = stream.codec_context.sample_rate
    except av.FFmpegError as exc:
        raise MediaError(f"not a playable Ogg memo: {exc}") from None
    if not samples:
        raise MediaError("the memo holds no audio")
    return {"seconds": round(samples / rate, 3), "codec": codec}
