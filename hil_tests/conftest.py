"""Rig selection: ``--rig sim`` (default, everything simulated here) or ``--rig bench``
with the bench's ports and pins (or the GRIDLINK_RIG / GRIDLINK_HIL_* variables)."""

import contextlib
import os

import pytest

from hil_tests.rig import BenchRig, SimRig

BENCH_OPTIONS = {
    "port": ("board serial port or pyserial URL (mpremote)", "/dev/ttyACM0"),
    "broker_url": ("bench broker as the board reaches it, mqtt[s]://host:port", None),
    "gnss_port": ("serial port the receiver side reads", "/dev/ttyUSB0"),
    "gnss_feed": ("USB-serial adapter wired into --gnss-port, fed with the capture",
                  "/dev/ttyUSB1"),
    "gnss_baud": ("GNSS line speed", "9600"),
    "stimulus_pin": ("bench Pi GPIO driving the tilt relay", "17"),
    "reset_pin": ("bench Pi GPIO driving the board's RUN/EN relay (else mpremote reset)", None),
    "ca_cert": ("district CA certificate (for an mqtts:// bench broker)", None),
    "ca_key": ("district CA key (provisioning signs the board's certificate)", None),
    "wifi_ssid": ("Wi-Fi network the board joins", None),
    "wifi_psk": ("its passphrase", None),
    "labgrid_env": ("labgrid environment of the bench (power relay, serial lines, SSH)",
                    "hil_tests/labgrid/bench.yaml"),
}


def pytest_addoption(parser):
    # tests/conftest.py adds it too (the whole suite): the first one wins
    with contextlib.suppress(ValueError):
        parser.addoption("--soak", action="store_true", help="also run the long soak tests")
    g = parser.getgroup("hil", "hardware-in-the-loop rig")
    g.addoption("--rig", choices=["sim", "bench"], default=os.environ.get("GRIDLINK_RIG", "sim"),
                help="sim: everything simulated here (default); bench: real hardware")
    g.addoption("--netns", action="store_true",
                default=os.environ.get("GRIDLINK_HIL_NETNS") == "1",
                help="patrol morning: the broker in its own network namespace (root; env "
                     "GRIDLINK_HIL_NETNS=1)")
    g.addoption("--plain-mqtt", action="store_true",
                default=os.environ.get("GRIDLINK_HIL_PLAIN") == "1",
                help="patrol morning over plain MQTT (default: TLS with a certificate per "
                     "device, as in the field; env GRIDLINK_HIL_PLAIN=1)")
    for name, (text, default) in BENCH_OPTIONS.items():
        env = "GRIDLINK_HIL_" + name.upper()
        g.addoption("--" + name.replace("_", "-"), dest="hil_" + name,
                    default=os.environ.get(env, default), help=f"{text} (env {env})")


@pytest.fixture
def rig(request, tmp_path):
    kind = request.config.getoption("--rig")
    if kind == "sim":
        from gridlink.flash import simboard

        if not simboard.available():
            pytest.skip("the simulated rig needs node and the MicroPython WebAssembly port")
        r = SimRig(tmp_path)
    else:
        opts = {n: request.config.getoption("hil_" + n) for n in BENCH_OPTIONS}
        if not opts["broker_url"]:
            pytest.fail("--rig bench needs --broker-url (the bench broker as the board sees it)")
        opts["gnss_baud"] = int(opts["gnss_baud"])
        opts["stimulus_pin"] = int(opts["stimulus_pin"])
        if opts["reset_pin"]:
            opts["reset_pin"] = int(opts["reset_pin"])
        r = BenchRig(tmp_path, opts)
    yield r
    r.close()
