"""The unit's launcher: boot() then the chosen slot's installed code, in a new process."""

import subprocess
import sys

from gridlink.firmware.device.ota import update_device
from gridlink.firmware.device.slots import Slots

from tests.support.fleet import make_repo, provision
from tests.support.paths import ROOT


def launch(device, *args):
    return subprocess.run([sys.executable, "-m", "gridlink.firmware.device.launch",
                           str(device), "--module", "gridlink_probe", "--", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_the_launcher_runs_the_current_slot_and_counts_the_trial(tmp_path):
    _keydir, repo = make_repo(tmp_path, versions=("1.0", "1.1"))
    device = provision(tmp_path / "device", repo, "1.0")
    assert launch(device, "device", "run").stdout.split() == ["1.0", "a", "device", "run"]
    update_device(device, repo.path, "pi", "1.1", boots=2)
    slots = Slots(device / "ota")
    for boots_left in (1, 0):
        assert launch(device).stdout.split() == ["1.1", "b"]
        assert slots.status()["boots_left"] == boots_left
    # never marked good: the third start brings 1.0 back
    assert launch(device).stdout.split() == ["1.0", "a"]
    assert slots.status()["failed"][-1]["version"] == "1.1"


def test_the_launcher_says_what_is_wrong(tmp_path):
    (tmp_path / "broken" / "ota" / "slots" / "a").mkdir(parents=True)   # an unfinished slot
    proc = launch(tmp_path / "broken")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"gridlink launch: error: {tmp_path / 'broken' / 'ota'}: "
                                   "no complete slot to start")


def test_a_device_without_slots_runs_the_installed_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gridlink.firmware.device.launch",
                           str(tmp_path / "plain"), "--", "--version"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("gridlink ")
    assert not (tmp_path / "plain").exists()             # nothing made, nothing counted
