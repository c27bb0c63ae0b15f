"""Check a published release exactly as a device does, from a fresh device's trust root."""

import shutil
import tempfile
from pathlib import Path

from gridlink.firmware.device import slots, update

from .errors import FleetError


def verify(repo, kind, version, root=None, installed=None, free_bytes=None):
    """Fetch and check release ``version`` for ``kind``: TUF metadata and the release file
    (``update.fetch_release``), then its contents (``slots.unpack``).  FleetError naming
    the file and the reason when anything is wrong; else a summary dict."""
    repo_s = str(repo)
    if root is None:
        if repo_s.startswith(("http://", "https://")):
            raise FleetError("give --root: the device's trusted root.json")
        root = Path(repo_s.removeprefix("file://")) / "metadata" / "1.root.json"
    if not Path(root).is_file():
        raise FleetError(f"{root}: no such root metadata file")
    with tempfile.TemporaryDirectory(prefix="gridlink-verify-") as tmp:
        device = Path(tmp)
        (device / "metadata").mkdir()
        shutil.copyfile(root, device / "metadata" / "root.json")
        try:
            tar, info = update.fetch_release(device / "metadata", repo, kind, version,
                                             device / "download", installed=installed,
                                             free_bytes=free_bytes)
            release = slots.unpack(tar, device / "unpacked", kind, version)
        except update.UpdateError as exc:
            raise FleetError(str(exc)) from None
        return {"target": info.path, "bytes": info.length, "sha256": info.hashes["sha256"],
                "files": release["files"]}
