"""The running gateway: broker → judge → group commit → PUBACK → device ack.

Threads: paho's network loop receives (``on_message`` only queues); one writer thread
takes batches (≤ ``batch_max`` messages or ``batch_age`` seconds after the first), judges
them, commits them in one transaction and only then acknowledges them to the broker
(paho ``manual_ack``) and publishes the devices' acks.  The broker never has more than
``pending_max`` unacknowledged messages out to this worker (MQTT 5 Receive Maximum), so
the queue is bounded.  A commit failure (database gone, locked) is retried with back-off
and nothing is acknowledged meanwhile: the broker keeps the messages in the session.

Hooks for the intake board: ``runtime.publish(topic, payload, qos=1)`` sends to devices
(tasks), and every callable in ``runtime.on_report`` is called after each commit with the
list of committed report rows (dicts with the ``reports`` columns).
"""

import contextlib
import logging
import queue
import threading
import time
from collections import Counter

from . import topics
from .ingest import ACCEPTED, REJECTED, Ingest, Item
from .metrics import Metrics
from .mqtt import BrokerURL, connect_properties, make_client

log = logging.getLogger("gridlink.gateway")

_STOP = object()


class GatewayRuntime:
    def __init__(self, *, broker_url, store, validator, photo_dir, client_id="gridlink-gateway",
                 shared=True, status="plain", batch_max=500, batch_age=0.005,
                 pending_max=1000, tls=None, metrics=None, ack_qos=1,
                 session_expiry=7 * 86400, stop_timeout=10.0):
        self.broker = BrokerURL(broker_url)
        self.store = store
        self.validator = validator
        self.ingest = Ingest(store, photo_dir)
        self.client_id = client_id
        self.shared = shared
        self.status = status
        self.batch_max = batch_max
        self.batch_age = batch_age
        self.pending_max = pending_max
        self.ack_qos = ack_qos
        self.session_expiry = session_expiry
        self.stop_timeout = stop_timeout
        self.metrics = metrics or Metrics()
        self.on_report = []
        self.on_commit = []  # called with the batch's Items (tests, benchmarks)
        self._queue = queue.SimpleQueue()
        self._gen = 0  # connection generation: a mid is only valid in its own connection
        self._ack_lock = threading.Lock()
        self._receiving = True
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._writer = None
        self._last_publish = None
        self._last_message = time.monotonic()
        self._end_session = False
        self.committed_batches = 0
        self.client = make_client(client_id, tls=tls, broker=self.broker)
        # Outgoing QoS 1 (device acks, tasks) in flight: small, because paho rescans its
        # in-flight list on every PUBACK, and never above the broker's Receive Maximum
        # (adopted on connect: a client must never have more in flight than that).
        self.send_window = 100
        self.client.max_inflight_messages_set(self.send_window)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.metrics.devices_online.set_function(self._devices_online)

    # -- public ------------------------------------------------------------------------

    def start(self, wait=True, timeout=10.0):
        """Connect and start receiving; with ``wait``, return once subscribed (or warn)."""
        self._writer = threading.Thread(target=self._write_loop, name="gateway-writer",
                                        daemon=True)
        self._writer.start()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30,
                                  clean_start=False,
                                  properties=connect_properties(self.session_expiry,
                                                                self.pending_max))
        self.client.loop_start()
        if wait and not self.wait_ready(timeout):
            log.warning("broker %s not reachable yet; retrying in the background",
                        self.broker.url)
        return self

    def wait_ready(self, timeout=10.0):
        """True once connected and subscribed (the broker now keeps messages for us)."""
        return self._subscribed.wait(timeout)

    def publish(self, topic, payload, qos=1, retain=False):
        """Send a message to devices (tasks); returns paho's MQTTMessageInfo."""
        if isinstance(payload, str):
            payload = payload.encode()
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        self._last_publish = info
        return info

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
        info = self._last_publish
        if info is not None and self._connected.is_set():
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        props = None
        if self._end_session:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self.client.disconnect(properties=props)
        self.client.loop_stop()
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
        while time.monotonic() - self._last_message < idle or self.metrics_queue_depth():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        done = threading.Event()
        self.client.on_unsubscribe = lambda *a: done.set()
        self.client.unsubscribe(topics.subscriptions(self.shared, self.status))
        done.wait(10)
        self._end_session = True
        self.stop()
        return True

    def metrics_queue_depth(self):
        return self.metrics.queue_depth._value.get()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def connected(self):
        return self._connected.is_set()

    # -- paho callbacks (network thread) -----------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        with self._ack_lock:
            self._gen += 1
        _no_delay(client)
        server_max = getattr(properties, "ReceiveMaximum", None) if properties else None
        if server_max:
            # paho does not honour the server's Receive Maximum itself, and its public
            # setter refuses an open connection; this is the attribute that setter sets
            client._max_inflight_messages = min(self.send_window, server_max)
        subs = [(t, 1) for t in topics.subscriptions(self.shared, self.status)]
        client.subscribe(subs)
        self.metrics.connected.set(1)
        log.info("connected to %s as %s (session present: %s)", self.broker.url,
                 self.client_id, flags.session_present)
        self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("broker refused subscriptions: %s", ", ".join(refused))
            return
        log.info("subscribed", extra={"client_id": self.client_id})
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._subscribed.clear()
        with self._ack_lock:
            self._gen += 1  # mids handed out before this point are void
        self._connected.clear()
        self.metrics.connected.set(0)
        if not self._stopping.is_set():
            log.warning("broker connection lost (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg):
        if not self._receiving:
            return  # not acked: redelivered to the next session
        sent_at = None
        props = getattr(msg, "properties", None)
        user = getattr(props, "UserProperty", None) if props is not None else None
        if user:
            for k, v in user:
                if k == "sent_at":
                    with contextlib.suppress(ValueError):
                        sent_at = float(v)
        self._last_message = time.monotonic()
        self._queue.put((msg.topic, msg.payload, time.time(), msg.mid, msg.qos, self._gen,
                         sent_at))
        self.metrics.queue_depth.inc()

    # -- writer thread -----------------------------------------------------------------

    def _collect(self):
        """The next batch, judged: each message is judged as it is taken off the queue,
        while the batch is still open, so a closed batch only waits for its commit."""
        first = self._queue.get()
        if first is _STOP:
            return None
        judge = self._judge
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
            self.metrics.queue_depth.dec(len(items))
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
            return committed

    def _after_commit(self, items, committed):
        now = time.time()
        m = self.metrics
        m.batch_size.observe(len(items))
        self.committed_batches += 1
        with self._ack_lock:
            gen = self._gen
            for it in items:
                if it.qos and it.token == gen:
                    self.client.ack(it.mid, it.qos)
        tally = Counter()
        publish, ack_qos, info = self.client.publish, self.ack_qos, None
        for it in items:
            v = it.verdict
            tally[v.kind, it.outcome] += 1
            if it.outcome == ACCEPTED and v.kind in ("report", "task/result"):
                t = v.sent_at if v.sent_at is not None else _epoch(v.data["captured_at"])
                if t is not None:
                    m.latency.observe(max(0.0, now - t))
            if it.outcome == REJECTED:
                m.rejects.labels(v.category or "photo").inc()
                log.warning("rejected %s: %s", it.topic, it.reason)
            ack = it.ack()
            if ack is not None:
                district, device, body = ack
                info = publish(topics.ack_topic(district, device), body, qos=ack_qos)
        if info is not None:
            self._last_publish = info
        for (kind, outcome), n in tally.items():
            m.messages.labels(kind, outcome).inc(n)
            if kind in ("report", "task/result"):
                m.reports.labels(outcome).inc(n)
        for hook in self.on_commit:
            _call(hook, items)
        if committed:
            for hook in self.on_report:
                _call(hook, committed)

    def _devices_online(self):
        try:
            rows = self.store.fetchall("SELECT COUNT(*) AS n FROM devices "
                                       "WHERE state IN ('online', 'buffering')")
            return rows[0]["n"]
        except Exception:
            return float("nan")


def _no_delay(client):
    """TCP_NODELAY: a PUBACK held back until its commit must not then wait for Nagle."""
    import socket

    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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


def _call(hook, arg):
    try:
        hook(arg)
    except Exception:
        log.exception("on_report/on_commit hook %r failed", hook)
