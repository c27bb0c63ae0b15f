"""The gateway's own MQTT 5 client: the packet codec (hypothesis) and the link against a
real Mosquitto, with paho-mqtt as the independent peer."""

import contextlib
import queue
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from gridlink.gateway import wire
from gridlink.gateway.link import BrokerLink
from gridlink.mosquitto import Mosquitto
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# -- codec ---------------------------------------------------------------------------------

topics_ = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"),
                  min_size=1, max_size=40)
pairs = st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=3)


@st.composite
def publishes(draw):
    qos = draw(st.sampled_from([0, 1]))
    mid = draw(st.integers(1, 65535)) if qos else 0
    return (draw(topics_), draw(st.binary(max_size=300)), qos, mid, draw(st.booleans()),
            draw(pairs))


@given(publishes())
def test_publish_round_trips(p):
    topic, payload, qos, mid, retain, user = p
    [(first, body)] = wire.PacketReader().feed(wire.publish(topic, payload, qos, mid, retain,
                                                            user=user))
    assert first >> 4 == wire.PUBLISH
    assert wire.parse_publish(first, body) == (topic, mid, qos, retain, list(user) or (),
                                               payload)


@given(st.lists(publishes(), min_size=1, max_size=8), st.lists(st.integers(1, 400),
                                                              max_size=20))
def test_packets_split_anywhere_come_out_whole_and_in_order(ps, cuts):
    stream = b"".join(wire.publish(t, pl, q, m, r, user=u) for t, pl, q, m, r, u in ps)
    stream += wire.puback(7) + wire.PINGREQ_PACKET
    whole = wire.PacketReader().feed(stream)
    reader, got, pos = wire.PacketReader(), [], 0
    for c in cuts:
        got += reader.feed(stream[pos:pos + c])
        pos += c
    got += reader.feed(stream[pos:])
    assert got == whole and len(whole) == len(ps) + 2 and reader.pending() == 0
    assert [wire.parse_publish(f, b)[0] for f, b in whole[:-2]] == [p[0] for p in ps]


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_garbage_from_the_broker_is_a_wire_error_or_a_packet(data):
    reader = wire.PacketReader(max_size=10_000)
    try:
        packets = reader.feed(data)
    except wire.WireError:
        return
    for first, body in packets:
        kind = first >> 4
        try:
            if kind == wire.PUBLISH:
                wire.parse_publish(first, body)
            elif kind == wire.CONNACK:
                wire.parse_connack(body)
            elif kind in (wire.SUBACK, wire.UNSUBACK):
                wire.parse_suback(body)
            elif kind == wire.DISCONNECT:
                wire.parse_disconnect(body)
            elif kind == wire.PUBACK:
                wire.parse_ack(body)
        except wire.WireError:
            pass


def test_malformed_packets_say_what_is_wrong():
    with pytest.raises(wire.WireError, match="longer than four bytes"):
        wire.PacketReader().feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(wire.WireError, match="limit"):
        wire.PacketReader(max_size=100).feed(b"\x30" + wire.varint(101))
    body = wire.publish("a/b", b"x", 1, 5)[2:]
    with pytest.raises(wire.WireError, match="packet identifier 0"):
        wire.parse_publish(0x32, body[:5] + b"\x00\x00" + body[7:])
    with pytest.raises(wire.WireError, match="unknown property 0x7f"):
        wire.parse_publish(0x30, b"\x00\x01a\x02\x7f\x00")
    with pytest.raises(wire.WireError, match="runs past"):
        wire.parse_publish(0x30, b"\x00\x09a")
    with pytest.raises(wire.WireError, match="not UTF-8"):
        wire.parse_publish(0x30, b"\x00\x01\xff\x00")
    assert wire.PacketReader().feed(b"\x30\x80") == []  # incomplete: waits for more


def test_connect_and_disconnect_carry_the_session_properties():
    [(first, body)] = wire.PacketReader().feed(
        wire.connect("gw-0", keepalive=30, session_expiry=604800, receive_maximum=1000,
                     username="u", password="p"))
    assert first == 0x10 and body[:7] == b"\x00\x04MQTT\x05"
    assert body[7] == 0xC0  # user name + password, clean start off
    props, end = wire.parse_properties(body, 10)
    assert wire.PacketReader().feed(b"") == [] and body[end + 2:end + 6] == b"gw-0"
    assert props == {wire.SESSION_EXPIRY: 604800, wire.RECEIVE_MAXIMUM: 1000}
    assert wire.disconnect() == b"\xe0\x00"
    [(first, body)] = wire.PacketReader().feed(wire.disconnect(0, session_expiry=0))
    assert wire.parse_properties(body, 1)[0] == {wire.SESSION_EXPIRY: 0}


# -- the link against Mosquitto ------------------------------------------------------------

class Peer:
    """A paho client: the independent other end."""

    def __init__(self, port, subscribe=None):
        self.got = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peer-{port}",
                             protocol=mqtt.MQTTv5)
        ready = threading.Event()
        self.c.on_message = lambda c, u, m: self.got.put(
            (m.topic, m.payload, list(getattr(m.properties, "UserProperty", None) or [])))
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_connect = lambda c, *a: c.subscribe(subscribe, 1) if subscribe else ready.set()
        session = Properties(PacketTypes.CONNECT)
        session.SessionExpiryInterval = 3600  # its subscription outlives a broker restart
        self.c.connect("127.0.0.1", port, clean_start=False, properties=session)
        self.c.loop_start()
        assert ready.wait(10)

    def publish(self, topic, payload, props=None):
        self.c.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)

    def take(self, n, timeout=10):
        return [self.got.get(timeout=timeout) for _ in range(n)]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class Received:
    def __init__(self):
        self.q = queue.Queue()

    def __call__(self, topic, payload, mid, qos, user, generation):
        self.q.put((topic, bytes(payload), mid, qos, list(user), generation))

    def take(self, n, timeout=10):
        return [self.q.get(timeout=timeout) for _ in range(n)]


def _link(port, received, **kw):
    subscribed = threading.Event()
    link = BrokerLink(kw.pop("client_id", "gw-test"), "127.0.0.1", port,
                      subscriptions=kw.pop("subscriptions", [("in/#", 1)]),
                      on_message=received, on_subscribed=lambda r: subscribed.set(), **kw)
    link.start()
    assert subscribed.wait(10)
    return link


def test_messages_arrive_with_user_properties_and_are_redelivered_until_acked(tmp_path):
    with Mosquitto(tmp_path / "b") as broker:
        received = Received()
        link = _link(broker.port, received, reconnect_delay=(0.05, 0.2))
        peer = Peer(broker.port)
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("sent_at", "12.5")
        props.ContentType = "application/json"  # another property: skipped over
        peer.publish("in/a", b"one", props)
        peer.publish("in/b", "二".encode())
        first = received.take(2)
        assert [(t, p, q, u) for t, p, _, q, u, _ in first] == [
            ("in/a", b"one", 1, [("sent_at", "12.5")]), ("in/b", "二".encode(), 1, [])]
        gen = first[0][5]
        assert link.ack([first[0][2]], gen) == 1
        time.sleep(0.3)  # the PUBACK reaches the broker before it goes down
        peer.close()
        broker.stop()  # "in/b" was never acked: the broker keeps it in the session
        broker.start()
        [(topic, payload, mid, _, _, gen2)] = received.take(1, timeout=15)
        assert (topic, payload) == ("in/b", "二".encode()) and gen2 > gen
        assert link.ack([first[1][2]], gen) == 0  # an ack of the lost connection: dropped
        assert link.ack([mid], gen2) == 1
        link.stop()
        again = Received()
        link = _link(broker.port, again)
        with pytest.raises(queue.Empty):  # both acked: nothing comes back
            again.take(1, timeout=0.5)
        link.stop()


def test_outgoing_qos1_waits_for_the_window_and_survives_a_broker_restart(tmp_path):
    with Mosquitto(tmp_path / "b", extra_conf="max_inflight_messages 5\n") as broker:
        peer = Peer(broker.port, subscribe="out/#")
        link = _link(broker.port, Received())
        assert link._window == 5  # the broker's Receive Maximum, adopted
        link.publish_many([("out/a", f"{i}".encode()) for i in range(200)])
        assert link.flush(10)
        assert [p for _, p, _ in peer.take(200)] == [f"{i}".encode() for i in range(200)]
        broker.stop()
        for i in range(20):
            link.publish("out/b", f"{i}".encode())  # offline: kept, in order
        assert link.unacked() == 20
        broker.start()
        assert link.flush(20)
        got = []
        while len(got) < 20:  # QoS 1 to the peer: some out/a may come again after the restart
            topic, payload, _ = peer.take(1, timeout=15)[0]
            if topic == "out/b":
                got.append(payload)
        assert got == [f"{i}".encode() for i in range(20)]
        link.stop()
        peer.close()


def test_keepalive_pings_hold_an_idle_connection(tmp_path):
    with Mosquitto(tmp_path / "b") as broker:
        disconnects = []
        link = _link(broker.port, Received(), keepalive=1,
                     on_disconnect=disconnects.append)
        gen = link.generation
        time.sleep(7)  # the broker drops a client silent for 1.5 keep-alives (it looks
        # every few seconds: a silent client with keep-alive 1 is gone after ~6 s here)
        assert link.connected.is_set() and link.generation == gen and not disconnects
        link.stop()


def test_a_link_gone_silent_is_noticed_by_keepalive_and_the_session_resumes(tmp_path):
    # a connection that stops carrying bytes without a reset (a dead route, a NAT that
    # forgot us): only the keep-alive can tell, and unacked messages must come back
    from hil_tests.shaper import Shaper

    with Mosquitto(tmp_path / "b") as broker:
        proxy = Shaper(broker.port)
        lost = queue.Queue()
        received = Received()
        link = _link(proxy.port, received, keepalive=1, connect_timeout=2,
                     reconnect_delay=(0.1, 0.5), on_disconnect=lost.put)
        peer = Peer(broker.port)
        peer.publish("in/a", b"kept")
        [(_, payload, _, _, _, gen)] = received.take(1)
        assert payload == b"kept"  # and not acked
        proxy.cut(mode="stall")  # bytes held, connections kept: no reset
        reason = lost.get(timeout=10)
        assert "keep-alive" in str(reason)
        proxy.restore()
        [(_, again, mid, _, _, gen2)] = received.take(1, timeout=20)
        assert again == b"kept" and gen2 > gen
        assert link.ack([mid], gen2) == 1
        link.stop()
        peer.close()
        proxy.close()


def test_a_qos0_stream_that_needs_no_answer_still_gets_pings_out(tmp_path):
    # nothing to acknowledge for minutes: without pings the broker drops us after 1.5
    # keep-alive periods (Mosquitto looks every few seconds), however busy the incoming
    # side is
    with Mosquitto(tmp_path / "b") as broker:
        lost = []
        received = Received()
        link = _link(broker.port, received, keepalive=1, on_disconnect=lost.append)
        peer = Peer(broker.port)
        gen = link.generation
        deadline = time.monotonic() + 8
        n = 0
        while time.monotonic() < deadline:
            peer.c.publish("in/q0", b"x", qos=0)
            n += 1
            time.sleep(0.05)
        time.sleep(0.3)
        got = 0
        with contextlib.suppress(queue.Empty):
            while True:
                received.take(1, timeout=0.1)
                got += 1
        assert got == n and not lost and link.generation == gen
        link.stop()
        peer.close()


def test_unsubscribe_and_ending_the_session(tmp_path):
    with Mosquitto(tmp_path / "b") as broker:
        received = Received()
        link = _link(broker.port, received)
        assert link.unsubscribe(["in/#"])
        link.stop(session_expiry=0)
        peer = Peer(broker.port)
        peer.publish("in/a", b"nobody")
        link = _link(broker.port, received)  # same client id: a fresh session, no queue
        with pytest.raises(queue.Empty):
            received.take(1, timeout=0.5)
        link.stop()
        peer.close()


def test_a_refused_connection_is_retried_with_its_reason(tmp_path, caplog):
    with Mosquitto(tmp_path / "b", extra_conf="allow_anonymous false\n") as broker:
        link = BrokerLink("gw-x", "127.0.0.1", broker.port, subscriptions=[("in/#", 1)],
                          on_message=Received(), reconnect_delay=(0.05, 0.1))
        with caplog.at_level("WARNING", logger="gridlink.gateway.mqtt"):
            link.start()
            time.sleep(0.5)
            link.stop()
        assert "not authorized (0x87)" in caplog.text or "bad user name" in caplog.text
        assert not link.connected.is_set()


def test_a_stop_while_the_connection_is_made_ends_the_link_at_once(tmp_path, monkeypatch):
    """The gateway starts its link without waiting; a stop (Ctrl-C) that comes before the
    CONNACK must not leave the link's thread reading a connection nobody will close."""
    connecting, go_on = threading.Event(), threading.Event()
    parse = wire.parse_connack

    def slow_connack(body):
        connecting.set()
        go_on.wait(10)
        return parse(body)

    monkeypatch.setattr(wire, "parse_connack", slow_connack)
    with Mosquitto(tmp_path / "b") as broker:
        link = BrokerLink("gw-early-stop", "127.0.0.1", broker.port,
                          subscriptions=[("in/#", 1)], on_message=Received()).start()
        assert connecting.wait(10)
        stopper = threading.Thread(target=link.stop)
        t0 = time.monotonic()
        stopper.start()
        while not link._stopping.is_set():
            time.sleep(0.001)
        go_on.set()  # the CONNACK is read now, after the stop
        stopper.join(15)
        assert time.monotonic() - t0 < 3
        assert not link._thread.is_alive() and link._sock is None
        assert not link.connected.is_set()
