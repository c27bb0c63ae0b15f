"""The device tests' rig (tests/support/device_rig.py) checks itself: the acker acks and
flags, the schemas load."""

import json

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core import topics

from tests.support.device_rig import GatewayAcker, schema_validators
from tests.support.waiting import wait_until


@pytest.mark.broker
def test_acker_acks_a_report_and_flags_an_invalid_one(broker):
    from gridlink.firmware.core.report import encode_report, make_report

    acker = GatewayAcker(broker).start()
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pv-0009")
    c.on_message = lambda cl, u, m: got.append(json.loads(m.payload))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        c.subscribe(topics.topic("410106", "pv-0009", "ack"), qos=1)
        rep = make_report("pv-0009", 1, None, 1_764_296_107.25, "event", "GB/T 47678.5-2026",
                          "06010")
        c.publish(topics.topic("410106", "pv-0009", "report"), encode_report(rep), qos=1)
        wait_until(lambda: got, 10, "ack")
        assert got[0] == {"v": 1, "id": rep["id"], "status": "accepted", "reason": None}
        c.publish(topics.topic("410106", "pv-0009", "report"), b'{"v":1}', qos=1)
        wait_until(lambda: acker.errors, 10, "the acker to flag the bad report")
    finally:
        c.loop_stop()
        acker.stop()
    assert len(acker.reports) == 1


def test_schemas_load_and_reject_an_empty_report():
    v = schema_validators()
    assert {"report", "status", "track", "ack", "task"} <= set(v)
    assert list(v["report"].iter_errors({}))

