"""The sensor node as flashed, on a simulated board (MicroPython WebAssembly port), against
a real Mosquitto: tilt → report → gateway ack → outbox empty; bounce, outage, rejection,
late acks, last will.  Only ``machine`` and ``socket`` are stand-ins (gridlink.flash.simfs);
the socket stand-in relays every byte to a real TCP connection."""

import json
import time

import pytest
from gridlink.firmware.core.outbox import REPORT, Outbox
from gridlink.flash import simboard
from gridlink.flash.flashing import flash_image

from tests.support.paths import ROOT
from tests.support.report_listener import ReportListener

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.broker,
    pytest.mark.skipif(not simboard.available(), reason="MicroPython WebAssembly port absent"),
]

OBJECT = "41010601002000123"  # the provisioned object (tests/mcu/conftest.py)
PROFILE = json.loads(
    (ROOT / "device_profiles" / "sensor-node.json").read_text())
PIN = 15  # the sensor-node profile's tilt pin (pull-up: tilted reads 0)




@pytest.fixture
def gateway(broker):
    gw = ReportListener("127.0.0.1", broker.port)
    yield gw
    gw.close()


def outbox(board):
    with Outbox(str(board.flash / "gridlink" / "outbox")) as ob:
        return [json.loads(p) for _, _, p in ob.pending(REPORT)], list(ob.rejected())


def wait_status(gw, pred, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = gw.status.get("gridlink/v1/410106/sn-0007")
        if st is not None and pred(st):
            return st
        time.sleep(0.02)
    raise AssertionError(f"status never matched; last {gw.status}")


def test_tilt_reaches_the_gateway_and_leaves_the_outbox_when_acked(node, gateway):
    node.set_pin(PIN, 1, 0, 1, 0, 0)  # contact bounce, then settled tilted (low)
    out = node.run()
    [rep] = gateway.reports
    assert f"captured {rep['id']}" in out
    assert rep["seq"] >= 1796000000  # a new counter starts at the clock (never reused)
    assert rep["object"] == OBJECT and rep["code"] == OBJECT[6:11] == "01002"
    assert (rep["kind"], rep["source"], rep["standard"]) == (
        "component", "sensor", "GB/T 47678.5-2026")
    cfg = json.loads((node.flash / "gridlink" / "config.json").read_text())
    assert rep["grid"] == cfg["grid"] and rep["fix"]["lat"] == PROFILE["position"]["lat"]
    assert "fixed_position" in rep["flags"]
    assert outbox(node) == ([], [])
    assert node.last_sleep_ms == 300 * 1000  # the profile's status interval
    # still tilted at the next wake: no second report for the same tilt
    node.run()
    assert len(gateway.reports) == 1
    # upright, then tilted again: a new report with the next sequence number
    node.set_pin(PIN, 1)
    node.run()
    node.set_pin(PIN, 0)
    node.run()
    assert [r["seq"] for r in gateway.reports] == [rep["seq"], rep["seq"] + 1]


def test_a_contact_that_never_settles_makes_no_report(node, gateway):
    node.set_pin(PIN, *([0, 1] * 60))
    node.run()
    assert gateway.reports == [] and outbox(node) == ([], [])
    assert wait_status(gateway, lambda s: s["state"] == "online")["outbox"]["reports"] == 0


def test_broker_down_keeps_the_report_and_backs_off_then_delivers(node, broker, gateway):
    broker.stop()
    node.set_pin(PIN, 0)
    out = node.run()
    assert "connect failed" in out
    pending, _ = outbox(node)
    [rid] = [r["id"] for r in pending]
    assert node.last_sleep_ms == 2000
    node.run()
    assert node.last_sleep_ms == 4000  # exponential backoff across wakes (state on flash)
    broker.start()
    gw = ReportListener("127.0.0.1", broker.port)
    try:
        node.run()
        assert [r["id"] for r in gw.reports] == [rid]
        assert outbox(node) == ([], [])
        assert node.last_sleep_ms == 300 * 1000
    finally:
        gw.close()


def test_a_rejected_report_is_kept_aside_and_never_retried(node, gateway):
    gateway.policy = "reject"
    node.set_pin(PIN, 0)
    out = node.run()
    [rep] = gateway.reports
    assert f"rejected {rep['id']}" in out
    pending, rejected = outbox(node)
    assert pending == []
    [(_, _, payload, reason)] = rejected
    assert json.loads(payload)["id"] == rep["id"]
    assert reason == "code not handled here"
    node.run()
    assert len(gateway.reports) == 1


def test_an_ack_sent_while_the_node_slept_is_delivered_at_the_next_wake(node, gateway):
    gateway.policy = "silent"  # the gateway is slow: no ack within the node's wait
    node.set_pin(PIN, 0)
    node.run()
    [rid] = [r["id"] for r in outbox(node)[0]]
    assert node.last_sleep_ms == 10000  # delivered, unacknowledged: look again soon
    gateway.ack(rid)  # node is asleep: the broker keeps it (session)
    node.run()
    assert outbox(node) == ([], [])


def test_a_grouped_ack_settles_every_report_it_lists(node, gateway):
    gateway.policy = "silent"
    for level in (0, 1, 0):  # tilted, upright, tilted again: two reports
        node.set_pin(PIN, level)
        node.run()
    ids = [r["id"] for r in outbox(node)[0]]
    seqs = [int(i.split(":")[1]) for i in ids]
    assert len(ids) == 2 and seqs[1] == seqs[0] + 1
    gateway.ack(ids)  # one ack answering both, while the node sleeps
    node.run()
    assert outbox(node) == ([], [])


def test_photo_and_track_confirmations_are_not_taken_for_a_reports_ack(node, gateway):
    """A node sends neither photos nor track: a photo_stored naming its report (or a
    track_stored) must neither settle nor crash it; the report's own ack then does."""
    from gridlink.firmware.core import messages

    gateway.policy = "silent"
    node.set_pin(PIN, 0)
    node.run()
    [rid] = [r["id"] for r in outbox(node)[0]]
    base = f"gridlink/v1/410106/{rid.split(':')[0]}/ack"
    for ack in (messages.make_photo_stored(rid, "0" * 64), messages.make_track_stored([1])):
        gateway.c.publish(base, messages.encode(ack), qos=1).wait_for_publish(5)
    node.run()
    assert [r["id"] for r in outbox(node)[0]] == [rid]
    gateway.ack(rid)
    node.run()
    assert outbox(node) == ([], [])


POWER_CUT_WHILE_WAITING = """
import sys
sys.path.insert(0, "/.sim/lib")
import gridnode.mqtt as m
def _power_cut(self, timeout):
    raise KeyboardInterrupt
m.MQTTClient.check_msg = _power_cut
try:
    exec(open("/main.py").read(), {"__name__": "__main__"})
except KeyboardInterrupt:
    print("power cut")
"""


def test_a_node_that_dies_mid_delivery_leaves_its_last_will(node, gateway):
    node.set_pin(PIN, 0)
    gateway.policy = "silent"
    # power fails while the node waits for the ack: the run ends with the link open
    node.run(POWER_CUT_WHILE_WAITING)
    st = wait_status(gateway, lambda s: s["state"] == "offline")
    assert st == {"v": 1, "device": "sn-0007", "state": "offline"}
    assert len(outbox(node)[0]) == 1  # the report is still there for the next wake


def test_an_unprovisioned_board_says_so_and_sleeps(tmp_path, image):
    with simboard.SimBoard(tmp_path / "b") as board:
        flash_image(image, board.flash)
        out = board.run()
    assert "/gridlink/config.json: not provisioned" in out
    assert board.last_sleep_ms == 600000


def test_the_wire_bytes_are_mqtt_311_with_a_retained_qos1_will(node, gateway):
    from tests.support.mqtt311 import packets

    node.set_pin(PIN, 0)
    node.run()
    [sent] = node.relay.sent().values()
    kinds = [p["type"] for p in packets(sent)]
    assert kinds[:3] == ["CONNECT", "SUBSCRIBE", "PUBLISH"]
    assert kinds[-1] == "DISCONNECT" and "PUBACK" in kinds  # it acked the gateway's ack
    connect = packets(sent)[0]
    assert connect["protocol"] == ("MQTT", 4) and not connect["clean_session"]
    assert connect["will"] == ("gridlink/v1/410106/sn-0007/status", 1, True)
    reports = [p for p in packets(sent) if p["type"] == "PUBLISH" and
               p["topic"].endswith("/report")]
    assert [(p["qos"], json.loads(p["payload"])["object"]) for p in reports] == [(1, OBJECT)]


def test_a_bad_config_is_named_on_the_console_and_nothing_is_sent(node, gateway):
    cfg_path = node.flash / "gridlink" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tilt"]["object"] = cfg["tilt"]["object"][:-1]
    cfg_path.write_text(json.dumps(cfg))
    node.set_reset_cause(4)  # a deep-sleep wake: no console window
    node.set_pin(PIN, 0)
    out = node.run()
    assert "/gridlink/config.json: tilt.object must be 17 digits, not '4101060100200012'" in out
    assert node.last_sleep_ms == 600000 and gateway.reports == []
    assert json.loads(cfg_path.read_text()) == cfg  # left for the technician to see


def test_a_backlog_drains_twenty_reports_per_wake_in_capture_order(node, gateway):
    from gridlink.firmware.core import messages
    from gridlink.firmware.core.report import make_report
    from gridlink.firmware.core.seqfile import SequenceFile

    data = node.flash / "gridlink"
    (data / "outbox").mkdir(exist_ok=True)
    seq = SequenceFile(str(data / "seq"))
    with Outbox(str(data / "outbox")) as ob:  # 25 reports captured while the broker was away
        for _ in range(25):
            rep = make_report("sn-0007", seq.next(), None, 1795831536.0, "component",
                              "GB/T 47678.5-2026", "01002", object_id=OBJECT, source="sensor")
            ob.append(REPORT, messages.encode(rep))
    node.set_reset_cause(4)
    node.set_pin(PIN, 1)
    node.run()
    assert [r["seq"] for r in gateway.reports] == list(range(1, 21))
    assert [r["seq"] for r in outbox(node)[0]] == list(range(21, 26))
    assert node.last_sleep_ms == 10000  # more waiting: wake again soon
    node.run()
    assert [r["seq"] for r in gateway.reports] == list(range(1, 26))
    assert outbox(node) == ([], []) and node.last_sleep_ms == 300 * 1000
    node.set_pin(PIN, 0)
    node.run()
    assert gateway.reports[-1]["seq"] == 26  # the node's own numbering goes on after them


def test_an_urgent_tilt_goes_before_the_backlog(node, gateway):
    """``tilt.urgent`` (the profile lists the cover's class as urgent): the tilt's report is
    marked in the core's outbox and leads the next delivery, ahead of older reports."""
    from gridlink.firmware.core import messages
    from gridlink.firmware.core.report import make_report
    from gridlink.firmware.core.seqfile import SequenceFile

    data = node.flash / "gridlink"
    cfg = json.loads((data / "config.json").read_text())
    cfg["tilt"]["urgent"] = True
    (data / "config.json").write_text(json.dumps(cfg))
    (data / "outbox").mkdir(exist_ok=True)
    seq = SequenceFile(str(data / "seq"))
    with Outbox(str(data / "outbox")) as ob:
        for _ in range(25):
            rep = make_report("sn-0007", seq.next(), None, 1795831536.0, "component",
                              "GB/T 47678.5-2026", "01002", object_id=OBJECT, source="sensor")
            ob.append(REPORT, messages.encode(rep))
    node.set_reset_cause(4)
    node.set_pin(PIN, 0)
    node.run()
    assert [r["seq"] for r in gateway.reports] == [26, *range(1, 20)]
    assert gateway.reports[0]["urgent"] is True and "urgent" not in gateway.reports[1]
    cfg["tilt"]["urgent"] = "yes"
    (data / "config.json").write_text(json.dumps(cfg))
    out = node.run()
    assert "/gridlink/config.json: tilt.urgent must be true or false, not 'yes'" in out
