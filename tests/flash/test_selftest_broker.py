"""``flash selftest``'s broker check on the shipped broker configuration, which names a
client after its certificate: the check takes the device's own session, so it must leave
what the broker queued for the device queued (no clean session, nothing acknowledged)."""

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from gridlink.flash.provision import Spec, provision
from gridlink.flash.selftest import selftest

from tests.support.gateway_rig import Publisher, topic
from tests.support.pki import client_tls, make_pki, shipped_broker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


def device_session(broker, pki, device):
    """Connect as the device does (MQTT 3.1.1, persistent session, task topic at QoS 1)."""
    got, ready = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, clean_session=False)
    c.tls_set_context(client_tls(pki, device))
    c.on_connect = lambda *a: c.subscribe(topic(device, "task"), 1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, u, m: got.append(json.loads(m.payload))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert ready.wait(10)
    return c, got


def test_the_broker_check_leaves_the_devices_queued_tasks(tmp_path):
    pki = make_pki(tmp_path / "pki", identities=("gridlink-gateway-0", "pv-0042"))
    with shipped_broker(tmp_path / "broker", pki) as broker:
        c, _ = device_session(broker, pki, "pv-0042")
        c.disconnect()
        c.loop_stop()
        gw = Publisher(broker.port, client_id="gridlink-gateway-0",
                       tls=client_tls(pki, "gridlink-gateway-0"))
        gw.publish(topic("pv-0042", "task"), b'{"task": "t-7"}')
        gw.wait_acked(1)
        gw.close()
        pi = tmp_path / "pi"
        provision(Spec("pv-0042", "410106", "patrol-vehicle", str(pi), broker.url,
                       ca_cert=str(pki / "ca.crt"), ca_key=str(pki / "ca.key")))
        checks = {ch.name: ch for ch in selftest(pi)}
        assert checks["broker"].ok, checks["broker"].detail
        c, got = device_session(broker, pki, "pv-0042")
        try:
            wait_until(lambda: got, 10, "the task queued before the self-test")
            assert got == [{"task": "t-7"}]
        finally:
            c.disconnect()
            c.loop_stop()
