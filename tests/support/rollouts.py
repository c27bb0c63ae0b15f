"""Rollout tests' parts: the gateway's publish recorded, device rows with an ``ota``
status as the ingest writes them."""

import json

from gridlink.firmware.core import messages

from tests.support.intake_api import T0, iso


class Wire:
    """The gateway's publish(topic, payload, qos, retain), kept in order."""

    def __init__(self):
        self.sent = []

    def __call__(self, topic, payload, qos=1, retain=False):
        assert qos == 1 and retain is True
        self.sent.append((topic.split("/")[3], payload))

    def offered(self):
        """Devices offered so far (payloads checked against the protocol)."""
        out = []
        for device, payload in self.sent:
            if payload:
                messages.decode_for("update", payload)
                out.append(device)
        return out

    def withdrawn(self):
        return [device for device, payload in self.sent if payload == b""]


def status(version=None, pending=None, failed=None, other="1.0"):
    return {"installed": version or other, "slot": "b" if version else "a",
            "slots": {"a": other, "b": version}, "pending": pending,
            "failed": None if failed is None else {"version": failed[0], "reason": failed[1]}}


def set_device(store, device, ota=None, district="410106", profile="patrol-vehicle"):
    """A device row as the ingest writes it from a retained status."""
    obj = {"v": 1, "device": device, "state": "online", "time": None, "fix": None,
           "outbox": {"reports": 0, "track": 0}, "disk_free": 1 << 30, "cpu_temp": None,
           "uptime": 5.0, "firmware": "0.1.0", "codebook": "GB/T 47678.5-2026",
           "profile": profile}
    if ota is not None:
        obj["ota"] = ota
    messages.validate_status(obj)
    with store.connect() as conn:
        conn.execute(store.sql(
            "INSERT INTO devices (device, district, state, last_seen, status, profile)"
            " VALUES (?, ?, 'online', ?, ?, ?) ON CONFLICT (device) DO UPDATE SET"
            " status = excluded.status"), (device, district, iso(T0), json.dumps(obj), profile))
