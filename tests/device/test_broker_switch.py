"""A new broker from the centre is tried before it is used: a running device (the real
runtime, simulated hardware) told by a signed document to move to a broker that accepts
it moves, and carries on there across a restart; told to move to one that does not
answer, it stays where it is and says so in its status."""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from gridlink.firmware.core import desired
from gridlink.firmware.device.desired import DesiredState
from gridlink.firmware.device.profile import load_profile
from gridlink.gateway.ports import free_port
from gridlink.mosquitto import Mosquitto

from tests.support.device_rig import DeviceProc
from tests.support.gateway_rig import Publisher
from tests.support.waiting import wait_until

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
CONFIG = "gridlink/v1/410106/pv-0001/config"
STATUS = "gridlink/v1/410106/pv-0001/status"
REPORT = "gridlink/v1/410106/pv-0001/report"


def message(version, broker, settings=None):
    doc = desired.document("pv-0001", "410106", version, settings or {}, 1765000000,
                           broker=broker)
    return desired.envelope(doc, KEY.sign(desired.digest(doc)))


def dead_port():
    return free_port()                 # probed and closed again: nothing listens there


def test_a_document_names_a_new_broker_only_as_a_url_without_credentials():
    with pytest.raises(desired.ConfigRefused, match="broker") as err:
        desired.document("pv-0001", "410106", 2, {}, 1, broker="http://x/")
    assert err.value.field == "broker"
    with pytest.raises(desired.ConfigRefused, match="without a user or password"):
        desired.document("pv-0001", "410106", 2, {}, 1, broker="mqtt://u:p@host")
    # one without a broker is byte for byte the document it always was
    assert b"broker" not in desired.document("pv-0001", "410106", 2, {}, 1)


def test_a_broker_that_does_not_accept_the_device_is_refused_and_the_old_one_kept(tmp_path):
    tried = []

    def try_broker(url):
        tried.append(url)
        return None if url.endswith(":2883") else "127.0.0.1:3883 did not answer"

    state = DesiredState(tmp_path, "pv-0001", [PUBLIC], load_profile("patrol-vehicle"),
                         broker="mqtt://127.0.0.1:1883", try_broker=try_broker)
    assert state.offer(message(2, "mqtt://127.0.0.1:3883")) is None
    assert state.refused == {"version": 2, "reason": "unreachable", "field": "broker",
                             "message": "127.0.0.1:3883 did not answer; still using "
                                        "mqtt://127.0.0.1:1883"}
    assert (state.version, state.broker) == (None, "mqtt://127.0.0.1:1883")
    assert state.offer(message(3, "mqtt://127.0.0.1:2883")) is not None
    assert (state.version, state.broker, state.refused) == (3, "mqtt://127.0.0.1:2883", None)
    # a restart keeps the broker of the document applied, not the provisioned one
    again = DesiredState(tmp_path, "pv-0001", [PUBLIC], load_profile("patrol-vehicle"),
                         broker="mqtt://127.0.0.1:1883", try_broker=try_broker)
    assert again.broker == "mqtt://127.0.0.1:2883"
    # the same broker again is nothing to try
    assert again.offer(message(4, "mqtt://127.0.0.1:2883")) is not None
    assert tried == ["mqtt://127.0.0.1:3883", "mqtt://127.0.0.1:2883"]


@pytest.mark.broker
def test_a_running_device_moves_to_a_broker_it_reached_and_stays_on_failure(tmp_path):
    keys = tmp_path / "config-keys"
    keys.write_text(PUBLIC.hex() + "\n")
    with Mosquitto(tmp_path / "a") as a, Mosquitto(tmp_path / "b") as b:
        dev = DeviceProc(tmp_path, a, profile="fixed-terminal", extra=[
            "--sim", "--config-keys", str(keys), "--cancel-grace", "0",
            "--reconnect-max", "1"]).start()
        on_a, on_b = Publisher(a.port, client_id="centre-a"), Publisher(b.port,
                                                                        client_id="centre-b")
        try:
            on_a.subscribe(STATUS)
            on_b.subscribe(REPORT)
            # first a broker nobody answers on: refused, the device stays on A
            on_a.publish(CONFIG, message(2, f"mqtt://127.0.0.1:{dead_port()}"), retain=True)
            wait_until(lambda: (dev.status().get("config") or {}).get("refused"), 30,
                       "the refusal")
            refused = dev.status()["config"]["refused"]
            assert (refused["reason"], refused["field"], refused["version"]) == (
                "unreachable", "broker", 2)
            assert f"still using {a.url}" in refused["message"]
            # then B, which is up: the device moves, and its next report goes to B
            on_a.publish(CONFIG, message(3, b.url), retain=True)
            wait_until(lambda: (dev.status().get("config") or {}).get("version") == 3, 30,
                       "version 3 applied")
            dev.press("call")
            wait_until(lambda: on_b.messages, 30, "a report on broker B")
            assert json.loads(on_b.messages[0][1])["device"] == "pv-0001"
            # a restart keeps it on B (the applied document's broker)
            dev.stop()
            dev.start()
            dev.press("call")
            wait_until(lambda: len(on_b.messages) >= 2, 30, "the second report on B")
        finally:
            on_a.close()
            on_b.close()
            dev.stop()
