"""The shipped Mosquitto configuration (gateway/broker/): TLS client certificates, the ACL
confining each identity to its own topics, and a backlog far beyond Mosquitto's default
queue limit arriving whole, once."""

import json

import paho.mqtt.client as mqtt
import pytest
from gridlink.gateway.service import Gateway
from gridlink.gateway.tls import TLSFiles
from gridlink.mosquitto import BrokerTLS, Mosquitto

from tests.support.gateway_rig import (
    Publisher,
    answers,
    count,
    encode,
    grid_map_file,
    report,
    topic,
)
from tests.support.pki import client_tls
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


@pytest.fixture
def broker(tmp_path, pki):
    tls = BrokerTLS(pki / "ca.crt", pki / "broker.crt", pki / "broker.key")
    with Mosquitto(tmp_path / "broker", shipped=True, tls=tls) as b:
        yield b


def gateway_tls(pki):
    return TLSFiles(str(pki / "ca.crt"), str(pki / "gridlink-gateway-0.crt"),
                    str(pki / "gridlink-gateway-0.key"))


def start_gateway(broker, pki, tmp_path):
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 grid=grid_map_file(tmp_path), photos=tmp_path / "photos",
                 tls=gateway_tls(pki)).start()
    assert gw.runtime.wait_ready(15), "gateway could not connect and subscribe over TLS"
    return gw


def test_a_device_speaks_only_for_itself(broker, pki, tmp_path):
    gw = start_gateway(broker, pki, tmp_path)
    # pv-0001's certificate forges a pv-0002 report, even asking for pv-0002's client id
    # (the broker names the connection pv-0001 all the same): MQTT 5 PUBACK "not
    # authorized", and Mosquitto 2.0 then drops the connection
    forger = Publisher(broker.port, client_id="pv-0002", tls=client_tls(pki, "pv-0001"))
    forged = forger.publish(topic("pv-0002", "report"), encode(report("pv-0002", 2)))
    forger.wait_acked(1)
    assert forger.refused == [(forged.mid, "Not authorized")]
    forger.close()
    dev1 = Publisher(broker.port, client_id="pv-0001", tls=client_tls(pki, "pv-0001"))
    dev2 = Publisher(broker.port, client_id="pv-0002", tls=client_tls(pki, "pv-0002"))
    try:
        # Mosquitto grants these subscriptions but checks read access on every delivery
        for filt in ("gridlink/v1/410106/pv-0001/ack", "gridlink/v1/410106/pv-0002/ack",
                     "gridlink/v1/#"):
            dev1.subscribe(filt)
        dev2.subscribe("gridlink/v1/410106/pv-0002/ack")
        dev2.publish(topic("pv-0002", "report"), encode(report("pv-0002", 1)))
        wait_until(lambda: dev2.messages, 15, "pv-0002's ack")
        dev1.publish(topic("pv-0001", "report"), encode(report("pv-0001", 1)))
        dev1.wait_acked(1)
        assert dev1.refused == []
        wait_until(lambda: dev1.messages, 15, "pv-0001's ack")
        # the gateway sent pv-0002's ack before pv-0001's: had the ACL let it through to
        # pv-0001, it would have arrived first
        assert {t for t, _ in dev1.messages} == {"gridlink/v1/410106/pv-0001/ack"}
        ack = json.loads(dev1.messages[0][1])
        assert (ack["id"], ack["status"]) == ("pv-0001:000000000001", "accepted")
        rows = gw.store.fetchall("SELECT id FROM reports ORDER BY id")
        assert rows == [{"id": "pv-0001:000000000001"}, {"id": "pv-0002:000000000001"}]
    finally:
        dev1.close()
        dev2.close()
        gw.stop()


def test_no_certificate_no_connection(broker, pki):
    import ssl

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="nobody", protocol=mqtt.MQTTv5)
    c.tls_set_context(ssl.create_default_context(cafile=str(pki / "ca.crt")))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        c.connect("127.0.0.1", broker.port)
        for _ in range(50):  # TLS 1.3 reports a missing client certificate on first read
            c.loop(0.1)
            if c.is_connected():
                break
        raise ConnectionError("refused") if not c.is_connected() else AssertionError(
            "connected without a client certificate")


def test_backlog_of_50000_arrives_whole_once(broker, pki, tmp_path):
    """Mosquitto's default max_queued_messages 1000 would drop 49,000 of these while the
    publisher still got its PUBACKs; the shipped config lifts it."""
    n = 50_000
    gw = start_gateway(broker, pki, tmp_path)  # registers the persistent session
    gw.stop()
    devices = [Publisher(broker.port, client_id=f"pv-{d:04d}", inflight=500,
                         tls=client_tls(pki, f"pv-{d:04d}")) for d in (1, 2)]
    for d, pub in enumerate(devices, 1):
        pub.subscribe(f"gridlink/v1/410106/pv-{d:04d}/ack")
    for seq in range(1, n // 2 + 1):
        for d, pub in enumerate(devices, 1):
            pub.publish(topic(f"pv-{d:04d}", "report"), encode(report(f"pv-{d:04d}", seq)))
    for pub in devices:
        pub.wait_acked(n // 2, timeout=120)
        assert pub.refused == []
    gw = start_gateway(broker, pki, tmp_path)
    try:
        wait_until(lambda: count(gw.store, "reports") >= n, 180, f"{n} reports")
        wait_until(lambda: gw.runtime.queue_depth() == 0, 30, "an empty queue")
        assert count(gw.store, "reports") == n
        assert count(gw.store, "dead_letters") == 0
        per_device = gw.store.fetchall("SELECT device, COUNT(*) AS n, MIN(seq) AS lo, "
                                       "MAX(seq) AS hi FROM reports GROUP BY device "
                                       "ORDER BY device")
        assert per_device == [{"device": "pv-0001", "n": n // 2, "lo": 1, "hi": n // 2},
                              {"device": "pv-0002", "n": n // 2, "lo": 1, "hi": n // 2}]
        # every device gets every ack: none dropped at the broker's Receive Maximum
        for d, pub in enumerate(devices, 1):
            wait_until(lambda pub=pub: len(answers(b for _, b in list(pub.messages))) >= n // 2,
                     120, f"pv-{d:04d}'s acks")
            got = answers(b for _, b in pub.messages)
            assert {status for _, status, _ in got} == {"accepted"}
            assert sorted(rid for rid, _, _ in got) == [f"pv-{d:04d}:{s:012d}"
                                                       for s in range(1, n // 2 + 1)]
            # grouped: at most 16 an ack, so far fewer messages than reports
            assert len(pub.messages) < n // 2 // 8
    finally:
        gw.stop()
        for pub in devices:
            pub.close()
