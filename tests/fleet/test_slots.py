"""A/B slots on the Pi: install beside the running release, switch on trial, mark good
after a health check, roll back when the boots run out; a power cut (SIGKILL) at every
step leaves the old release or the new one running, never neither, and the outbox as it
was."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

import pytest
from gridlink.firmware.device.ota import update_device
from gridlink.firmware.device.slots import Slots, commit_if_healthy, health_check, unpack
from gridlink.firmware.device.update import UpdateError, UpdateRefused

from tests.support.fleet import (
    app_release,
    make_repo,
    outbox_holds_three_reports,
    provision,
    tree_digest,
)
from tests.support.paths import ROOT


@pytest.fixture
def setup(tmp_path):
    _keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    return repo, provision(tmp_path / "device", repo, "1.0")


def running_version(device):
    """Start the current slot's application, as the unit does: what version answers."""
    app = device / "ota" / "current" / "app.py"
    proc = subprocess.run([sys.executable, str(app)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def slot_is_complete(device, slot):
    folder = device / "ota" / "slots" / slot
    release = json.loads((folder / "release.json").read_text())
    files = {f["path"]: f["bytes"] for f in release["files"]}
    return all((folder / p).stat().st_size == n for p, n in files.items())


def test_install_switches_on_trial_and_a_healthy_boot_keeps_it(setup):
    repo, device = setup
    slots = Slots(device / "ota")
    assert update_device(device, repo.path, "pi", "1.1", boots=3) == "b"
    assert slots.status() == {"installed": "1.1", "slot": "b", "pending": "1.1",
                              "boots_left": 3, "failed": []}
    assert os.readlink(device / "ota" / "current") == "slots/b"
    assert slots.release("a")["version"] == "1.0"                # the old one stays
    assert slots.boot() == "b"
    assert slots.status()["boots_left"] == 2
    assert running_version(device) == "1.1"
    assert commit_if_healthy(slots, {"outbox": lambda: outbox_holds_three_reports(device)},
                             deadline=5) == []
    assert slots.status()["pending"] is None and slots.state()["good"] == "b"
    assert slots.boot() == "b" and slots.status()["boots_left"] is None


def test_an_unhealthy_version_is_rolled_back_when_its_boots_run_out(setup):
    repo, device = setup
    slots = Slots(device / "ota")
    update_device(device, repo.path, "pi", "1.1", boots=2)

    def gnss():
        raise OSError("no NMEA on /dev/serial0")

    for boots_left in (1, 0):
        assert slots.boot() == "b"
        assert running_version(device) == "1.1"
        problems = commit_if_healthy(slots, {"gnss": gnss}, deadline=2)
        assert problems == [("gnss", "OSError: no NMEA on /dev/serial0")]
        assert slots.status()["boots_left"] == boots_left
    assert slots.boot() == "a"                                    # boots ran out
    assert running_version(device) == "1.0"
    status = slots.status()
    assert status["installed"] == "1.0" and status["pending"] is None
    assert status["failed"] == [{"version": "1.1",
                                 "reason": "health check not passed within its boots"}]
    assert slots.boot() == "a"
    # The failed version does not come back on its own; a newer release may be installed.
    assert update_device(device, repo.path, "pi", "1.1") == "b"


def test_a_check_that_never_answers_fails_at_the_deadline():
    start = time.monotonic()
    problems = health_check({"broker": lambda: time.sleep(30), "camera": lambda: True},
                            deadline=0.5)
    assert time.monotonic() - start < 5
    assert problems[0] == ("broker", "no answer within the 0.5 s deadline")
    assert health_check({"camera": lambda: False}, 1) == [("camera", "returned False")]


def test_no_second_install_while_a_trial_is_pending(setup, tmp_path):
    repo, device = setup
    update_device(device, repo.path, "pi", "1.1")
    slots = Slots(device / "ota")
    before = tree_digest(device / "ota" / "slots" / "a")
    with pytest.raises(UpdateError, match=r"1\.1 is still on trial"):
        slots.install(app_release(tmp_path, "1.2"), "pi", "1.2")
    assert tree_digest(device / "ota" / "slots" / "a") == before   # the fallback is kept


def test_boot_repairs_a_missing_or_broken_current_link(setup):
    _repo, device = setup
    slots = Slots(device / "ota")
    (device / "ota" / "current").unlink()
    assert slots.boot() == "a" and running_version(device) == "1.0"
    os.replace(device / "ota" / "slots" / "a", device / "ota" / "slots" / "gone")
    with pytest.raises(UpdateError, match="no complete slot"):
        slots.boot()


def _tar(tmp_path, entries, release=None):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in [("release.json", json.dumps(release).encode()), *entries]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("entries, listed, problem", [
    ([("../evil.py", b"x")], [("../evil.py", b"x")], "not a plain relative file"),
    ([("/etc/evil", b"x")], [("/etc/evil", b"x")], "not a plain relative file"),
    ([("app.py", b"x"), ("extra.py", b"y")], [("app.py", b"x")], "differ from release.json"),
    ([("app.py", b"x")], [("app.py", b"z")], "content differs"),
])
def test_unpack_refuses_a_release_that_does_not_match_its_list(tmp_path, entries, listed,
                                                               problem):
    import hashlib

    release = {"format": "gridlink-release/1", "kind": "pi", "version": "2.0",
               "files": [{"path": p, "sha256": hashlib.sha256(d).hexdigest(),
                          "bytes": len(d)} for p, d in listed]}
    with pytest.raises(UpdateRefused, match=problem):
        unpack(_tar(tmp_path, entries, release), tmp_path / "out", "pi", "2.0")
    assert not (tmp_path / "evil.py").exists() and not (tmp_path.parent / "evil.py").exists()


# -- power cuts ----------------------------------------------------------------------------

def run_driver(device, repo, version, kill_at, steps_file):
    return subprocess.run(
        [sys.executable, "-m", "tests.support.ota_driver", str(device), str(repo), version,
         str(kill_at), str(steps_file)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_power_cut_at_every_step_leaves_the_old_or_the_new_version(setup, tmp_path):
    repo, template = setup
    outbox = tree_digest(template / "outbox")
    whole = tmp_path / "whole"
    shutil.copytree(template, whole, symlinks=True)
    proc = run_driver(whole, repo.path, "1.1", 0, tmp_path / "steps")
    assert proc.returncode == 0, proc.stderr
    steps = (tmp_path / "steps").read_text().splitlines()
    for expected in ("metadata", "download", "verified", "unpack", "prepare", "place",
                     "trial", "switch", "boot", "start", "health", "good"):
        assert expected in steps, steps
    assert [s for s in steps if s.startswith("unpack ")] == [      # and one per file
        "unpack app.py", "unpack data.bin", "unpack lib/mod.py", "unpack site/gridlink_probe.py"]
    assert Slots(whole / "ota").status()["installed"] == "1.1"
    switch = steps.index("switch") + 1                            # 1-based step number

    for kill_at in range(1, len(steps) + 1):
        device = tmp_path / f"cut-{kill_at}"
        shutil.copytree(template, device, symlinks=True)
        proc = run_driver(device, repo.path, "1.1", kill_at, tmp_path / f"steps-{kill_at}")
        assert proc.returncode == -9, (kill_at, proc.returncode, proc.stderr)
        # Power comes back: the unit's start runs boot(), then the application.
        slots = Slots(device / "ota")
        slot = slots.boot()
        version = running_version(device)
        assert version == ("1.0" if kill_at <= switch else "1.1"), (kill_at, steps[kill_at - 1])
        assert slot_is_complete(device, slot)
        assert tree_digest(device / "outbox") == outbox, kill_at
        # ... and the device gets to the new version from there: finishing the trial, or
        # (when the cut came before the switch) installing again.
        if slots.status()["pending"]:
            assert commit_if_healthy(slots, {"o": lambda d=device:
                                             outbox_holds_three_reports(d)}, 5) == []
        elif version == "1.0":
            proc = run_driver(device, repo.path, "1.1", 0, tmp_path / "again")
            assert proc.returncode == 0, (kill_at, proc.stderr)
        assert slots.status() == {"installed": "1.1", "slot": slots.current(),
                                  "pending": None, "boots_left": None, "failed": []}, kill_at
        assert running_version(device) == "1.1"
        assert tree_digest(device / "outbox") == outbox


def test_a_real_pi_release_installs_its_wheel_into_the_new_slot(setup, tmp_path):
    from gridlink.firmware.device.slots import prepare_pi
    from gridlink.fleet.keys import init_keys
    from gridlink.fleet.release import build_pi
    from gridlink.fleet.repo import Repository

    _repo, device = setup
    keydir = tmp_path / "real-keys"
    init_keys(keydir)
    real = Repository(tmp_path / "real-repo")
    build_pi(tmp_path / "pi.tar", "2.0")
    real.add_release(keydir, "pi", "2.0", tmp_path / "pi.tar")
    shutil.copyfile(real.meta_dir / "1.root.json", device / "ota" / "metadata" / "root.json")
    assert update_device(device, real.path, "pi", "2.0", prepare=prepare_pi) == "b"
    site = device / "ota" / "current" / "site"
    probe = "import gridlink.cli, gridlink.firmware.core.outbox as o; print(o.__file__)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    loaded = os.path.realpath(out.stdout.strip())
    assert loaded.startswith(str((device / "ota" / "slots" / "b" / "site").resolve()))
