"""The bench rig's GNSS feed, checked here with what stands in for its two cross-wired
USB-serial adapters: two ptys linked by socat (bytes written to one come out of the
other, through real line disciplines)."""

import re
import shutil
import subprocess
import time

import pytest

from hil_tests.rig import serial_feed
from tests.support.shared import shared_file


@pytest.fixture
def linked_ptys(tmp_path):
    if shutil.which("socat") is None:
        pytest.skip("socat not installed")
    proc = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
                            stderr=subprocess.PIPE, text=True)
    paths = []
    deadline = time.monotonic() + 10
    while len(paths) < 2 and time.monotonic() < deadline:
        m = re.search(r"PTY is (\S+)", proc.stderr.readline())
        if m:
            paths.append(m.group(1))
    if len(paths) < 2:
        proc.kill()
        pytest.fail("socat did not make two ptys")
    yield paths
    proc.terminate()
    proc.wait(5)


def test_the_bench_feed_replays_a_capture_byte_for_byte(tmp_path, linked_ptys):
    import serial
    from gridlink.firmware.sim.replay import read_capture

    capture = shared_file("nmea", "beidou-bd.log")
    got = b""
    with serial_feed(capture, linked_ptys[0], 9600, linked_ptys[1], speed=1000.0) as feed, \
            serial.Serial(feed.port, 9600, timeout=0.3) as s:
        feed.start()
        while True:
            data = s.read(4096)
            got += data
            if not data and not feed.running():
                break
    assert got == b"".join(read_capture(capture))
