"""The sensor node's update manifest: compact, line-based, signed with Ed25519.

    gridlink-manifest/1
    kind mcu
    version 1.4
    expires 1767225600                  (Unix seconds, UTC)
    <sha256 hex> <bytes> <path>         one line per file of the image

The signature (``manifest.sig``: 128 hex digits) is Ed25519 over the manifest's SHA-256
digest, so the node hashes the manifest with ``hashlib.sha256`` and runs SHA-512 over
96 bytes only.  ``check`` refuses — ``ManifestError`` with a ``reason`` of format,
signature, expired, wrong-kind or older-than-installed — before any file is touched;
``check_file`` then checks each downloaded file.
"""

import binascii
import hashlib

from . import ed25519, fsio
from .errors import CoreError

FORMAT = "gridlink-manifest/1"


class ManifestError(CoreError):
    """A manifest or file refused; ``reason`` is a short code, the message says why."""

    def __init__(self, reason, message):
        self.reason = reason
        super().__init__(reason + ": " + message)


def version_tuple(text):
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        raise ManifestError("format", "version " + text + " is not dotted numbers")
    out = []
    for p in parts:
        if not p or len(p) > 6 or not all("0" <= ch <= "9" for ch in p):
            raise ManifestError("format", "version " + text + " is not dotted numbers")
        out.append(int(p))
    while len(out) < 4:
        out.append(0)
    return tuple(out)


def encode(kind, version, expires, files):
    """The manifest's bytes: ``files`` is a list of (path, sha256 hex, size)."""
    lines = [FORMAT, "kind " + kind, "version " + version, "expires " + str(int(expires))]
    for path, sha, size in sorted(files):
        lines.append(sha + " " + str(size) + " " + path)
    return ("\n".join(lines) + "\n").encode()


def parse(data):
    """{kind, version, expires, files: [(path, sha256 hex, size)]} of manifest bytes."""
    try:
        lines = bytes(data).decode().split("\n")
    except UnicodeError:
        raise ManifestError("format", "not UTF-8 text")  # noqa: B904
    if len(lines) < 5 or lines[0] != FORMAT or lines[-1] != "":
        raise ManifestError("format", "not a " + FORMAT + " manifest")
    head = {}
    for i, key in enumerate(("kind", "version", "expires")):
        line = lines[i + 1]
        if not line.startswith(key + " "):
            raise ManifestError("format", "line '" + line[:40] + "' should give the " + key)
        head[key] = line[len(key) + 1:]
    version_tuple(head["version"])
    try:
        head["expires"] = int(head["expires"])
    except ValueError:
        raise ManifestError("format", "expires is not a number of seconds")  # noqa: B904
    files = []
    for line in lines[4:-1]:
        fields = line.split(" ", 2)
        if (len(fields) != 3 or len(fields[0]) != 64 or not fields[1].isdigit()
                or not fields[2] or fields[2].startswith("/") or ".." in fields[2].split("/")):
            raise ManifestError("format", "bad file line '" + line[:60] + "'")
        files.append((fields[2], fields[0], int(fields[1])))
    head["files"] = files
    return head


def check(data, signature_hex, public_keys, kind, now, installed=None):
    """Verify manifest ``data`` and return it parsed, or raise ManifestError.  Any of
    ``public_keys`` (32-byte Ed25519 keys; more than one while a key is rotated) may have
    signed it; ``now`` is Unix seconds; ``installed`` the running version or None."""
    try:
        signature = binascii.unhexlify(bytes(signature_hex).strip())
    except (ValueError, TypeError):
        raise ManifestError("signature", "the signature is not hex")  # noqa: B904
    digest = hashlib.sha256(bytes(data)).digest()
    if not any(ed25519.verify(key, digest, signature) for key in public_keys):
        raise ManifestError("signature", "not signed by a trusted key")
    manifest = parse(data)
    if manifest["kind"] != kind:
        raise ManifestError("wrong-kind", "the release is for " + manifest["kind"]
                            + ", this device is " + kind)
    if now >= manifest["expires"]:
        raise ManifestError("expired", "the manifest expired at " + str(manifest["expires"]))
    if installed is not None and version_tuple(manifest["version"]) <= version_tuple(installed):
        raise ManifestError("older-than-installed", manifest["version"]
                            + " is not newer than the installed " + installed)
    return manifest


def check_file(path, sha_hex, size):
    """Raise ManifestError(hash) unless the file at ``path`` has this size and sha256."""
    try:
        got = fsio.file_sha256(path)
    except OSError:
        raise ManifestError("hash", path + " is missing")  # noqa: B904
    if fsio.size(path) != size or got != sha_hex:
        raise ManifestError("hash", path + " differs from the manifest")
