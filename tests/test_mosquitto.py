"""The private broker keeps persistent sessions across stop()/start(), as the fault tests assume."""

import time

import paho.mqtt.client as mqtt


def _client(**kw):
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)


def test_queued_qos1_message_survives_a_broker_restart(broker):
    got = []
    sub = _client(client_id="fixture-sub", clean_session=False)
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    sub.subscribe("fixture/x", 1)
    time.sleep(0.3)
    sub.disconnect()
    sub.loop_stop()

    pub = _client()
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    pub.publish("fixture/x", b"kept", qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()

    time.sleep(1.5)  # autosave_interval 1
    broker.stop()
    broker.start()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    sub.disconnect()
    sub.loop_stop()
    assert got == [b"kept"]
