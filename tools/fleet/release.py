"""Release files: one tar per release and device kind, with ``release.json`` inside.

    pi:   release.json, wheels/gridlink-….whl (and, with ``with_deps``, the wheels it needs)
    mcu:  release.json, image/… (the board image ``gridlink flash build`` makes),
          manifest/manifest.txt and manifest.sig (the node's compact signed manifest)

``release.json`` names the kind, the version and every file with its sha256 and size; the
tar itself is what the repository's targets metadata signs.  Entries are sorted and carry
no owner or time, so the same inputs give the same bytes.
"""

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .errors import FleetError
from .repo import check_version

RELEASE_FORMAT = "gridlink-release/1"
SOURCE = Path(__file__).resolve().parents[2]


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def write_release_tar(out, kind, version, folder):
    """Tar every file under ``folder`` with a release.json describing them."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    described = [{"path": p.relative_to(folder).as_posix(), "sha256": _sha256(p),
                  "bytes": p.stat().st_size} for p in files]
    release = {"format": RELEASE_FORMAT, "kind": kind, "version": version, "files": described}
    data = (json.dumps(release, indent=1, sort_keys=True) + "\n").encode()

    def entry(name, size):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(entry("release.json", len(data)), io.BytesIO(data))
        for p, d in zip(files, described, strict=True):
            with open(p, "rb") as f:
                tar.addfile(entry(d["path"], d["bytes"]), f)
    return release


def build_pi(out, version, with_deps=False):
    """The Pi release: the gridlink wheel built from this checkout (``pip wheel``)."""
    check_version(version)
    if not (SOURCE / "pyproject.toml").exists():
        raise FleetError(f"no gridlink source tree at {SOURCE}: build Pi releases from a "
                         "checkout")
    with tempfile.TemporaryDirectory(prefix="gridlink-release-") as tmp:
        wheels = Path(tmp) / "wheels"
        args = [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation",
                "-w", str(wheels), str(SOURCE)]
        if not with_deps:
            args.insert(4, "--no-deps")
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode:
            last = (proc.stderr or proc.stdout).strip().splitlines()
            raise FleetError(f"pip wheel failed: {last[-1] if last else 'no output'}")
        return write_release_tar(out, "pi", version, tmp)


def build_mcu(out, version, board=None, signing_key=None):
    """The sensor-node release: the board image of ``gridlink flash build``, and, with
    ``signing_key`` (an Ed25519 private key), its signed compact manifest."""
    from gridlink.flash.build import build as build_image
    from gridlink.flash.errors import FlashError

    from . import mcu_manifest

    check_version(version)
    with tempfile.TemporaryDirectory(prefix="gridlink-release-") as tmp:
        try:
            build_image(Path(tmp) / "image", board=board)
        except FlashError as exc:
            raise FleetError(f"building the board image failed: {exc}") from None
        if signing_key is not None:
            manifest = mcu_manifest.make(Path(tmp) / "image", "mcu", version)
            (Path(tmp) / "manifest").mkdir()
            (Path(tmp) / "manifest" / "manifest.txt").write_bytes(manifest)
            (Path(tmp) / "manifest" / "manifest.sig").write_bytes(
                mcu_manifest.sign(manifest, signing_key))
        return write_release_tar(out, "mcu", version, tmp)
