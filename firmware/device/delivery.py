"""Outbox → MQTT (paho-mqtt, QoS 1) and the gateway's answers back.

One network thread owns the paho client: it connects (TLS with a client certificate
when asked), re-connects with exponential backoff and full jitter, and publishes:

- reports and task results in outbox order — urgent ones (突发事件) first, and past the
  in-flight window, so an urgent report is the first to leave after the link returns
  however long the backlog (paho first re-sends what lacked a PUBACK: at most the
  window); a report leaves the outbox only on the
  gateway's ack (accepted/duplicate), a rejected one moves to ``outbox.rejected``, one
  answered ``id_reused`` (the gateway holds another report under its id) is sent again
  under a fresh id (counted in the status ``problems.reissued``), and one whose ack says
  anything else stays and is sent again under its id (counted in ``unknown_acks``);
  paho re-sends what lacked a PUBACK when the link returns, and a report still without
  the gateway's ack goes again after ``resend_s`` (a new process sends all pending), or
  at once when the gateway sends a chunk of its photo back (it lacks the report: the
  photo's chunks then wait for the report's ack) or when the broker, on a reconnect, has
  no session of the device (it lost its store);
- a button report waits out its cancel grace period before it is first sent (so a long
  press can still take it back), and everything behind it waits too (order is kept);
  ``grace_until(report_id)`` is a ``time.monotonic()`` time, so that a wall clock that
  steps (NTP, GNSS, an RTC come up in the past) neither holds the outbox nor cuts a grace;
- track batches, each numbered with its outbox sequence (``seq``), kept until the
  gateway's ``track_stored`` ack names it and sent again after ``resend_s`` (or at once
  when the broker lost its store) — a broker's PUBACK is not enough, since a broker that
  loses its store loses what it held for the gateway (a batch of an older build, without
  ``seq``, still leaves on PUBACK);
- photos in chunks of ≤ 16 KiB on ``…/photo/{report_id}/{n}``; each chunk is marked done
  on PUBACK in a PHOTO_PROGRESS outbox record, so after a broken link only the missing
  chunks go again; the photo stays (file and record) until the gateway's
  ``photo_stored`` ack: without it ``resend_s`` after its last chunk (at once after a
  restart; ``REPORT_AGAIN_S`` apart, ``PROBE_AGAIN`` times, after a broker that lost its
  store) the last chunk goes again as a probe, which the gateway answers with
  ``photo_stored`` or a ``resend`` of the chunks it lacks; a confirmed photo is deleted
  from ``photos/`` ``store.photo_keep_s`` later;
- clips and voice memos from the media shelf (``shelf.MediaShelf``) on a lower-priority
  lane, ``…/media/{report_id}/{n}``: a report's media go only once the gateway has
  acknowledged the report, no report waits to be sent and no photo chunk is due; at most
  ``media_window`` chunks in flight and ``media_rate`` bytes a second (a token bucket), so
  a new report never queues behind a clip.  Each chunk carries its own sha256; progress is
  kept on the shelf on PUBACK (after a cut only the rest goes); a file whose every chunk
  is PUBACKed is kept ``store.photo_keep_s`` more (the gateway may ask for chunks again,
  with the photos' ``resend`` ack), then pruned.  Media the shelf dropped undelivered are
  counted in the status ``problems.media_dropped`` and logged;
- the retained status, on connect, on change and when asked; the last will is the
  retained ``offline`` status.  The session is persistent (clean_session False).

It receives acks, tasks and (when given ``on_config``) the retained configuration
document on ``…/config``, handed over unchecked: the device verifies its signature; and
(when given ``on_cert``) the centre's answer to a certificate request (``send_csr``) on
``…/cert``; and (when given ``on_chunk``) pieces of code books and grid maps on
``…/ota/chunk``, asked for with ``ask_piece`` on ``…/ota/get`` (protocol §3.9, as a sensor
node asks).  ``use_identity`` makes the link present another certificate from its next
connection on, and reconnects at once.
"""

import hashlib
import json
import logging
import os
import random
import ssl
import threading
import time

from ..core import messages, topics
from ..core.brokerurl import BrokerURL, BrokerURLError
from ..errors import DeviceError
from .store import PHOTO, REPORT, TASK_RESULT, TRACK

log = logging.getLogger("gridlink.device.delivery")

CHUNK = messages.CHUNK_MAX
# a photo's chunk sent back while its report still waits for the gateway's ack: the
# gateway lacks the report (a broker lost it), so the report goes again — at most once in
# this many seconds, however many chunks come back meanwhile (the photo's chunks wait for
# its ack)
REPORT_AGAIN_S = 5.0
# after a reconnect to a broker that lost its store: the gateway's subscription went with
# it, and what arrives before the gateway has subscribed again is dropped — so each
# unacknowledged report goes now and this many times more, REPORT_AGAIN_S apart, before
# it falls back to resend_s
HURRY_AGAIN = 3
# the same for a photo whose chunks all left before such a reconnect: its last chunk goes
# again as a probe this many times, REPORT_AGAIN_S apart (one chunk each: cheap), as its
# first copy after the broker's restart is not answered (the gateway answers a repeat)
PROBE_AGAIN = 5


def parse_broker(url):
    """(host, port, tls) of ``mqtt://host[:port]`` or ``mqtts://host[:port]`` (the core's
    ``BrokerURL``; its error as a DeviceError)."""
    try:
        b = BrokerURL(url)
    except BrokerURLError as exc:
        raise DeviceError(f"broker URL {exc}") from None
    return b.host, b.port, b.tls


class Backoff:
    """Exponential backoff with full jitter: uniform(0, min(cap, base·2^n))."""

    def __init__(self, base=0.5, cap=30.0, rng=random.random):
        self.base, self.cap, self.rng, self.n = base, cap, rng, 0

    def next(self):
        ceiling = min(self.cap, self.base * (2 ** self.n))
        self.n += 1
        return max(0.05, ceiling * self.rng())

    def reset(self):
        self.n = 0


class Delivery:
    """The device's MQTT side.  ``kick()`` after storing something new."""

    def __init__(self, url, device, district, store, *, status_fn, on_task=None,
                 on_config=None, on_update=None, grace_until=None, tls_ca=None, tls_cert=None,
                 tls_key=None, keepalive=30, window=20, chunk_window=4, resend_s=30.0,
                 reconnect_max=30.0, shelf=None, media_rate=None, media_window=2,
                 on_cert=None, settle=None, on_chunk=None):
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.host, self.port, tls = parse_broker(url)
        self.device, self.district, self.store = device, district, store
        self.status_fn = status_fn
        self.on_task = on_task
        self.on_config = on_config
        self.on_update = on_update
        self.on_cert = on_cert
        self.on_chunk = on_chunk
        self.grace_until = grace_until or (lambda report_id: 0.0)
        self.settle = settle       # called in this thread before each round of sending
        self.keepalive, self.window, self.chunk_window = keepalive, window, chunk_window
        self.resend_s = resend_s
        self.connected = False
        self.ever_connected = False
        self._retarget = False
        self.backoff = Backoff(cap=reconnect_max)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._status_wanted = True
        self._last_state = None
        self._last_pump = 0.0
        self._just_lost = False
        self._backlog = 0
        self._sent = {}            # outbox seq → monotonic time first/last sent
        self._hurry = {}           # outbox seq → quick re-sends left (see HURRY_AGAIN)
        self._ids = {}             # report id → outbox seq (pending reports)
        self._inflight = {}        # mid → ("track", oseq) | ("chunk", report_id, n) | ...
        self._jobs = None          # report id → photo job dict (with "oseq")
        self._chunks_out = set()   # (report_id, n) published, waiting for PUBACK
        self.shelf, self.media_rate, self.media_window = shelf, media_rate, media_window
        self._media_out = set()    # (sha256, n) media chunks waiting for PUBACK
        self._media_done = {}      # sha256 → chunk numbers PUBACKed beyond the kept prefix
        self._media_tokens = float(CHUNK)
        self._media_at = time.monotonic()
        self._media_next = 0.0     # monotonic time the bucket next allows a chunk (0: now)
        self.counters = {"published": 0, "acked": 0, "duplicate": 0, "rejected": 0,
                         "reissued": 0, "unknown_acks": 0, "bad_messages": 0, "chunks": 0,
                         "track_confirmed": 0, "photos_confirmed": 0, "photo_probes": 0,
                         "stray_acks": 0,
                         "connects": 0, "photo_resends": 0, "media_chunks": 0,
                         "media_delivered": 0, "media_dropped": 0,
                         "media_resends": 0}
        self.topic = {leaf: topics.topic(district, device, leaf)
                      for leaf in ("report", "track", "status", "ack", "task", "task/result",
                                   "config", "update", "csr", "cert", "ota/get",
                                   "ota/chunk")}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device,
                        clean_session=False, protocol=mqtt.MQTTv311)
        c.max_inflight_messages_set(max(window, 20) + chunk_window + 4)
        c.max_queued_messages_set(0)
        c.will_set(self.topic["status"], messages.encode(messages.will_status(device)),
                   qos=1, retain=True)
        self.tls_context = None
        if tls or tls_ca or tls_cert:
            # a context of our own (what paho's tls_set makes), so that use_identity can
            # load another certificate into it
            self.tls_context = ssl.create_default_context(cafile=tls_ca)
            if tls_cert:
                self.tls_context.load_cert_chain(tls_cert, tls_key)
            c.tls_set_context(self.tls_context)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self.client = c
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)

    # -- public ------------------------------------------------------------------------

    def start(self):
        self._thread.start()
        return self

    def is_alive(self):
        """True while the network thread runs (it outlives a lost broker)."""
        return self._thread.is_alive()

    def kick(self):
        self._wake.set()

    def request_status(self):
        self._status_wanted = True
        self._wake.set()

    def state(self):
        """``online``: connected and every report that is due has gone out; ``buffering``:
        disconnected, or reports wait beyond the in-flight window."""
        if not self.connected:
            return "buffering"
        return "buffering" if self._backlog else "online"

    def switch(self, url):
        """Use the broker at ``url`` from now on (the same TLS setting and identity): the
        link is closed and opened there; what is pending goes out there."""
        host, port, _tls = parse_broker(url)
        self.host, self.port = host, port
        self._retarget = True
        log.info("MQTT: switching to %s:%d", host, port)
        self._wake.set()

    def use_identity(self, cert, key):
        """Present the certificate ``cert`` (with ``key``) from the next connection on, and
        reconnect now (a renewed certificate, already tried)."""
        if self.tls_context is None:
            raise DeviceError("this link does not use TLS: no certificate to change")
        self.tls_context.load_cert_chain(cert, key)
        self._retarget = True
        log.info("MQTT: reconnecting with a new certificate")
        self._wake.set()

    def send_csr(self, csr_pem):
        """Publish a certificate signing request (QoS 1); False when not connected."""
        if not self.connected:
            return False
        self.client.publish(self.topic["csr"], messages.encode(
            messages.make_csr(self.device, csr_pem)), qos=1)
        return True

    def ask_piece(self, request):
        """Publish a piece request on ``…/ota/get`` (QoS 0: a lost one is asked again);
        False when not connected."""
        if not self.connected:
            return False
        self.client.publish(self.topic["ota/get"], request, qos=0)
        return True

    def stop(self, timeout=5.0):
        """Publish the offline status, disconnect cleanly, end the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)

    # -- the network thread ----------------------------------------------------------------

    def _run(self):
        first = True
        while not self._stop.is_set():
            if self._retarget:           # switch(): close here, open at the new address
                self._retarget, first = False, True
                if self._socket_open():
                    self.client.disconnect()
                    self.client.loop(timeout=0.05)
            if not self._socket_open():
                try:
                    if first:
                        self.client.connect(self.host, self.port, keepalive=self.keepalive)
                        first = False
                    else:
                        self.client.reconnect()
                except (OSError, ValueError) as exc:
                    delay = self.backoff.next()
                    log.warning("MQTT: cannot reach %s:%d (%s); retry in %.1f s",
                                self.host, self.port, exc, delay)
                    self._stop.wait(delay)
                    continue
            rc = self.client.loop(timeout=0.05)
            if rc != self.mqtt.MQTT_ERR_SUCCESS:
                delay = self.backoff.next()
                if self.connected:
                    self._lost(f"loop: {self.mqtt.error_string(rc)}")
                elif self._just_lost:
                    self._just_lost = False
                else:
                    log.warning("MQTT: cannot reach %s:%d (the broker closed the link before "
                                "accepting it: %s; TLS certificate or identity?); retry in "
                                "%.1f s", self.host, self.port, self.mqtt.error_string(rc),
                                delay)
                self._stop.wait(delay)
                continue
            now = time.monotonic()
            media_due = 0 < self._media_next <= now
            if self.connected and (self._wake.is_set() or media_due
                                   or now - self._last_pump >= 1.0):
                self._wake.clear()
                self._last_pump = now
                try:
                    self._pump()
                    self.store.prune_delivered(now)
                except Exception:  # a bad record must not stop delivery of the others
                    log.exception("MQTT: publishing failed")
        self._goodbye()

    def _socket_open(self):
        return self.client.socket() is not None

    def _goodbye(self):
        if not self.connected:
            return
        try:
            info = self.client.publish(self.topic["status"], messages.encode(
                messages.will_status(self.device)), qos=1, retain=True)
            deadline = time.monotonic() + 3
            while not info.is_published() and time.monotonic() < deadline:
                self.client.loop(timeout=0.05)
            self.client.disconnect()
            self.client.loop(timeout=0.05)
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("MQTT: clean disconnect failed: %s", exc)
        self.connected = False

    # -- callbacks (called from the network thread) -------------------------------------

    def _on_connect(self, client, userdata, flags, reason, properties):
        if reason.is_failure:
            log.error("MQTT: broker %s:%d refused the connection: %s", self.host, self.port,
                      reason)
            return
        self.connected = True
        self.ever_connected = True
        self.counters["connects"] += 1
        self.backoff.reset()
        log.info("MQTT: connected to %s:%d (session present: %s)", self.host, self.port,
                 flags.session_present)
        wanted = [(self.topic["ack"], 1), (self.topic["task"], 1)]
        if self.on_config is not None:
            wanted.append((self.topic["config"], 1))
        if self.on_update is not None:
            wanted.append((self.topic["update"], 1))
        if self.on_cert is not None:
            wanted.append((self.topic["cert"], 1))
        if self.on_chunk is not None:
            wanted.append((self.topic["ota/chunk"], 0))
        client.subscribe(wanted)
        # paho itself sends again what it published on this client without a PUBACK
        # (same mid); reports still waiting for the gateway's ack go again after resend_s
        # — or now, when the broker kept no session of ours (see _session_lost)
        if not flags.session_present:
            self._session_lost()
        self._status_wanted = True
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties):
        if self._stop.is_set():
            self.connected = False
            log.info("MQTT: disconnected (status offline published)")
        elif self.connected:
            self._lost(str(reason))

    def _lost(self, why):
        self.connected = False
        self._just_lost = True
        log.warning("MQTT: connection lost (%s); buffering", why)

    def _on_publish(self, client, userdata, mid, reason, properties):
        what = self._inflight.pop(mid, None)
        if what is None:
            return
        if what[0] == "track":
            if not what[2]:            # an older build's batch (no seq): its PUBACK settles it
                self.store.ack(what[1])
                self._sent.pop(what[1], None)
        elif what[0] == "chunk":
            self._chunk_done(what[1], what[2])
        elif what[0] == "media":
            self._media_chunk_done(what[1], what[2], what[3])

    def _on_message(self, client, userdata, msg):
        try:
            if msg.topic == self.topic["ack"]:
                self._on_ack(messages.decode(msg.payload, messages.validate_received_ack,
                                             2048))
            elif msg.topic == self.topic["task"]:
                task = messages.decode(msg.payload, messages.validate_task, 4096)
                if self.on_task is not None:
                    self.on_task(task)
            elif msg.topic == self.topic["config"] and self.on_config is not None:
                self.on_config(msg.payload)          # signed: checked by the device
            elif msg.topic == self.topic["ota/chunk"] and self.on_chunk is not None:
                self.on_chunk(msg.payload)           # checked by its sha256 when whole
            elif msg.topic == self.topic["cert"] and self.on_cert is not None:
                self.on_cert(messages.decode(msg.payload, messages.validate_cert,
                                             messages.CERT_MAX_BYTES))
            elif msg.topic == self.topic["update"]:
                if not msg.payload:           # an offer withdrawn (rollout aborted)
                    log.info("MQTT: update offer withdrawn")
                    return
                offer = messages.decode(msg.payload, messages.validate_update,
                                        messages.UPDATE_MAX_BYTES)
                if self.on_update is not None:
                    self.on_update(offer)
        except messages.MessageError as exc:
            self.counters["bad_messages"] += 1
            log.error("MQTT: ignored a bad message on %s: %s", msg.topic, exc)

    def _on_ack(self, ack):
        if ack["status"] == messages.TRACK_STORED:
            self._track_stored(ack["seqs"])
            return
        if ack["status"] == messages.PHOTO_STORED:
            self._photo_stored(ack["id"], ack["sha256"])
            return
        if ack["status"] == messages.RESEND:
            if self.shelf is not None and self.shelf.holds(ack["sha256"]):
                self._resend_media(ack["id"], ack["sha256"], ack["chunks"], ack["reason"])
            else:
                self._resend_photo(ack["id"], ack["sha256"], ack["chunks"], ack["reason"])
                self._report_again(ack["id"])
            self._wake.set()
            return
        action = messages.ack_action(ack)
        dropped = []  # (id, outbox seq): settled together, one fsync for a grouped ack
        indexed = False  # the outbox is read again at most once an ack, not once an id
        for rid in messages.ack_ids(ack):
            if rid is None:
                log.error("MQTT: gateway could not read a report: %s", ack["reason"])
                continue
            oseq = self._ids.get(rid)
            if oseq is None and not indexed:
                self._index()
                indexed = True
                oseq = self._ids.get(rid)
            if oseq is None:
                log.debug("MQTT: ack for %s, already settled", rid)
            elif action == messages.DROP:
                dropped.append((rid, oseq))
            elif action == messages.REISSUE:
                self._reissue(rid, oseq, ack)
            elif action == messages.KEEP:
                self.counters["unknown_acks"] += 1
                log.error("report %s: the gateway answered %r (%s), which this device does "
                          "not know; the report is kept and sent again", rid, ack["status"],
                          ack["reason"])
            else:
                self.store.reject(oseq, ack["reason"] or "rejected")
                self.counters["rejected"] += 1
                log.error("report %s REJECTED by the gateway: %s (kept in outbox.rejected)",
                          rid, ack["reason"])
                self._forget(rid, oseq)
        if dropped:
            self.store.ack_many([oseq for _, oseq in dropped])
            self.store.acknowledged(max(_seq_of(rid) for rid, _ in dropped))
            for rid, oseq in dropped:
                self.counters["acked" if ack["status"] == "accepted" else "duplicate"] += 1
                log.info("report %s %s by the gateway", rid, ack["status"])
                self._forget(rid, oseq)
        self._wake.set()

    def _reissue(self, rid, oseq, ack):
        """The gateway did not store the report under this id: keep it, send it again
        under a fresh one (its photo follows under the new id)."""
        why = ack["status"] + (f": {ack['reason']}" if ack["reason"] else "")
        try:
            _old, new = self.store.reissue(oseq, why)
        except DeviceError as exc:
            log.error("%s", exc)
            return
        self.counters["reissued"] += 1
        self._forget(rid, oseq)
        log.error("report %s NOT stored by the gateway (%s); sent again as %s", rid, why,
                  new["id"])
        if self._jobs is None:
            self._load_jobs()
        job = self._jobs.pop(rid, None)
        if job is not None:
            self._chunks_out = {c for c in self._chunks_out if c[0] != rid}
            self.store.ack(job["oseq"])
        # The photo follows under the new id even when all its chunks had already left
        # under the old one: the gateway keeps no photo for a report it did not store.
        for photo in new["photos"]:
            sha = photo["sha256"]
            self.store.photo_wanted_again(sha)
            if os.path.exists(self.store.photo_path(sha)):
                self.add_photo_job(new["id"], sha, photo["bytes"])
            else:
                log.error("photo %s of %s is gone; it cannot follow the report under %s",
                          sha, rid, new["id"])
        self._status_wanted = True

    def _track_stored(self, seqs):
        """The gateway committed these track batches: drop them.  A seq of a batch settled
        already (a batch sent twice is confirmed twice) changes nothing; one that names
        another pending record (a report's) or a record never made changes nothing and
        is logged as a stray ack."""
        with self.store.lock:
            records = self.store.pending((REPORT, TASK_RESULT, TRACK, PHOTO))
            made = self.store.outbox.next_seq
        pending = {oseq for oseq, kind, p in records if kind == TRACK and _numbered(p)}
        others = {oseq for oseq, _k, _p in records} - pending
        mine = [n for n in seqs if n in pending]
        stray = [n for n in seqs if n in others or n >= made]
        if mine:
            self.store.ack_many(mine)
            for n in mine:
                self._sent.pop(n, None)
                self._hurry.pop(n, None)
            self.counters["track_confirmed"] += len(mine)
            log.info("track batches %s stored by the gateway", mine)
        if stray:
            self.counters["stray_acks"] += 1
            log.warning("MQTT: track_stored names %s, which are no pending track batch of "
                        "this device; nothing dropped for them", stray)

    def _photo_stored(self, rid, sha):
        """The gateway holds photo ``sha`` of report ``rid`` whole: its upload is over and
        the file is deleted ``photo_keep_s`` later.  An ack naming no upload of this
        device (settled already, another report, another photo) changes nothing."""
        if self._jobs is None:
            self._load_jobs()
        job = self._jobs.get(rid)
        if job is None:               # settled already (a repeat confirmed again), or
            log.debug("MQTT: photo_stored for %s, which has no upload here", rid)
            return                    # never ours: nothing to drop either way
        if job["sha256"] != sha:
            self.counters["stray_acks"] += 1
            log.warning("MQTT: photo_stored for photo %s of %s, which this device is not "
                        "uploading (that report's upload is of %s); nothing dropped for it",
                        sha[:16], rid, job["sha256"][:16])
            return
        self.store.ack(job["oseq"])
        del self._jobs[rid]
        self._chunks_out = {c for c in self._chunks_out if c[0] != rid}
        if all(j["sha256"] != sha for j in self._jobs.values()):
            self.store.photo_delivered(sha)
        self.counters["photos_confirmed"] += 1
        log.info("photo of %s stored by the gateway (%d bytes); deleted from the device in "
                 "%d s", rid, job["size"], self.store.photo_keep_s)
        self._wake.set()

    def _session_lost(self):
        """Connected, and the broker has no session of this device although it sent
        reports before: a broker that came back without its store, which lost the
        reports it held for the gateway too.  Every report still unacknowledged goes
        again at the next pump, not ``resend_s`` after it was sent — and, as the gateway
        may not have subscribed again yet, ``HURRY_AGAIN`` times more ``REPORT_AGAIN_S``
        apart."""
        pending = set(self._ids.values())
        pending.update(oseq for oseq, _k, p in self.store.pending((TRACK,)) if _numbered(p))
        due = time.monotonic() - self.resend_s
        again = [oseq for oseq in list(self._sent) if oseq in pending]
        for oseq in again:
            self._sent[oseq] = due
            self._hurry[oseq] = HURRY_AGAIN
        probes = 0
        for job in (self._jobs or {}).values():
            # the broker may have lost chunks of it: ask soon after the last has left
            job["hurry"] = PROBE_AGAIN
            if "sent_at" in job:       # every chunk left: ask the gateway now
                job["sent_at"] = due
                probes += 1
        if again or probes:
            log.warning("MQTT: the broker kept no session for this device (restarted "
                        "without its store?); sending the %d unconfirmed reports and track "
                        "batches again and asking after %d photos", len(again), probes)

    def _report_again(self, rid):
        """The gateway sent a photo's chunk back while its report is still unacknowledged
        here: it does not hold the report (a chunk is taken only after its report), which
        a broker that lost its store, or a window after its restart, can cause.  The report
        goes again now (``REPORT_AGAIN_S`` after it last went, if that is sooner), not
        ``resend_s`` later, and the photo's chunks wait for the report's ack — else every
        chunk would come back and be sent again, round and round, filling a slow link."""
        oseq = self._ids.get(rid)
        if oseq is None:
            self._index()
            oseq = self._ids.get(rid)
        sent = None if oseq is None else self._sent.get(oseq)
        if sent is None:
            return                     # settled, or not sent yet
        job = (self._jobs or {}).get(rid)
        if job is not None:
            job["after_report"] = True
        if time.monotonic() - sent < REPORT_AGAIN_S:
            self._hurry.setdefault(oseq, 0)   # just sent (again): once more when it is due
            return
        self._sent[oseq] = time.monotonic() - self.resend_s   # due at the next pump
        log.warning("report %s: the gateway does not have it (its photo's chunks come "
                    "back); sending it again now", rid)

    def _forget(self, rid, oseq):
        self._ids.pop(rid, None)
        self._sent.pop(oseq, None)
        self._hurry.pop(oseq, None)

    # -- publishing -----------------------------------------------------------------------

    def _index(self):
        ids = {}
        for oseq, _kind, payload in self.store.pending((REPORT, TASK_RESULT)):
            ids[_report_id(payload)] = oseq
        self._ids = ids

    def _pump(self):
        if self.settle is not None:
            self.settle()
        now = time.monotonic()
        reports = self.store.pending((REPORT, TASK_RESULT))
        self._ids = {_report_id(p): s for s, _k, p in reports}
        unacked = sum(1 for s, _k, _p in reports if s in self._sent)
        backlog = 0
        for oseq, kind, payload in reports:
            sent = self._sent.get(oseq)
            hurry = self._hurry.get(oseq)
            if sent is not None and now - sent < (self.resend_s if hurry is None
                                                  else REPORT_AGAIN_S):
                continue
            rid = _report_id(payload)
            if sent is None:
                urgent = self.store.is_urgent(oseq)
                if time.monotonic() < self.grace_until(rid) and not urgent:
                    break              # keep order: nothing overtakes a report in its grace
                if unacked >= self.window and not urgent:
                    backlog = sum(1 for s, _k, _p in reports if s not in self._sent)
                    break
                unacked += 1
            leaf = "task/result" if kind == TASK_RESULT else "report"
            self.client.publish(self.topic[leaf], payload, qos=1)
            self._sent[oseq] = now
            self.counters["published"] += 1
            if hurry is not None:      # one quick re-send spent; the last falls back
                if hurry > 0:
                    self._hurry[oseq] = hurry - 1
                else:
                    del self._hurry[oseq]
        for oseq, _kind, payload in self.store.pending((TRACK,)):
            numbered = _numbered(payload)
            sent = self._sent.get(oseq)
            if sent is not None:
                hurry = self._hurry.get(oseq)
                if not numbered or now - sent < (self.resend_s if hurry is None
                                                 else REPORT_AGAIN_S):
                    continue           # on its way, or waiting for the gateway's ack
                if hurry is not None:
                    if hurry > 0:
                        self._hurry[oseq] = hurry - 1
                    else:
                        del self._hurry[oseq]
            info = self.client.publish(self.topic["track"], payload, qos=1)
            self._inflight[info.mid] = ("track", oseq, numbered)
            self._sent[oseq] = now
        self._pump_photos(reports)
        self._pump_media(reports)
        self._backlog = backlog
        if self.state() != self._last_state or self._status_wanted:
            self._publish_status()

    def _publish_status(self):
        self._status_wanted = False
        state = self.state()
        try:
            status = messages.make_status(self.device, state, **self.status_fn())
        except messages.MessageError as exc:
            log.error("status not published: %s", exc)
            return
        self.client.publish(self.topic["status"], messages.encode(status), qos=1, retain=True)
        if state != self._last_state:
            log.info("status: %s", state)
        self._last_state = state

    # -- photos ---------------------------------------------------------------------------

    def _load_jobs(self):
        with self.store.lock:          # not between a photo swap's records (runtime)
            jobs = {}
            for oseq, _kind, payload in self.store.pending((PHOTO,)):
                job = json.loads(payload)
                job["oseq"] = oseq
                old = jobs.get(job["report"])
                if old is not None:
                    self.store.ack(old["oseq"])   # a newer progress record supersedes it
                jobs[job["report"]] = job
            self._jobs = jobs

    def add_photo_job(self, report_id, sha, size):
        """Called (under the store lock) right after the report naming the photo is stored."""
        job = {"report": report_id, "sha256": sha, "size": size, "done": []}
        oseq = self.store.append(PHOTO, json.dumps(job, separators=(",", ":")).encode())
        if self._jobs is not None:
            job["oseq"] = oseq
            self._jobs[report_id] = job
        self._wake.set()

    def replace_photo_job(self, report_id, sha, size):
        """The report (held back, not sent) was stored again naming another photo (its
        WebP): upload that one instead.  Called under the store lock."""
        old = [s for s, _k, p in self.store.pending((PHOTO,))
               if json.loads(p).get("report") == report_id]
        self.add_photo_job(report_id, sha, size)
        for oseq in old:
            self.store.ack(oseq)

    def _pump_photos(self, reports):
        if self._jobs is None:
            self._load_jobs()
        if not self._jobs:
            return
        waiting = {_report_id(p) for s, _k, p in reports if s not in self._sent}
        now = time.monotonic()
        for rid, job in list(self._jobs.items()):
            if rid in waiting:
                continue             # the report goes first
            if job.get("after_report") and rid in self._ids:
                continue             # the gateway lacks its report: it goes after its ack
            of = messages.photo_chunk_count(job["size"], CHUNK)
            path = self.store.photo_path(job["sha256"])
            if len(job["done"]) >= of:
                self._probe_photo(rid, job, of, path, now)
                continue
            for n in range(of):
                if len(self._chunks_out) >= self.chunk_window:
                    return
                if n in job["done"] or (rid, n) in self._chunks_out:
                    continue
                try:
                    with open(path, "rb") as f:
                        f.seek(n * CHUNK)
                        data = f.read(CHUNK)
                except OSError as exc:
                    log.error("photo %s of %s is gone (%s); its upload is dropped",
                              job["sha256"], rid, exc)
                    self.store.ack(job["oseq"])
                    del self._jobs[rid]
                    break
                payload = messages.make_photo_chunk(job["sha256"], n, of, job["size"], data,
                                                    hashlib.sha256(data).hexdigest())
                info = self.client.publish(
                    topics.photo_topic(self.district, self.device, rid, n), payload, qos=1)
                self._inflight[info.mid] = ("chunk", rid, n)
                self._chunks_out.add((rid, n))
                self.counters["chunks"] += 1

    def _probe_photo(self, rid, job, of, path, now):
        """Every chunk of the photo left and the gateway has not said ``photo_stored``:
        after ``resend_s`` (at once when loaded at start-up; ``REPORT_AGAIN_S`` after a
        broker that lost its store) send its last chunk again, which the gateway answers
        with ``photo_stored`` or a ``resend`` of what it lacks."""
        sent_at = job.setdefault("sent_at", now - self.resend_s)
        hurry = job.get("hurry")
        if now - sent_at < (self.resend_s if hurry is None else REPORT_AGAIN_S):
            return
        n = of - 1
        if len(self._chunks_out) >= self.chunk_window or (rid, n) in self._chunks_out:
            return
        try:
            with open(path, "rb") as f:
                f.seek(n * CHUNK)
                data = f.read(CHUNK)
        except OSError as exc:
            log.error("photo %s of %s is gone (%s); its upload is dropped", job["sha256"],
                      rid, exc)
            self.store.ack(job["oseq"])
            del self._jobs[rid]
            return
        payload = messages.make_photo_chunk(job["sha256"], n, of, job["size"], data,
                                            hashlib.sha256(data).hexdigest())
        info = self.client.publish(topics.photo_topic(self.district, self.device, rid, n),
                                   payload, qos=1)
        self._inflight[info.mid] = ("chunk", rid, n)
        self._chunks_out.add((rid, n))
        job["sent_at"] = now
        if hurry is not None:
            if hurry > 0:
                job["hurry"] = hurry - 1
            else:
                del job["hurry"]
        self.counters["photo_probes"] += 1
        log.info("photo of %s: no photo_stored from the gateway yet; its last chunk goes "
                 "again to ask", rid)

    def _resend_photo(self, rid, sha, chunks, reason):
        """The gateway discarded chunks of a photo: mark them (None: all) not done, so the
        pump sends them again — re-opening the upload if it had finished."""
        if self._jobs is None:
            self._load_jobs()
        job = self._jobs.get(rid)
        if job is not None and job["sha256"] != sha:
            log.error("gateway asks for photo %s of %s again, but that report's upload is "
                      "of %s", sha, rid, job["sha256"])
            return
        self.store.photo_wanted_again(sha)
        if job is None:
            path = self.store.photo_path(sha)
            try:
                size = os.stat(path).st_size
            except OSError:
                log.error("gateway asks for photo %s of %s again (%s), but it is gone",
                          sha, rid, reason)
                return
            self.add_photo_job(rid, sha, size)
            job = self._jobs[rid]
            job["done"] = list(range(messages.photo_chunk_count(size, CHUNK)))
        if chunks is None and not _file_hashes_to(self.store.photo_path(sha), sha):
            # sending it again would fail again: the photo file itself is damaged
            log.error("photo %s of %s: the gateway asks for it again (%s) but the file no "
                      "longer hashes to it; its upload is dropped", sha, rid, reason)
            self.store.ack(job["oseq"])
            del self._jobs[rid]
            return
        again = set(range(messages.photo_chunk_count(job["size"], CHUNK)) if chunks is None
                    else chunks)
        job["done"] = [n for n in job["done"] if n not in again]
        job.pop("sent_at", None)
        old = job["oseq"]
        record = {k: job[k] for k in ("report", "sha256", "size", "done")}
        job["oseq"] = self.store.append(PHOTO, json.dumps(record, separators=(",", ":")).encode())
        self.store.ack(old)
        self.counters["photo_resends"] += 1
        log.warning("photo %s of %s: the gateway asks again for %s (%s)", sha, rid,
                    "every chunk" if chunks is None else f"chunks {sorted(again)}", reason)

    def _chunk_done(self, rid, n):
        self._chunks_out.discard((rid, n))
        self._wake.set()             # a chunk slot is free: refill it now, not next second
        job = (self._jobs or {}).get(rid)
        if job is None or n in job["done"]:
            return
        job["done"] = sorted({*job["done"], n})
        old = job["oseq"]
        if len(job["done"]) >= messages.photo_chunk_count(job["size"], CHUNK):
            # kept (file and record) until the gateway's photo_stored; probed meanwhile
            job["sent_at"] = time.monotonic()
            log.info("photo of %s sent (%d bytes); waiting for the gateway to store it",
                     rid, job["size"])
        record = {k: job[k] for k in ("report", "sha256", "size", "done")}
        job["oseq"] = self.store.append(PHOTO, json.dumps(record, separators=(",", ":")).encode())
        self.store.ack(old)

    # -- clips and memos: the lower-priority lane -------------------------------------------

    def _note_dropped(self):
        for entry in self.shelf.take_dropped():
            self.store.count_problem("media_dropped")
            self.counters["media_dropped"] += 1
            self._status_wanted = True
            log.error("%s %s of report %s (%d bytes) DROPPED undelivered: %s", entry["kind"],
                      entry["sha256"][:16], entry["report"], entry["bytes"], entry["reason"])

    def _media_allows(self, nbytes, now):
        """The token bucket: True (and the bytes taken) when ``nbytes`` may go now."""
        if not self.media_rate:
            return True
        burst = max(float(CHUNK), float(self.media_rate))
        self._media_tokens = min(burst, self._media_tokens
                                 + (now - self._media_at) * self.media_rate)
        self._media_at = now
        if self._media_tokens < nbytes:
            self._media_next = now + (nbytes - self._media_tokens) / self.media_rate
            return False
        self._media_tokens -= nbytes
        self._media_next = 0.0
        return True

    def _pump_media(self, reports):
        if self.shelf is None:
            return
        self._note_dropped()
        self.shelf.prune_sent(self.store.photo_keep_s)
        self._media_next = 0.0       # set again below if the bucket holds a chunk back
        if any(len(j["done"]) < messages.photo_chunk_count(j["size"], CHUNK)
               for j in (self._jobs or {}).values()) or any(
                s not in self._sent for s, _k, _p in reports):
            return                   # photo chunks and unsent reports go first
        for entry in self.shelf.pending():
            sha, rid = entry["sha256"], entry["report"]
            if rid is None:
                self.shelf.drop(sha, "no report named (adopted at start-up)")
                continue
            if rid in self._ids:
                continue             # its report is not acknowledged yet
            if self._send_media(entry) is False:
                return               # window full or bandwidth used: later

    def _send_media(self, entry):
        """Publish the next chunks of one file; False when the window or the bucket stops
        it (so the files behind it wait too)."""
        sha, rid, size = entry["sha256"], entry["report"], entry["bytes"]
        of = messages.photo_chunk_count(size, CHUNK)
        done = self._media_done.setdefault(sha, set())
        for n in range(entry["done"], of):
            if n in done or (sha, n) in self._media_out:
                continue
            if len(self._media_out) >= self.media_window:
                return False
            length = min(CHUNK, size - n * CHUNK)
            if not self._media_allows(length, time.monotonic()):
                return False
            try:
                with open(self.shelf.path(sha), "rb") as f:
                    f.seek(n * CHUNK)
                    data = f.read(CHUNK)
            except (OSError, KeyError) as exc:
                self.shelf.drop(sha, f"file unreadable: {exc}")
                self._media_done.pop(sha, None)
                return None
            payload = messages.make_media_chunk(entry["kind"], sha, n, of, size, data,
                                                hashlib.sha256(data).hexdigest())
            info = self.client.publish(topics.media_topic(self.district, self.device, rid, n),
                                       payload, qos=1)
            self._inflight[info.mid] = ("media", sha, n, of)
            self._media_out.add((sha, n))
            self.counters["media_chunks"] += 1
        return None

    def _media_chunk_done(self, sha, n, of):
        self._media_out.discard((sha, n))
        self._wake.set()
        done = self._media_done.setdefault(sha, set())
        done.add(n)
        entry = next((e for e in self.shelf.pending() if e["sha256"] == sha), None)
        if entry is None:
            return
        prefix = entry["done"]
        while prefix in done:
            done.discard(prefix)
            prefix += 1
        if prefix >= of:
            self.shelf.sent(sha)
            self._media_done.pop(sha, None)
            self.counters["media_delivered"] += 1
            log.info("%s of %s delivered (%d bytes); deleted from the device in %d s",
                     entry["kind"], entry["report"], entry["bytes"], self.store.photo_keep_s)
        elif prefix > entry["done"]:
            self.shelf.progress(sha, prefix)

    def _resend_media(self, rid, sha, chunks, reason):
        """The gateway discarded chunks of a clip or memo: send them (None: all) again,
        unless the file itself no longer hashes to its name (then it is dropped)."""
        if chunks is None and not _file_hashes_to(self.shelf.path(sha), sha):
            self.shelf.drop(sha, f"the gateway asks for it again ({reason}) but the file no "
                                 "longer hashes to it")
            self._media_done.pop(sha, None)
            return
        first = 0 if chunks is None else min(chunks)
        self.shelf.again(sha, first)
        done = self._media_done.get(sha, set())
        if chunks is None:
            done.clear()
        else:
            done.difference_update(chunks)
        self.counters["media_resends"] += 1
        log.warning("%s of %s: the gateway asks again for %s (%s)", sha[:16], rid,
                    "every chunk" if chunks is None else f"chunks {sorted(chunks)}", reason)


def _file_hashes_to(path, sha):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(65536), b""):
                h.update(block)
    except OSError:
        return False
    return h.hexdigest() == sha


def _numbered(track_payload):
    """True for a track batch that carries its ``seq`` (so waits for ``track_stored``)."""
    return "seq" in json.loads(track_payload)


def _report_id(payload):
    return json.loads(payload)["id"]


def _seq_of(report_id):
    return int(report_id.rpartition(":")[2])


def trial_connect(url, device, tls_files=(None, None, None), timeout=10.0):
    """None when the broker at ``url`` accepts this device (TLS with its identity, MQTT
    CONNACK 0), else why not, in a line.  The session is not cleaned and no will is left:
    trying the broker the device already uses at most makes it reconnect."""
    import paho.mqtt.client as mqtt

    try:
        host, port, tls = parse_broker(url)
    except Exception as exc:  # the core's BrokerURLError: the URL itself
        return str(exc)
    answer = threading.Event()
    result = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, clean_session=False,
                    protocol=mqtt.MQTTv311)
    ca, cert, key = tls_files
    try:
        if tls or ca or cert:
            c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)

        def on_connect(_c, _u, _flags, reason, _props=None):
            result["reason"] = reason
            answer.set()

        c.on_connect = on_connect
        c.connect(host, port, keepalive=int(timeout) + 5)
        deadline = time.monotonic() + timeout
        while not answer.is_set() and time.monotonic() < deadline:
            if c.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                return (f"{host}:{port} closed the connection before accepting it (TLS "
                        "or identity?)")
    except (OSError, ValueError) as exc:
        return f"{host}:{port}: {exc}"
    finally:
        c.disconnect()       # a no-op on a link that never opened
    if not answer.is_set():
        return f"{host}:{port} did not answer within {timeout:.0f} s"
    if result["reason"].is_failure:
        return f"{host}:{port} refused this device: {result['reason']}"
    return None
