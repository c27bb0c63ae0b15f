"""The sensor node's watchdog and health on the simulated board (MicroPython WebAssembly,
real Mosquitto): its status carries free memory, wakes, resets and the last reset cause,
kept across deep sleep; a wake that hangs is cut by the watchdog, and the next wake says so
and delivers what the hung one could not."""

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from gridlink.flash import simboard

from tests.mcu.test_node import PIN, outbox, wait_status
from tests.support.report_listener import ReportListener

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.broker,
    pytest.mark.skipif(not simboard.available(), reason="MicroPython WebAssembly port absent"),
]

ACK = "gridlink/v1/410106/sn-0007/ack"


def set_config(board, **kw):
    path = board.flash / "gridlink" / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(kw)
    path.write_text(json.dumps(cfg))


def test_status_reports_health_kept_across_deep_sleep(node, broker):
    gw = ReportListener("127.0.0.1", broker.port)
    try:
        node.set_pin(PIN, 1)
        node.run()   # a power-on
        assert node.watchdog == {"timeout_ms": 30000, "fired": False}
        h = wait_status(gw, lambda s: "health" in s)["health"]
        assert (h["wakes"], h["resets"], h["reset_cause"]) == (1, 1, "power_on")
        assert isinstance(h["mem_free"], int) and h["mem_free"] > 0   # gc.mem_free()
        node.run()   # woke from its deep sleep: a wake, not a reset; the cause stays
        h = wait_status(gw, lambda s: s["health"]["wakes"] == 2)["health"]
        assert (h["resets"], h["reset_cause"]) == (1, "power_on")
        node.set_reset_cause(2)   # the reset button
        node.run()
        h = wait_status(gw, lambda s: s["health"]["wakes"] == 3)["health"]
        assert (h["resets"], h["reset_cause"]) == (2, "hard")
    finally:
        gw.close()


class Flood:
    """A broken peer on the node's ack topic: junk, without a pause, until stopped."""

    def __init__(self, port):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood")
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop.wait(0.005):
            self.c.publish(ACK, b"not an ack", qos=0)

    def close(self):
        self.stop.set()
        self.t.join(5)
        self.c.disconnect()
        self.c.loop_stop()


def test_a_hung_wake_is_cut_by_the_watchdog_and_the_next_wake_says_so(node, broker):
    set_config(node, watchdog_s=3)
    node.set_pin(PIN, 0)    # tilted: a report waits for its ack
    flood = Flood(broker.port)
    try:
        out = node.run()
    finally:
        flood.close()
    # the ack wait never had a quiet second (fed only then): the watchdog ended the wake
    wd = node.watchdog
    assert wd["fired"] is True and wd["unfed_ms"] > 3000
    assert "watchdog reset" in out and "bad ack" in out
    assert node.last_sleep_ms is None            # it never reached its deep sleep
    [pending], _ = outbox(node)                  # the report is kept on flash
    gw = ReportListener("127.0.0.1", broker.port)
    try:
        node.run()
        st = wait_status(gw, lambda s: s["health"]["wakes"] == 2)
        assert (st["health"]["resets"], st["health"]["reset_cause"]) == (2, "watchdog")
        assert [r["id"] for r in gw.reports] == [pending["id"]]
        assert outbox(node) == ([], [])
        assert node.watchdog["fired"] is False and node.last_sleep_ms == 300 * 1000
    finally:
        gw.close()
