"""District-scoped identity on the shipped broker configuration (gateway/broker/): a device
publishes and subscribes only under ``gridlink/v1/<its district>/<its id>/``, each leaf in
its own direction, whatever topic it tries; a gateway worker only under its district.
Real Mosquitto, TLS client certificates, the shipped ACL (rendered for another district
with ``district_acl``)."""

import pytest
from gridlink.mosquitto import MosquittoError, district_acl, shipped_folder

from tests.support.gateway_rig import Publisher
from tests.support.pki import client_tls, make_pki, shipped_broker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

IDENTITIES = ("gridlink-gateway-0", "pv-0001", "pv-0002")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), identities=IDENTITIES)


@pytest.fixture
def broker(tmp_path, pki):
    with shipped_broker(tmp_path / "broker", pki) as b:
        yield b


def refused(broker, pki, identity, topic, retain=False):
    """Whether the broker refuses ``identity`` publishing on ``topic`` (MQTT 5 PUBACK
    "Not authorized"; Mosquitto then drops the connection: one client per attempt)."""
    client = Publisher(broker.port, client_id=identity, tls=client_tls(pki, identity))
    try:
        client.publish(topic, b'{"probe":1}', retain=retain)
        client.wait_acked(1, 15)
        return [why for _, why in client.refused] == ["Not authorized"]
    finally:
        client.close()


@pytest.mark.parametrize("topic", [
    "gridlink/v1/410105/pv-0001/report",      # its own id, another district
    "gridlink/v1/410105/pv-0001/status",
    "gridlink/v1/410106/pv-0002/report",      # its district, another device
    "gridlink/v1/410106/pv-0001/config",      # its own configuration: the centre's to write
    "gridlink/v1/410106/pv-0001/ack",
    "gridlink/v1/410106/pv-0001/task",
    "gridlink/v1/410106/pv-0001",
    "gridlink/v1/410106/pv-0001/report/x",
    "gridlink/other",
])
def test_a_device_may_publish_nowhere_but_its_own_leaves_in_its_district(broker, pki, topic):
    assert refused(broker, pki, "pv-0001", topic)


@pytest.mark.parametrize("leaf", ["report", "track", "status", "photo/pv-0001:000000000001/0",
                                  "task/result"])
def test_a_device_publishes_its_own_leaves(broker, pki, leaf):
    assert not refused(broker, pki, "pv-0001", f"gridlink/v1/410106/pv-0001/{leaf}")


@pytest.mark.parametrize("topic", [
    "gridlink/v1/410105/pv-0001/task",        # another district's device
    "gridlink/v1/410105/pv-0001/config",
    "gridlink/v1/410105/pv-0001/ack",
    "gridlink/v1/410106/pv-0001/report",      # the devices' leaves
    "gridlink/v1/410106/pv-0001/status",
])
def test_a_gateway_worker_may_publish_only_its_leaves_in_its_district(broker, pki, topic):
    assert refused(broker, pki, "gridlink-gateway-0", topic)


def test_a_device_reads_only_its_own_messages_of_its_district(broker, pki):
    gw = Publisher(broker.port, client_id="gridlink-gateway-0",
                   tls=client_tls(pki, "gridlink-gateway-0"))
    dev1 = Publisher(broker.port, client_id="pv-0001", tls=client_tls(pki, "pv-0001"))
    dev2 = Publisher(broker.port, client_id="pv-0002", tls=client_tls(pki, "pv-0002"))
    try:
        for filt in ("gridlink/v1/+/pv-0001/#", "gridlink/v1/#", "#"):
            dev1.subscribe(filt)
        dev2.subscribe("gridlink/v1/410106/pv-0001/#")       # granted, never delivered
        gw.subscribe("gridlink/v1/+/+/report")
        # the gateway's retained configuration and a task for pv-0001, and for pv-0002
        for t in ("gridlink/v1/410106/pv-0001/config", "gridlink/v1/410106/pv-0002/config"):
            gw.publish(t, b'{"doc":1}', retain=True)
        gw.publish("gridlink/v1/410106/pv-0002/task", b'{"task":2}')
        gw.publish("gridlink/v1/410106/pv-0001/task", b'{"task":1}')
        gw.wait_acked(4)
        assert gw.refused == []
        wait_until(lambda: len(dev1.messages) >= 2, 15, "pv-0001's config and task")
        dev2.publish("gridlink/v1/410106/pv-0002/report", b'{"r":2}')
        wait_until(lambda: gw.messages, 15, "pv-0002's report at the gateway")
        # every delivery to pv-0001 is its own, whichever filter matched it
        assert {t for t, _ in dev1.messages} == {"gridlink/v1/410106/pv-0001/config",
                                                 "gridlink/v1/410106/pv-0001/task"}
        assert dev2.messages == []
        # a device subscribing later gets its own retained configuration, not another's
        late = Publisher(broker.port, client_id="pv-0002", tls=client_tls(pki, "pv-0002"))
        try:
            late.subscribe("gridlink/v1/410106/+/config")
            wait_until(lambda: late.messages, 15, "pv-0002's retained config")
            assert [t for t, _ in late.messages] == ["gridlink/v1/410106/pv-0002/config"]
        finally:
            late.close()
    finally:
        for c in (gw, dev1, dev2):
            c.close()


def test_the_acl_renders_for_another_district_and_scopes_to_it(tmp_path, pki):
    text = district_acl("410105")
    shipped = (shipped_folder() / "gridlink.acl").read_text()
    topic_lines = [ln for ln in text.splitlines() if ln.startswith(("topic ", "pattern "))]
    assert topic_lines and all("gridlink/v1/410105/" in ln for ln in topic_lines)
    assert len(text.splitlines()) == len(shipped.splitlines())
    with pytest.raises(MosquittoError, match="6-digit"):
        district_acl("41010+")
    from gridlink.mosquitto import BrokerTLS, Mosquitto

    tls = BrokerTLS(pki / "ca.crt", pki / "broker.crt", pki / "broker.key")
    with Mosquitto(tmp_path / "b", shipped=True, tls=tls, district="410105") as broker:
        assert not refused(broker, pki, "pv-0001", "gridlink/v1/410105/pv-0001/report")
        assert refused(broker, pki, "pv-0001", "gridlink/v1/410106/pv-0001/report")
