"""The first-boot health checks against real parts: Mosquitto, the outbox, the synthetic
camera backend; a version that fails them is not marked good."""

import pytest
from gridlink.firmware.device.camera import make_camera
from gridlink.firmware.device.health import (
    broker_round_trip,
    camera_captures,
    gnss_reading,
    outbox_opens,
)
from gridlink.firmware.device.slots import health_check
from gridlink.mosquitto import free_port

from tests.support.fleet import make_repo, outbox_holds_three_reports, provision


class Reader:
    """What gnss_reading needs of a GnssReader: its snapshot (fix, age)."""

    def __init__(self, fix, age):
        self.fix, self.age = fix, age

    def snapshot(self):
        return self.fix, self.age


@pytest.mark.broker
def test_all_checks_pass_on_a_working_device(broker, tmp_path):
    _keydir, repo = make_repo(tmp_path / "r", versions=("1.0",))
    device = provision(tmp_path / "device", repo)
    checks = {
        "broker": broker_round_trip("127.0.0.1", broker.port, "pv-0001-health",
                                    "gridlink/health/pv-0001", timeout=10),
        "gnss": gnss_reading(Reader(object(), 2.0)),
        "outbox": outbox_opens(device),
        "camera": camera_captures(make_camera("synthetic", size=(160, 120))),
    }
    assert health_check(checks, deadline=20) == []
    assert outbox_holds_three_reports(device)


def test_each_failing_part_is_named(tmp_path):
    port = free_port()                                         # nothing listens there
    problems = dict(health_check({
        "broker": broker_round_trip("127.0.0.1", port, "pv-0001-health", "t", timeout=2),
        "gnss": gnss_reading(Reader(None, None)),
        "old-fix": gnss_reading(Reader(object(), 120.0), max_age=30),
    }, deadline=10))
    assert problems["broker"].startswith(f"ConnectionError: broker 127.0.0.1:{port}")
    assert problems["gnss"] == "RuntimeError: no GNSS fix yet"
    assert problems["old-fix"] == "RuntimeError: the last GNSS fix is 120 s old"
