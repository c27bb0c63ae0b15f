"""The NATS path's configuration: broker URLs, subject ↔ topic, the shipped node template
rendered (plain and TLS) and — with real nats-server processes — the TLS cluster with
per-device permissions carrying a device's reports to the gateway."""

import time

import paho.mqtt.client as mqtt
import pytest
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.jetstream import is_nats_url
from gridlink.gateway.jetstream.cluster import (
    TEMPLATE,
    ClusterError,
    NatsCluster,
    NodeTLS,
    render_node,
)
from gridlink.gateway.jetstream.link import JetStreamLink, NatsURL, subject_of, topic_of
from gridlink.gateway.runtime import GatewayRuntime
from gridlink.gateway.service import Gateway
from gridlink.gateway.tls import TLSFiles
from hypothesis import given
from hypothesis import strategies as st

from tests.support.gateway_rig import count, encode, grid_map_file, report, topic
from tests.support.nats_rig import Device311, acked_ids
from tests.support.pki import client_tls, make_pki
from tests.support.waiting import wait_until

NODE = {"name": "n1", "host": "127.0.0.1", "client_port": 4222, "mqtt_port": 1883,
        "route_port": 6222, "monitor_port": 8222, "store_dir": "/var/lib/nats",
        "routes": [("10.0.0.1", 6222), ("10.0.0.2", 6222), ("10.0.0.3", 6222)]}


def test_nats_urls_select_the_nats_transport_and_list_every_node():
    assert is_nats_url("nats://a:4222") and is_nats_url("NATS+TLS://a:4222")
    assert not is_nats_url("mqtt://a:1883") and not is_nats_url("mqtts://a:8883")
    u = NatsURL("nats://gw:s%40cret@a:4222,b:4223?replicas=3&ack_wait=5")
    assert u.servers == ["nats://a:4222", "nats://b:4223"]
    assert (u.username, u.password, u.replicas, u.ack_wait, u.tls) == ("gw", "s@cret", 3, 5.0,
                                                                      False)
    assert NatsURL("nats+tls://a:4222").servers == ["tls://a:4222"]
    every = NatsURL("nats://a:4222")
    assert (every.durable, every.filter, every.inbox_prefix) == (
        "gridlink", "$MQTT.msgs.gridlink.v1.>", "_INBOX")
    one = NatsURL("nats://a:4222?district=410106")
    assert (one.durable, one.filter, one.inbox_prefix) == (
        "gridlink-410106", "$MQTT.msgs.gridlink.v1.410106.>", "_INBOX.gridlink-410106")


@pytest.mark.parametrize("url", [
    "nats://", "nats://a", "nats://a:port", "nats://a:4222,b", "nats://a:99999",
    "mqtt://a:1883", "nats://a:4222?replica=3", "nats://a:4222?replicas=x",
    "nats://a:4222?replicas=9", "nats://a:4222?ack_wait=0", "nats://a:4222?district=41.06",
    "nats://a:4222?district=410106.>", "nats://a:4222?district=",
])
def test_a_bad_nats_url_is_a_clear_config_error(url):
    with pytest.raises(ConfigError, match="broker URL"):
        NatsURL(url)


@given(st.lists(st.text(st.characters(blacklist_characters="/\0", codec="utf-8"), min_size=1),
                min_size=1, max_size=6))
def test_topic_to_subject_and_back(levels):
    t = "/".join(levels)
    s = subject_of(t)
    assert s.count(".") == t.count("/") and s.count("/") == 2 * t.count(".")
    assert topic_of(s) == t


def test_the_nats_path_maps_device_topics_as_nats_server_does():
    assert subject_of("gridlink/v1/410106/pv-0001/report") == "gridlink.v1.410106.pv-0001.report"
    assert topic_of("gridlink.v1.410106.pv-0001.photo.pv-0001:000000000007.3") == \
        "gridlink/v1/410106/pv-0001/photo/pv-0001:000000000007/3"


def test_the_runtime_takes_the_jetstream_link_for_a_nats_url(tmp_path):
    from gridlink.gateway.link import BrokerLink
    from gridlink.gateway.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/intake.sqlite")
    try:
        rt = GatewayRuntime(broker_url="nats://127.0.0.1:1,127.0.0.1:2", store=store,
                            validator=None, photo_dir=None)
        assert isinstance(rt.link, JetStreamLink)
        assert rt.link.url.servers == ["nats://127.0.0.1:1", "nats://127.0.0.1:2"]
        rt = GatewayRuntime(broker_url="mqtt://127.0.0.1:1", store=store, validator=None,
                            photo_dir=None)
        assert isinstance(rt.link, BrokerLink)
    finally:
        store.close()


def test_the_shipped_template_renders_a_plain_node():
    text = render_node(**NODE)
    assert "server_name: n1" in text
    assert "routes: [nats-route://10.0.0.1:6222, nats-route://10.0.0.2:6222, " \
           "nats-route://10.0.0.3:6222]" in text
    assert "stream_replicas: 3" in text and "$MQTT_msgs" in text
    assert "cert_file" not in text and "verify" not in text
    assert "authorization {" not in text


def test_the_shipped_template_renders_tls_and_per_device_permissions():
    tls = NodeTLS("/etc/nats/ca.crt", "/etc/nats/node.crt", "/etc/nats/node.key")
    text = render_node(**NODE, tls=tls, devices=["pv-0001"])
    assert text.count('cert_file: "/etc/nats/node.crt"') == 3  # clients, MQTT, routes
    assert text.count("verify_and_map: true") == 2  # identity = certificate
    assert '{user: "CN=gridlink-gateway"}' in text
    assert '"gridlink.v1.*.pv-0001.report"' in text and '"gridlink.v1.*.pv-0001.ack"' in text
    # the subject the district's tools issue (gridlink flash: CN=<id>, O=gridlink) is
    # the same identity, with the same rights
    assert '{user: "CN=gridlink-gateway,O=gridlink"}' in text
    rights = [line.split(", permissions: ")[1] for line in text.splitlines()
              if '{user: "CN=pv-0001' in line]
    assert len(rights) == 2 and rights[0] == rights[1]


@pytest.mark.parametrize("kw, match", [
    ({"devices": ["pv-0001"]}, "need TLS"),
    ({"devices": ["pv.0001"], "tls": NodeTLS("a", "b", "c")}, "subject token"),
    ({"devices": ["pv-*"], "tls": NodeTLS("a", "b", "c")}, "subject token"),
])
def test_bad_permissions_input_is_refused(kw, match):
    with pytest.raises(ClusterError, match=match):
        render_node(**NODE, **kw)


def test_a_template_with_an_unknown_placeholder_is_refused(tmp_path):
    bad = tmp_path / "node.conf.tmpl"
    bad.write_text(TEMPLATE.read_text() + "\nlisten: $nowhere\n")
    with pytest.raises(ClusterError, match="nowhere"):
        render_node(**NODE, template=bad)


@pytest.mark.nats
def test_tls_cluster_with_per_device_permissions_carries_reports_and_refuses_forgery(
        tmp_path, nats_cluster_factory):
    # on NATS the certificate names a user (verify_and_map), not an MQTT client id: the
    # workers share one identity, gridlink-gateway, and one durable consumer
    pki = make_pki(tmp_path / "pki", identities=("gridlink-gateway", "pv-0001", "pv-0002"))
    cluster = nats_cluster_factory(
        tls=NodeTLS(str(pki / "ca.crt"), str(pki / "broker.crt"), str(pki / "broker.key")),
        devices=["pv-0001", "pv-0002"])
    n1, n2, _ = cluster.nodes
    gw = Gateway(broker=f"nats+tls://127.0.0.1:{n2.client_port}",
                 db=f"sqlite:///{tmp_path}/intake.sqlite", grid=str(grid_map_file(tmp_path)),
                 photos=str(tmp_path / "photos"),
                 tls=TLSFiles(str(pki / "ca.crt"), str(pki / "gridlink-gateway.crt"),
                              str(pki / "gridlink-gateway.key"))).start()
    dev = forger = None
    try:
        assert gw.runtime.wait_ready(15)
        dev = Device311(*n1.mqtt_address, tls=client_tls(pki, "pv-0001"))
        dev.send_reports(range(1, 21))
        dev.wait_acked(20)
        wait_until(lambda: count(gw.store, "reports") == 20, 20, "20 reports stored")
        wait_until(lambda: len(acked_ids(dev)) == 20, 20, "the device's acks")
        # pv-0002's certificate: another device's acks and topics are not its own
        forger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pv-0002",
                             clean_session=False, protocol=mqtt.MQTTv311)
        forger.tls_set_context(client_tls(pki, "pv-0002"))
        granted = []
        forger.on_subscribe = lambda c, u, mid, codes, p: granted.append(codes[0].value)
        forger.connect(*n1.mqtt_address)
        forger.loop_start()
        forger.subscribe(topic("pv-0001", "ack"), 1)
        wait_until(lambda: granted, 10, "the SUBACK")
        assert granted == [0x80]
        forger.publish(topic("pv-0001", "report"), encode(report("pv-0001", 99)), qos=1)
        time.sleep(1.5)
        assert count(gw.store, "reports") == 20
    finally:
        if forger is not None:
            forger.loop_stop()
        if dev is not None:
            dev.close()
        gw.stop()


@pytest.mark.nats
def test_a_node_that_cannot_start_is_reported_with_its_log(tmp_path, nats_server):
    cluster = NatsCluster(tmp_path / "c", size=1)
    cluster.nodes[0].conf.write_text("this is { not a config\n")
    with pytest.raises(ClusterError, match=r"nats\.log"):
        cluster.start(timeout=10)
    cluster.stop()
