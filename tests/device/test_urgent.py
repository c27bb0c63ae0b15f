"""An urgent report leaves the device first after the link returns, past the backlog and
past the in-flight window (real broker, the device's own store and delivery, the link cut
with ``hil_tests.shaper.Shaper``); the profile's ways to file one."""

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core.report import encode_report, make_report
from gridlink.firmware.device.delivery import Delivery
from gridlink.firmware.device.profile import load_profile, validate
from gridlink.firmware.device.store import REPORT, Store

from hil_tests.shaper import Shaper
from tests.support.waiting import wait_until

STATUS = {"time": None, "fix": None, "reports": 0, "track": 0, "disk_free": None,
          "cpu_temp": None, "uptime": 1.0, "firmware": "0.1.0", "codebook": "test",
          "profile": "patrol-vehicle"}


def _payload(seq, urgent=False):
    return encode_report(make_report("pv-0001", seq, None, 1_795_000_000.0 + seq, "event",
                                     "GB/T 47678.5-2026", "06010", urgent=urgent))


class Listener:
    """Every report the broker passes on, in arrival order (ids)."""

    def __init__(self, port):
        self.ids = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="urgent-listener")
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("gridlink/v1/+/+/report", qos=1)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.ids.append(json.loads(msg.payload)["id"])

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_the_urgent_report_goes_first_after_a_cut_and_past_the_window(broker, tmp_path):
    listener = Listener(broker.port)
    shaper = Shaper(broker.port, "lan")
    store = Store(tmp_path / "dev")
    for seq in range(1, 61):
        store.append(REPORT, _payload(seq))
    d = Delivery(f"mqtt://127.0.0.1:{shaper.port}", "pv-0001", "410106", store,
                 status_fn=lambda: dict(STATUS), reconnect_max=0.5, window=20).start()
    try:
        # nobody acknowledges: the window (20) fills and the rest waits
        wait_until(lambda: len(listener.ids) == 20, 20, "the first window")
        assert listener.ids == [f"pv-0001:{s:012d}" for s in range(1, 21)]
        shaper.cut()
        wait_until(lambda: not d.connected, 10, "the device to notice the cut")
        store.append(REPORT, _payload(61, urgent=True), urgent=True)
        store.append(REPORT, _payload(62))
        d.kick()
        time.sleep(0.5)
        seen = len(listener.ids)
        shaper.restore()
        wait_until(lambda: "pv-0001:000000000061" in listener.ids, 20, "the urgent report")
        after = listener.ids[seen:]
        # paho sends again what lacked a PUBACK at the cut (at most the window), then the
        # urgent report — though the window is still full of unacknowledged reports
        first = after.index("pv-0001:000000000061")
        assert first <= 20
        assert all(int(i[-12:]) <= 20 for i in after[:first])
        time.sleep(0.5)
        assert "pv-0001:000000000062" not in listener.ids  # routine: waits for the window
    finally:
        d.stop()
        shaper.close()
        listener.close()
        store.close()


def test_a_fresh_device_sends_its_urgent_report_before_its_backlog(broker, tmp_path):
    listener = Listener(broker.port)
    store = Store(tmp_path / "dev")
    for seq in range(1, 41):
        store.append(REPORT, _payload(seq))
    store.append(REPORT, _payload(41, urgent=True), urgent=True)
    store.close()
    store = Store(tmp_path / "dev")                 # the mark survives a restart
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: dict(STATUS),
                 window=5).start()
    try:
        wait_until(lambda: len(listener.ids) >= 5, 20, "the first window")
        time.sleep(0.3)
        assert listener.ids == ["pv-0001:000000000041"] + [
            f"pv-0001:{s:012d}" for s in range(1, 5)]
    finally:
        d.stop()
        listener.close()
        store.close()


def _profile(**extra):
    prof = load_profile("patrol-vehicle")
    prof.pop("_path")
    prof.update(extra)
    return prof


def test_the_profile_settings_for_urgent_reports_are_checked():
    assert validate(_profile(urgent_classes=["06010"],
                             emergency_button={"pin": 21, "kind": "event", "code": "06013"}
                             )) == []
    problems = validate(_profile(urgent_classes=["99999"]))
    assert [p.key for p in problems] == ["urgent_classes[0]"]
    problems = validate(_profile(emergency_button={"pin": 5, "kind": "event",
                                                   "code": "06010"}))
    assert [p.key for p in problems] == ["emergency_button.pin"]   # garbage's pin
    problems = validate(_profile(press={"long_press": "sos"}))
    assert [p.key for p in problems] == ["press.long_press"]


@pytest.mark.parametrize("how", ["long_press", "emergency", "class"])
def test_the_ways_to_file_an_urgent_report(tmp_path, how):
    """A long press (``press.long_press`` "urgent"), the emergency button, or a class the
    profile lists: an urgent report in the outbox, first, with no cancel grace."""
    from gridlink.firmware.device.hardware import Hardware
    from gridlink.firmware.device.runtime import Device

    extra = {"long_press": {"press": {"bounce_time_s": 0.05, "hold_s": 0.3,
                                      "cancel_grace_s": 10, "long_press": "urgent"}},
             "emergency": {"emergency_button": {"pin": 21, "kind": "event", "code": "06013",
                                                "text": "道路塌陷"}},
             "class": {"urgent_classes": ["07001"]}}[how]
    prof = _profile(**extra)
    prof["camera"]["backend"] = "none"
    prof.pop("clips", None)                 # clips need a camera
    prof = validate(prof) or prof
    dev = Device(prof, tmp_path / "dev", "mqtt://127.0.0.1:9", hardware=Hardware(prof, "sim"),
                 console=False).start()
    try:
        dev.report("button", "event", "06010", "暴露垃圾")        # routine, in its grace
        if how == "long_press":
            dev.triggers.simulate("garbage", hold=True)
        elif how == "emergency":
            dev.triggers.simulate("emergency")
        else:
            dev.triggers.simulate("flyposting")
        wait_until(lambda: dev.store.depth()["reports"] == 2, 10, "the urgent report")
        first = json.loads(dev.store.pending((REPORT,))[0][2])
        assert first["urgent"] is True
        assert first["code"] == {"long_press": "06010", "emergency": "06013",
                                 "class": "07001"}[how]
        assert first["id"] not in dev.grace and dev.counters["cancelled"] == 0
        second = json.loads(dev.store.pending((REPORT,))[1][2])
        assert "urgent" not in second
    finally:
        dev.stop()
