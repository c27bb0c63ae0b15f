"""The hardware factory: one place builds GNSS source, camera and inputs per backend, and
the runtime's liveness is each part's own ``is_alive()``."""

import logging

import pytest
from gpiozero.pins.mock import MockFactory
from gridlink.firmware.core.track import distance_m
from gridlink.firmware.device.hardware import Hardware, Replay, backend_for
from gridlink.firmware.device.profile import load_profile
from gridlink.firmware.device.runtime import Device
from gridlink.firmware.errors import DeviceError

from tests.support.waiting import wait_until

ORIGIN = (34.8095, 113.2965)          # the shipped patrol vehicle's sim.origin




def callbacks(log):
    return {"on_press": lambda n: log.append(("press", n)),
            "on_cancel": lambda n: log.append(("cancel", n)),
            "on_motion": lambda: log.append(("motion",)),
            "on_call": lambda: log.append(("call",)),
            "on_answer": lambda yes: log.append(("answer", yes))}


def test_sim_backend_builds_mock_pins_a_replayed_receiver_and_live_parts():
    prof = load_profile("patrol-vehicle")
    hw = Hardware(prof, "sim", replay=Replay.of(prof, speed=20))
    assert isinstance(hw.pin_factory(), MockFactory) and hw.pin_factory() is hw.pin_factory()
    fixes, events = [], []
    gnss = hw.gnss(on_fix=fixes.append).start()
    triggers = hw.triggers(**callbacks(events))
    try:
        wait_until(lambda: fixes)
        assert gnss.port == hw.replayer.path == hw.status()["replay"]["pty"]
        assert distance_m(fixes[0].lat, fixes[0].lon, *ORIGIN) < 500
        assert gnss.is_alive() and hw.replayer.is_alive() and triggers.is_alive()
        triggers.simulate("garbage")
        triggers.simulate("yes")
        assert events == [("press", "garbage"), ("answer", True)]
    finally:
        gnss.stop()
        triggers.close()
        hw.close()
    assert not gnss.is_alive() and not triggers.is_alive() and not hw.replayer.is_alive()
    assert hw.status()["replay"]["running"] is False


def test_gnss_port_and_gpsd_replace_the_replay_and_the_pi_reads_the_profile_port():
    prof = load_profile("patrol-vehicle")
    given = Hardware(prof, "sim", gnss_port="socket://127.0.0.1:9").gnss()
    assert (given.source, given.port) == ("serial", "socket://127.0.0.1:9")
    pi = Hardware(prof, "pi")
    serial = pi.gnss()
    assert (serial.source, serial.port, serial.baud) == ("serial", "/dev/serial0", 9600)
    assert pi.replayer is None and pi.pin_factory() is None and pi.status() == {"backend": "pi"}
    prof["gnss"] = {"source": "gpsd", "gpsd": "127.0.0.1:2947", "stale_after_s": 10}
    sim = Hardware(prof, "sim")
    gpsd = sim.gnss()
    assert (gpsd.source, gpsd.gpsd) == ("gpsd", "127.0.0.1:2947") and sim.replayer is None


def test_backend_choice_and_the_refusals():
    prof = load_profile("patrol-vehicle")
    assert backend_for(prof) == "pi" and backend_for(prof, sim=True) == "sim"
    prof["sim"]["enabled"] = True
    assert backend_for(prof) == "sim" and Hardware(prof).sim
    with pytest.raises(DeviceError, match="unknown hardware backend 'usb'"):
        Hardware(prof, "usb")
    with pytest.raises(DeviceError, match="gridlink flash"):
        Hardware(load_profile("sensor-node"), "sim")


def test_replay_comes_from_the_profile_unless_overridden():
    prof = load_profile("patrol-vehicle")
    assert Replay.of(prof) == Replay("nmea-rtk.log", 1.0, ORIGIN, True, True)
    assert Replay.of(prof, capture="ublox-8.log", speed=2.0, origin=(1.0, 2.0), loop=False,
                     retime=False) == Replay("ublox-8.log", 2.0, (1.0, 2.0), False, False)
    del prof["sim"]["origin"]
    assert Replay.of(prof).origin is None


def test_device_liveness_is_each_parts_own(tmp_path, caplog):
    prof = load_profile("patrol-vehicle")
    prof["camera"]["backend"] = "none"
    hw = Hardware(prof, "sim", replay=Replay.of(prof, speed=5))
    dev = Device(prof, tmp_path / "dev", "mqtt://127.0.0.1:9", hardware=hw, console=False)
    try:
        dev.start()
        alive = dev.parts_alive()
        assert {"store", "delivery", "gnss", "triggers", "control", "timer:status"} <= set(alive)
        assert all(alive.values()) and dev.alive()
        dev.gnss.stop()                                  # the receiver thread dies
        assert not dev.alive() and dev.local_status()["alive"]["gnss"] is False
        with caplog.at_level(logging.ERROR, logger="gridlink.device"):
            dev._watchdog()
        assert "gnss stopped; withholding the watchdog ping" in caplog.text
    finally:
        dev.stop()
    assert not dev.store.is_alive() and not dev.delivery.is_alive()


def test_the_shipped_vehicle_records_no_clips_in_simulation_unless_its_sim_says_so(tmp_path):
    from gridlink.firmware.device.video import Recorder

    profile = load_profile("patrol-vehicle")
    clips, recorder = Hardware(profile, "sim").recorder(tmp_path, None)
    assert recorder is None and clips.pre_s == 10
    profile["sim"]["clips"] = True
    _clips, recorder = Hardware(profile, "sim").recorder(tmp_path, None)
    assert isinstance(recorder, Recorder) and not recorder.is_alive()   # built, not started


def test_a_fixed_terminal_without_class_buttons_gets_its_other_inputs():
    prof = load_profile("fixed-terminal")
    assert "buttons" not in prof                  # the defaults make no button list up
    hw = Hardware(prof, "sim")
    events = []
    triggers = hw.triggers(**callbacks(events))
    try:
        assert "call" in triggers.names and "pir" in triggers.names
        triggers.simulate("call")
        assert events == [("call",)]
        with pytest.raises(DeviceError, match="no input 'garbage'"):
            triggers.simulate("garbage")
    finally:
        triggers.close()
        hw.close()
