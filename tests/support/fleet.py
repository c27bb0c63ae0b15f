"""Update repositories and devices for the fleet/OTA tests: keys, a small application
release (a tiny app, quick to install), a device provisioned with its first version."""

import datetime
import json
import shutil
import tarfile
from pathlib import Path

from gridlink.firmware.device.slots import Slots
from gridlink.fleet.keys import init_keys
from gridlink.fleet.release import write_release_tar
from gridlink.fleet.repo import Repository

APP = '''import json, pathlib, sys
here = pathlib.Path(__file__).resolve().parent
print(json.loads((here / "release.json").read_text())["version"])
'''


def app_release(tmp, version, kind="pi", extra=b"x" * 4000):
    """A release tar of a tiny application: app.py, a data file, a nested module."""
    src = Path(tmp) / f"app-src-{kind}-{version}"
    shutil.rmtree(src, ignore_errors=True)
    (src / "lib").mkdir(parents=True)
    (src / "app.py").write_text(APP)
    (src / "lib" / "mod.py").write_text(f"VERSION = {version!r}\n")
    (src / "data.bin").write_bytes(extra)
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


def provision(data_dir, repo, version="1.0", kind="pi"):
    """A device running ``version`` from slot a, trusting the repository's first root,
    with a few reports in its outbox."""
    data_dir = Path(data_dir)
    meta = data_dir / "ota" / "metadata"
    meta.mkdir(parents=True)
    shutil.copyfile(repo.meta_dir / "1.root.json", meta / "root.json")
    unpacked = data_dir / "first"
    from gridlink.firmware.device.slots import unpack

    unpack(app_release(data_dir, version, kind), unpacked, kind, version)
    Slots(data_dir / "ota").adopt(unpacked)
    shutil.rmtree(unpacked)
    outbox = data_dir / "outbox"
    outbox.mkdir()
    for i in range(3):
        (outbox / f"{i:08d}.rec").write_bytes(json.dumps({"seq": i}).encode() * 20)
    return data_dir


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
