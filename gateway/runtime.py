"""The running gateway: broker → judge → group commit → PUBACK → device ack.

Threads: the broker link's (``link.py``) receives (``_on_message`` only queues); one
writer thread judges each message as it takes it, batches them (≤ ``batch_max`` messages
or ``batch_age`` seconds after the first), commits each batch in one transaction and only
then acknowledges its messages to the broker (``link.ack``) and publishes the devices'
acks (a device's reports of one batch answered together: ``ingest.device_acks``).  An
urgent report (its payload says ``"urgent":true``, as a device encodes it) skips the
queue: the writer ends the batch it is collecting and commits the urgent ones next, in a
batch of their own, ahead of everything still queued.  The
broker never has more than ``pending_max`` unacknowledged messages out to this worker
(MQTT 5 Receive Maximum), so the queue is bounded.  A commit failure (database gone,
locked, its disk full) is retried with back-off and nothing is acknowledged meanwhile: the
broker keeps the messages in the session.  The first failure of a run is logged as "intake
store unavailable" and ``gridlink_gateway_store_up`` drops to 0; the first commit after it
logs "intake store back after N s" and sets it to 1 again.

The transport is chosen by the broker URL (the one seam): ``link.BrokerLink`` for
``mqtt://``/``mqtts://`` (Mosquitto), ``jetstream.link.JetStreamLink`` for ``nats://``
(a NATS JetStream cluster: a durable consumer shared by all workers instead of an MQTT
shared subscription).  Both take the same callbacks and give the same ``ack``/``publish``/
``flush``/``stop``; everything in this module is the same for both.

Hooks for the intake board: ``runtime.publish(topic, payload, qos=1)`` sends to devices
(tasks), and every callable in ``runtime.on_report`` is called after each commit with the
list of committed report rows (dicts with the ``reports`` columns).
"""

import collections
import contextlib
import logging
import queue
import threading
import time
from collections import Counter

from gridlink.firmware.core.brokerurl import BrokerURL, BrokerURLError
from gridlink.firmware.core.messages import ACK_IDS_MAX

from . import topics, wire
from .errors import ConfigError
from .ingest import ACCEPTED, REJECTED, REUSED, Ingest, Item, device_acks
from .jetstream import is_nats_url
from .link import BrokerLink
from .media_ingest import expire_media
from .metrics import Metrics
from .photos import UNFINISHED_MAX_AGE_S, expire_unfinished
from .tls import client_context

log = logging.getLogger("gridlink.gateway")

_STOP = object()
_NUDGE = object()  # an urgent message is waiting in the urgent lane
_URGENT_MARK = b'"urgent":true'
_REPORT_LEAVES = ("/report", "/task/result")
# outgoing QoS 1 (device acks, tasks) in flight at most; never above the broker's Receive
# Maximum, which the link adopts on connect
SEND_WINDOW = 100


class GatewayRuntime:
    def __init__(self, *, broker_url, store, validator, photo_dir, client_id="gridlink-gateway",
                 shared=True, status="plain", batch_max=500, batch_age=0.005,
                 pending_max=1000, tls=None, metrics=None, ack_qos=1, ack_ids_max=ACK_IDS_MAX,
                 session_expiry=7 * 86400, stop_timeout=10.0, sweep_interval=600.0,
                 media_store=None, update_requests=None, cert_requests=None):
        self.broker_url = broker_url
        self.broker = None  # the parsed MQTT URL; a NATS URL is read by its link
        if not is_nats_url(broker_url):  # a bad URL is refused before anything starts
            try:
                self.broker = BrokerURL(broker_url)
            except BrokerURLError as exc:
                raise ConfigError(f"broker URL {exc}") from None
        self.store = store
        self.validator = validator
        self.ingest = Ingest(store, photo_dir, media_store)
        self.client_id = client_id
        self.shared = shared
        self.status = status
        self.batch_max = batch_max
        self.batch_age = batch_age
        self.ack_qos = ack_qos
        self.ack_ids_max = ack_ids_max  # report ids in one device ack (1: one ack a report)
        self.stop_timeout = stop_timeout
        self.sweep_interval = sweep_interval  # seconds between photo sweeps
        self.metrics = metrics or Metrics()
        self.on_report = []
        self.on_commit = []  # called with the batch's Items (tests, benchmarks)
        # a sensor node's requests for pieces of a release (…/ota/get, QoS 0): handed to
        # ``update_requests(topic, payload)`` (an ``update_chunks.ChunkServer``'s submit),
        # never stored
        self.update_requests = update_requests
        # a device's certificate signing requests (…/csr): handed to
        # ``cert_requests(topic, payload)`` (a ``renewal.Renewals``'s submit), never stored
        self.cert_requests = cert_requests
        self._queue = queue.SimpleQueue()
        self._urgent = collections.deque()  # urgent reports, ahead of the queue
        self._receiving = True
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._writer = None
        self._last_message = time.monotonic()
        self._end_session = False
        self._store_down_since = None  # monotonic time of the first failed commit of a run
        self._store_failures = 0
        # received and finished (committed, or left unacknowledged at a stop) so far: the
        # queue-depth gauge is their difference, read when scraped (a locked gauge update
        # per message cost the link's thread ~4% at a backlog drain)
        self._received = 0
        self._finished = 0
        self.metrics.queue_depth.set_function(self.queue_depth)
        callbacks = {"on_message": self._on_message, "on_connect": self._on_connect,
                     "on_subscribed": self._on_subscribed, "on_disconnect": self._on_disconnect}
        if self.broker is None:  # the transport seam: a NATS JetStream cluster
            from .jetstream.link import JetStreamLink

            self.link = JetStreamLink(
                broker_url, client_id, tls_context=tls.context() if tls else None,
                pending_max=pending_max, send_window=SEND_WINDOW,
                update_requests=update_requests is not None,
                cert_requests=cert_requests is not None, **callbacks)
        else:
            self.link = BrokerLink(
                client_id, self.broker.host, self.broker.port,
                subscriptions=[(t, 1) for t in topics.subscriptions(shared, status)]
                + ([(topics.update_request_subscription(shared), 0)]
                   if update_requests is not None else [])
                + ([(topics.cert_request_subscription(shared), 1)]
                   if cert_requests is not None else []),
                tls_context=client_context(self.broker, tls), username=self.broker.username,
                password=self.broker.password, keepalive=30, session_expiry=session_expiry,
                receive_maximum=pending_max, send_window=SEND_WINDOW, **callbacks)
        self.metrics.devices_online.set_function(self._devices_online)

    # -- public ------------------------------------------------------------------------

    def start(self, wait=True, timeout=10.0):
        """Connect and start receiving; with ``wait``, return once subscribed (or warn)."""
        self._writer = threading.Thread(target=self._write_loop, name="gateway-writer",
                                        daemon=True)
        self._writer.start()
        threading.Thread(target=self._sweep_loop, name="gateway-sweeper", daemon=True).start()
        self.link.start()
        if wait and not self.wait_ready(timeout):
            log.warning("broker %s not reachable yet; retrying in the background",
                        self.broker_url)
        return self

    def wait_ready(self, timeout=10.0):
        """True once connected and subscribed (the broker now keeps messages for us)."""
        return self._subscribed.wait(timeout)

    def publish(self, topic, payload, qos=1, retain=False):
        """Send a message to devices (tasks); QoS 1 survives reconnects."""
        self.link.publish(topic, payload, qos=qos, retain=retain)

    def stop(self):
        """Graceful stop: commit and acknowledge what is queued, leave the rest unacked.

        Messages arriving after this call are neither committed nor acknowledged: the
        broker redelivers them to the next session.  If the store stays unavailable past
        ``stop_timeout``, the queued batch is left unacknowledged too.
        """
        if self._stopping.is_set():
            return
        self._receiving = False
        self._stopping.set()
        self._queue.put(_STOP)
        if self._writer is not None:
            self._writer.join(self.stop_timeout + 5)
        if self.link.connected.is_set():
            self.link.flush(2.0)  # device acks and tasks on their way
        self.link.stop(session_expiry=0 if self._end_session else None)
        self.metrics.connected.set(0)

    def retire(self, idle=2.0, timeout=600.0):
        """Empty this worker's session for good (scaling down a shared subscription).

        A stopped worker's persistent session stays in the ``$share`` group, and the
        broker keeps handing it its share of the messages.  ``retire`` takes what is
        queued for the session, commits it, and once nothing has arrived for ``idle``
        seconds unsubscribes and disconnects with session expiry 0: the broker forgets
        the session and the remaining workers get everything.  Returns True when idle
        was reached within ``timeout``.
        """
        if not self.wait_ready(30):
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() - self._last_message < idle or self.queue_depth():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        self.link.unsubscribe(topics.subscriptions(self.shared, self.status))
        self._end_session = True
        self.stop()
        return True

    def queue_depth(self):
        """Messages received but not yet committed (never acknowledged to the broker)."""
        return self._received - self._finished

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def connected(self):
        return self.link.connected.is_set()

    # -- link callbacks (the link's thread) --------------------------------------------

    def _on_connect(self, session_present):
        self.metrics.connected.set(1)
        log.info("connected to %s as %s (session present: %s)", self.broker_url,
                 self.client_id, session_present)

    def _on_subscribed(self, reasons):
        refused = [wire.reason_text(r) for r in reasons if r >= 0x80]
        if refused:
            log.error("broker refused subscriptions: %s", ", ".join(refused))
            return
        log.info("subscribed", extra={"client_id": self.client_id})
        self._subscribed.set()

    def _on_disconnect(self, reason):
        self._subscribed.clear()
        self.metrics.connected.set(0)
        if not self._stopping.is_set():
            log.warning("broker connection lost (%s); reconnecting", reason)

    def _on_message(self, topic, payload, mid, qos, user, generation):
        if not self._receiving:
            return  # not acked: redelivered to the next session
        if self.update_requests is not None and topic.endswith(topics.UPDATE_REQUEST_LEAF):
            self.update_requests(topic, payload)  # QoS 0: nothing to acknowledge
            return
        if self.cert_requests is not None and topic.endswith(topics.CERT_REQUEST_LEAF):
            self.cert_requests(topic, payload)    # queued there; a lost one is asked again
            if qos:
                self.link.ack([mid], generation)
            return
        sent_at = None
        for k, v in user:
            if k == "sent_at":
                with contextlib.suppress(ValueError):
                    sent_at = float(v)
        self._last_message = time.monotonic()
        message = (topic, payload, time.time(), mid, qos, generation, sent_at)
        if is_urgent_message(topic, payload):
            self._urgent.append(message)
            self._queue.put(_NUDGE)
        else:
            self._queue.put(message)
        self._received += 1  # this thread alone writes it

    # -- writer thread -----------------------------------------------------------------

    def _collect(self):
        """The next batch, judged: each message is judged as it is taken off the queue,
        while the batch is still open, so a closed batch only waits for its commit.  The
        urgent lane's messages make a batch of their own, taken before the queue."""
        judge = self._judge
        while True:
            if self._urgent:
                batch = []
                while self._urgent and len(batch) < self.batch_max:
                    batch.append(judge(self._urgent.popleft()))
                return batch
            first = self._queue.get()
            if first is _STOP:
                return None
            if first is not _NUDGE:
                break
        batch = [judge(first)]
        deadline = time.monotonic() + self.batch_age
        get = self._queue.get
        while len(batch) < self.batch_max:
            remaining = deadline - time.monotonic()
            try:
                m = get(timeout=remaining) if remaining > 0 else get(block=False)
            except queue.Empty:
                break
            if m is _STOP:
                self._queue.put(_STOP)
                break
            if m is _NUDGE:
                break  # an urgent report waits: commit this batch now, it goes next
            batch.append(judge(m))
        return batch

    def _judge(self, message):
        topic, payload, received, mid, qos, gen, sent_at = message
        return Item(topic, payload, received,
                    self.validator.decode(topic, payload, received, sent_at), mid, qos, gen)

    def _write_loop(self):
        while True:
            items = self._collect()
            if items is None:
                return
            committed = self._commit_with_retry(items)
            self._finished += len(items)  # this thread alone writes it
            if committed is None:
                return  # stopping with the store down: leave the batch unacked
            try:
                self._after_commit(items, committed)
            except Exception:  # the batch is committed; unacked ones come back as duplicates
                log.exception("after-commit work failed for a batch of %d", len(items))

    def _commit_with_retry(self, items):
        delay = 0.05
        give_up = None
        while True:
            t0 = time.monotonic()
            try:
                committed = self.ingest.commit(items)
            except Exception as exc:
                self.metrics.commit_failures.inc()
                self._store_failed(exc)
                log.error("commit of %d messages failed (nothing acknowledged; retrying in "
                          "%.2fs): %s", len(items), delay, exc)
                if self._stopping.is_set():
                    give_up = give_up or time.monotonic() + self.stop_timeout
                    if time.monotonic() > give_up:
                        log.error("stopping with %d messages uncommitted and unacknowledged",
                                  len(items))
                        return None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.metrics.commit_seconds.observe(time.monotonic() - t0)
            self._store_back()
            return committed

    def _store_failed(self, exc):
        """A commit failed: on the first of a run, say once that the store is down."""
        if self._store_down_since is None:
            self._store_down_since = time.monotonic()
            self._store_failures = 0
            self.metrics.store_up.set(0)
            log.error("intake store unavailable: %s; nothing is acknowledged to the broker "
                      "or the devices until it is back (they keep the reports)", exc,
                      extra={"store": "down"})
        self._store_failures += 1

    def _store_back(self):
        if self._store_down_since is not None:
            log.warning("intake store back after %.1f s (%d failed commits); acknowledging "
                        "again", time.monotonic() - self._store_down_since,
                        self._store_failures, extra={"store": "up"})
            self._store_down_since = None
        self.metrics.store_up.set(1)

    def _after_commit(self, items, committed):
        now = time.time()
        m = self.metrics
        m.batch_size.observe(len(items))
        by_generation = {}
        for it in items:
            if it.qos:
                by_generation.setdefault(it.token, []).append(it.mid)
        for generation, mids in by_generation.items():
            self.link.ack(mids, generation)  # dropped if that connection is gone
        tally = Counter()
        latencies = []
        for it in items:
            v = it.verdict
            tally[v.kind, it.outcome] += 1
            if it.outcome == ACCEPTED and v.kind in ("report", "task/result"):
                t = v.sent_at if v.sent_at is not None else _epoch(v.data["captured_at"])
                if t is not None:
                    latencies.append(max(0.0, now - t))
            if it.outcome in (REJECTED, REUSED):
                m.rejects.labels(REUSED if it.outcome == REUSED else v.category or "photo").inc()
                log.warning("rejected %s: %s", it.topic, it.reason)
        m.latency.observe_many(latencies)
        acks = [(topics.ack_topic(district, device), body)
                for district, device, body in device_acks(items, self.ack_ids_max)]
        resends = sum(1 for it in items if it.resend is not None)
        if resends:
            m.photo_resends.inc(resends)
        if self.ack_qos:
            self.link.publish_many(acks)
        else:
            for t, body in acks:
                self.link.publish(t, body, qos=0)
        for (kind, outcome), n in tally.items():
            m.messages.labels(kind, outcome).inc(n)
            if kind in ("report", "task/result"):
                m.reports.labels(outcome).inc(n)
        for hook in self.on_commit:
            _call(hook, items)
        if committed:
            for hook in self.on_report:
                _call(hook, committed)

    def _sweep_loop(self):
        """Drop unfinished photo and media transfers that stopped
        (``photos.expire_unfinished``, ``media_ingest.expire_media``), every
        ``sweep_interval`` seconds while running."""
        while not self._stopping.wait(self.sweep_interval):
            self.sweep()

    def sweep(self, now=None):
        """One sweep now; returns how many photo transfers were dropped."""
        try:
            dropped = expire_unfinished(self.store, time.time() if now is None else now)
            waiting = self.store.fetchall("SELECT COALESCE(SUM(bytes), 0) AS n FROM photo_parts")
        except Exception:
            log.exception("photo sweep failed")
            return 0
        self.metrics.photos_expired.inc(dropped)
        self.metrics.photo_bytes_waiting.set(waiting[0]["n"])
        if dropped:
            log.warning("dropped %d unfinished photo transfers", dropped)
        if self.ingest.media_store is not None:
            try:
                stale = expire_media(self.store, time.time() if now is None else now)
                held = self.store.fetchall("SELECT COALESCE(SUM(bytes), 0) AS n "
                                           "FROM media_parts")
                self.metrics.media_bytes_waiting.set(held[0]["n"])
            except Exception:
                log.exception("media sweep failed")
                stale = []
            self.metrics.media_expired.inc(len(stale))
            for sha, device, n in stale:
                log.warning("dropped the unfinished media transfer %s… of %s (%d chunks; no "
                            "chunk for %d days)", sha[:16], device, n,
                            UNFINISHED_MAX_AGE_S // 86400)
        return dropped

    def _devices_online(self):
        try:
            rows = self.store.fetchall("SELECT COUNT(*) AS n FROM devices "
                                       "WHERE state IN ('online', 'buffering')")
            return rows[0]["n"]
        except Exception:
            return float("nan")


_midnights = {}  # "YYYY-MM-DD" → Unix seconds of that UTC midnight


def _epoch(iso):
    """Unix seconds of a validated report time (``YYYY-MM-DDTHH:MM:SS.mmmZ``), the day's
    midnight computed once; any other form goes to the general parser."""
    try:
        day = _midnights.get(iso[:10])
        if day is None:
            import calendar

            day = calendar.timegm((int(iso[:4]), int(iso[5:7]), int(iso[8:10]), 0, 0, 0))
            if len(_midnights) > 64:
                _midnights.clear()
            _midnights[iso[:10]] = day
        return (day + int(iso[11:13]) * 3600 + int(iso[14:16]) * 60 + int(iso[17:19])
                + int(iso[20:23]) / 1000)
    except (TypeError, ValueError):
        from .clock import epoch_from_iso

        return epoch_from_iso(iso)


def is_urgent_message(topic, payload):
    """Whether a message goes in the urgent lane: a report or task result whose payload
    holds ``"urgent":true`` as devices encode it (canonical JSON).  Only the order of
    commits depends on it; the validator judges the field."""
    return (isinstance(payload, bytes | bytearray) and isinstance(topic, str)
            and topic.endswith(_REPORT_LEAVES)
            and _URGENT_MARK in payload)


def _call(hook, arg):
    try:
        hook(arg)
    except Exception:
        log.exception("on_report/on_commit hook %r failed", hook)
