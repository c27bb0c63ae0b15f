"""The gateway's connection to the broker: one MQTT 5 session, kept up in a thread.

Why not paho: at a backlog drain paho's client spends ~42 µs of Python per received
message (read, decode, callback, PUBACK), a raw reader ~9 µs (benchmarks/bench_gateway.py
measures both).  The gateway needs little of MQTT — a persistent session, QoS 0/1 in,
QoS 1 out, shared subscriptions — so it has this small client, built on the packets of
:mod:`wire`:

- ``on_message(topic, payload, mid, qos, user_properties, generation)`` is called on the
  link's thread for every PUBLISH; nothing is acknowledged until ``ack(mids,
  generation)`` (manual acknowledgement: the gateway acks only what it committed).
  ``generation`` counts connections: an ack for a message of a lost connection is
  dropped, never sent on the next one (the broker redelivers that message).
- ``publish(topic, payload, qos=1)`` from any thread; QoS 1 messages wait in order for a
  slot under the broker's Receive Maximum and are resent (DUP) after a reconnect until
  their PUBACK arrives.  ``flush(timeout)`` waits for all of them.
- Reconnects with back-off (``reconnect_delay``), keep-alive pings, TLS from an
  ``ssl.SSLContext``.  Subscriptions are (re)made on every connect.
"""

import contextlib
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque

from . import wire

log = logging.getLogger("gridlink.gateway.mqtt")


class LinkClosed(wire.WireError):
    """The connection went away (reset, closed by the broker, keep-alive expired)."""


class BrokerLink:
    def __init__(self, client_id, host, port, *, subscriptions, on_message,
                 on_connect=None, on_subscribed=None, on_disconnect=None, tls_context=None,
                 username=None, password=None, keepalive=30, session_expiry=7 * 86400,
                 receive_maximum=1000, send_window=100, reconnect_delay=(0.1, 5.0),
                 connect_timeout=10.0):
        self.client_id = client_id
        self.host, self.port = host, port
        self.subscriptions = subscriptions  # [(filter, qos)]
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_subscribed = on_subscribed
        self.on_disconnect = on_disconnect
        self.tls_context = tls_context
        self.username, self.password = username, password
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.receive_maximum = receive_maximum
        self.send_window = send_window
        self.reconnect_delay = reconnect_delay
        self.connect_timeout = connect_timeout
        self.generation = 0
        self._sock = None
        self._out = threading.Condition()  # guards the socket's writes and the lists below
        self._inflight = OrderedDict()  # mid → PUBLISH bytes, sent, awaiting PUBACK
        # (topic, payload, retain) not sent yet (window full, or offline); a packet
        # identifier is given when one goes out, so ids never outnumber what is in flight
        self._waiting = deque()
        self._window = send_window
        self._next_mid = 0
        self._pending_acks = {}  # mid of our SUBSCRIBE/UNSUBSCRIBE → threading.Event
        self._sub_mid = None
        self._last_sent = 0.0
        self._flushing = 0  # threads waiting in flush(): PUBACKs notify only then
        self._stopping = threading.Event()
        self._stop_expiry = None
        self._thread = None
        self.connected = threading.Event()

    # -- public ------------------------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def ack(self, mids, generation):
        """PUBACK these received messages, if their connection is still the current one.
        Returns how many were sent."""
        if not mids:
            return 0
        with self._out:
            if generation != self.generation or self._sock is None:
                return 0
            data = b"".join([b"\x40\x02" + m.to_bytes(2, "big") for m in mids])
            self._write(data)
        return len(mids)

    def publish(self, topic, payload, qos=1, retain=False):
        """Queue a message to the broker; QoS 1 is delivered at least once, across
        reconnects (in the order published)."""
        if isinstance(payload, str):
            payload = payload.encode()
        with self._out:
            if qos == 0:
                if self._sock is not None:
                    self._write(wire.publish(topic, payload, 0, retain=retain))
                return
            self._waiting.append((topic, payload, retain))
            self._fill_window()

    def publish_many(self, messages):
        """``publish`` of several (topic, payload) QoS 1 messages, written together."""
        with self._out:
            self._waiting.extend((topic, payload, False) for topic, payload in messages)
            self._fill_window()

    def unacked(self):
        """Outgoing QoS 1 messages not yet acknowledged by the broker."""
        with self._out:
            return len(self._inflight) + len(self._waiting)

    def flush(self, timeout=2.0):
        """Wait until every outgoing QoS 1 message has its PUBACK, across reconnects;
        True if they all did within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._out:
            self._flushing += 1
            try:
                while self._inflight or self._waiting:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._out.wait(min(left, 0.1))
            finally:
                self._flushing -= 1
        return True

    def unsubscribe(self, filters, timeout=10.0):
        """UNSUBSCRIBE and wait for the UNSUBACK; True when it came."""
        done = threading.Event()
        with self._out:
            if self._sock is None:
                return False
            mid = self._new_mid()
            self._pending_acks[mid] = done
            self._write(wire.unsubscribe(mid, filters))
        self.subscriptions = [s for s in self.subscriptions if s[0] not in filters]
        return done.wait(timeout)

    def stop(self, session_expiry=None):
        """Disconnect cleanly (``session_expiry=0`` ends the session at the broker)."""
        self._stop_expiry = session_expiry  # for a connection that completes meanwhile
        self._stopping.set()
        with self._out:
            if self._sock is not None:
                self._write(wire.disconnect(0, session_expiry))
                self._shutdown()  # wakes the link's thread, which closes the socket
        if self._thread is not None:
            self._thread.join(10)

    # -- the link's thread -------------------------------------------------------------

    def _run(self):
        delay = self.reconnect_delay[0]
        while not self._stopping.is_set():
            try:
                session_present, reader, early = self._open()
            except (OSError, wire.WireError) as exc:
                if self._stopping.is_set():
                    break
                log.warning("cannot connect to %s:%s (%s); retrying in %.1fs", self.host,
                            self.port, exc, delay)
                self._stopping.wait(delay * (0.8 + 0.4 * random.random()))
                delay = min(delay * 2, self.reconnect_delay[1])
                continue
            delay = self.reconnect_delay[0]
            reason = None
            try:
                if self.on_connect is not None:
                    self.on_connect(session_present)
                self._read_loop(reader, early)
            except (OSError, wire.WireError) as exc:
                reason = exc
            except Exception as exc:  # a bug in a callback: reconnect, never stop receiving
                log.exception("broker link: unexpected error; reconnecting")
                reason = exc
            with self._out:
                self.generation += 1  # acks of this connection's messages are void now
                self._close()
            self.connected.clear()
            if self.on_disconnect is not None:
                self.on_disconnect(None if self._stopping.is_set() else reason)

    def _open(self):
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls_context is not None:
                sock = self.tls_context.wrap_socket(sock, server_hostname=self.host)
            sock.sendall(wire.connect(self.client_id, keepalive=self.keepalive,
                                      clean_start=False, session_expiry=self.session_expiry,
                                      receive_maximum=self.receive_maximum,
                                      username=self.username, password=self.password))
            reader = wire.PacketReader()
            packets = []
            while not packets:
                data = sock.recv(65536)
                if not data:
                    raise LinkClosed("the broker closed the connection before CONNACK")
                packets = reader.feed(data)
            first, body = packets[0]
            if first >> 4 != wire.CONNACK:
                raise wire.WireError(f"expected CONNACK, got packet type {first >> 4}")
            session_present, reason, props = wire.parse_connack(body)
            if reason >= 0x80:
                raise LinkClosed(f"the broker refused the connection: "
                                 f"{wire.reason_text(reason)}")
        except BaseException:
            sock.close()
            raise
        # non-blocking from here: every read and write of the socket happens under
        # self._out (an SSL connection must not be read and written at the same time)
        sock.setblocking(False)
        server_keepalive = props.get(wire.SERVER_KEEP_ALIVE)
        if server_keepalive:
            self.keepalive = server_keepalive
        with self._out:
            if self._stopping.is_set():  # stop() came while this connection was made
                with contextlib.suppress(OSError):
                    sock.send(wire.disconnect(0, self._stop_expiry))
                sock.close()
                raise LinkClosed("stopped while connecting")
            self._sock = sock
            self.generation += 1
            self._window = min(self.send_window, props.get(wire.RECEIVE_MAXIMUM, 65535))
            # subscribe; resend what the broker has not acknowledged, then what waited
            self._sub_mid = mid = self._new_mid()
            resend = [wire.set_dup(d) for d in self._inflight.values()]
            self._write(wire.subscribe(mid, self.subscriptions) + b"".join(resend))
            self._fill_window()
        self.connected.set()
        return session_present, reader, packets[1:]

    def _read_loop(self, reader, early):
        """Read and dispatch until the connection ends (``early``: packets that came
        with the CONNACK)."""
        sock = self._sock
        handle = self._handle
        for first, body in early:
            handle(first, body)
        last_heard = time.monotonic()
        tick = max(0.5, min(self.keepalive / 2, 5.0))
        pending = getattr(sock, "pending", None)
        while True:
            if not (pending and pending()):
                ready = select.select([sock], [], [], tick)[0]
                if not ready:
                    now = time.monotonic()
                    if now - last_heard > self.keepalive * 1.5:
                        raise LinkClosed("keep-alive: nothing heard from the broker")
                    if now - self._last_sent >= self.keepalive / 2:
                        with self._out:
                            self._write(wire.PINGREQ_PACKET)
                    continue
            with self._out:
                try:
                    data = sock.recv(262144)
                except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                        ssl.SSLWantWriteError):
                    continue
            if not data:
                if self._stopping.is_set():
                    return
                raise LinkClosed("the broker closed the connection")
            last_heard = time.monotonic()
            acked = []
            for first, body in reader.feed(data):
                if first == 0x40 and len(body) == 2:  # a plain PUBACK: taken together below
                    acked.append(body[0] << 8 | body[1])
                else:
                    handle(first, body)
            if acked:
                self._acked(acked)
            if last_heard - self._last_sent >= self.keepalive / 2:
                # a stream that needs no answer (QoS 0) must not starve the keep-alive
                with self._out:
                    self._write(wire.PINGREQ_PACKET)

    def _handle(self, first, body):
        kind = first >> 4
        if kind == wire.PUBLISH:
            topic, mid, qos, _retain, user, payload = wire.parse_publish(first, body)
            self.on_message(topic, payload, mid, qos, user, self.generation)
        elif kind == wire.PUBACK:
            mid, reason = wire.parse_ack(body)
            if reason >= 0x80:
                log.warning("the broker refused one of our messages: %s",
                            wire.reason_text(reason))
            self._acked([mid])
        elif kind in (wire.SUBACK, wire.UNSUBACK):
            mid, reasons = wire.parse_suback(body)
            if mid == self._sub_mid and kind == wire.SUBACK:
                if self.on_subscribed is not None:
                    self.on_subscribed(reasons)
            else:
                done = self._pending_acks.pop(mid, None)
                if done is not None:
                    done.set()
        elif kind == wire.DISCONNECT:
            reason, text = wire.parse_disconnect(body)
            raise LinkClosed(f"the broker disconnected us: {wire.reason_text(reason)}"
                             + (f" ({text})" if text else ""))
        elif kind == wire.PINGRESP:
            pass
        else:
            raise wire.WireError(f"unexpected packet type {kind} from the broker")

    def _acked(self, mids):
        """The broker acknowledged these of our QoS 1 messages: free their slots."""
        with self._out:
            pop = self._inflight.pop
            for mid in mids:
                pop(mid, None)
            self._fill_window()
            if self._flushing:
                self._out.notify_all()

    # -- helpers (hold self._out) ------------------------------------------------------

    def _fill_window(self):
        """Send waiting QoS 1 messages while the broker's Receive Maximum allows."""
        if self._sock is None:
            return
        chunks = []
        room = self._window - len(self._inflight)
        while self._waiting and room > 0:
            topic, payload, retain = self._waiting.popleft()
            mid = self._new_mid()
            data = self._inflight[mid] = wire.publish(topic, payload, 1, mid, retain=retain)
            chunks.append(data)
            room -= 1
        if chunks:
            self._write(b"".join(chunks))

    def _new_mid(self):
        for _ in range(65535):
            self._next_mid = self._next_mid % 65535 + 1
            mid = self._next_mid
            if mid not in self._inflight and mid not in self._pending_acks \
                    and mid != self._sub_mid:
                return mid
        raise wire.WireError("no free packet identifier")

    def _write(self, data):
        """Send all of ``data`` (caller holds self._out).  A failure shuts the socket
        down: the link's thread sees it, reconnects, and resends unacknowledged QoS 1
        messages; acks of the lost connection are void anyway."""
        sock = self._sock
        if sock is None:
            return False
        view = memoryview(data)
        deadline = None
        try:
            while view:
                try:
                    n = sock.send(view)
                except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                        ssl.SSLWantReadError):
                    now = time.monotonic()
                    deadline = deadline or now + max(self.keepalive, 10)
                    if now > deadline:
                        raise LinkClosed("the broker has not read from us for too long") \
                            from None
                    select.select([], [sock], [], 0.1)
                    continue
                view = view[n:]
        except (OSError, wire.WireError) as exc:
            log.warning("write to the broker failed: %s", exc)
            self._shutdown()
            return False
        self._last_sent = time.monotonic()
        return True

    def _shutdown(self):
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _close(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
