"""A Pi's first release at provisioning (``gridlink flash provision --release V
--update-repo REPO``): the release is fetched and verified as a device does
(``update.fetch_release``: TUF, from the repository's first root or ``--update-root``),
unpacked and checked, its wheels installed, then placed in slot a of
``var/lib/gridlink/ota`` under the Pi's root, current and good, with the trusted root
beside it.  A later update then has a version to roll back to.

Everything is fetched and checked in a folder of its own first; only a complete release
is placed, and a Pi that already has update slots is refused (it updates through
rollouts).
"""

import shutil
import tempfile
from pathlib import Path

DATA_DIR = "var/lib/gridlink"     # the unit's --data-dir, under the Pi's root


class FirstRelease:
    """A verified, unpacked, prepared release waiting to be placed; ``close()`` drops it."""

    def __init__(self, repo, version, root=None, prepare=None):
        from gridlink.firmware.device.slots import prepare_pi, unpack
        from gridlink.firmware.device.update import fetch_release

        self.version = version
        self.work = Path(tempfile.mkdtemp(prefix="gridlink-first-release-"))
        try:
            self.root_json = self._root(repo, root)
            meta = self.work / "metadata"
            meta.mkdir()
            (meta / "root.json").write_bytes(self.root_json)
            tar, _ = fetch_release(meta, str(repo), "pi", version, self.work / "download",
                                   free_bytes=lambda _p: 1 << 62)
            self.release = self.work / "release"
            unpack(tar, self.release, "pi", version)
            (prepare or prepare_pi)(self.release)
        except BaseException:
            self.close()
            raise

    def _root(self, repo, root):
        if root is not None:
            return Path(root).read_bytes()
        text = str(repo)
        if text.startswith(("http://", "https://")):
            raise ValueError("give --update-root (the repository's 1.root.json, from the "
                             "release manager) when the repository is a URL: the first "
                             "root is what the device trusts, not fetched from the network")
        first = Path(text) / "metadata" / "1.root.json"
        if not first.is_file():
            raise ValueError(f"{first}: no such file; is {text} an update repository?")
        return first.read_bytes()

    def place(self, pi_root):
        """Slot a of the Pi under ``pi_root``, current and good; the trusted root."""
        self.install(Path(pi_root) / DATA_DIR / "ota")

    def install(self, ota_dir):
        """Slot a of the update slots in ``ota_dir`` (a data dir's ``ota``), current and
        good; the trusted root beside it."""
        from gridlink.firmware.device.slots import Slots

        ota = Path(ota_dir)
        (ota / "metadata").mkdir(parents=True, exist_ok=True)
        (ota / "metadata" / "root.json").write_bytes(self.root_json)
        Slots(ota).adopt(self.release)

    def close(self):
        shutil.rmtree(self.work, ignore_errors=True)


def installed_version(pi_root):
    """The version in the Pi's update slots, or None when it has none."""
    from gridlink.firmware.device.slots import Slots

    slots = Slots(Path(pi_root) / DATA_DIR / "ota")
    return slots.installed_version() if slots.current() is not None else None
