"""A device's update run in a process of its own, for the power-cut tests:

    python -m tests.support.ota_driver DATA_DIR REPO VERSION KILL_AT STEPS_FILE

fetches, verifies and installs VERSION (``update_device``), then "reboots": ``boot()``,
starts the slot's application, runs the health check and marks the slot good.  Every
step's name is appended to STEPS_FILE; at step number KILL_AT (1-based; 0: never) the
process SIGKILLs itself, as a power cut would stop it.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

from gridlink.firmware.device.ota import update_device
from gridlink.firmware.device.slots import Slots, commit_if_healthy

from tests.support.fleet import outbox_holds_three_reports


def main(data_dir, repo, version, kill_at, steps_file):
    data_dir, kill_at = Path(data_dir), int(kill_at)
    count = 0

    def on_step(name):
        nonlocal count
        count += 1
        with open(steps_file, "a") as f:
            f.write(name + "\n")
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def prepare(slot_dir):
        (slot_dir / "site" / "installed.txt").write_text(version)

    update_device(data_dir, repo, "pi", version, prepare=prepare, on_step=on_step)
    slots = Slots(data_dir / "ota")
    slot = slots.boot(on_step)
    on_step("start")
    app = data_dir / "ota" / "slots" / slot / "app.py"
    started = subprocess.run([sys.executable, str(app)], capture_output=True, text=True)
    checks = {"app": lambda: started.stdout.strip() == version,
              "outbox": lambda: outbox_holds_three_reports(data_dir)}
    problems = commit_if_healthy(slots, checks, deadline=10, on_step=on_step)
    if problems:
        sys.exit(f"unhealthy: {problems}")


if __name__ == "__main__":
    main(*sys.argv[1:])
