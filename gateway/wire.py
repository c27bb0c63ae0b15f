"""MQTT 5 packets for the gateway's broker link, I/O-free (OASIS MQTT 5.0, §2-3).

Only what a QoS 0/1 subscriber-and-publisher with a persistent session sends and
receives: CONNECT/CONNACK, SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK, PUBLISH, PUBACK,
PINGREQ/PINGRESP, DISCONNECT.  ``PacketReader`` splits a byte stream into packets; the
``parse_*`` functions read their bodies.  Malformed input raises :class:`WireError`.
"""

import struct

from .errors import GatewayError

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

MAX_REMAINING = 268_435_455  # the largest Remaining Length a variable byte integer holds

# property identifier → value type (§2.2.2.2)
_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _UTF8, 0x13: _TWO, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _TWO,
    0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}
SESSION_EXPIRY, REASON_STRING, RECEIVE_MAXIMUM, USER_PROPERTY = 0x11, 0x1F, 0x21, 0x26
SERVER_KEEP_ALIVE = 0x13

PINGREQ_PACKET = b"\xc0\x00"


class WireError(GatewayError):
    """Bytes from the broker that are not a well-formed MQTT 5 packet."""


# -- encoding ---------------------------------------------------------------------------

def varint(n):
    """A variable byte integer (§1.5.5)."""
    if 0 <= n < 16384:  # every packet the gateway sends
        return bytes((n,)) if n < 128 else bytes((n & 0x7F | 0x80, n >> 7))
    if not 0 <= n <= MAX_REMAINING:
        raise WireError(f"{n} does not fit a variable byte integer")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def utf8(text):
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(data) > 65535:
        raise WireError("a string of more than 65535 bytes")
    return struct.pack("!H", len(data)) + data


def packet(first, body):
    return bytes((first,)) + varint(len(body)) + body


def properties(pairs=()):
    """Encode (identifier, value) pairs; a User Property value is a (name, value) pair."""
    out = bytearray()
    for ident, value in pairs:
        kind = PROPERTY_TYPES[ident]
        out.append(ident)
        if kind == _BYTE:
            out.append(value)
        elif kind == _TWO:
            out += struct.pack("!H", value)
        elif kind == _FOUR:
            out += struct.pack("!I", value)
        elif kind == _VARINT:
            out += varint(value)
        elif kind == _PAIR:
            out += utf8(value[0]) + utf8(value[1])
        else:  # UTF-8 string or binary data: both two-byte length prefixed
            out += utf8(value)
    return varint(len(out)) + bytes(out)


def connect(client_id, *, keepalive=30, clean_start=False, session_expiry=0,
            receive_maximum=65535, username=None, password=None):
    flags = 0x02 if clean_start else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    props = [(SESSION_EXPIRY, session_expiry), (RECEIVE_MAXIMUM, receive_maximum)]
    body = (utf8("MQTT") + b"\x05" + bytes((flags,)) + struct.pack("!H", keepalive)
            + properties(props) + utf8(client_id))
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += utf8(password)
    return packet(CONNECT << 4, body)


def subscribe(mid, filters):
    """SUBSCRIBE ``filters`` [(topic filter, max QoS)] (no-local etc. left at 0)."""
    body = struct.pack("!H", mid) + properties()
    for filt, qos in filters:
        body += utf8(filt) + bytes((qos,))
    return packet(SUBSCRIBE << 4 | 0x02, body)


def unsubscribe(mid, filters):
    body = struct.pack("!H", mid) + properties()
    for filt in filters:
        body += utf8(filt)
    return packet(UNSUBSCRIBE << 4 | 0x02, body)


def publish(topic, payload, qos=0, mid=0, retain=False, dup=False, user=()):
    first = PUBLISH << 4 | qos << 1 | (0x01 if retain else 0) | (0x08 if dup else 0)
    head = utf8(topic) + (mid.to_bytes(2, "big") if qos else b"")
    props = properties([(USER_PROPERTY, pair) for pair in user]) if user else b"\x00"
    return (bytes((first,)) + varint(len(head) + len(props) + len(payload)) + head + props
            + bytes(payload))


def set_dup(data):
    """The same PUBLISH with its DUP flag set (resent after a reconnect, §4.4)."""
    return bytes((data[0] | 0x08,)) + data[1:]


def puback(mid):
    """PUBACK with reason 0 and no properties: the two-byte short form (§3.4.2.1)."""
    return b"\x40\x02" + mid.to_bytes(2, "big")


def disconnect(reason=0, session_expiry=None):
    if session_expiry is None and reason == 0:
        return b"\xe0\x00"
    props = [] if session_expiry is None else [(SESSION_EXPIRY, session_expiry)]
    return packet(DISCONNECT << 4, bytes((reason,)) + properties(props))


# -- decoding ---------------------------------------------------------------------------

class PacketReader:
    """Splits a byte stream into packets: ``feed(data)`` → [(first byte, body bytes)]."""

    __slots__ = ("_buf", "max_size")

    def __init__(self, max_size=MAX_REMAINING):
        self._buf = b""
        self.max_size = max_size

    def feed(self, data):
        buf = self._buf + data if self._buf else data
        out = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            # the Remaining Length: one to four bytes after the first
            i = pos + 1
            size = shift = 0
            while True:
                if i >= end:
                    size = -1  # incomplete
                    break
                b = buf[i]
                i += 1
                size |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise WireError("Remaining Length longer than four bytes")
            if size < 0:
                break
            if size > self.max_size:
                raise WireError(f"a packet of {size} bytes; the limit is {self.max_size}")
            if i + size > end:
                break
            out.append((buf[pos], buf[i:i + size]))
            pos = i + size
        self._buf = buf[pos:] if pos < end else b""
        return out

    def pending(self):
        """Bytes of an incomplete packet held back."""
        return len(self._buf)


def _string(body, pos):
    if pos + 2 > len(body):
        raise WireError("string length runs past the packet")
    n = body[pos] << 8 | body[pos + 1]
    end = pos + 2 + n
    if end > len(body):
        raise WireError("string runs past the packet")
    try:
        return body[pos + 2:end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise WireError(f"string is not UTF-8: {exc.reason}") from None


def _varint_at(body, pos):
    n = shift = 0
    while True:
        if pos >= len(body):
            raise WireError("variable byte integer runs past the packet")
        b = body[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7
        if shift > 21:
            raise WireError("variable byte integer longer than four bytes")


def parse_properties(body, pos):
    """(dict identifier → value; User Properties as a list of pairs, pos after them)."""
    length, pos = _varint_at(body, pos)
    end = pos + length
    if end > len(body):
        raise WireError("properties run past the packet")
    props = {}
    while pos < end:
        ident = body[pos]
        pos += 1
        kind = PROPERTY_TYPES.get(ident)
        if kind is None:
            raise WireError(f"unknown property 0x{ident:02x}")
        if kind == _BYTE:
            if pos >= end:
                raise WireError("property runs past its length")
            value, pos = body[pos], pos + 1
        elif kind == _TWO:
            value, pos = int.from_bytes(body[pos:pos + 2], "big"), pos + 2
        elif kind == _FOUR:
            value, pos = int.from_bytes(body[pos:pos + 4], "big"), pos + 4
        elif kind == _VARINT:
            value, pos = _varint_at(body, pos)
        elif kind == _UTF8:
            value, pos = _string(body, pos)
        elif kind == _BINARY:
            n = int.from_bytes(body[pos:pos + 2], "big")
            value, pos = bytes(body[pos + 2:pos + 2 + n]), pos + 2 + n
        else:
            k, pos = _string(body, pos)
            v, pos = _string(body, pos)
            props.setdefault(USER_PROPERTY, []).append((k, v))
            continue
        if pos > end:
            raise WireError("property runs past its length")
        props[ident] = value
    if pos != end:
        raise WireError("properties overrun their length")
    return props, end


def parse_publish(first, body):
    """(topic, mid, qos, retain, user properties [(name, value)], payload) of a PUBLISH."""
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise WireError("PUBLISH with QoS 3")
    topic, pos = _string(body, 0)
    mid = 0
    if qos:
        if pos + 2 > len(body):
            raise WireError("PUBLISH without its packet identifier")
        mid = body[pos] << 8 | body[pos + 1]
        pos += 2
        if mid == 0:
            raise WireError("PUBLISH with packet identifier 0")
    if pos < len(body) and body[pos] == 0:  # no properties: the common case
        user, pos = (), pos + 1
    else:
        props, pos = parse_properties(body, pos)
        user = props.get(USER_PROPERTY, ())
    return topic, mid, qos, bool(first & 0x01), user, body[pos:]


def parse_ack(body):
    """(packet identifier, reason code) of a PUBACK (a short one means success)."""
    if len(body) < 2:
        raise WireError("acknowledgement without a packet identifier")
    return body[0] << 8 | body[1], body[2] if len(body) > 2 else 0


def parse_connack(body):
    """(session present, reason code, properties) of a CONNACK."""
    if len(body) < 2:
        raise WireError("CONNACK too short")
    props = parse_properties(body, 2)[0] if len(body) > 2 else {}
    return bool(body[0] & 0x01), body[1], props


def parse_suback(body):
    """(packet identifier, [reason code per filter]) of a SUBACK or UNSUBACK."""
    if len(body) < 3:
        raise WireError("SUBACK/UNSUBACK too short")
    mid = body[0] << 8 | body[1]
    _, pos = parse_properties(body, 2)
    return mid, list(body[pos:])


def parse_disconnect(body):
    """(reason code, reason string or None) of a broker's DISCONNECT."""
    if not body:
        return 0, None
    reason = body[0]
    props = parse_properties(body, 1)[0] if len(body) > 1 else {}
    return reason, props.get(REASON_STRING)


REASONS = {  # the reason codes a gateway meets, for log lines (§2.4)
    0x00: "success", 0x04: "disconnect with will", 0x10: "no matching subscribers",
    0x11: "no subscription existed", 0x80: "unspecified error",
    0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy",
    0x8A: "banned", 0x8B: "server shutting down", 0x8C: "bad authentication method",
    0x8D: "keep alive timeout", 0x8E: "session taken over", 0x8F: "topic filter invalid",
    0x90: "topic name invalid", 0x91: "packet identifier in use",
    0x93: "receive maximum exceeded", 0x95: "packet too large", 0x97: "quota exceeded",
    0x99: "payload format invalid", 0x9A: "retain not supported", 0x9B: "QoS not supported",
    0x9C: "use another server", 0x9D: "server moved",
    0x9E: "shared subscriptions not supported", 0x9F: "connection rate exceeded",
    0xA2: "wildcard subscriptions not supported",
}


def reason_text(code):
    return f"{REASONS.get(code, 'reason')} (0x{code:02x})"
