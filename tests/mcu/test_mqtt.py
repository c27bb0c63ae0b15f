"""The sensor node's MQTT client (firmware/mcu/gridnode/mqtt.py) under real MicroPython:
its bytes decoded by an independent CPython parser of MQTT 3.1.1, and broker replies
built by that side fed back in.  (tests/mcu/test_node.py runs it against a real Mosquitto.)"""

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython
from tests.support.mqtt311 import packets
from tests.support.paths import ROOT

GRIDNODE = ROOT / "firmware" / "mcu" / "gridnode"


def _len(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pkt(head, body):
    return bytes([head]) + _len(len(body)) + body


def publish(topic, payload, qos=1, pid=1):
    t = topic.encode()
    return pkt(0x30 | qos << 1, struct.pack("!H", len(t)) + t +
               (struct.pack("!H", pid) if qos else b"") + payload)


CONNACK = pkt(0x20, b"\x00\x00")


# -- running the client under MicroPython ---------------------------------------------------

HARNESS = """
import binascii, json
from gridnode.mqtt import MQTTClient, MQTTError

class Sock:
    # a broker's side of the link: replies queued by the test, writes recorded
    def __init__(self, replies):
        self.rx = replies
        self.tx = bytearray()
    def write(self, b):
        self.tx += b
        return len(b)
    def read(self, n):
        if not self.rx:
            raise OSError(110)
        b, self.rx = self.rx[:n], self.rx[n:]
        return b
    def settimeout(self, t):
        pass
    def close(self):
        pass

def client(replies, **kw):
    s = Sock(binascii.unhexlify(replies))
    c = MQTTClient("sn-0001", "broker", 1883, open_socket=lambda h, p, t: s, **kw)
    got = []
    c.set_callback(lambda t, m: got.append([t.decode(), binascii.hexlify(m).decode()]))
    return c, s, got

def done(s, got, **extra):
    extra.update(tx=binascii.hexlify(s.tx).decode(), got=got)
    print(json.dumps(extra))
"""


def run(body, replies=b""):
    files = {"/lib/gridnode/__init__.py": (GRIDNODE / "__init__.py").read_text(),
             "/lib/gridnode/mqtt.py": (GRIDNODE / "mqtt.py").read_text()}
    script = HARNESS + f"replies = {replies.hex()!r}\n" + body
    out = run_micropython(script, files=files, core=False)
    res = json.loads(out.strip().splitlines()[-1])
    res["tx"] = bytes.fromhex(res["tx"])
    return res


pytestmark = pytest.mark.micropython


def test_connect_carries_the_will_and_the_persistent_session_flag():
    res = run("""
c, s, got = client(replies, keepalive=30, user="u", password="p")
c.set_last_will("gridlink/v1/410106/sn-0001/status", '{"state":"offline"}', retain=True, qos=1)
print(c.connect(clean_session=False))
done(s, got)
""", CONNACK)
    [p] = packets(res["tx"])
    assert p["protocol"] == ("MQTT", 4) and p["client_id"] == "sn-0001"
    assert (p["clean_session"], p["keepalive"]) == (False, 30)
    assert p["will"] == ("gridlink/v1/410106/sn-0001/status", 1, True)
    assert p["will_payload"] == b'{"state":"offline"}'


def test_a_refused_connection_raises_with_the_code():
    res = run("""
c, s, got = client(replies)
try:
    c.connect()
except MQTTError as e:
    done(s, got, error=str(e))
""", pkt(0x20, b"\x00\x05"))
    assert res["error"] == "connection refused, code 5"


def test_publish_waits_for_its_puback_and_serves_messages_meanwhile():
    # the broker delivers an ack message (QoS 1) before the PUBACK of our report
    replies = (CONNACK + publish("gridlink/v1/410106/sn-0001/ack", b'{"id":1}', pid=77)
               + pkt(0x40, struct.pack("!H", 1)))
    res = run("""
c, s, got = client(replies)
c.connect()
pid = c.publish("gridlink/v1/410106/sn-0001/report", b"r1", qos=1)
done(s, got, pid=pid)
""", replies)
    sent = packets(res["tx"])
    assert [p["type"] for p in sent] == ["CONNECT", "PUBLISH", "PUBACK"]
    assert sent[1]["qos"] == 1 and sent[1]["pid"] == res["pid"] == 1
    assert sent[2]["pid"] == 77  # it acknowledged the message it was handed
    assert res["got"] == [["gridlink/v1/410106/sn-0001/ack", b'{"id":1}'.hex()]]


def test_a_link_that_dies_before_the_puback_raises_oserror():
    res = run("""
c, s, got = client(replies)
c.connect()
try:
    c.publish("t", b"x", qos=1)
except OSError as e:
    done(s, got, errno=e.args[0])
""", CONNACK)
    assert res["errno"] == 110


def test_subscribe_ping_check_msg_and_disconnect():
    replies = (CONNACK + pkt(0x90, struct.pack("!H", 1) + b"\x01") + pkt(0xD0, b"")
               + publish("a/ack", b"late", qos=0))
    res = run("""
c, s, got = client(replies)
c.connect()
granted = c.subscribe("a/ack", 1)
c.ping()
first = c.check_msg(1)
second = c.check_msg(1)
third = c.check_msg(1)
c.disconnect()
done(s, got, granted=granted, checks=[first, second, third])
""", replies)
    sent = packets(res["tx"])
    assert [p["type"] for p in sent] == ["CONNECT", "SUBSCRIBE", "PINGREQ", "DISCONNECT"]
    assert (sent[1]["topic"], sent[1]["qos"], res["granted"]) == ("a/ack", 1, 1)
    assert res["checks"] == [True, True, False]  # PINGRESP, message, then nothing
    assert res["got"] == [["a/ack", b"late".hex()]]


@settings(max_examples=4, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
                          st.binary(max_size=300), st.sampled_from([0, 1]), st.booleans()),
                min_size=1, max_size=12),
       st.sampled_from([0, 1, 126, 127, 128, 16383, 16384, 20000]))
def test_any_publish_decodes_to_what_was_sent(msgs, big):
    # one MicroPython run per example: every message, plus one sized at a length boundary
    msgs = [*msgs, ("big", bytes(range(256)) * (big // 256) + b"z" * (big % 256), 0, False)]
    pubacks = b"".join(pkt(0x40, struct.pack("!H", i + 1)) for i in range(len(msgs)))
    spec = [[t, p.hex(), q, r] for t, p, q, r in msgs]
    res = run(f"""
c, s, got = client(replies)
c.connect()
for t, p, q, r in {spec!r}:
    c.publish(t, binascii.unhexlify(p), retain=r, qos=q)
done(s, got)
""", CONNACK + pubacks)
    pubs = [p for p in packets(res["tx"]) if p["type"] == "PUBLISH"]
    assert [(p["topic"], p["payload"], p["qos"], p["retain"]) for p in pubs] == msgs
    pids = [p["pid"] for p in pubs if p["qos"]]
    assert len(set(pids)) == len(pids) and 0 not in pids
