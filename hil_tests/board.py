"""One way to drive a target under test, on the bench and on the simulated rig: labgrid.

``Board`` wraps a labgrid target and gives the suite four calls — ``power(on)``,
``power_cycle()``, ``gnss_write(data)`` (the receiver's serial line) and ``run(command)``
(a shell command on the target: ``(stdout lines, exit status)``).  Power and serial are
labgrid's own drivers on both rigs (``PowerProtocol``, ``ConsoleProtocol``); commands go
through labgrid's ``SSHDriver`` on the bench and, as nothing listens for SSH here, through
a local shell on the simulated rig (the vehicle is a process on this host).

``bench_board()`` reads ``hil_tests/labgrid/bench.yaml`` (or ``--lg-env``); ``SimVehicle``
builds the simulated vehicle and its ``hil_tests/labgrid/sim.yaml`` target.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_ENV = HERE / "labgrid" / "bench.yaml"
SIM_ENV = HERE / "labgrid" / "sim.yaml"
ROOT = HERE.parent


class BenchMissing(Exception):
    """The bench (or a part of it) is not attached to this machine: the reason why."""


class Board:
    """A labgrid target driven through its protocols (see the module docstring)."""

    def __init__(self, target, local_shell=False):
        self.target = target
        self.local_shell = local_shell

    def _driver(self, protocol, name=None):
        return self.target.get_driver(protocol, name=name)

    def power(self, on):
        from labgrid.protocol import PowerProtocol

        drv = self._driver(PowerProtocol)
        drv.on() if on else drv.off()

    def power_cycle(self):
        from labgrid.protocol import PowerProtocol

        self._driver(PowerProtocol).cycle()

    def gnss_write(self, data):
        from labgrid.protocol import ConsoleProtocol

        self._driver(ConsoleProtocol, "gnss-feed").write(data)

    def run(self, command, timeout=30):
        """``(stdout lines, exit status)`` of a shell command on the target."""
        if self.local_shell:
            out = subprocess.run(command, shell=True, capture_output=True, text=True,
                                 timeout=timeout, check=False)
            return out.stdout.splitlines(), out.returncode
        from labgrid.protocol import CommandProtocol

        stdout, _stderr, status = self._driver(CommandProtocol).run(command, timeout=timeout)
        return stdout, status

    def close(self):
        self.target.deactivate_all_drivers()


def bench_board(env_path=BENCH_ENV, role="vehicle"):
    """The bench's ``role`` target as a Board; BenchMissing naming what is not attached
    (a serial port that is not there, a GPIO controller this machine lacks)."""
    from labgrid import Environment

    target = Environment(str(env_path)).get_target(role)
    if target is None:
        raise BenchMissing(f"{env_path} has no target {role!r}")
    missing = [f"{type(r).__name__} {r.name or ''} at {r.port}" for r in target.resources
               if type(r).__name__ == "RawSerialPort" and not os.path.exists(r.port)]
    if any(type(r).__name__ == "SysfsGPIO" for r in target.resources) \
            and not Path("/sys/class/gpio").is_dir():
        missing.append("SysfsGPIO lines (no /sys/class/gpio: not the bench Pi)")
    if missing:
        raise BenchMissing("the bench is not attached here: " + "; ".join(missing))
    return Board(target)


class SimVehicle:
    """A simulated patrol vehicle behind labgrid: ``gridlink device run --sim`` on the
    ``broker_url``, powered by labgrid's ExternalPowerDriver (hil_tests/simpower.py),
    its receiver reading one end of a socat pty pair whose other end is the target's
    RawSerialPort.  ``board`` is the Board; ``data_dir`` the device's."""

    def __init__(self, workdir, broker_url, device_id="pv-0001"):
        from labgrid import Environment

        if not shutil.which("socat"):
            raise BenchMissing("the simulated vehicle's serial line needs socat")
        self.folder = Path(workdir) / "vehicle"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.folder / "data"
        feed, line = self.folder / "gnss-feed", self.folder / "gnss-line"
        self.socat = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={feed}", f"pty,raw,echo=0,link={line}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (feed.exists() and line.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        argv = [sys.executable, "-m", "gridlink.cli", "device", "run",
                "--profile", "patrol-vehicle", "--data-dir", str(self.data_dir),
                "--broker", broker_url, "--sim", "--device-id", device_id,
                "--district", "410106", "--gnss-port", str(line), "--cancel-grace", "0",
                "--reconnect-max", "2", "--log-level", "info"]
        (self.folder / "argv.json").write_text(json.dumps(argv))
        power = f"{sys.executable} -m hil_tests.simpower"
        lg = {"LG_GNSS_FEED": str(feed), "LG_POWER_ON": f"{power} on {self.folder}",
              "LG_POWER_OFF": f"{power} off {self.folder}"}
        saved = {k: os.environ.get(k) for k in lg}
        os.environ.update(lg)  # labgrid's !template reads LG_* from the environment
        try:
            target = Environment(str(SIM_ENV)).get_target("vehicle")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.board = Board(target, local_shell=True)
        self._cwd = os.getcwd()
        os.chdir(ROOT)  # the power commands import hil_tests from the checkout

    def pid(self):
        from hil_tests.simpower import running

        return running(self.folder)

    def close(self):
        with contextlib.suppress(Exception):
            self.board.power(False)
        with contextlib.suppress(Exception):
            self.board.close()
        self.socat.terminate()
        self.socat.wait(5)
        os.chdir(self._cwd)
