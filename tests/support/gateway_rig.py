"""Shared parts of the gateway tests and benchmarks: a grid map, reports, a publisher,
stores on both back ends, and a gateway run in-process or as a ``gridlink`` subprocess."""

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

from tests.support.paths import ROOT
from tests.support.waiting import wait_until

PG_BASE = os.environ.get("GRIDLINK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
DISTRICT = "410106"
X0, Y0, CELL = 113.28, 34.80, 0.01  # a 2 × 2 block of cells 410106001001001…004


def grid_layer():
    feats = []
    for i in range(2):
        for j in range(2):
            x, y = X0 + i * CELL, Y0 + j * CELL
            ring = [[x, y], [x + CELL, y], [x + CELL, y + CELL], [x, y + CELL], [x, y]]
            feats.append({"type": "Feature",
                          "properties": {"code": f"4101060010010{i * 2 + j + 1:02d}"},
                          "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return {"type": "FeatureCollection", "features": feats}


def grid_map_file(folder):
    from gridlink.host.gridcompile import compile_layer

    path = Path(folder) / "grid.glgm"
    if not path.exists():
        path.write_bytes(compile_layer(grid_layer())[0])
    return path


CELL_CENTRES = {  # grid code → (lat, lon) inside it
    "410106001001001": (34.805, 113.285), "410106001001002": (34.815, 113.285),
    "410106001001003": (34.805, 113.295), "410106001001004": (34.815, 113.295),
}


def report(device="pv-0001", seq=1, *, grid="410106001001001", at=None, code="06010",
           kind="event", text="垃圾满溢", photos=(), fix=True, source="button", **extra):
    lat, lon = at or CELL_CENTRES.get(grid, (34.805, 113.285))
    obj = {
        "v": 1, "id": f"{device}:{seq:012d}", "device": device, "seq": seq,
        "time": "2026-11-28T02:15:07.250Z", "time_source": "gnss",
        "fix": {"lat": lat, "lon": lon, "alt": 120.5, "mode": 3, "status": 1, "sats": 9,
                "hdop": 0.9, "age": 0.4} if fix else None,
        "flags": [] if fix else ["no_fix"], "grid": grid, "kind": kind,
        "standard": "GB/T 47678.5-2026", "code": code, "source": source,
        "photos": [dict(p) for p in photos], "text": text,
    }
    obj.update(extra)
    return obj


def scattered_report(device, seq, rnd, **kw):
    """A report from a random point of the 2 × 2 cells (``rnd``: a random.Random), its
    device grid code the cell the point lies in, as a patrol vehicle's would be."""
    lon = X0 + rnd.uniform(0.0001, 2 * CELL - 0.0001)
    lat = Y0 + rnd.uniform(0.0001, 2 * CELL - 0.0001)
    i, j = int((lon - X0) / CELL), int((lat - Y0) / CELL)
    return report(device, seq, grid=f"4101060010010{i * 2 + j + 1:02d}",
                  at=(round(lat, 7), round(lon, 7)), **kw)


def encode(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def answers(payloads):
    """(id, status, reason) of every report the device acks answer, read as a device reads
    them (the core's ``decode_for`` and ``ack_ids``: a grouped ack answers several)."""
    from gridlink.firmware.core.messages import ack_ids, decode_for

    out = []
    for body in payloads:
        ack = decode_for("ack", body)
        out += [(rid, ack["status"], ack["reason"]) for rid in ack_ids(ack)]
    return out


def topic(device, leaf, district=DISTRICT):
    return f"gridlink/v1/{district}/{device}/{leaf}"


class Publisher:
    """A device-side paho client publishing QoS 1, counting PUBACKs (MQTT 5)."""

    def __init__(self, port, client_id=None, inflight=200, tls=None, username=None,
                 host="127.0.0.1"):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        if tls is not None:
            self.client.tls_set_context(tls)
        if username:
            self.client.username_pw_set(username)
        self.acked = 0
        self.refused = []
        self.messages = []
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.connect(host, port)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise TimeoutError("publisher could not connect")

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._lock:
            self.acked += 1
            if reason_code.is_failure:
                self.refused.append((mid, str(reason_code)))

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def subscribe(self, filt, qos=1):
        """Subscribe and wait for the SUBACK (so nothing published next is missed)."""
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(filt, qos)
        if not done.wait(10):
            raise TimeoutError(f"no SUBACK for {filt}")

    def publish(self, t, payload, qos=1, retain=False, properties=None):
        return self.client.publish(t, payload, qos=qos, retain=retain, properties=properties)

    def wait_acked(self, n, timeout=60):
        wait_until(lambda: self.acked >= n, timeout, f"{n} PUBACKs (have {self.acked})")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def count(store, table, where="", params=()):
    sql = f"SELECT COUNT(*) AS n FROM {table}" + (f" WHERE {where}" if where else "")
    return store.fetchall(sql, params)[0]["n"]


def pg_url(tag="t"):
    return f"{PG_BASE}?schema=gw_{tag}_{uuid.uuid4().hex[:10]}"


def pg_available():
    try:
        import psycopg

        psycopg.connect(PG_BASE, connect_timeout=2).close()
        return True
    except Exception:
        return False


def drop_store(store):
    if store.dialect == "postgres":
        store.drop_schema()
    else:
        store.close()


class GatewayProcess:
    """``gridlink gateway run`` as a subprocess (what operators run, and what we SIGKILL)."""

    def __init__(self, broker_url, db_url, grid, workdir, *extra, worker=0):
        self.argv = [sys.executable, "-m", "gridlink.cli", "gateway", "run",
                     "--broker", broker_url, "--db", db_url, "--grid", str(grid),
                     "--photos", str(Path(workdir) / "photos"), "--log-level", "info",
                     *extra, "--worker-index", str(worker)]
        self.log = Path(workdir) / f"gateway-{worker}.log"
        self.proc = None
        self._mark = 0

    def start(self, wait=True):
        """Start; with ``wait``, return once it has subscribed (its session holds messages)."""
        self._out = open(self.log, "ab")  # noqa: SIM115
        self._mark = self.log.stat().st_size
        self.proc = subprocess.Popen(self.argv, stdout=self._out, stderr=self._out, cwd=ROOT)
        if wait:
            wait_until(lambda: self.subscribed() or not self.alive(), 30,
                     f"gateway worker {self.argv[-1]} to subscribe")
            if not self.alive():
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-2000:]}")
        return self

    def subscribed(self):
        """How many of its workers have subscribed since the last ``start`` (the log is
        appended to across starts, and further workers log into it too)."""
        return self.log.read_bytes()[self._mark:].count(b'"message": "subscribed"')

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            return self.proc.wait(timeout)
        return self.proc.returncode if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.terminate()
        self.kill()
        self._out.close()


def stream(pub, device, seqs, leaf="report"):
    """Publish reports ``seqs`` of ``device`` as fast as the publisher's window allows."""
    t = topic(device, leaf)
    for seq in seqs:
        pub.publish(t, encode(report(device, seq)))
