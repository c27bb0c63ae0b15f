"""Broker URLs and paho-mqtt client construction (MQTT 5, persistent session, TLS)."""

import ssl
from contextlib import suppress
from threading import get_ident
from urllib.parse import unquote, urlsplit

from .errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class BrokerURL:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (TLS)."""

    def __init__(self, url):
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(f"broker URL {url!r}: use mqtt://host:port or mqtts://host:port")
        self.url = url
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname
        try:
            self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ConfigError(f"broker URL {url!r}: {exc}") from None
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None


class TLSFiles:
    """A CA bundle and optionally a client certificate + key for mutual TLS."""

    def __init__(self, ca, cert=None, key=None, insecure=False):
        if (cert is None) != (key is None):
            raise ConfigError("TLS: give both --tls-cert and --tls-key, or neither")
        self.ca, self.cert, self.key, self.insecure = ca, cert, key, insecure

    def context(self):
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
            if self.cert:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS files: {exc}") from exc
        if self.insecure:
            ctx.check_hostname = False
        return ctx


class BufferedSocket:
    """The client's socket with its reads buffered.

    paho reads a packet a few bytes at a time (the type byte, each length byte, then the
    rest), one ``recv`` system call each; this takes up to 64 KiB per call and serves
    paho's small reads from memory.  ``pending()`` is the hook paho's loop already has
    for TLS: while buffered bytes remain it does not sleep in ``select()``.  Everything
    else (``fileno``, ``send``, ``setsockopt``, ``close`` …) is the socket's own.
    """

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock):
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n):
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._sock.recv(65536)  # BlockingIOError, SSLWantReadError: paho's to handle
            if not buf:
                return buf
            pos = 0
        end = pos + n
        if end >= len(buf):
            self._buf, self._pos = b"", 0
            return buf[pos:] if pos else buf
        self._buf, self._pos = buf, end
        return buf[pos:end]

    def pending(self):
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + inner

    def __getattr__(self, name):
        return getattr(self._sock, name)


_client_class = None


def _buffered_client_class():
    global _client_class
    if _client_class is None:
        import paho.mqtt.client as mqtt

        class BufferedClient(mqtt.Client):
            """paho's client reading through a :class:`BufferedSocket` and writing queued
            packets in one ``send`` where paho would make one per packet."""

            def _create_socket(self):
                return BufferedSocket(super()._create_socket())

            def _packet_write(self):
                _coalesce(self._out_packet)
                return super()._packet_write()

            def _handle_publish(self):
                # QoS 0/1 PUBLISH read here without paho's general decoder: no struct
                # formats built per message, and of the MQTT 5 properties only user
                # properties are read (all this gateway uses), into a UserProperties
                # instead of a full Properties object; any other property, QoS 2 or a
                # malformed packet goes to paho
                cmd = self._in_packet["command"]
                qos = (cmd & 0x06) >> 1
                if qos > 1 or self._protocol != mqtt.MQTTv5:
                    return super()._handle_publish()
                try:
                    parsed = _parse_publish(self._in_packet["packet"], qos)
                except (IndexError, ValueError, UnicodeDecodeError):
                    parsed = None
                if parsed is None:
                    return super()._handle_publish()
                topic, mid, props, payload = parsed
                message = mqtt.MQTTMessage(mid=mid, topic=topic)
                message.dup = bool(cmd & 0x08)
                message.qos = qos
                message.retain = bool(cmd & 0x01)
                message.properties = props
                message.payload = payload
                message.timestamp = mqtt.time_func()
                self._handle_on_message(message)
                if qos == 1 and not self._manual_ack:
                    return self._send_puback(mid)
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

            def _handle_pubackcomp(self, cmd):
                # a PUBACK of one of our QoS 1 publishes (device acks) with a success
                # reason (0 or 0x10 "no matching subscribers", which MQTT 5 lets the
                # sender leave out) and no properties, without paho decoding a reason
                # code and a properties object for each; anything else goes to paho
                pkt = self._in_packet["packet"]
                n = len(pkt)
                if (cmd != "PUBACK" or n < 2 or n > 4 or (n > 2 and pkt[2] not in (0, 0x10))
                        or (n == 4 and pkt[3])):
                    return super()._handle_pubackcomp(cmd)
                mid = (pkt[0] << 8) | pkt[1]
                with self._out_message_mutex:
                    if mid in self._out_messages:
                        return self._do_on_publish(mid, *_plain_puback(pkt[2] if n > 2 else 0))
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

            def _packet_queue(self, command, packet, mid, qos, info=None):
                # paho's own, except for the wake-up byte to its network thread: sent
                # only when this packet found the queue empty (otherwise the thread is
                # already due to write — a wake-up is pending, it is writing and drains
                # the queue, or the socket is full and it waits on writability) and never
                # from the network thread itself (it checks the queue before its next
                # select).  paho sends one per packet: a system call per PUBACK and ack.
                out = self._out_packet
                out.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                            "to_process": len(packet), "packet": packet, "info": info})
                thread = self._thread
                if (len(out) == 1 and self._sockpairW is not None
                        and (thread is None or thread.ident != get_ident())):
                    with suppress(BlockingIOError):
                        self._sockpairW.send(b"0")
                if (thread is None and self._on_socket_register_write is None
                        and self._in_callback_mutex.acquire(False)):
                    self._in_callback_mutex.release()
                    return self.loop_write()
                self._call_socket_register_write()
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

        _client_class = BufferedClient
    return _client_class


class UserProperties:
    """The properties of a received PUBLISH that carried none but user properties:
    ``UserProperty`` is the list of (name, value) pairs, as on paho's Properties."""

    __slots__ = ("UserProperty",)

    def __init__(self, pairs):
        self.UserProperty = pairs

    def __repr__(self):
        return f"UserProperties({self.UserProperty!r})"


_USER_PROPERTY = 0x26


def _utf8(data, pos):
    n = (data[pos] << 8) | data[pos + 1]
    end = pos + 2 + n
    if end > len(data):
        raise ValueError("string runs past the packet")
    return bytes(data[pos + 2:end]).decode("utf-8"), end


def _parse_publish(data, qos):
    """(topic bytes, mid, UserProperties, payload bytes) of a PUBLISH body, or None when
    it has a property other than user properties (paho's decoder then reads it)."""
    n = (data[0] << 8) | data[1]
    pos = 2 + n
    topic = bytes(data[2:pos])
    mid = 0
    if qos:
        mid = (data[pos] << 8) | data[pos + 1]
        pos += 2
    plen = shift = 0
    while True:  # variable byte integer: the properties' length
        b = data[pos]
        pos += 1
        plen |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 21:
            raise ValueError("properties length too long")
    end = pos + plen
    if end > len(data):
        raise ValueError("properties run past the packet")
    pairs = []
    while pos < end:
        if data[pos] != _USER_PROPERTY:
            return None
        k, pos = _utf8(data, pos + 1)
        v, pos = _utf8(data, pos)
        pairs.append((k, v))
    if pos != end:
        raise ValueError("properties overrun their length")
    return topic, mid, UserProperties(pairs), bytes(data[end:])


_PUBLISH, _PUBACK, _DISCONNECT = 0x30, 0x40, 0xE0
_puback = {}


def _plain_puback(reason):
    """(reason code, properties) of a PUBACK with this success reason and no properties."""
    made = _puback.get(reason)
    if made is None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        from paho.mqtt.reasoncodes import ReasonCode

        made = _puback[reason] = (ReasonCode(PacketTypes.PUBACK, identifier=reason),
                                  Properties(PacketTypes.PUBACK))
    return made
_COALESCE_MAX = 65536


def _coalesce(out):
    """Merge the unstarted packets at the head of paho's out queue into one.

    paho acts on a written packet only for a QoS 0 PUBLISH (``on_publish``) and a
    DISCONNECT; those stay packets of their own, everything else (PUBACKs, QoS 1
    publishes, whose completion is their PUBACK) is just bytes on the wire, in order.
    Other threads only append at the right; paho's network thread alone pops the left.
    """
    taken = []
    size = 0
    while size < _COALESCE_MAX:
        try:
            pkt = out.popleft()
        except IndexError:
            break
        cmd = pkt["command"] & 0xF0
        if pkt["pos"] or cmd == _DISCONNECT or (cmd == _PUBLISH and pkt["qos"] == 0):
            out.appendleft(pkt)
            break
        taken.append(pkt)
        size += len(pkt["packet"])
    if len(taken) < 2:
        if taken:
            out.appendleft(taken[0])
        return
    data = b"".join([p["packet"] for p in taken])
    out.appendleft({"command": _PUBACK, "mid": 0, "qos": 1, "pos": 0, "to_process": len(data),
                    "packet": data, "info": None})


def make_client(client_id, *, manual_ack=True, tls=None, broker=None, buffered=True):
    """A paho MQTT 5 client with a fixed id (its session outlives disconnects); with
    ``buffered`` its socket reads go through a :class:`BufferedSocket`."""
    import paho.mqtt.client as mqtt

    cls = _buffered_client_class() if buffered else mqtt.Client
    client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    if broker is not None and broker.username:
        client.username_pw_set(broker.username, broker.password)
    if tls is not None:
        client.tls_set_context(tls.context())
        if tls.insecure:
            client.tls_insecure_set(True)
    elif broker is not None and broker.tls:
        client.tls_set_context(ssl.create_default_context())
    return client


def connect_properties(session_expiry, receive_maximum):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    props.ReceiveMaximum = receive_maximum
    return props
