"""Desired state on the sensor node as flashed (simulated board, MicroPython WebAssembly,
real Mosquitto): the centre's retained, signed document changes the node's wake interval
and the node reports the version; a document it must refuse changes nothing and the
refusal is in its status."""

import json

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gridlink.firmware.core import desired
from gridlink.flash import simboard

from tests.mcu.test_node import wait_status
from tests.support.report_listener import ReportListener

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.broker,
    pytest.mark.skipif(not simboard.available(), reason="MicroPython WebAssembly port absent"),
]

KEY = Ed25519PrivateKey.generate()
TOPIC = "gridlink/v1/410106/sn-0007/config"


@pytest.fixture
def gateway(broker):
    gw = ReportListener("127.0.0.1", broker.port)
    yield gw
    gw.close()


def centre_sends(broker, version, settings, key=KEY, device="sn-0007"):
    """The gateway's publish: a signed document, retained, QoS 1."""
    doc = desired.document(device, "410106", version, settings, 1765000000)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="centre")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        c.publish(TOPIC, desired.envelope(doc, key.sign(desired.digest(doc))), qos=1,
                  retain=True).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def test_the_centre_changes_the_wake_interval_and_the_node_reports_it(keyed, broker, gateway):
    centre_sends(broker, 4, {"status_interval_s": 60})
    out = keyed.run()
    assert "configuration 4 applied" in out
    assert keyed.last_sleep_ms == 60 * 1000           # was the profile's 300 s
    st = wait_status(gateway, lambda s: (s.get("config") or {}).get("version") == 4)
    assert st["config"] == {"version": 4, "refused": None}
    kept = json.loads((keyed.flash / "gridlink" / "desired.json").read_text())
    assert kept["version"] == 4
    # the retained copy again at the next wake: nothing new, still applied
    out = keyed.run()
    assert "configuration" not in out and keyed.last_sleep_ms == 60 * 1000


@pytest.mark.parametrize("settings, key, device, reason, field", [
    ({"status_interval_s": 1}, KEY, "sn-0007", "schema", "settings.status_interval_s"),
    ({"track_interval_s": 10}, KEY, "sn-0007", "schema", "settings.track_interval_s"),
    ({"buttons": {"x": {"kind": "event", "code": "06010"}}}, KEY, "sn-0007", "schema",
     "settings.buttons"),
    ({"status_interval_s": 60}, Ed25519PrivateKey.generate(), "sn-0007", "signature", None),
    ({"status_interval_s": 60}, KEY, "sn-0008", "device", "device"),
])
def test_a_document_the_node_must_refuse_changes_nothing(keyed, broker, gateway, settings,
                                                         key, device, reason, field):
    centre_sends(broker, 4, {"status_interval_s": 60})
    keyed.run()
    centre_sends(broker, 5, settings, key=key, device=device)
    out = keyed.run()
    assert f"configuration refused: {reason}" in out
    assert keyed.last_sleep_ms == 60 * 1000           # version 4 stands
    st = wait_status(gateway, lambda s: (s.get("config") or {}).get("refused") is not None)
    assert st["config"]["version"] == 4
    assert (st["config"]["refused"]["reason"], st["config"]["refused"]["field"]) == (
        reason, field)
