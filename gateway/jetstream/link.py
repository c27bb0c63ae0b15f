"""The gateway's transport on a NATS cluster: devices speak MQTT, workers pull JetStream.

nats-server (2.9) stores every QoS 1 message a device publishes on its MQTT listener in
the ``$MQTT_msgs`` stream (subject ``$MQTT.msgs.`` + the topic with ``/`` as ``.``:
``gridlink/v1/410106/pv-0001/report`` is ``$MQTT.msgs.gridlink.v1.410106.pv-0001.report``)
before it sends the device its PUBACK.  The stream is replicated on three nodes and keeps
each message until every interested consumer has acknowledged it (interest retention).

All gateway workers pull from one durable consumer (``gridlink``) on that stream.  A
worker acknowledges a message only after its batch is committed (``ack``); a message it
never acknowledges — the worker died, or stopped with it queued — is delivered again,
to any worker, after ``ack_wait`` (at once when a worker stops cleanly: it naks what it
leaves; while it lives it marks what it holds as in progress, so a commit retried for
long is not handed to another worker).  Acks and tasks to devices are stored in the
same stream under the device's topic with the ``Nmqtt-Pub: 1`` header, which is what
the MQTT side delivers to a QoS 1 subscription — also to a device that was offline when
they were sent.  Retained messages (configuration documents, update offers) go out on an
MQTT connection to the nodes named in ``?mqtt=`` (``retained.py``); devices' QoS 0
requests (``…/ota/get``) come on a queue subscription shared by the workers.  Devices'
certificate requests (``…/csr``, QoS 1) go to the workers holding the district CA only,
from a durable consumer of their own (``gridlink-csr``): the main consumer passes them by,
so a worker without the CA never judges one (on Mosquitto only the signers subscribe
to it), and one sent while no signer runs waits for one.

The interface is that of :class:`gateway.link.BrokerLink` as the runtime uses it:
``on_message(topic, payload, mid, qos, user_properties, generation)`` on the link's
thread (``mid`` is the JetStream message), ``ack(mids, generation)``, ``publish``,
``publish_many``, ``flush``, ``unsubscribe``, ``stop``, ``connected``.
"""

import asyncio
import contextlib
import logging
import re
import threading
import time
from urllib.parse import parse_qs, unquote

import nats
from gridlink.firmware.core import topics as core_topics
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from ..errors import ConfigError, GatewayError
from . import SCHEMES
from .retained import RetainedPublisher

log = logging.getLogger("gridlink.gateway.nats")

STREAM = "$MQTT_msgs"
STREAM_PREFIX = "$MQTT.msgs."
DURABLE = "gridlink"
FILTER = STREAM_PREFIX + "gridlink.v1.>"
# the last subject token of the gateway's own messages to devices (ack, task, config,
# update, …), seen again by its consumer
OUTBOUND_LEAVES = tuple({leaf.rpartition("/")[2] for leaf, (by, _qos, _retain)
                         in core_topics.LEAVES.items() if by == "gateway"})
# devices' certificate requests: for the signers' own consumer (``request_names``) only
CSR_LEAF = "csr"
# what the main consumer acknowledges without handing it to the runtime
PASSED_LEAVES = (*OUTBOUND_LEAVES, CSR_LEAF)
# what devices publish at QoS 0 (``ota/get``): plain NATS messages, never stored
QOS0_REQUEST_LEAVES = tuple(leaf for leaf, (by, qos, _retain) in core_topics.LEAVES.items()
                            if by == "device" and qos == 0)
MQTT_QOS_HEADER = "Nmqtt-Pub"


DISTRICT_TOKEN = re.compile(r"^[0-9A-Za-z_-]{1,32}$")


def request_subject(district, leaf="ota/get"):
    """The NATS subject of devices' QoS 0 ``leaf`` requests in ``district`` (None: all)."""
    return f"gridlink.v1.{district or '*'}.*.{leaf.replace('/', '.')}"


def district_names(district):
    """(durable consumer, its filter, inbox prefix) of a gateway: one district's
    (``district``) or every district's (None).  A district's workers share the durable
    ``gridlink-<district>``, read only ``$MQTT.msgs.gridlink.v1.<district>.>`` and take
    their replies under ``_INBOX.gridlink-<district>``: what a district-scoped cluster
    (``cluster.authorization_block`` with districts) permits that identity."""
    if district is None:
        return DURABLE, FILTER, "_INBOX"
    return (f"{DURABLE}-{district}", f"{STREAM_PREFIX}gridlink.v1.{district}.>",
            f"_INBOX.{DURABLE}-{district}")


def request_names(district):
    """(durable consumer, its filter) of the certificate requests (``…/csr``) of
    ``district`` (None: every district), which only the workers holding the CA read."""
    return (f"{district_names(district)[0]}-{CSR_LEAF}",
            f"{STREAM_PREFIX}gridlink.v1.{district or '*'}.*.{CSR_LEAF}")


class NatsURL:
    """``nats://[user[:password]@]host:port[,host:port…][?replicas=3&ack_wait=30]``, or
    ``nats+tls://…`` (TLS to every node).  ``replicas``: of ``$MQTT_msgs`` when the gateway
    creates it (before any device connected); ``ack_wait``: seconds before an
    unacknowledged message goes to another worker; ``district``: read only that
    district's messages (a district-scoped cluster's gateway identity); ``mqtt``: the
    nodes' MQTT listeners, ``host:port[,host:port…]``, where retained messages
    (configuration documents, update offers) are published (TLS with ``nats+tls``)."""

    def __init__(self, url):
        self.url = url
        scheme, sep, rest = str(url).partition("://")
        if scheme.lower() not in SCHEMES or not sep:
            raise ConfigError(f"broker URL {url!r}: use nats://host:port[,host:port…]")
        self.tls = scheme.lower() == "nats+tls"
        rest, _, query = rest.partition("?")
        rest = rest.rstrip("/")
        userinfo, at, hosts = rest.rpartition("@")
        self.username = self.password = None
        if at:
            user, _, password = userinfo.partition(":")
            self.username = unquote(user) or None
            self.password = unquote(password) or None
        self.servers = []
        for hp in hosts.split(","):
            host, colon, port = hp.strip().rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"broker URL {url!r}: {hp!r} is not host:port")
            self.servers.append(f"{'tls' if self.tls else 'nats'}://{host}:{port}")
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        unknown = set(params) - {"replicas", "ack_wait", "district", "mqtt"}
        if unknown:
            raise ConfigError(f"broker URL {url!r}: unknown option(s) {sorted(unknown)}")
        try:
            self.replicas = int(params.get("replicas", 3))
            self.ack_wait = float(params.get("ack_wait", 30))
        except ValueError as exc:
            raise ConfigError(f"broker URL {url!r}: {exc}") from None
        if not 1 <= self.replicas <= 5 or self.ack_wait <= 0:
            raise ConfigError(f"broker URL {url!r}: replicas 1..5 and ack_wait > 0")
        self.district = params.get("district")
        if self.district is not None and not DISTRICT_TOKEN.match(self.district):
            raise ConfigError(f"broker URL {url!r}: district must be letters, digits, - or _")
        self.durable, self.filter, self.inbox_prefix = district_names(self.district)
        self.csr_durable, self.csr_filter = request_names(self.district)
        self.mqtt = []
        for hp in filter(None, params.get("mqtt", "").split(",")):
            host, colon, port = hp.strip().rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"broker URL {url!r}: mqtt {hp!r} is not host:port")
            self.mqtt.append((host, int(port)))
        if "mqtt" in params and not self.mqtt:
            raise ConfigError(f"broker URL {url!r}: mqtt=host:port[,host:port…]")


def subject_of(topic):
    """The NATS subject nats-server gives an MQTT topic (``/`` → ``.``, ``.`` → ``//``)."""
    return topic.replace("/", "\0").replace(".", "//").replace("\0", ".")


def topic_of(subject):
    """The MQTT topic of a NATS subject (the inverse of :func:`subject_of`)."""
    return subject.replace("//", "\0").replace(".", "/").replace("\0", ".")


class JetStreamLink:
    def __init__(self, url, client_id, *, on_message, on_connect=None, on_subscribed=None,
                 on_disconnect=None, tls_context=None, pending_max=1000, send_window=100,
                 fetch_max=500, reconnect_delay=(0.1, 5.0), update_requests=False,
                 cert_requests=False):
        self.url = NatsURL(url)
        self.update_requests = update_requests  # take devices' …/ota/get (QoS 0) too
        self.cert_requests = cert_requests      # take devices' …/csr too (holds the CA)
        self.retained = None
        if self.url.mqtt:
            self.retained = RetainedPublisher(
                self.url.mqtt, client_id, tls_context=tls_context,
                username=self.url.username, password=self.url.password)
        self.client_id = client_id
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_subscribed = on_subscribed
        self.on_disconnect = on_disconnect
        self.tls_context = tls_context
        self.pending_max = pending_max
        self.send_window = send_window
        self.fetch_max = fetch_max
        self.reconnect_delay = reconnect_delay
        self.generation = 0  # JetStream acks stay valid across reconnects
        self.connected = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = None
        self._nc = None
        self._js = None
        self._sub = None
        self._csr_sub = None
        self._fetching = True
        self._stopping = threading.Event()
        self._lock = threading.Condition()
        self._held = {}  # id(msg) → msg: delivered to the runtime, not acknowledged yet
        self._sending = 0  # QoS 1 publishes to devices not yet stored

    # -- public (any thread) -----------------------------------------------------------

    def start(self):
        if self.retained is not None:
            self.retained.start()
        self._thread = threading.Thread(target=self._run, name=f"nats-{self.client_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def ack(self, mids, generation=0):
        """Acknowledge these delivered messages (their batch is committed)."""
        if not mids:
            return 0
        with self._lock:
            for m in mids:
                self._held.pop(id(m), None)
        self._submit(self._ack_all(list(mids)))
        return len(mids)

    def publish(self, topic, payload, qos=1, retain=False):
        """To devices; ``retain``: over the MQTT connection (``?mqtt=`` in the URL), the
        only way nats-server keeps a retained message."""
        if retain:
            if self.retained is None:
                raise GatewayError("the NATS path publishes retained messages over MQTT: "
                                   "name the nodes' MQTT listeners in the broker URL "
                                   "(?mqtt=host:port,…)")
            self.retained.publish(topic, payload)
            return
        self.publish_many([(topic, payload)], qos)

    def publish_many(self, messages, qos=1):
        messages = [(t, p.encode() if isinstance(p, str) else p) for t, p in messages]
        if not messages:
            return
        if qos:
            with self._lock:
                self._sending += len(messages)
        self._submit(self._publish_all(messages, qos))

    def unacked(self):
        with self._lock:
            sending = self._sending
        return sending + (self.retained.unacked() if self.retained is not None else 0)

    def flush(self, timeout=2.0):
        """Wait until every QoS 1 message to devices is stored in the stream."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        if self.retained is not None:
            return self.retained.flush(max(0.0, deadline - time.monotonic()))
        return True

    def unsubscribe(self, filters=None, timeout=10.0):
        """Take no more messages (retiring this worker); the consumer stays for the rest."""
        self._fetching = False
        return True

    def stop(self, session_expiry=None):
        """Stop pulling, hand back (nak) what was delivered but not acknowledged, close."""
        self._fetching = False
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(15)  # the pull loop ends within a fetch's timeout
        if self.retained is not None:
            self.retained.stop()

    # -- the link's thread -------------------------------------------------------------

    def _submit(self, coro):
        try:
            asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop is closed: the link has stopped
            coro.close()

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.run_until_complete(self._close())
        self._loop.close()

    async def _serve(self):
        delay = self.reconnect_delay[0]
        while not self._stopping.is_set():
            try:
                await self._connect()
                break
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                log.warning("cannot connect to %s (%s); retrying in %.1fs", self.url.url,
                            exc, delay)
                if self._nc is not None and not self._nc.is_closed:
                    # connected, but the stream or consumer was not ready: start over
                    with contextlib.suppress(nats.errors.Error, TimeoutError):
                        await self._nc.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_delay[1])
        await asyncio.gather(self._pull_loop(), self._pull_requests())

    async def _connect(self):
        async def disconnected():
            self.connected.clear()
            if self.on_disconnect is not None and not self._stopping.is_set():
                self.on_disconnect("NATS connection lost")

        async def reconnected():
            self._ready()

        async def error(exc):
            log.debug("NATS: %s", exc)

        self._nc = await nats.connect(
            self.url.servers, name=self.client_id, tls=self.tls_context,
            user=self.url.username, password=self.url.password, connect_timeout=5,
            inbox_prefix=self.url.inbox_prefix,
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error)
        self._js = self._nc.jetstream(timeout=5)
        await self._ensure_stream()
        self._sub = await self._pull_subscribe(self.url.durable, self.url.filter)
        if self.cert_requests:
            self._csr_sub = await self._pull_subscribe(self.url.csr_durable,
                                                       self.url.csr_filter)
        if self.update_requests:
            for leaf in QOS0_REQUEST_LEAVES:  # one worker of the district's group answers
                await self._nc.subscribe(request_subject(self.url.district, leaf),
                                         queue=self.url.durable, cb=self._on_request)
        self._ready()

    async def _pull_subscribe(self, durable, filter_subject):
        return await self._js.pull_subscribe(
            filter_subject, durable=durable, stream=STREAM,
            config=ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                  ack_wait=self.url.ack_wait, max_deliver=-1,
                                  filter_subject=filter_subject, max_ack_pending=-1))

    async def _on_request(self, msg):
        if self._fetching:
            self.on_message(topic_of(msg.subject), msg.data, None, 0, [], self.generation)

    def _ready(self):
        self.connected.set()
        if self.on_connect is not None:
            self.on_connect(True)
        if self.on_subscribed is not None:
            self.on_subscribed([1])

    async def _ensure_stream(self):
        """Create ``$MQTT_msgs`` as nats-server would, when no device has connected yet
        (a gateway started first must not miss the first messages)."""
        try:
            await self._js.stream_info(STREAM)
        except nats.js.errors.NotFoundError:
            with contextlib.suppress(nats.js.errors.BadRequestError):
                await self._js.add_stream(StreamConfig(
                    name=STREAM, subjects=[STREAM_PREFIX + ">"],
                    retention=RetentionPolicy.INTEREST, storage=StorageType.FILE,
                    num_replicas=self.url.replicas))

    async def _pull_loop(self):
        progress_at = time.monotonic() + self.url.ack_wait / 3
        while not self._stopping.is_set():
            if time.monotonic() >= progress_at:
                self._in_progress()
                progress_at = time.monotonic() + self.url.ack_wait / 3
            if not self._fetching:
                await asyncio.sleep(0.1)
                continue
            with self._lock:
                room = self.pending_max - len(self._held)
            if room <= 0:
                await asyncio.sleep(0.005)
                continue
            self._deliver(await self._fetch(self._sub, min(room, self.fetch_max)),
                          PASSED_LEAVES)

    async def _pull_requests(self):
        """The certificate requests, from the signers' own consumer (with the CA only)."""
        while self._csr_sub is not None and not self._stopping.is_set():
            if not self._fetching:
                await asyncio.sleep(0.1)
                continue
            self._deliver(await self._fetch(self._csr_sub, 10), ())

    async def _fetch(self, sub, n):
        """Up to ``n`` messages of ``sub`` within half a second ([] when none came)."""
        try:
            return await sub.fetch(n, timeout=0.5)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except nats.errors.Error as exc:
            log.debug("fetch: %s", exc)
            await asyncio.sleep(0.2)
            return []

    def _deliver(self, msgs, passed):
        """Hand ``msgs`` to the runtime; those whose leaf is in ``passed`` are acknowledged
        at once instead (our own acks/tasks on their way; requests for the signers)."""
        n = len(STREAM_PREFIX)
        for m in msgs:
            subject = m.subject
            if not subject.startswith(STREAM_PREFIX) or subject.rpartition(".")[2] in passed:
                self._loop.create_task(m.ack())
                continue
            if not self._fetching:  # retiring: to another worker now
                self._loop.create_task(m.nak())
                continue
            with self._lock:
                self._held[id(m)] = m
            self.on_message(topic_of(subject[n:]), m.data, m, 1, [], self.generation)

    def _in_progress(self):
        """Tell the server this live worker still works on what it holds (a commit
        retried while the store is down), so ``ack_wait`` sends it to another worker only
        when this one is gone or hung."""
        with self._lock:
            held = list(self._held.values())
        for m in held:
            self._loop.create_task(_quietly(m.in_progress()))

    async def _ack_all(self, msgs):
        for m in msgs:
            with contextlib.suppress(nats.errors.Error):
                await m.ack()

    async def _publish_all(self, messages, qos):
        if qos == 0:  # to online MQTT subscribers only, as MQTT QoS 0
            for topic, payload in messages:
                with contextlib.suppress(nats.errors.Error):
                    await self._nc.publish(subject_of(topic), payload)
            return
        window = asyncio.Semaphore(self.send_window)

        async def one(topic, payload):
            async with window:
                await self._store(topic, payload)
            with self._lock:
                self._sending -= 1
                self._lock.notify_all()

        await asyncio.gather(*(one(t, p) for t, p in messages))

    async def _store(self, topic, payload):
        """Store one QoS 1 message to a device in the stream, until the stream has it."""
        delay = 0.05
        while True:
            try:
                await self._js.publish(STREAM_PREFIX + subject_of(topic), payload,
                                       headers={MQTT_QOS_HEADER: "1"})
                return
            except (TimeoutError, nats.errors.Error) as exc:
                if self._stopping.is_set() and self._nc.is_closed:
                    log.error("stopped with a message to %s unsent: %s", topic, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _close(self):
        nc = self._nc
        if nc is None or nc.is_closed:
            return
        with self._lock:
            left = list(self._held.values())
            self._held.clear()
        for m in left:  # delivered, never committed: to another worker now
            with contextlib.suppress(nats.errors.Error):
                await m.nak()
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await nc.flush(timeout=2)  # the acks and naks reach the server
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await nc.close()
        self.connected.clear()


async def _quietly(coro):
    with contextlib.suppress(nats.errors.Error):
        await coro
