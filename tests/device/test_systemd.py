"""systemd integration: the unit file, and sd_notify READY/WATCHDOG/STOPPING from a real
device process over a real datagram socket."""

import os
import socket
import time

import pytest
from gridlink.firmware.device import sdnotify

from tests.support.device_rig import DeviceProc, unit
from tests.support.waiting import wait_until


def test_unit_is_a_notify_service_with_watchdog_and_restart():
    svc = unit()["Service"]
    assert svc["Type"] == "notify"
    assert svc["Restart"] == "on-failure"
    assert int(svc["WatchdogSec"]) > 0
    assert "gridlink.firmware.device.launch" in svc["ExecStart"]
    assert "-- device run" in svc["ExecStart"] and "--data-dir" in svc["ExecStart"]
    assert svc["StandardOutput"] == "journal"


def test_notify_is_silent_without_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False


def test_watchdog_period_is_half_of_watchdog_sec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_period() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")             # meant for another process
    assert sdnotify.watchdog_period() is None


@pytest.mark.broker
def test_device_notifies_ready_watchdog_and_stopping(tmp_path, broker, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    got = []

    def drain():
        try:
            while True:
                got.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        return got

    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "600000")      # ping every 0.3 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    dev = DeviceProc(tmp_path, broker, extra=["--sim", "--cancel-grace", "0"])
    with dev:
        wait_until(lambda: any(m.startswith("READY=1") for m in drain()), 20, "READY=1")
        wait_until(lambda: drain().count("WATCHDOG=1") >= 2, 20, "watchdog pings")
        assert dev.terminate() == 0
    time.sleep(0.1)
    drain()
    sock.close()
    assert "STOPPING=1" in got
    assert got.index(next(m for m in got if m.startswith("READY=1"))) < got.index("STOPPING=1")
