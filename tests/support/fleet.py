"""Update repositories and devices for the fleet/OTA tests: keys, a small application
release (a tiny app, quick to install), a sensor node's release of one file, a device
provisioned with its first version."""

import datetime
import json
import shutil
import tarfile
from pathlib import Path

from gridlink.firmware.core.outbox import REPORT, Outbox
from gridlink.firmware.device.slots import Slots, unpack
from gridlink.fleet.keys import init_keys
from gridlink.fleet.release import write_release_tar
from gridlink.fleet.repo import Repository

APP = '''import json, pathlib, sys
here = pathlib.Path(__file__).resolve().parent
print(json.loads((here / "release.json").read_text())["version"])
'''
# An installed module in the slot's site/, as a Pi release's wheels are: ``python -m``
# runs it from whichever slot the launcher chose.
PROBE = '''import os, sys
print(VERSION, os.environ.get("GRIDLINK_SLOT"), *sys.argv[1:])
'''


def app_release(tmp, version, kind="pi", extra=b"x" * 4000):
    """A release tar of a tiny application: app.py, a data file, a nested module."""
    src = Path(tmp) / f"app-src-{kind}-{version}"
    shutil.rmtree(src, ignore_errors=True)
    (src / "lib").mkdir(parents=True)
    (src / "app.py").write_text(APP)
    (src / "lib" / "mod.py").write_text(f"VERSION = {version!r}\n")
    (src / "data.bin").write_bytes(extra)
    (src / "site").mkdir()
    (src / "site" / "gridlink_probe.py").write_text(f"VERSION = {version!r}\n" + PROBE)
    tar = Path(tmp) / f"app-{kind}-{version}.tar"
    write_release_tar(tar, kind, version, src)
    return tar


def make_repo(tmp, versions=("1.0", "1.1"), kind="pi"):
    """(keydir, repo folder) with the tiny app released at each version."""
    tmp = Path(tmp)
    keydir = tmp / "keys"
    init_keys(keydir)
    repo = Repository(tmp / "repo")
    for v in versions:
        repo.add_release(keydir, kind, v, app_release(tmp, v, kind))
    return keydir, repo


def mcu_release_repo(tmp, body, version="2.0"):
    """The folder of an update repository (its keys beside it in ``tmp``) with sensor-node
    release mcu ``version`` holding one file, ``image/lib/x.mpy`` = ``body``."""
    tmp = Path(tmp)
    init_keys(tmp / "keys")
    src = tmp / "mcu-src"
    (src / "image" / "lib").mkdir(parents=True)
    (src / "image" / "lib" / "x.mpy").write_bytes(body)
    (src / "manifest").mkdir()
    (src / "manifest" / "manifest.txt").write_bytes(b"gridlink-manifest/1\n")
    write_release_tar(tmp / "mcu.tar", "mcu", version, src)
    repo = Repository(tmp / "repo")
    repo.add_release(tmp / "keys", "mcu", version, tmp / "mcu.tar")
    return repo.path


def provision(data_dir, repo, version="1.0", kind="pi"):
    """A device running ``version`` from slot a, trusting the repository's first root,
    with a few reports in its outbox."""
    data_dir = Path(data_dir)
    meta = data_dir / "ota" / "metadata"
    meta.mkdir(parents=True)
    shutil.copyfile(repo.meta_dir / "1.root.json", meta / "root.json")
    unpacked = data_dir / "first"
    unpack(app_release(data_dir, version, kind), unpacked, kind, version)
    Slots(data_dir / "ota").adopt(unpacked)
    shutil.rmtree(unpacked)
    (data_dir / "outbox").mkdir()
    outbox = Outbox(str(data_dir / "outbox"))
    for i in range(3):
        outbox.append(REPORT, json.dumps({"seq": i + 1, "text": "井盖缺失"}).encode())
    outbox.close()
    return data_dir


def outbox_holds_three_reports(data_dir):
    """The health check's outbox step: it opens and holds what it held."""
    outbox = Outbox(str(Path(data_dir) / "outbox"))
    try:
        return outbox.depth(REPORT) == 3
    finally:
        outbox.close()


def tree_digest(folder):
    """{relative path: bytes} of every file under ``folder``."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def past(days=1):
    return (datetime.datetime.now(datetime.UTC).replace(microsecond=0)
            - datetime.timedelta(days=days))


def tar_names(path):
    with tarfile.open(path) as tar:
        return tar.getnames()
