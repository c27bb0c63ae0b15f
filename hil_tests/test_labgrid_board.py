"""The bench and the simulated rig through one labgrid interface (hil_tests/board.py):
the shipped bench environment is a valid labgrid configuration, and on the simulated rig
labgrid's own drivers cut and restore a vehicle's power (ExternalPowerDriver) and feed
its receiver (RawSerialPort + SerialDriver on a pty) while the suite calls the same
``power``/``power_cycle``/``gnss_write``/``run`` it calls on the bench."""

import shutil
import time
from pathlib import Path

import pytest

labgrid = pytest.importorskip("labgrid", reason="labgrid is not installed (the dev extra)")

from hil_tests.board import BENCH_ENV, BenchMissing, SimVehicle, bench_board  # noqa: E402

# the vehicle Pi's, as firmware/systemd/gridlink-device.service installs them
DEVICE_DATA_DIR, DEVICE_PYTHON = "/var/lib/gridlink", "/opt/gridlink/venv/bin/python"
NO_MOSQUITTO = not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists()


def test_the_bench_environment_is_a_labgrid_configuration():
    """labgrid reads hil_tests/labgrid/bench.yaml into its targets, each protocol bound
    to the resource the wiring in docs/hil.md names (nothing is activated here)."""
    from labgrid import Environment
    from labgrid.protocol import CommandProtocol, ConsoleProtocol, PowerProtocol

    env = Environment(str(BENCH_ENV))
    vehicle, node = env.get_target("vehicle"), env.get_target("node")
    power = vehicle.get_driver(PowerProtocol, activate=False)
    assert type(power).__name__ == "DigitalOutputPowerDriver"
    assert power.output.gpio.index == 22            # relay channel 1: the Pi's 5 V
    feed = vehicle.get_driver(ConsoleProtocol, name="gnss-feed", activate=False)
    assert (feed.port.port, feed.port.speed) == ("/dev/ttyUSB1", 9600)
    ssh = vehicle.get_driver(CommandProtocol, activate=False)
    assert type(ssh).__name__ == "SSHDriver" and ssh.networkservice.username == "gridlink"
    assert node.get_driver(PowerProtocol, activate=False).output.gpio.index == 27
    assert node.get_driver(ConsoleProtocol, activate=False).port.port == "/dev/ttyACM0"


@pytest.fixture
def board(request, tmp_path):
    """The vehicle as a Board: the bench's, or a simulated one on a private broker."""
    if request.config.getoption("--rig") == "bench":
        try:
            b = bench_board(request.config.getoption("hil_labgrid_env") or BENCH_ENV)
        except BenchMissing as exc:
            pytest.skip(str(exc))
        b.data_dir = DEVICE_DATA_DIR  # the vehicle Pi's (the gridlink-device unit's)
        b.python = DEVICE_PYTHON
        yield b
        b.close()
        return
    if NO_MOSQUITTO:
        pytest.skip("needs mosquitto")
    from gridlink.mosquitto import Mosquitto

    broker = Mosquitto(tmp_path / "broker").start()
    try:
        sim = SimVehicle(tmp_path, broker.url)
    except BenchMissing as exc:
        broker.stop()
        pytest.skip(str(exc))
    sim.board.data_dir = sim.data_dir
    sim.board.sim = sim
    try:
        yield sim.board
    finally:
        sim.close()
        broker.stop()


def ask(board, *args, timeout=30.0):
    """``gridlink device ARGS --data-dir …`` on the target (as a technician would, over
    SSH on the bench), its JSON answer once the device answers."""
    import json
    import shlex
    import sys

    python = getattr(board, "python", sys.executable)
    cmd = " ".join([shlex.quote(python), "-m", "gridlink.cli", "device", *args,
                    "--data-dir", shlex.quote(str(board.data_dir))])
    deadline = time.monotonic() + timeout
    while True:
        out, status = board.run(cmd)
        if status == 0:
            return json.loads("\n".join(out))
        if time.monotonic() > deadline:
            raise AssertionError(f"the device did not answer {args}: {out}")
        time.sleep(0.3)


def feed_capture(board, epochs=5):
    """Write a capture's first ``epochs`` epochs into the receiver's line through labgrid,
    retimed so that the last is now (never ahead of the clock)."""
    from gridlink.firmware.sim import replay

    lines = replay.read_capture(replay.find_capture("nmea-rtk.log"))
    offset = round(time.time() - replay.first_epoch(lines)) - epochs
    for _tod, sentences in replay.epochs(lines)[:epochs]:
        board.gnss_write(b"".join(replay.retime_sentence(s, offset) for s in sentences))
        time.sleep(0.1)


def test_one_suite_drives_power_serial_and_commands_through_labgrid(board):
    from gridlink.firmware.core.outbox import LOG

    from hil_tests.patrol import BUTTONS

    board.power(True)
    first = ask(board, "status")
    feed_capture(board)
    # the device reads the line and writes its status in its own time (a busy machine:
    # seconds); the fixes come, or the last status says why not
    deadline = time.monotonic() + 30
    while (gnss := ask(board, "status")["gnss"])["fixes"] == 0 \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert gnss["accepted"] > 0 and gnss["fixes"] > 0, gnss
    made = ask(board, "press", BUTTONS[0])
    assert made["ok"]                         # a report the broker's gateway never acks
    board.power_cycle()                       # a power cut: no clean stop, then power back
    again = ask(board, "status")
    assert again["pid"] != first["pid"]
    assert again["outbox"]["reports"] == 1    # the report outlived the cut, still pending
    board.power(False)
    out, status = board.run(f"test -s {board.data_dir}/outbox/{LOG}")
    assert status == 0, out
