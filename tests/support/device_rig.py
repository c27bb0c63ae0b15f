"""Test rig for the device tests: a real device subprocess and a stand-in gateway acker.

``GatewayAcker`` plays ONLY the gateway's acknowledgement role (the real gateway is
another package): it subscribes to every device topic with a persistent session,
validates every message against docs/schemas (jsonschema) and the core validators, and
answers each report / task result on ``…/ack`` per protocol v1 (accepted, or duplicate
when it saw the id before — or what a test's ``answer`` says), each numbered track batch
with ``track_stored`` and each chunk of a photo it holds whole with ``photo_stored``
(``confirm=False``: a gateway of before those acks).  tests/device/test_rig.py
checks the rig itself.
"""

import configparser
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from gridlink.firmware.core import messages, topics
from gridlink.firmware.core.report import decode_report
from gridlink.firmware.device.control import request
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.support.paths import ROOT
from tests.support.waiting import wait_until

SCHEMAS = ROOT / "docs" / "schemas"
UNIT = ROOT / "firmware" / "systemd" / "gridlink-device.service"


def schema_validators():
    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry = Registry().with_resources(resources)
    return {path.stem: Draft202012Validator(json.loads(path.read_text()), registry=registry)
            for path in SCHEMAS.glob("*.json")}


class GatewayAcker:
    """Stand-in for the gateway's ack role: validate everything, ack reports.

    ``answer(report) -> (status, reason)``, when given, replaces the acker's own verdict:
    any status, even one protocol v1 does not know, to see what a device makes of it."""

    def __init__(self, broker, client_id="test-gateway-acker", ack=True, answer=None,
                 confirm=True):
        self.broker = broker
        self.ack = ack
        self.confirm = confirm
        self.answer = answer
        self.subscribed = threading.Event()
        self.validators = schema_validators()
        self.lock = threading.Lock()
        self.messages = []          # (leaf, device, payload bytes, retained)
        self.reports = []           # decoded reports, in arrival order (with duplicates)
        self.acked = set()
        self.chunks = {}            # (report id, n) → (header, data)
        self.media = {}             # (report id, sha256) → {n: (header, data)}
        self.tracks = []
        self.statuses = []
        self.errors = []            # anything that failed validation
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        clean_session=False)
        c.on_connect = lambda cl, *a: cl.subscribe(topics.subscription(leaf="#"), qos=1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        self.client = c

    def start(self):
        self.client.connect("127.0.0.1", self.broker.port)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, 10, "acker connected and subscribed")
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
                    if self.answer is not None:
                        status, reason = self.answer(rep)
                    else:
                        seen = rep["id"] in self.acked
                        status, reason = ("duplicate" if seen else "accepted"), None
                    self.acked.add(rep["id"])
                if self.ack:  # not make_ack: an answer's status may be one it refuses
                    ack = {"v": messages.VERSION, "id": rep["id"], "status": status,
                           "reason": reason}
                    client.publish(topics.topic(district, device, "ack"), messages.encode(ack),
                                   qos=1)
            elif leaf == "track":
                obj = json.loads(msg.payload)
                self._check("track", obj)
                messages.validate_track(obj)
                with self.lock:
                    self.tracks.append(obj)
                if self.ack and self.confirm and "seq" in obj:
                    client.publish(topics.topic(district, device, "ack"), messages.encode(
                        messages.make_track_stored([obj["seq"]])), qos=1)
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
                if self.ack and self.confirm and self.photo(extra[0]) is not None:
                    client.publish(topics.topic(district, device, "ack"), messages.encode(
                        messages.make_photo_stored(extra[0], head["sha256"])), qos=1)
            elif leaf == "media":
                head, data = messages.split_media_chunk(msg.payload)
                self._check("media-chunk-header", head)
                with self.lock:
                    self.media.setdefault((extra[0], head["sha256"]), {})[head["n"]] = \
                        (head, data)
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

    def media_of(self, report_id):
        """[(kind, bytes)] of a report's clips and memos received whole so far."""
        out = []
        with self.lock:
            for (rid, _sha), parts in self.media.items():
                head = next(iter(parts.values()))[0]
                if rid == report_id and len(parts) == head["of"]:
                    out.append((head["kind"], b"".join(parts[n][1] for n in range(head["of"]))))
        return out

    def publish_task(self, district, device, task):
        self.client.publish(topics.topic(district, device, "task"), messages.encode(task),
                            qos=1).wait_for_publish(5)


class DeviceProc:
    """``python -m gridlink.firmware.device run …`` as a real subprocess."""

    start_timeout = 20     # seconds until it answers on its control socket

    def __init__(self, tmp_path, broker, profile="patrol-vehicle", device_id="pv-0001",
                 data_dir=None, extra=(), clock=None):
        self.data_dir = Path(data_dir or tmp_path / f"dev-{device_id}")
        self.log_path = tmp_path / f"{device_id}.log"
        self.args = [sys.executable, "-m", "gridlink.firmware.device", "run",
                     "--profile", profile, "--data-dir", str(self.data_dir),
                     "--broker", broker.url, "--device-id", device_id, *extra]
        self.proc = None
        self.clock = clock  # a clock of its own (tests/support/device_clock.py), or None

    def start(self):
        log = open(self.log_path, "ab")  # noqa: SIM115 (owned by the process)
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env={**os.environ, **self.clock.env}
                                     if self.clock else None)
        log.close()
        wait_until(self._answers, self.start_timeout, f"device up (log {self.log_path})")
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

    def stop(self, timeout=20):
        """SIGTERM, if it still runs, and wait for it."""
        if self.alive():
            self.proc.terminate()
            self.proc.wait(timeout)

    def __exit__(self, *exc):
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)


def unit():
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str
    cp.read_string(UNIT.read_text())
    return cp
