"""The gateway's MQTT connection to the NATS cluster, for retained messages.

NATS has no retained flag: nats-server keeps an MQTT retained message (in the
``$MQTT_rmsgs`` stream, replicated like the sessions) only when an MQTT client publishes
it with the retain flag.  So desired-state documents (``…/config``) and update offers
(``…/update``), which a device that connects later must still get, go out on an MQTT 3.1.1
connection of the gateway's own to the cluster's MQTT listeners, with the same identity
as its NATS connection (its certificate, or none on a plain rig) and so the same
permissions.  An empty payload removes the topic's retained message, as on Mosquitto.

Messages are kept in order until the cluster acknowledges them (QoS 1 PUBACK), across
connection losses: each connection is a new clean MQTT session on the next listener in
the list, and everything not yet acknowledged is published again on it.
"""

import collections
import contextlib
import logging
import secrets
import threading
import time

import paho.mqtt.client as mqtt

from ..errors import GatewayError

log = logging.getLogger("gridlink.gateway.nats")


class RetainedPublisher:
    """``publish(topic, payload)`` retained, QoS 1, to the first of ``addresses``
    ((host, port) of the nodes' MQTT listeners) that accepts, then the next on loss."""

    def __init__(self, addresses, client_id, *, tls_context=None, username=None,
                 password=None, reconnect_delay=(0.1, 5.0)):
        if not addresses:
            raise GatewayError("no MQTT listener to publish retained messages to")
        self.addresses = list(addresses)
        # unique per process: two workers' connections never take over each other's session
        self.client_id = f"{client_id}-retained-{secrets.token_hex(3)}"
        self.tls_context = tls_context
        self.username, self.password = username, password
        self.reconnect_delay = reconnect_delay
        self.connected = threading.Event()
        self.address = None  # the (host, port) connected to
        self._lock = threading.Condition()
        self._pending = {}  # seq → (topic, payload), in publish order, until PUBACKed
        self._mids = {}     # the current connection's packet id → seq
        # (client, packet id) PUBACKed: noted on paho's thread without our lock (paho holds
        # its own while calling back), settled under our lock
        self._acked = collections.deque()
        self._seq = 0
        self._client = None
        self._dialled = None
        self._stopping = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def publish(self, topic, payload):
        if isinstance(payload, str):
            payload = payload.encode()
        with self._lock:
            self._seq += 1
            self._pending[self._seq] = (topic, payload)
            if self.connected.is_set():
                self._send(self._seq, topic, payload)

    def unacked(self):
        with self._lock:
            self._settle()
            return len(self._pending)

    def flush(self, timeout=2.0):
        """Wait until the cluster has acknowledged every retained message; True if so."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._settle() or self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    def stop(self):
        self._stopping.set()
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
        if self._thread is not None:
            self._thread.join(10)

    # -- the connection's thread -------------------------------------------------------

    def _settle(self):  # with self._lock held; False (the loop tests _pending)
        while self._acked:
            client, mid = self._acked.popleft()
            if client is self._client:
                seq = self._mids.pop(mid, None)
                if seq is not None:
                    self._pending.pop(seq, None)
        return False

    def _send(self, seq, topic, payload):  # with self._lock held
        self._settle()
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self._mids[info.mid] = seq

    def _run(self):
        delay, i = self.reconnect_delay[0], 0
        while not self._stopping.is_set():
            host, port = self.addresses[i % len(self.addresses)]
            i += 1
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 clean_session=True, protocol=mqtt.MQTTv311,
                                 reconnect_on_failure=False)
            client.max_inflight_messages_set(100)
            client.max_queued_messages_set(0)
            if self.tls_context is not None:
                client.tls_set_context(self.tls_context)
            if self.username is not None:
                client.username_pw_set(self.username, self.password)
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.on_publish = self._on_publish
            self._client, self._dialled = client, (host, port)
            try:
                client.connect(host, port, keepalive=30)
            except (OSError, ValueError) as exc:
                log.warning("retained messages: cannot connect to %s:%s (%s)", host, port, exc)
            else:
                client.loop_forever(retry_first_connection=False)
                if self.connected.is_set():  # was up: try the next node at once
                    delay = self.reconnect_delay[0]
                self.connected.clear()
                self.address = None
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, self.reconnect_delay[1])

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("retained messages: the cluster refused the MQTT connection (%s)",
                      reason_code)
            return
        with self._lock:
            self.address = self._dialled
            self._acked.clear()
            self._mids.clear()
            self.connected.set()
            for seq, (topic, payload) in self._pending.items():
                self._send(seq, topic, payload)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._acked.append((client, mid))
