"""A patrol morning under faults, on the simulated rig: the fleet, the broker and the
gateway as real processes, a shaped link per vehicle, and faults on a schedule.

Pieces (each a real process or a real file, nothing mocked):

- the broker: a private Mosquitto with persistence (gridlink.mosquitto), with ``tls`` the
  shipped configuration (mutual TLS, the ACL) and a certificate per client;
- the gateway: ``gridlink gateway run``, a child process that can be SIGKILLed, on SQLite
  or on any store URL (a private PostgreSQL cluster: hil_tests/pgcluster.py);
- each vehicle: ``gridlink device run --sim`` (patrol-vehicle profile) with its data dir,
  reaching the broker through its own ``Shaper`` (hil_tests/shaper.py) and reading its
  receiver from a ``GnssLine``: a real capture replayed (moved onto 上街区, retimed to
  now) through a pty and a second pty the line's faults act on (silence, garbage); on the
  host's clock or one of its own (tests/support/device_clock.py);
- buttons pressed on the device's control socket, as ``gridlink device press`` does.

``Patrol.run(schedule)`` presses buttons round the fleet and applies the schedule's faults;
``Patrol.results()`` counts, from the devices' own outbox records and the gateway's
queue, what was made, delivered, lost and doubled, and times delivery.
"""

import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from hil_tests.shaper import PROFILES, Shaper

ROOT = Path(__file__).resolve().parents[1]
DISTRICT = "410106"
# Starting points inside 上街区 (lat, lon) and the real captures the vehicles replay.
ORIGINS = [(34.8063, 113.2914), (34.8032, 113.2862), (34.8158, 113.2795), (34.7985, 113.3018),
           (34.8201, 113.2920), (34.7940, 113.2890), (34.8100, 113.2850), (34.8020, 113.2960),
           (34.8130, 113.2990), (34.7960, 113.2830)]
CAPTURES = ("nmea-rtk.log", "ublox-8.log", "ublox-zed-f9p-nmea.log", "quectel-eg25-g.log",
            "st-teseo-liv4f.log", "beidou-bd.log")
BUTTONS = ("garbage", "flyposting", "parking", "road")
# The shipped profile holds a button report back for 10 s (a long press may still cancel
# it); the run holds none, so trigger → queue is the delivery path's own time (plus the
# runtime's fixed 0.5 s).  In the field add the profile's grace.
CANCEL_GRACE_S = 0.0
RECONNECT_MAX_S = 5.0       # the devices' reconnect backoff cap for the run
QUIET_S = 15.0              # a press this soon after a fault on its path is not "no fault"


def faults_on_path(press, faults, until):
    """The kinds of ``faults`` on ``press``'s path: on its device (or all devices), and
    active at some time from ``QUIET_S`` before the press until ``until`` (its report's
    commit) — a fault that begins while the report is still on its way is on its path
    too, not only one active when the button was pressed."""
    return sorted({f["kind"] for f in faults
                   if (f["devices"] is None or press["device"] in f["devices"])
                   and f["start"] <= until
                   and (f["clear"] is None or press["at"] - f["clear"] < QUIET_S)})

# OwnTracks-style JSON for the same traffic (the comparison the issue asks for): one
# location message per track point, one per report, on owntracks/<user>/<device>.
OWNTRACKS_POINT = json.dumps({"_type": "location", "tid": "v1", "lat": 34.806321,
                              "lon": 113.291412, "alt": 112, "acc": 5, "vel": 24, "cog": 87,
                              "batt": 88, "conn": "m", "tst": 1796570000},
                             separators=(",", ":"))
OWNTRACKS_TOPIC = "owntracks/patrol/pv-0001"
MQTT_PUBLISH_OVERHEAD = 2 + 2 + 2 + 4  # fixed header, topic length, packet id, PUBACK
# a TLS 1.3 record (AES-GCM): 5 B header, 1 B inner content type, 16 B tag; at most 16 KiB
TLS_RECORD_OVERHEAD, TLS_RECORD_MAX = 22, 16384


def owntracks_bytes(points, reports, report_bytes, tls=False):
    """What ``points`` track points and ``reports`` reports (with their photos,
    ``report_bytes`` in all) would cost as OwnTracks JSON over MQTT, TCP/IP included,
    and with ``tls`` a TLS record for the PUBLISH and one for its PUBACK."""
    per_msg = len(OWNTRACKS_POINT) + len(OWNTRACKS_TOPIC) + MQTT_PUBLISH_OVERHEAD + 2 * 40
    if tls:
        per_msg += 2 * TLS_RECORD_OVERHEAD
        report_bytes *= 1 + TLS_RECORD_OVERHEAD / TLS_RECORD_MAX
    return points * per_msg + reports * per_msg + report_bytes


def percentile(values, q):
    """The q-th percentile (nearest rank) of ``values``, or None."""
    if not values:
        return None
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q / 100 * len(values) + 0.5) - 1))
    return values[k]


def p50_p99(values, scale=1.0, digits=2):
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    return {"p50": round(percentile(values, 50) * scale, digits),
            "p99": round(percentile(values, 99) * scale, digits), "n": len(values)}


# what a device logs when the gateway asks for chunks of a photo again (``resend``: chunks
# a broker that lost its store swallowed, chunks that came before their report, …) and
# when it sends a photo's last chunk again to ask after it (delivery.py)
ASKED_AGAIN = re.compile(r"photo ([0-9a-f]{64}) of (\S+): the gateway asks again for "
                         r"(?:every chunk|chunks \[([0-9, ]+)\])")
PROBED = re.compile(r"photo of (\S+): no photo_stored from the gateway yet; its last chunk "
                    r"goes again")


def photo_bytes_again(log_text, reports):
    """Bytes of photo chunks (their data, without headers) a device's log says it was
    asked for again or sent again to ask after its photo, for the photos of ``reports``."""
    from gridlink.firmware.core.messages import CHUNK_MAX

    sizes = {p["sha256"]: p["bytes"] for rep in reports for p in rep.get("photos", [])}
    photo_of = {rep["id"]: rep["photos"][0]["sha256"] for rep in reports if rep.get("photos")}

    def length(size, n):
        return max(0, min(CHUNK_MAX, size - n * CHUNK_MAX))
    total = 0
    for m in ASKED_AGAIN.finditer(log_text):
        size = sizes.get(m[1], 0)
        of = -(-size // CHUNK_MAX)
        total += sum(length(size, n) for n in (
            range(of) if m[3] is None else map(int, m[3].split(","))))
    for m in PROBED.finditer(log_text):
        size = sizes.get(photo_of.get(m[1]), 0)
        total += length(size, -(-size // CHUNK_MAX) - 1)
    return total


# ------------------------------------------------------------------------ the GNSS line


class GnssLine:
    """A serial line between a replayed receiver and the device, with faults.

    The replayer writes into its own pty; a thread copies that onto the device's pty
    (``path``) — or, in ``silent`` mode, drops it (an antenna lost), or in ``garbage``
    mode writes line noise and broken sentences instead (a loose connector).  The
    device's pty is non-blocking: with nobody reading (the device is down) the line
    drops bytes, as a UART does.
    """

    def __init__(self, capture, origin, speed=1.0, seed=None):
        from gridlink.firmware.sim.replay import Replayer, open_pty

        self.replayer = Replayer(capture, speed=speed, origin=origin, loop=True)
        self.master, self.slave, self.path = open_pty()
        os.set_blocking(self.master, False)
        self.mode = "pass"
        self.random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gnss-line", daemon=True)

    def start(self):
        self.replayer.start()
        self._thread.start()
        return self

    def _noise(self, n):
        junk = bytes(self.random.randrange(256) for _ in range(n))
        return junk + b"$GPGGA,0815,34\r\n$GPRMC,*7Z\r\n\x00\x00$GNGSA,A,3,,,\r\n"

    def _run(self):
        src = self.replayer.slave
        while not self._stop.is_set():
            ready, _, _ = select.select([src], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(src, 65536)
            except OSError:
                return
            if self.mode == "silent":
                continue
            if self.mode == "garbage":
                data = self._noise(len(data) // 4 + 8)
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self.master, data)

    def stop(self):
        self._stop.set()
        self._thread.join(2)
        self.replayer.stop()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


# ------------------------------------------------------------------------ the fleet


def outbox_records(ddir, oseqs=None):
    """What a device's outbox holds, read without opening the Outbox (which would repair
    what it finds): (report id → report, outbox seq → track points, acknowledged seqs,
    pending) — ``pending`` is what waits for the gateway now: ``{"track": seqs, "photos":
    sha256s}``, the track batches and photo uploads in the log without an ack (an ack
    and the record it settles both vanish when the log is compacted, so only this read
    says what is still pending).  Each report's outbox seq goes into ``oseqs`` (a dict)
    when given."""
    from gridlink.firmware.core import outbox, records

    reports, track, acked, uploads = {}, {}, set(), {}
    folder = Path(ddir) / "outbox"
    for name in (outbox.LOG, outbox.ACKS):
        path = folder / name
        if not path.exists():
            continue
        with open(path, "rb") as f:
            for _off, kind, seq, payload, _nxt in records.scan(f, 0, path.stat().st_size):
                if name == outbox.ACKS:
                    if kind is not None:
                        acked.add(seq)
                elif kind in (outbox.REPORT, outbox.TASK_RESULT):
                    rep = json.loads(payload)
                    reports[rep["id"]] = rep
                    if oseqs is not None:
                        oseqs[rep["id"]] = seq
                elif kind == outbox.TRACK:
                    track[seq] = len(json.loads(payload)["pts"])
                elif kind == outbox.PHOTO_PROGRESS:
                    uploads[seq] = json.loads(payload)["sha256"]
    pending = {"track": {s for s in track if s not in acked},
               "photos": {sha for s, sha in uploads.items() if s not in acked}}
    return reports, track, acked, pending


def photo_counts(reports, complete, held):
    """{made, complete, pending, lost}: the photos ``reports`` name (distinct sha256s);
    of those, the ones the gateway holds whole (``complete``), the ones still on their
    way — incomplete at the gateway and ``held`` in a device's outbox (an upload without
    ``photo_stored``) — and the ones neither: lost."""
    made = {p["sha256"] for rep in reports for p in rep.get("photos", [])}
    done = made & set(complete)
    pending = (made - done) & set(held)
    return {"made": len(made), "complete": len(done), "pending": len(pending),
            "lost": sorted(made - done - pending)}


class Vehicle:
    """One simulated patrol vehicle: its process, data dir, link and GNSS line."""

    def __init__(self, name, workdir, broker, link, capture, origin, map_path, seed,
                 cancel_grace=CANCEL_GRACE_S, clock=None, gnss="pass", pki=None,
                 track_batch_s=None):
        self.name = name
        self.pki = pki          # the rig's certificates: mqtts with this device's own
        self.cancel_grace = cancel_grace
        self.clock = clock      # a clock of its own (tests/support/device_clock.py), or the host's
        self.link = link
        self.ddir = Path(workdir) / "devices" / name
        self.ddir.mkdir(parents=True, exist_ok=True)
        host, port = broker
        self.shaper = Shaper(port, link, target_host=host, seed=seed)
        self.line = GnssLine(capture, origin, seed=seed).start()
        self.line.mode = gnss   # "silent": a receiver that never gives a fix (nor a time)
        self.map_path = map_path
        self.proc = None
        self.log = self.ddir.parent / f"{name}.log"
        self.reports = {}       # every report id seen in its outbox → report
        self.track = {}         # every track batch seen: outbox seq → points
        self.acked = set()      # outbox seqs acknowledged (by the gateway's ack)
        self.pending = {"track": set(), "photos": set()}   # at the last read: see outbox_records
        self.oseq = {}          # report id → its outbox seq
        self.profile = "patrol-vehicle"
        if track_batch_s is not None:  # the shipped profile, its track sent more often
            from gridlink.firmware.device.profile import resolve

            prof = json.loads(resolve("patrol-vehicle").read_text(encoding="utf-8"))
            prof["track"]["batch_s"] = track_batch_s
            path = self.ddir.parent / f"{name}-profile.json"
            path.write_text(json.dumps(prof), encoding="utf-8")
            self.profile = str(path)

    def argv(self):
        tls = ["--tls-ca", str(self.pki / "ca.crt"), "--tls-cert",
               str(self.pki / f"{self.name}.crt"), "--tls-key",
               str(self.pki / f"{self.name}.key")] if self.pki else []
        return [sys.executable, "-m", "gridlink.cli", "device", "run",
                "--profile", self.profile, "--data-dir", str(self.ddir),
                "--broker", f"mqtt{'s' if self.pki else ''}://127.0.0.1:{self.shaper.port}",
                *tls, "--sim",
                "--device-id", self.name, "--district", DISTRICT,
                "--gnss-port", self.line.path, "--cancel-grace", str(self.cancel_grace),
                "--status-interval", "5", "--reconnect-max", str(RECONNECT_MAX_S),
                "--map", str(self.map_path), "--log-level", "info"]

    def start(self):
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=ROOT,
                                         env={**os.environ, **self.clock.env}
                                         if self.clock else None)
        return self

    def ready(self):
        return bool(self.control({"cmd": "status"}).get("ok"))

    def wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-1500:]}")
            if self.ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not up after {timeout:.0f}s")

    def control(self, request):
        from gridlink.firmware.device.control import request as ask

        try:
            return ask(self.ddir, request, timeout=5.0)
        except Exception as exc:  # down, starting, or its disk is full
            return {"ok": False, "error": str(exc)}

    def snapshot(self):
        """Add what the outbox holds now to the device's records."""
        reports, track, acked, self.pending = outbox_records(self.ddir, self.oseq)
        self.reports.update(reports)
        self.track.update(track)
        self.acked |= acked

    def acked_reports(self):
        """Ids of the reports the device holds acknowledged (by the gateway's ack)."""
        return {rid for rid, oseq in self.oseq.items() if oseq in self.acked}

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout=15):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self):
        self.kill()
        self.line.stop()
        self.shaper.close()


# ------------------------------------------------------------------------ the patrol


class Patrol:
    """Broker, gateway and fleet for one run.  ``links`` names each vehicle's profile;
    with ``netns`` the broker runs in its own network namespace (hil_tests/netns.py),
    reached over a veth pair.  With ``tls`` the broker runs the shipped configuration
    (mutual TLS, the ACL; gridlink.mosquitto) and every device and the gateway present a
    certificate of their own (tests/support/pki.py), so the shapers count TLS on the
    wire.  The gateway's store is ``db`` (a store URL: SQLite or
    PostgreSQL; default an SQLite file in ``workdir``), its photos in ``photos`` (default
    ``workdir/photos``); ``vehicle_options`` (one dict a vehicle, or None) go to
    ``Vehicle`` (``cancel_grace``, ``env``)."""

    def __init__(self, workdir, links, seed=18, netns=False, db=None, photos=None,
                 vehicle_options=None, tls=False):
        from gridlink.demo.district import default_map
        from gridlink.mosquitto import Mosquitto

        from tests.support.gateway_rig import GatewayProcess

        self.workdir = Path(workdir)
        self.random = random.Random(seed)
        self.map_path = default_map()
        self.ns = None
        self.pki = None
        names = [f"pv-{i + 1:04d}" for i in range(len(links))]
        if tls:
            if netns:
                raise ValueError("TLS and a namespaced broker: its certificate names "
                                 "127.0.0.1 only")
            from gridlink.mosquitto import BrokerTLS

            from tests.support.pki import make_pki

            self.pki = make_pki(self.workdir / "pki", ("gridlink-gateway-0", *names))
            self.broker = Mosquitto(self.workdir / "broker", shipped=True, tls=BrokerTLS(
                self.pki / "ca.crt", self.pki / "broker.crt", self.pki / "broker.key")).start()
            broker_host = "127.0.0.1"
        elif netns:
            from hil_tests.netns import Namespace, NamespacedMosquitto

            self.ns = Namespace()
            self.broker = NamespacedMosquitto(self.workdir / "broker", self.ns).start()
            broker_host = self.ns.ip
        else:
            self.broker = Mosquitto(self.workdir / "broker").start()
            broker_host = "127.0.0.1"
        self.db_url = db or f"sqlite:///{self.workdir / 'intake.sqlite'}"
        self.db = Path(self.db_url[len("sqlite:///"):]) if self.db_url.startswith(
            "sqlite:///") else None
        extra = ("--photos", str(photos)) if photos else ()
        if self.pki:
            extra += ("--tls-ca", str(self.pki / "ca.crt"),
                      "--tls-cert", str(self.pki / "gridlink-gateway-0.crt"),
                      "--tls-key", str(self.pki / "gridlink-gateway-0.key"))
        self.gateway = GatewayProcess(self.broker.url, self.db_url, self.map_path,
                                      self.workdir, *extra)
        self.gateway.start()
        self.vehicles = []
        options = vehicle_options or [None] * len(links)
        for i, link in enumerate(links):
            v = Vehicle(names[i], self.workdir, (broker_host, self.broker.port), link,
                        capture_of(i), ORIGINS[i % len(ORIGINS)], self.map_path, seed + i,
                        pki=self.pki, **(options[i] or {}))
            self.vehicles.append(v.start())
        for v in self.vehicles:
            v.wait_ready()
        self.started = time.time()
        self.presses = []        # {"device", "at", "id", "error"}
        self.faults = []         # {"kind", "devices", "start", "clear", "backlog"}
        self.active = {}         # fault kind → devices affected (None: all)
        self.mounts = []
        self.queue_seen = {}     # report id → committed_at (unix)
        self.skipped = {}        # fault kind → why it was not run
        self.crashed = {}        # device → exit status, for a device that died by itself

    # -- the gateway's queue ----------------------------------------------------------------

    def _rows(self, sql):
        """The rows of ``sql`` read from the gateway's store (SQLite read-only)."""
        if self.db is None:
            import psycopg

            with psycopg.connect(self.db_url, connect_timeout=5) as conn:
                return conn.execute(sql).fetchall()
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True,
                                                timeout=5)) as conn:
            return conn.execute(sql).fetchall()

    def queue(self):
        """{report id: (device, seq, committed_at unix)} in the gateway's store ({} while
        it cannot be read)."""
        if self.db is not None and not self.db.exists():
            return {}
        try:
            rows = self._rows("SELECT id, device, seq, committed_at FROM reports")
        except Exception:  # sqlite3.Error, psycopg.Error: down, or not made yet
            return {}
        return {r[0]: (r[1], r[2], _unix(r[3])) for r in rows}

    def scalar(self, sql):
        return self._rows(sql)[0][0]

    def time_flags(self):
        """{report id: time_flag} of the reports in the queue."""
        return dict(self._rows("SELECT id, time_flag FROM reports"))

    # -- pressing ---------------------------------------------------------------------------

    def press(self, v, button=None):
        """Press a button on ``v`` (control socket); records the report it made."""
        button = button or self.random.choice(BUTTONS)
        at = time.time()
        answer = v.control({"cmd": "press", "input": button, "hold": False})
        made = answer.get("ok") and answer.get("reports")
        entry = {"device": v.name, "at": at, "id": answer.get("last") if made else None,
                 "error": None if made else answer.get("error", "no report")}
        self.presses.append(entry)
        return entry

    # -- faults -----------------------------------------------------------------------------

    def begin(self, kind, devices=None):
        self.active[kind] = devices
        self.faults.append({"kind": kind, "devices": devices, "start": time.time(),
                            "clear": None})

    def clear(self, kind):
        """The fault is over: note what its devices had made and the queue lacked."""
        devices = self.active.pop(kind)
        fault = next(f for f in reversed(self.faults) if f["kind"] == kind)
        fault["clear"] = time.time()
        for v in self.vehicles:
            if devices is None or v.name in devices:
                with contextlib.suppress(OSError, ValueError):
                    v.snapshot()
        have = self.queue()
        # a device still under another fault (a tunnel through a broker restart) delivers
        # when that one clears: its backlog counts there
        busy = {v.name for v in self.vehicles for devs in self.active.values()
                if devs is None or v.name in devs}
        fault["backlog"] = sorted(
            rid for v in self.vehicles
            if (devices is None or v.name in devices) and v.name not in busy
            for rid, rep in v.reports.items()
            if rid not in have and rep.get("source") != "task")

    def vehicle(self, name):
        return next(v for v in self.vehicles if v.name == name)

    # The fault actions: each begins and clears its kind.

    def link_cut(self, v, seconds, kind="link_cut", mode="reset"):
        self.begin(kind, [v.name])
        v.shaper.cut(mode=mode)
        return lambda: (v.shaper.restore(), self.clear(kind))

    def tunnel(self, v):
        return self.link_cut(v, PROFILES["tunnel"].cut_s, kind="tunnel", mode="stall")

    def device_power_cut(self, v, torn=False):
        kind = "device_torn_write" if torn else "device_power_cut"
        self.begin(kind, [v.name])
        self.press(v)
        v.kill()
        with contextlib.suppress(OSError, ValueError):
            v.snapshot()
        if torn:
            tear_outbox(v.ddir)
        v.start()
        v.wait_ready()
        self.clear(kind)

    def broker_restart(self):
        self.begin("broker_restart")
        self.broker.stop()
        return lambda: (self.broker.start(), self.clear("broker_restart"))

    def broker_lost_persistence(self):
        """The gateway is down (reports wait at the broker), then the broker dies and
        comes back without its store: the devices must send again what the gateway never
        acknowledged."""
        kind = "broker_lost_persistence"
        self.begin(kind)
        self.gateway.kill()
        for v in self.vehicles:
            self.press(v)
        time.sleep(2.5)   # the reports reach the broker's queue for the gateway

        def lose():
            self.broker.proc.kill()
            self.broker.proc.wait()
            for f in self.broker.workdir.glob("mosquitto.db*"):
                f.unlink()
            self.broker.start()
            self.gateway.start()
            self.clear(kind)
        return lose

    def gateway_killed(self):
        self.begin("gateway_killed")
        self.gateway.kill()
        return lambda: (self.gateway.start(), self.clear("gateway_killed"))

    def disk_full(self, v):
        """The device's data dir on a small tmpfs, filled up; cleared by removing the
        filler.  Needs root (mount); returns None with the reason kept when it cannot."""
        kind = "device_disk_full"
        mnt = self.workdir / f"tmpfs-{v.name}"
        mnt.mkdir(exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode:
            self.skipped[kind] = f"cannot mount a tmpfs: {r.stderr.strip() or r.returncode}"
            return None
        self.mounts.append(mnt)
        # the device moves onto the small disk: stopped cleanly, its data dir copied
        v.stop()
        v.snapshot()
        shutil.copytree(v.ddir, mnt / "data", symlinks=True,
                        ignore=shutil.ignore_patterns("control.sock"))
        shutil.rmtree(v.ddir)
        v.ddir.symlink_to(mnt / "data")
        v.start()
        v.wait_ready()
        self.begin(kind, [v.name])
        filler = mnt / "filler"
        fill(filler)
        return lambda: (filler.unlink(), self.clear(kind))

    def _store_back(self, kind):
        """Before the gateway's store returns: which reports the devices hold
        acknowledged, and which presses made a report while it was away."""
        fault = next(f for f in reversed(self.faults) if f["kind"] == kind)
        for v in self.vehicles:
            with contextlib.suppress(OSError, ValueError):
                v.snapshot()
        fault["acked_before_back"] = {rid for v in self.vehicles for rid in v.acked_reports()}
        fault["made_while_down"] = [p["id"] for p in self.presses
                                    if p["id"] and p["at"] >= fault["start"]]
        return fault

    def postgres_restart(self, cluster):
        """The gateway's PostgreSQL stopped (``immediate``: connections cut, crash
        recovery at the start) until the fault clears; the devices keep reporting."""
        kind = "postgres_restart"
        self.begin(kind)
        cluster.stop("immediate")
        self.faults[-1]["down_at"] = time.time()

        def back():
            self._store_back(kind)
            cluster.start()
            self.clear(kind)
        return back

    def gateway_disk_full(self, folder):
        """The filesystem of the gateway's SQLite store and photos (``folder``, a small
        tmpfs) filled to the last byte until the fault clears."""
        kind = "gateway_disk_full"
        self.begin(kind)
        filler = Path(folder) / "filler"
        fill(filler)
        self.faults[-1]["down_at"] = time.time()

        def back():
            fault = self._store_back(kind)
            fault["queue_before_back"] = set(self.queue())   # read after the acks
            filler.unlink()
            self.clear(kind)
        return back

    def clock_jump(self, seconds, press=True):
        """Every vehicle with a clock of its own: a button press (its report waits out its
        cancel grace), then the clock moved to ``seconds`` from the true time; 0 ends the
        ``device_clock_jump`` fault."""
        kind = "device_clock_jump"
        clocked = [v for v in self.vehicles if v.clock is not None]
        if kind not in self.active and seconds:
            self.begin(kind, [v.name for v in clocked])
        for v in clocked:
            if press:
                self.press(v)
            v.clock.set(seconds)
        if not seconds and kind in self.active:
            self.clear(kind)

    def gnss(self, v, mode):
        kind = f"gnss_{mode}"
        self.begin(kind, [v.name])
        v.line.mode = mode

        def back():
            v.line.mode = "pass"
            self.clear(kind)
        return back

    # -- running ----------------------------------------------------------------------------

    def run(self, schedule, duration, press_every):
        """Press round the fleet every ``press_every`` s for ``duration`` s; ``schedule``
        is [(t, action)]: ``action(self)`` may return a function to call ``t_end`` later,
        as (function, t_end)."""
        t0 = time.monotonic()
        pending = sorted(schedule, key=lambda x: x[0])
        later = []
        turn, next_press = 0, 0.0
        while True:
            now = time.monotonic() - t0
            if now >= duration and not later:
                break
            while pending and pending[0][0] <= now:
                _, action, hold = pending.pop(0)
                undo = action(self)
                if undo is not None:
                    later.append((now + hold, undo))
            for item in [x for x in later if x[0] <= now]:
                later.remove(item)
                item[1]()
            if now >= next_press and now < duration:
                v = self.vehicles[turn % len(self.vehicles)]
                if v.proc.poll() is None:
                    self.press(v)
                turn += 1
                next_press = now + press_every
            time.sleep(0.05)

    def drain(self, timeout, everything=False):
        """Wait until every report the devices made is in the queue (or ``timeout``);
        ``everything``: and every photo they announced is complete at the gateway and
        every track batch they wrote is confirmed (``track_stored``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for v in self.vehicles:
                with contextlib.suppress(OSError, ValueError):
                    v.snapshot()
            made = {rid for v in self.vehicles for rid in v.reports}
            if made <= set(self.queue()) and (not everything or self._all_else_in()):
                return True
            time.sleep(0.5)
        return False

    def _all_else_in(self):
        photos = photo_counts([rep for v in self.vehicles for rep in v.reports.values()],
                              self.complete_photos(), ())
        return (photos["complete"] == photos["made"]
                and not any(v.pending["track"] for v in self.vehicles))

    def complete_photos(self):
        """The sha256s of the photos the gateway holds whole."""
        return {sha for (sha,) in self._rows("SELECT sha256 FROM photos WHERE complete = 1")}

    # -- results ----------------------------------------------------------------------------

    def finish(self):
        """Stop the fleet cleanly (each device stores its last track batch), then read
        every device's records.  A device that died on its own is named in ``crashed``."""
        self.crashed = {v.name: v.proc.returncode for v in self.vehicles
                        if v.proc.poll() is not None}
        for v in self.vehicles:
            if v.proc.poll() is None:
                v.proc.terminate()
        for v in self.vehicles:
            v.stop()
            with contextlib.suppress(OSError, ValueError):
                v.snapshot()

    def results(self, rig):
        queue = self.queue()
        made = {rid: (v.name, rep) for v in self.vehicles for rid, rep in v.reports.items()}
        by_seq = {}
        for rid, (device, seq, _) in queue.items():
            by_seq.setdefault((device, seq), []).append(rid)
        doubled = sum(len(ids) - 1 for ids in by_seq.values() if len(ids) > 1)
        lost = sorted(set(made) - set(queue))
        photos = photo_counts([rep for _, rep in made.values()], self.complete_photos(),
                              {sha for v in self.vehicles for sha in v.pending["photos"]})
        points_made = sum(n for v in self.vehicles for n in v.track.values())
        points_pending = sum(n for v in self.vehicles for seq, n in v.track.items()
                             if seq in v.pending["track"])
        points_received = self.scalar("SELECT COUNT(*) FROM track_points")

        recovery = {}
        for f in self.faults:
            if f["clear"] is None:
                continue
            done = [queue[rid][2] for rid in f["backlog"] if rid in queue]
            if len(done) < len(f["backlog"]):
                took = None                      # never delivered: counted in "lost"
            else:
                took = max([0.0, *(t - f["clear"] for t in done)])
            recovery.setdefault(f["kind"], []).append(took)
        links = {v.name: v.link for v in self.vehicles}
        t2q = {}
        for p in self.presses:
            if p["id"] in queue and not faults_on_path(p, self.faults, queue[p["id"]][2]):
                t2q.setdefault(links[p["device"]], []).append(queue[p["id"]][2] - p["at"])
        hours = (time.time() - self.started) / 3600 * len(self.vehicles)
        wire = sum(v.shaper.wire_bytes() for v in self.vehicles)
        report_bytes = sum(len(json.dumps(rep)) for _, rep in made.values())
        photo_bytes = sum(p.get("bytes", 0) for _, rep in made.values()
                          for p in rep.get("photos", []))
        n = max(1, len(made))
        tls = self.pki is not None
        other = wire - (photo_bytes + report_bytes) * (1 + 40 / 1448)
        # each vehicle's bytes beyond its reports and photos (track, status, protocol,
        # TLS, and what faults made it send again), per hour; the median vehicle is the
        # patrol hour's base, so one vehicle's resend storm does not become everyone's
        vehicle_hour = hours / len(self.vehicles)
        other_each, again_each = {}, {}
        for v in self.vehicles:
            again_each[v.name] = round(photo_bytes_again(
                v.log.read_text(encoding="utf-8", errors="replace"), v.reports.values())
                / vehicle_hour) if vehicle_hour else None
            mine = sum(len(json.dumps(rep)) + sum(p.get("bytes", 0)
                                                  for p in rep.get("photos", []))
                       for rep in v.reports.values())
            other_each[v.name] = round((v.shaper.wire_bytes() - mine * (1 + 40 / 1448))
                                       / vehicle_hour) if vehicle_hour else None
        per_report = (photo_bytes + report_bytes) / n * (1 + 40 / 1448)
        return {
            "rig": rig,
            "reports_made": len(made),
            "reports_in_queue": len(queue),
            "lost": len(lost),
            "lost_ids": lost[:20],
            "doubled": doubled,
            "devices_crashed": self.crashed,
            "presses": len(self.presses),
            "presses_refused": sum(1 for p in self.presses if not p["id"]),
            "photos_made": photos["made"],
            "photos_complete": photos["complete"],
            "photos_pending": photos["pending"],
            "photos_lost": len(photos["lost"]),
            "photos_lost_sha256": photos["lost"][:20],
            "track_points_made": points_made,
            "track_points_received": points_received,
            "track_points_pending": points_pending,
            "faults": _count(f["kind"] for f in self.faults),
            "faults_skipped": self.skipped,
            "recovery_s": {k: p50_p99([x for x in v if x is not None])
                           for k, v in sorted(recovery.items())},
            "trigger_to_queue_ms": {k: p50_p99(v, 1000, 0) for k, v in sorted(t2q.items())},
            "bytes_on_wire_per_vehicle_hour": {
                "measured_in_run": round(wire / hours) if hours else None,
                "owntracks_json_same_traffic": round(
                    owntracks_bytes(points_made, len(made), photo_bytes, tls) / hours)
                if hours else None,
                # a patrol hour: 1 Hz track (as replayed here), a report every 10 minutes
                "patrol_hour": round(percentile(list(other_each.values()), 50)
                                     + 6 * per_report) if hours else None,
                "patrol_hour_mean_vehicle": round(other / hours + 6 * per_report)
                if hours else None,
                "other_per_vehicle_hour": other_each,
                # of "other": photo chunks asked for again or sent again to ask (the
                # devices' logs); a broker that loses its store swallows whole photos
                "photo_chunks_again_per_vehicle_hour": again_each,
                "patrol_hour_without_photos_again": round(percentile(
                    [other_each[k] - again_each[k] for k in other_each], 50)
                    + 6 * per_report) if hours else None,
                "patrol_hour_owntracks_json": round(owntracks_bytes(
                    points_made / hours, 6, 6 * photo_bytes / n, tls)) if hours else None,
                "tls": tls,
                "note": ("TCP payload plus 40 B TCP/IP header per segment, both ways, "
                         "through the shaper; "
                         + ("MQTT over TLS 1.3 with client certificates (handshakes and "
                            "records counted; OwnTracks with a TLS record a message)"
                            if tls else "plain MQTT (no TLS in this run)") + "; "
                         f"this run's traffic: {len(made) / hours:.0f} reports and "
                         f"{points_made / hours:.0f} track points per vehicle-hour, "
                         f"{report_bytes} B of report JSON"),
            },
        }

    def close(self):
        for v in self.vehicles:
            with contextlib.suppress(Exception):
                v.stop(5)
            v.close()
        self.gateway.kill()
        with contextlib.suppress(Exception):
            self.gateway._out.close()
        self.broker.stop()
        if self.ns is not None:
            self.ns.close()
        for mnt in self.mounts:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path):
    """Write ``path`` until its filesystem is full (unbuffered: nothing is left to flush,
    and fail, when it is closed)."""
    with contextlib.suppress(OSError), open(path, "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 65536)


def tear_outbox(ddir):
    """Power cut in the middle of a write: the outbox log ends in half a record (the
    unsynced tail that never reached the card)."""
    from gridlink.firmware.core import outbox, records

    path = Path(ddir) / "outbox" / outbox.LOG
    torn = records.encode(outbox.REPORT, 0xFFFF, b'{"id":"torn","seq":0}' * 8)
    with open(path, "ab") as f:
        f.write(torn[:len(torn) // 2])


def capture_of(i):
    from gridlink.firmware.errors import DeviceError
    from gridlink.firmware.sim.replay import find_capture

    try:
        return find_capture(CAPTURES[i % len(CAPTURES)])
    except DeviceError:
        return find_capture("nmea-rtk.log")


def _unix(iso):
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _count(kinds):
    out = {}
    for k in kinds:
        out[k] = out.get(k, 0) + 1
    return out
