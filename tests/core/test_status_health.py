"""The status's optional ``health`` (a board without an OS: the sensor node): the core
validator and the published schema refuse the same bad values, naming the field."""

import pytest
from gridlink.firmware.core import messages
from gridlink.firmware.core.checks import MessageError

from tests.core.test_protocol import schema_ok

HEALTH = {"mem_free": 61440, "wakes": 289, "resets": 2, "reset_cause": "watchdog"}


def status(**health):
    return messages.make_status("sn-0007", "online", "0.1.0", "GB/T 47678.5-2026",
                                "sensor-node", health={**HEALTH, **health})


def test_a_status_with_health_validates_in_both():
    st = status(mem_free=None)
    assert st["health"]["mem_free"] is None and schema_ok("status", st)


@pytest.mark.parametrize("change, field", [
    ({"mem_free": -1}, "health.mem_free"),
    ({"wakes": 1.5}, "health.wakes"),
    ({"resets": None}, "health.resets"),
    ({"reset_cause": "brownout"}, "health.reset_cause"),
    ({"uptime": 5}, "health.uptime"),
])
def test_bad_health_is_refused_naming_the_field(change, field):
    st = {"v": 1, "device": "sn-0007", "state": "offline", "health": {**HEALTH, **change}}
    with pytest.raises(MessageError) as e:
        messages.validate_status(st)
    assert e.value.field == field
    assert not schema_ok("status", st)


def test_health_without_a_key_is_refused():
    st = {"v": 1, "device": "sn-0007", "state": "offline",
          "health": {k: v for k, v in HEALTH.items() if k != "resets"}}
    with pytest.raises(MessageError, match="resets"):
        messages.validate_status(st)
    assert not schema_ok("status", st)
