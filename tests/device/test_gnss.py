"""GNSS input paths: gpsd (gpsfake replaying a real capture), a pyserial URL, a bad port."""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from gridlink.firmware.core.nmea import decode
from gridlink.firmware.device.gnss import GnssReader
from gridlink.firmware.sim.replay import find_capture, read_capture
from gridlink.mosquitto import free_port

from tests.support.waiting import wait_until

CAPTURE = find_capture("nmea-rtk.log")


def test_gpsd_source_decodes_the_receiver_through_gpsd():
    if not shutil.which("gpsfake"):
        pytest.skip("gpsfake not installed")
    port = free_port()
    proc = subprocess.Popen(["gpsfake", "-q", "-P", str(port), "-c", "0.005", str(CAPTURE)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        g = GnssReader(source="gpsd", gpsd=f"127.0.0.1:{port}").start()
        try:
            wait_until(lambda: g.decoder.fixes >= 50, 30, "fixes through gpsd")
            fix, age = g.snapshot()
        finally:
            g.stop()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    expected = {f.time: f for f in decode(b"".join(read_capture(CAPTURE)))}
    assert fix.time in expected
    assert (fix.lat, fix.lon, fix.status) == (expected[fix.time].lat, expected[fix.time].lon,
                                              expected[fix.time].status)
    assert g.health()["state"] in ("ok", "silent") and age < 30


def test_serial_port_may_be_a_pyserial_url():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    data = b"".join(read_capture(CAPTURE))

    def serve():
        conn, _ = srv.accept()
        with conn:
            time.sleep(0.3)      # pyserial drops what arrives while it opens the port
            conn.sendall(data)
            conn.recv(1)           # keep the link open until the reader goes

    threading.Thread(target=serve, daemon=True).start()
    g = GnssReader(port=f"socket://127.0.0.1:{port}").start()
    try:
        wait_until(lambda: g.snapshot()[0] is not None and g.decoder.fixes >= 100, 20,
                   "fixes over socket://")
        assert g.health()["state"] == "ok"
    finally:
        g.stop()
        srv.close()


def test_a_missing_port_is_a_state_not_a_crash():
    g = GnssReader(port="/dev/does-not-exist-gridlink").start()
    try:
        wait_until(lambda: g.health()["state"] == "no_port", 10, "no_port")
        h = g.health()
        assert "cannot open" in h["error"] and h["fix_age"] is None
        assert g._thread.is_alive()
    finally:
        g.stop()
