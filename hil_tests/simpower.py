"""The simulated vehicle's power switch, for labgrid's ExternalPowerDriver
(hil_tests/labgrid/sim.yaml): ``python -m hil_tests.simpower on|off FOLDER``.

``on`` starts the command line in ``FOLDER/argv.json`` as a process of its own (output
appended to ``FOLDER/device.log``, its pid in ``FOLDER/pid``) unless it runs already;
``off`` SIGKILLs it — a power cut, no clean stop — and waits until it is gone.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def running(folder):
    """The pid of the powered process, or None."""
    try:
        pid = int((Path(folder) / "pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return None if state in ("Z", "X") else pid


def on(folder):
    folder = Path(folder)
    if running(folder):
        return
    argv = json.loads((folder / "argv.json").read_text())
    with open(folder / "device.log", "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (folder / "pid").write_text(str(proc.pid))


def off(folder, timeout=10.0):
    pid = running(folder)
    if pid is None:
        return
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while running(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    if running(folder):
        raise SystemExit(f"process {pid} still there {timeout:.0f} s after SIGKILL")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("on", "off"):
        raise SystemExit("usage: python -m hil_tests.simpower on|off FOLDER")
    (on if sys.argv[1] == "on" else off)(sys.argv[2])
