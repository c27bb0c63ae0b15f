"""The gateway as a device sees it, for device tests: every report validated with the core
validator, every status kept, and acks answered by a policy (accept, reject or silent)."""

import json
import threading

import paho.mqtt.client as mqtt
from gridlink.firmware.core.messages import encode, make_ack
from gridlink.firmware.core.report import validate_report


class ReportListener:
    def __init__(self, host, port, policy="accept", tls=None, client_id="test-gateway"):
        self.policy = policy
        self.reports, self.status = [], {}
        self.got = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if tls:
            self.c.tls_set(**tls)
        self.c.on_message = self._on_message
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *args: subscribed.set()
        self.c.connect(host, port)
        self.c.subscribe([("gridlink/v1/+/+/report", 1), ("gridlink/v1/+/+/status", 1)])
        self.c.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("the test gateway could not subscribe")

    def _on_message(self, c, u, msg):
        base = msg.topic.rsplit("/", 1)[0]
        if msg.topic.endswith("/status"):
            self.status[base] = json.loads(msg.payload)
            return
        rep = validate_report(json.loads(msg.payload))
        with self.got:
            self.reports.append(rep)
            self.got.notify_all()
        if self.policy == "accept":
            c.publish(base + "/ack", encode(make_ack(rep["id"], "accepted")), qos=1)
        elif self.policy == "reject":
            c.publish(base + "/ack", encode(make_ack(rep["id"], "rejected",
                                                     "code not handled here")), qos=1)

    def ack(self, report_id, status="accepted", district="410106"):
        """Ack ``report_id`` now (a late ack, after a "silent" spell); a list of ids is
        answered by one grouped ack."""
        first = report_id[0] if isinstance(report_id, list) else report_id
        base = f"gridlink/v1/{district}/{first.split(':')[0]}"
        self.c.publish(base + "/ack", encode(make_ack(report_id, status)),
                       qos=1).wait_for_publish(5)

    def wait_report(self, pred, timeout):
        with self.got:
            if not self.got.wait_for(lambda: any(pred(r) for r in self.reports), timeout):
                raise AssertionError(f"no matching report within {timeout}s; got {self.reports}")
            return next(r for r in self.reports if pred(r))

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()
