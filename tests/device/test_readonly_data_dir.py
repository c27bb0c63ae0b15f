"""A data directory the device cannot write ends it with one clear line (the path, the
reason and the fix, exit 2), as every other device failure does — never a traceback.
A real read-only filesystem: a tmpfs the test mounts and remounts read-only (root)."""

import subprocess
import sys
from pathlib import Path

import pytest
from gridlink.firmware.device.store import Store
from gridlink.firmware.errors import DeviceError

from tests.support.tmpfs import tmpfs

ROOT = Path(__file__).resolve().parents[2]
GRIDLINK = [sys.executable, "-c", "import sys; from gridlink.cli import main; sys.exit(main())"]


@pytest.fixture
def read_only(tmp_path):
    """A read-only filesystem holding ``old/`` (a data dir written before) and nothing else."""
    with tmpfs(tmp_path / "ro", "1m") as mnt:
        Store(mnt / "old").close()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt


@pytest.mark.parametrize("name", ["old", "new", "new/deeper"])
def test_a_read_only_data_dir_is_a_clear_error_with_the_fix(read_only, name):
    data = read_only / name
    with pytest.raises(DeviceError) as err:
        Store(data)
    text = str(err.value)
    assert str(data) in text and "Read-only file system" in text
    assert "read-write" in text and "--data-dir" in text


def test_the_device_run_command_ends_with_one_line_not_a_traceback(read_only, broker):
    done = subprocess.run([*GRIDLINK, "device", "run", "--profile", "patrol-vehicle", "--sim",
                           "--data-dir", str(read_only / "old"), "--broker", broker.url],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stdout + done.stderr
    assert f"data directory {read_only / 'old'} cannot be written" in done.stderr
