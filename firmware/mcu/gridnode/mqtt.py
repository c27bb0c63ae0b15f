# A small MQTT 3.1.1 client for the sensor node, in the manner of umqtt.simple:
# blocking socket, one packet at a time, QoS 0/1, last will, keepalive ping.
# Incoming PUBLISH packets go to a callback, also while waiting for a PUBACK/SUBACK.
import struct

from micropython import const

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)


class MQTTError(Exception):
    pass


class MQTTClient:
    def __init__(self, client_id, host, port=1883, keepalive=60, user=None, password=None,
                 timeout=10, open_socket=None):
        # open_socket(host, port, timeout) -> a connected stream (read/write/settimeout/close)
        self.client_id = client_id
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.user = user
        self.pswd = password
        self.timeout = timeout
        self.open_socket = open_socket
        self.sock = None
        self.pid = 0
        self.cb = None
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw_topic = topic
        self.lw_msg = msg
        self.lw_qos = qos
        self.lw_retain = retain

    # -- framing
    def _write(self, data):
        view = memoryview(data)
        while view:
            n = self.sock.write(view)
            if not n:
                raise OSError(32)  # EPIPE: the peer is gone
            view = view[n:]

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.read(n - len(buf))
            if not chunk:
                raise OSError(104)  # ECONNRESET: closed mid-packet
            buf += chunk
        return buf

    def _send(self, header, body):
        hdr = bytearray(5)
        hdr[0] = header
        i = 1
        sz = len(body)
        while True:
            b = sz & 0x7F
            sz >>= 7
            hdr[i] = b | (0x80 if sz else 0)
            i += 1
            if not sz:
                break
        self._write(bytes(hdr[:i]) + body)

    def _recv_len(self):
        n = 0
        sh = 0
        for _ in range(4):
            b = self._read(1)[0]
            n |= (b & 0x7F) << sh
            if not b & 0x80:
                return n
            sh += 7
        raise MQTTError("bad remaining length")

    @staticmethod
    def _str(s):
        if isinstance(s, str):
            s = s.encode()
        return struct.pack("!H", len(s)) + s

    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    # -- session
    def connect(self, clean_session=True):
        self.sock = self.open_socket(self.host, self.port, self.timeout)
        flags = 0x02 if clean_session else 0
        payload = self._str(self.client_id)
        if self.lw_topic:
            flags |= 0x04 | (self.lw_qos & 1) << 3 | (0x20 if self.lw_retain else 0)
            payload += self._str(self.lw_topic) + self._str(self.lw_msg)
        if self.user is not None:
            flags |= 0x80
            payload += self._str(self.user)
            if self.pswd is not None:
                flags |= 0x40
                payload += self._str(self.pswd)
        var = b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack("!H", self.keepalive)
        self._send(_CONNECT, var + payload)
        op = self._read(1)[0]
        if op != _CONNACK or self._recv_len() != 2:
            raise MQTTError(f"expected CONNACK, got 0x{op:02x}")
        resp = self._read(2)
        if resp[1]:
            raise MQTTError(f"connection refused, code {resp[1]}")
        return resp[0] & 1

    def disconnect(self):
        try:
            self._write(bytes((_DISCONNECT, 0)))
        finally:
            self.close()

    def close(self):
        if self.sock:
            try:  # noqa: SIM105 (no contextlib on MicroPython)
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def ping(self):
        self._write(bytes((_PINGREQ, 0)))

    def publish(self, topic, msg, retain=False, qos=0):
        if isinstance(msg, str):
            msg = msg.encode()
        body = self._str(topic)
        pid = 0
        if qos:
            pid = self._next_pid()
            body += struct.pack("!H", pid)
        self._send(_PUBLISH | (qos & 1) << 1 | (1 if retain else 0), body + msg)
        if qos:
            self._wait_for(_PUBACK, pid)
        return pid

    def subscribe(self, topic, qos=0):
        pid = self._next_pid()
        self._send(_SUBSCRIBE, struct.pack("!H", pid) + self._str(topic) + bytes((qos,)))
        granted = self._wait_for(_SUBACK, pid)
        if granted == 0x80:
            raise MQTTError(f"subscription to {topic} refused")
        return granted

    def _wait_for(self, kind, pid):
        # Serve incoming messages until the reply to packet ``pid`` arrives.
        while True:
            op = self.wait_msg()
            if op is not None and op[0] == kind and op[1] == pid:
                return op[2]

    def wait_msg(self):
        # Read one packet. Returns (type, packet id, extra) for PUBACK/SUBACK, the
        # tuple (PINGRESP, 0, None) for a ping reply, or None after serving a PUBLISH.
        op = self._read(1)[0]
        kind = op & 0xF0
        sz = self._recv_len()
        if kind == _PUBLISH:
            data = self._read(sz)
            tlen = data[0] << 8 | data[1]
            topic = data[2:2 + tlen]
            pos = 2 + tlen
            qos = op >> 1 & 3
            pid = 0
            if qos:
                pid = data[pos] << 8 | data[pos + 1]
                pos += 2
            msg = data[pos:]
            if self.cb:
                self.cb(topic, msg)
            if qos == 1:
                self._write(bytes((_PUBACK, 2)) + struct.pack("!H", pid))
            elif qos == 2:
                raise MQTTError("QoS 2 is not supported")
            return None
        data = self._read(sz)
        if kind == _PUBACK:
            return (_PUBACK, data[0] << 8 | data[1], None)
        if kind == _SUBACK:
            return (_SUBACK, data[0] << 8 | data[1], data[2])
        if kind == _PINGRESP:
            return (_PINGRESP, 0, None)
        raise MQTTError(f"unexpected packet 0x{op:02x}")

    def check_msg(self, timeout):
        # Wait up to ``timeout`` seconds for one packet; False if none came.
        self.sock.settimeout(timeout)
        try:
            first = self.sock.read(1)
        except OSError as e:
            if e.args and e.args[0] in (11, 110, 116):  # EAGAIN, ETIMEDOUT (Linux/lwIP)
                return False
            raise
        finally:
            self.sock.settimeout(self.timeout)
        if not first:
            raise OSError(104)
        self.sock = _Pushback(self.sock, first)
        try:
            self.wait_msg()
        finally:
            self.sock = self.sock.inner
        return True


class _Pushback:
    # Puts one already-read byte back in front of a stream.
    def __init__(self, inner, head):
        self.inner = inner
        self.head = head

    def read(self, n):
        if self.head:
            b = self.head
            self.head = b""
            return b
        return self.inner.read(n)

    def write(self, data):
        return self.inner.write(data)

    def settimeout(self, t):
        self.inner.settimeout(t)

    def close(self):
        self.inner.close()
