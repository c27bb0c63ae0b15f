"""A NATS cluster shared by districts (the shipped template with ``devices`` a mapping
district → ids): a device publishes and subscribes only under its own district and id, a
district's gateway identity reads and writes only its district.  Real nats-server
processes, TLS, client certificates; what the Mosquitto ACL does for one district's
broker (tests/gateway/test_broker_district.py)."""

import asyncio
import time

import nats
import paho.mqtt.client as mqtt
import pytest
from gridlink.gateway.jetstream.cluster import NodeTLS, render_node
from gridlink.gateway.service import Gateway
from gridlink.gateway.tls import TLSFiles

from tests.support.gateway_rig import count, encode, grid_map_file, report, topic
from tests.support.nats_rig import Device311, acked_ids
from tests.support.pki import client_tls, make_pki
from tests.support.waiting import wait_until

from .test_nats_config import NODE

pytestmark = pytest.mark.nats

GW6, GW5 = "gridlink-gateway-410106", "gridlink-gateway-410105"
DISTRICTS = {"410106": ["pv-0001"], "410105": ["pv-0002"]}


def test_the_template_renders_each_device_under_its_district_and_a_gateway_per_district():
    tls = NodeTLS("/etc/nats/ca.crt", "/etc/nats/node.crt", "/etc/nats/node.key")
    text = render_node(**NODE, tls=tls, devices=DISTRICTS)
    assert '"gridlink.v1.410106.pv-0001.report"' in text
    assert '"gridlink.v1.410105.pv-0002.ack"' in text
    assert "gridlink.v1.*." not in text  # no device or gateway reaches across districts
    assert '{user: "CN=gridlink-gateway"}' not in text  # no identity reads every district
    line = next(x for x in text.splitlines() if f'{{user: "CN={GW6}"' in x)
    assert "410105" not in line and '"_INBOX.gridlink-410106.>"' in line


@pytest.fixture
def cluster(tmp_path, nats_cluster_factory):
    pki = make_pki(tmp_path / "pki", identities=(GW6, GW5, "pv-0001", "pv-0002"))
    c = nats_cluster_factory(
        tls=NodeTLS(str(pki / "ca.crt"), str(pki / "broker.crt"), str(pki / "broker.key")),
        devices=DISTRICTS)
    c.pki = pki
    return c


def gateway(cluster, tmp_path, district, identity):
    pki = cluster.pki
    n2 = cluster.nodes[1]
    return Gateway(broker=f"nats+tls://127.0.0.1:{n2.client_port}?district={district}",
                   db=f"sqlite:///{tmp_path}/{district}.sqlite",
                   grid=str(grid_map_file(tmp_path)), photos=str(tmp_path / f"p{district}"),
                   districts=[district],
                   tls=TLSFiles(str(pki / "ca.crt"), str(pki / f"{identity}.crt"),
                                str(pki / f"{identity}.key"))).start()


def suback(cluster, identity, filt):
    """The SUBACK return code ``identity``'s certificate gets for ``filt``."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=identity,
                    clean_session=True, protocol=mqtt.MQTTv311)
    c.tls_set_context(client_tls(cluster.pki, identity))
    granted = []
    c.on_subscribe = lambda cl, u, mid, codes, p: granted.append(codes[0].value)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(filt, 1)
    c.connect(*cluster.nodes[0].mqtt_address)
    c.loop_start()
    try:
        wait_until(lambda: granted, 10, f"the SUBACK for {filt}")
        return granted[0]
    finally:
        c.disconnect()
        c.loop_stop()


def test_devices_and_gateways_stay_in_their_districts(cluster, tmp_path):
    gw6 = gateway(cluster, tmp_path, "410106", GW6)
    gw5 = gateway(cluster, tmp_path, "410105", GW5)
    dev1 = dev2 = forger = None
    try:
        assert gw6.runtime.wait_ready(15) and gw5.runtime.wait_ready(15)
        n1 = cluster.nodes[0]
        dev1 = Device311(*n1.mqtt_address, tls=client_tls(cluster.pki, "pv-0001"))
        dev2 = Device311(*n1.mqtt_address, device="pv-0002", district="410105",
                         tls=client_tls(cluster.pki, "pv-0002"))
        dev1.send_reports(range(1, 11))
        dev1.wait_acked(10)
        wait_until(lambda: count(gw6.store, "reports") == 10, 20, "410106's reports")
        wait_until(lambda: len(acked_ids(dev1)) == 10, 20, "pv-0001's acks")
        # pv-0002 in its own district: its district's gateway receives it (judged there)
        dev2.send_reports([1])
        dev2.wait_acked(1)
        wait_until(lambda: count(gw5.store, "reports") + count(gw5.store, "dead_letters")
                   == 1, 20, "pv-0002's report at 410105's gateway")
        # pv-0001's certificate: its own id under another district, another device's
        # leaves in its district, another district's acks — nothing arrives, nothing read
        forger = Device311(*n1.mqtt_address, device="pv-0001",
                           tls=client_tls(cluster.pki, "pv-0001"))
        for t in (topic("pv-0001", "report", "410105"), topic("pv-0002", "report"),
                  topic("pv-0001", "ack")):
            forger.client.publish(t, encode(report("pv-0001", 99)), qos=1)
        for filt in (topic("pv-0001", "ack", "410105"), topic("pv-0002", "ack", "410105"),
                     topic("pv-0002", "ack"),
                     "gridlink/v1/410106/+/ack", "gridlink/#"):
            assert suback(cluster, "pv-0001", filt) == 0x80, filt
        assert suback(cluster, "pv-0001", topic("pv-0001", "task")) == 1  # its own: granted
        time.sleep(1.5)
        assert count(gw6.store, "reports") == 10
        assert count(gw6.store, "dead_letters") == 0
        assert count(gw5.store, "reports") + count(gw5.store, "dead_letters") == 1
    finally:
        for d in (forger, dev1, dev2):
            if d is not None:
                d.close()
        gw6.stop()
        gw5.stop()


async def _refusals(cluster):
    """What 410106's gateway identity is refused, straight on the NATS client port."""
    from gridlink.gateway.jetstream.link import STREAM, STREAM_PREFIX
    from nats.js.api import ConsumerConfig, RetentionPolicy, StreamConfig

    pki = cluster.pki
    errors = []

    async def on_error(exc):
        errors.append(str(exc))

    import ssl

    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / f"{GW6}.crt"), str(pki / f"{GW6}.key"))
    nc = await nats.connect(f"tls://127.0.0.1:{cluster.nodes[1].client_port}", tls=ctx,
                            inbox_prefix="_INBOX.gridlink-410106", error_cb=on_error,
                            allow_reconnect=False)
    js = nc.jetstream(timeout=2)
    # the stream as the gateway makes it before any device connected (allowed)
    await js.add_stream(StreamConfig(name=STREAM, subjects=[STREAM_PREFIX + ">"],
                                     retention=RetentionPolicy.INTEREST, num_replicas=3))
    refused = {}
    own = "$MQTT.msgs.gridlink.v1.410106.>"
    for name, durable, filt in (("other district's consumer", "gridlink-410105",
                                 "$MQTT.msgs.gridlink.v1.410105.>"),
                                ("every district under its name", "gridlink-410106",
                                 "$MQTT.msgs.gridlink.v1.>"),
                                ("its own", "gridlink-410106", own)):
        try:
            await js.add_consumer(STREAM, ConsumerConfig(name=durable, durable_name=durable,
                                                         filter_subject=filt))
            refused[name] = False
        except (TimeoutError, nats.errors.Error):
            refused[name] = True
    try:
        await js.publish("$MQTT.msgs.gridlink.v1.410105.pv-0002.ack", b"{}",
                         headers={"Nmqtt-Pub": "1"})
        refused["ack to another district"] = False
    except (TimeoutError, nats.errors.Error):
        refused["ack to another district"] = True
    try:
        await nc.request(f"$JS.API.STREAM.MSG.GET.{STREAM}", b'{"seq": 1}', timeout=2)
        refused["reading the stream directly"] = False
    except (TimeoutError, nats.errors.Error):
        refused["reading the stream directly"] = True
    await nc.subscribe("$MQTT.msgs.>")
    await nc.subscribe("_INBOX.>")
    await nc.flush()
    await asyncio.sleep(0.5)
    await nc.close()
    return refused, errors


def test_a_districts_gateway_identity_reads_and_writes_only_its_district(cluster):
    refused, errors = asyncio.run(_refusals(cluster))
    assert refused == {"other district's consumer": True,
                       "every district under its name": True, "its own": False,
                       "ack to another district": True, "reading the stream directly": True}
    violations = " ".join(errors).lower()  # each refusal is the server's, by name
    for what in ("publish to \"$js.api.consumer.create.$mqtt_msgs.gridlink-410105.",
                 "publish to \"$js.api.consumer.create.$mqtt_msgs.gridlink-410106."
                 "$mqtt.msgs.gridlink.v1.>\"",
                 "publish to \"$mqtt.msgs.gridlink.v1.410105.pv-0002.ack\"",
                 "publish to \"$js.api.stream.msg.get.$mqtt_msgs\"",
                 "subscription to \"$mqtt.msgs.>\"", "subscription to \"_inbox.>\""):
        assert f"permissions violation for {what}" in violations, what
