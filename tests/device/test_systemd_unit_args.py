"""The shipped systemd unit starts the device with options the CLI really accepts, and
reads only files that ``gridlink flash provision`` writes for a Pi."""

import re
import shlex
from pathlib import Path

from gridlink.cli import build_parser
from gridlink.flash import provision

from tests.support.device_rig import unit


def exec_start_argv():
    line = unit()["Service"]["ExecStart"].replace("\\\n", " ")
    line = re.sub(r"\$\{(\w+)\}", lambda m: f"X_{m.group(1)}", line)
    argv = shlex.split(line)
    # the A/B launcher over the data dir, then the gridlink command's arguments
    assert argv[0].endswith("/python")
    assert argv[1:6] == ["-m", "gridlink.firmware.device.launch", "/var/lib/gridlink", "--",
                         "device"]
    return argv[5:]


def test_exec_start_parses_with_the_device_run_parser():
    args = build_parser("device").parse_args(exec_start_argv())
    assert args.device_id == "X_GRIDLINK_DEVICE_ID"
    assert args.map == "/etc/gridlink/gridmap.glgm"
    assert args.data_dir == "/var/lib/gridlink"         # the launcher's data dir too


def test_every_file_the_unit_reads_is_provisioned():
    source = Path(provision.__file__).read_text(encoding="utf-8")
    named = set(re.findall(r"/etc/gridlink/([\w.-]+)", unit()["Service"]["ExecStart"]))
    named |= set(re.findall(r"/etc/gridlink/([\w.-]+)", unit()["Service"]["EnvironmentFile"]))
    assert named, "the unit names no provisioned file"
    for name in named:
        assert f'"{name}"' in source, (
            f"/etc/gridlink/{name} is read by the unit but provision.py never writes it")
