"""A release download cut in the middle resumes where it stopped: the device keeps the
bytes it received, asks the gateway for the rest (a Range request) and TUF checks the
whole.  Through a real gateway app behind the user-space link shaper (256 kbit/s, a
reset in the middle); kept bytes that do not check are dropped and fetched afresh."""

import os
import shutil
import threading

import pytest
from gridlink.firmware.device.ota import update_device
from gridlink.firmware.device.slots import Slots
from gridlink.firmware.device.update import UpdateRefused
from gridlink.fleet.keys import init_keys
from gridlink.fleet.repo import Repository
from gridlink.gateway.api import create_app
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.store import open_store

from hil_tests.shaper import Profile, Shaper
from tests.support.fleet import app_release, provision
from tests.support.waiting import wait_until

SIZE = 200_000                        # incompressible: what a wheel is
LINK = Profile("slow", delay_ms=40, rate_kbps=256)


@pytest.fixture
def link(tmp_path):
    keydir = tmp_path / "keys"
    init_keys(keydir)
    repo = Repository(tmp_path / "repo")
    repo.add_release(keydir, "pi", "1.0", app_release(tmp_path, "1.0"))
    repo.add_release(keydir, "pi", "1.1", app_release(tmp_path, "1.1", extra=os.urandom(SIZE)))
    store = open_store(f"sqlite:///{tmp_path}/intake.sqlite")
    with BackgroundServer(create_app(store, update_repo=repo.path)) as server:
        shaper = Shaper(server.port, LINK)
        try:
            yield repo, shaper, f"http://127.0.0.1:{shaper.port}/ota"
        finally:
            shaper.close()
    store.close()


def release_bytes(repo, version):
    (tar,) = (repo.targets_dir / "pi").glob(f"*.gridlink-{version}.tar")
    return tar.stat().st_size


def cut_in_the_middle(shaper, device, url, size):
    """Start the update, reset the link once half the release has crossed it."""
    errors = []

    def run():
        try:
            update_device(device, url, "pi", "1.1")
        except UpdateRefused as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    start = shaper.bytes_down
    worker.start()
    wait_until(lambda: shaper.bytes_down - start > size // 2, 60, "half the release")
    shaper.cut(mode="reset")
    worker.join(60)
    shaper.restore()
    return errors


def test_a_cut_download_resumes_and_sends_the_release_about_once(link, tmp_path):
    repo, shaper, url = link
    size = release_bytes(repo, "1.1")
    device = provision(tmp_path / "device", repo, "1.0")
    (errors,) = [cut_in_the_middle(shaper, device, url, size)]
    assert [(e.reason, e.file.startswith("targets/pi/")) for e in errors] == [
        ("download", True)]
    (kept,) = (device / "ota" / "partial").iterdir()
    have = kept.stat().st_size
    assert size // 3 < have < size
    status = Slots(device / "ota").status()
    assert status["installed"] == "1.0" and status["failed"][-1]["reason"] == "download"
    before = shaper.bytes_down
    assert update_device(device, url, "pi", "1.1") == "b"            # the rest only
    second = shaper.bytes_down - before
    assert second < size - have + 20_000, second                      # + metadata
    assert shaper.bytes_down < size * 1.25                            # both attempts
    assert not (device / "ota" / "partial").exists()
    assert Slots(device / "ota").status()["pending"] == "1.1"


def test_kept_bytes_that_do_not_check_are_dropped_and_fetched_afresh(link, tmp_path):
    repo, shaper, url = link
    size = release_bytes(repo, "1.1")
    device = provision(tmp_path / "device", repo, "1.0")
    cut_in_the_middle(shaper, device, url, size)
    (kept,) = (device / "ota" / "partial").iterdir()
    data = bytearray(kept.read_bytes())
    data[100] ^= 0xFF                                   # damaged while kept
    kept.write_bytes(bytes(data))
    with pytest.raises(UpdateRefused) as refused:
        update_device(device, url, "pi", "1.1")
    assert refused.value.reason == "hash"
    assert not (device / "ota" / "partial").exists()
    assert update_device(device, url, "pi", "1.1") == "b"


def test_a_refused_transfer_is_a_download_refusal_never_a_raw_error(link, tmp_path):
    repo, shaper, url = link
    device = provision(tmp_path / "device", repo, "1.0")
    shaper.cut(mode="reset")
    with pytest.raises(UpdateRefused) as refused:
        update_device(device, url, "pi", "1.1")
    assert refused.value.reason == "download"
    shaper.restore()
    shutil.rmtree(device / "ota" / "download", ignore_errors=True)
    assert update_device(device, url, "pi", "1.1") == "b"
