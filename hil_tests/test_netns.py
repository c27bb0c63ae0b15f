"""The broker in its own network namespace, reached over a veth pair through the shaper."""

import os
import threading

import pytest

from hil_tests import netns
from hil_tests.shaper import Shaper, with_profile

WHY_NOT = netns.available()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"no network namespaces: {WHY_NOT}")


def test_a_broker_in_its_own_namespace_is_reached_through_the_shaped_link(tmp_path):
    import paho.mqtt.client as mqtt

    ns = netns.Namespace()
    broker = None
    try:
        broker = netns.NamespacedMosquitto(tmp_path / "broker", ns).start()
        # a different network stack from ours
        assert os.readlink(f"/proc/{broker.proc.pid}/ns/net") != os.readlink(
            "/proc/self/ns/net")
        got, arrived = [], threading.Event()
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ns-sub")
        sub.on_message = lambda c, u, m: (got.append(m.payload), arrived.set())
        sub.connect(ns.ip, broker.port)           # straight over the veth pair
        sub.subscribe("t/#", qos=1)
        sub.loop_start()
        with Shaper(broker.port, with_profile("3G", loss=0), target_host=ns.ip) as sh:
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ns-pub")
            pub.connect("127.0.0.1", sh.port)     # through the shaper
            pub.loop_start()
            pub.publish("t/x", b"hello", qos=1).wait_for_publish(10)
            assert arrived.wait(10)
            pub.loop_stop()
            pub.disconnect()
            assert sh.bytes_up > 0 and sh.bytes_down > 0
        sub.loop_stop()
        sub.disconnect()
        assert got == [b"hello"]
    finally:
        if broker is not None:
            broker.stop()
        ns.close()
    assert not os.path.exists(f"/run/netns/{ns.name}")
