"""The sensor node as flashed (MicroPython WebAssembly port, real Mosquitto) keeps a report
whose id the gateway refuses and sends it again under a fresh id; its counter restarts
above the last acknowledged id and the clock when its file is damaged."""

import json

import pytest
from gridlink.firmware.core import messages
from gridlink.firmware.core.outbox import REPORT, Outbox
from gridlink.flash import simboard

from tests.support.report_listener import ReportListener

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.broker,
    pytest.mark.skipif(not simboard.available(), reason="MicroPython WebAssembly port absent"),
]

OBJECT = "41010601002000123"  # the provisioned object (tests/mcu/conftest.py)
PIN = 15  # the sensor-node profile's tilt pin (pull-up: tilted reads 0)




class RefusingGateway(ReportListener):
    """Answers the first report ``first`` (``id_reused`` unless told), every later one
    ``accepted``."""

    first = "id_reused"

    def _on_message(self, c, u, msg):
        if msg.topic.endswith("/report") and not self.reports:
            rep = json.loads(msg.payload)
            with self.got:
                self.reports.append(rep)
            ack = {"v": 1, "id": rep["id"], "status": self.first,
                   "reason": "another report holds this id"}
            c.publish(msg.topic.rsplit("/", 1)[0] + "/ack", messages.encode(ack), qos=1)
            return
        super()._on_message(c, u, msg)


def pending(board):
    with Outbox(str(board.flash / "gridlink" / "outbox")) as ob:
        return [json.loads(p) for _, _, p in ob.pending(REPORT)], list(ob.rejected()), ob.lost


def test_a_refused_id_is_sent_again_under_a_fresh_id(node, broker):
    gw = RefusingGateway("127.0.0.1", broker.port)
    try:
        node.set_pin(PIN, 0)
        out = node.run()
        [first] = gw.reports
        assert f"reissued {first['id']} as" in out
        [kept], rejected, _ = pending(node)     # kept, under its new id, not dropped
        assert rejected == [] and kept["seq"] > first["seq"]
        assert {**kept, "id": first["id"], "seq": first["seq"]} == first
        node.run()                              # the next wake sends it: accepted
        assert [r["id"] for r in gw.reports] == [first["id"], kept["id"]]
        assert pending(node)[0] == []
        status = gw.status["gridlink/v1/410106/sn-0007"]
        assert status["problems"] == {"lost": 0, "reissued": 1}
    finally:
        gw.close()
    state = json.loads((node.flash / "gridlink" / "state.json").read_text())
    assert state["reissued"] == 1
    acked = (node.flash / "gridlink" / "seq.acked").read_text().split()[0]
    assert int(acked) == kept["seq"]


def test_a_damaged_counter_goes_on_above_the_last_acknowledged_id(node, broker):
    gw = ReportListener("127.0.0.1", broker.port)
    try:
        node.set_pin(PIN, 0)
        node.run()
        node.set_pin(PIN, 1)
        node.run()
        (node.flash / "gridlink" / "seq").write_bytes(b"1 00000000\n")   # damaged
        node.set_pin(PIN, 0)
        node.run()
    finally:
        gw.close()
    first, second = gw.reports
    assert second["seq"] > first["seq"]
    assert pending(node)[0] == []


def test_an_unknown_status_keeps_the_report_for_the_next_wake_under_its_id(node, broker):
    gw = RefusingGateway("127.0.0.1", broker.port)
    gw.first = "a_status_from_the_future"
    try:
        node.set_pin(PIN, 0)
        out = node.run()
        [first] = gw.reports
        assert f"kept {first['id']} a_status_from_the_future" in out
        assert [r["id"] for r in pending(node)[0]] == [first["id"]]
        node.run()
        assert [r["id"] for r in gw.reports] == [first["id"], first["id"]]
        assert pending(node)[0] == []
    finally:
        gw.close()
