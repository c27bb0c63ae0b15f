"""Test rig for the device tests: a real device subprocess and a stand-in gateway acker.

``GatewayAcker`` plays ONLY the gateway's acknowledgement role (the real gateway is
another package): it subscribes to every device topic with a persistent session,
validates every message against docs/schemas (jsonschema) and the core validators, and
answers each report / task result on ``…/ack`` per protocol v1 (accepted, or duplicate
when it saw the id before).  The tests at the bottom check the rig itself.
"""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core import messages, topics
from gridlink.firmware.core.report import decode_report
from gridlink.firmware.device.control import request
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"


def schema_validators():
    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry = Registry().with_resources(resources)
    return {path.stem: Draft202012Validator(json.loads(path.read_text()), registry=registry)
            for path in SCHEMAS.glob("*.json")}


def wait_until(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class GatewayAcker:
    """Stand-in for the gateway's ack role: validate everything, ack reports."""

    def __init__(self, broker, client_id="test-gateway-acker", ack=True):
        self.broker = broker
        self.ack = ack
        self.validators = schema_validators()
        self.lock = threading.Lock()
        self.messages = []          # (leaf, device, payload bytes, retained)
        self.reports = []           # decoded reports, in arrival order (with duplicates)
        self.acked = set()
        self.chunks = {}            # (report id, n) → (header, data)
        self.tracks = []
        self.statuses = []
        self.errors = []            # anything that failed validation
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        clean_session=False)
        c.on_connect = lambda cl, *a: cl.subscribe(topics.subscription(leaf="#"), qos=1)
        c.on_message = self._on_message
        self.client = c

    def start(self):
        self.client.connect("127.0.0.1", self.broker.port)
        self.client.loop_start()
        wait_until(self.client.is_connected, 10, "acker connected")
        return self

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()

    def _check(self, name, obj):
        for err in self.validators[name].iter_errors(obj):
            self.errors.append(f"{name}: {err.message} at {list(err.absolute_path)}")

    def _on_message(self, client, userdata, msg):
        try:
            district, device, leaf, extra = topics.parse_topic(msg.topic)
        except messages.MessageError as exc:
            self.errors.append(f"topic {msg.topic}: {exc}")
            return
        with self.lock:
            self.messages.append((leaf, device, bytes(msg.payload), msg.retain))
        try:
            if leaf in ("report", "task/result"):
                obj = json.loads(msg.payload)
                self._check("report" if leaf == "report" else "task-result", obj)
                rep = decode_report(msg.payload)
                if device != rep["device"]:
                    self.errors.append(f"{msg.topic}: report of {rep['device']}")
                with self.lock:
                    self.reports.append(rep)
                    status = "duplicate" if rep["id"] in self.acked else "accepted"
                    self.acked.add(rep["id"])
                if self.ack:
                    ack = messages.make_ack(rep["id"], status)
                    client.publish(topics.topic(district, device, "ack"), messages.encode(ack),
                                   qos=1)
            elif leaf == "track":
                obj = json.loads(msg.payload)
                self._check("track", obj)
                messages.validate_track(obj)
                with self.lock:
                    self.tracks.append(obj)
            elif leaf == "status":
                obj = json.loads(msg.payload)
                self._check("status", obj)
                messages.validate_status(obj)
                with self.lock:
                    self.statuses.append(obj)
            elif leaf == "photo":
                head, data = messages.split_photo_chunk(msg.payload)
                self._check("photo-chunk-header", head)
                with self.lock:
                    self.chunks.setdefault((extra[0], head["n"]), []).append((head, data))
            elif leaf in ("ack", "task"):
                pass
            else:
                self.errors.append(f"unexpected leaf {leaf}")
        except (ValueError, messages.MessageError) as exc:
            self.errors.append(f"{msg.topic}: {exc}")

    def unique_reports(self):
        with self.lock:
            seen, out = set(), []
            for rep in self.reports:
                if rep["id"] not in seen:
                    seen.add(rep["id"])
                    out.append(rep)
            return out

    def photo(self, report_id):
        """The reassembled photo bytes of a report, or None while chunks are missing."""
        with self.lock:
            parts = {n: v[0] for (rid, n), v in self.chunks.items() if rid == report_id}
        if not parts:
            return None
        of = next(iter(parts.values()))[0]["of"]
        if len(parts) < of:
            return None
        return b"".join(parts[n][1] for n in range(of))

    def publish_task(self, district, device, task):
        self.client.publish(topics.topic(district, device, "task"), messages.encode(task),
                            qos=1).wait_for_publish(5)


class DeviceProc:
    """``python -m gridlink.firmware.device run …`` as a real subprocess."""

    def __init__(self, tmp_path, broker, profile="patrol-vehicle", device_id="pv-0001",
                 data_dir=None, extra=()):
        self.data_dir = Path(data_dir or tmp_path / f"dev-{device_id}")
        self.log_path = tmp_path / f"{device_id}.log"
        self.args = [sys.executable, "-m", "gridlink.firmware.device", "run",
                     "--profile", profile, "--data-dir", str(self.data_dir),
                     "--broker", broker.url, "--device-id", device_id, *extra]
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")  # noqa: SIM115 (owned by the process)
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=ROOT)
        log.close()
        wait_until(self._answers, 20, f"device up (log {self.log_path})")
        return self

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"device exited {self.proc.returncode}:\n{self.log()}")
        try:
            return request(self.data_dir, {"cmd": "status"}, timeout=5)["ok"]
        except Exception:
            return False

    def ask(self, **req):
        answer = request(self.data_dir, req)
        assert answer["ok"], answer
        return answer

    def status(self):
        return self.ask(cmd="status")["status"]

    def press(self, name, hold=False):
        return self.ask(cmd="press", input=name, hold=hold)

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout=15):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)


# -- the rig's own checks --------------------------------------------------------------------

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

