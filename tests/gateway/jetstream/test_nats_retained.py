"""Retained messages and a sensor node's piece requests on a district-scoped NATS cluster
(three real nats-server processes, TLS, per-device and per-district permissions): the
gateway's configuration documents and update offers reach a device (paho, MQTT 3.1.1)
that connects after they were sent, on another node; a sensor node's ``…/ota/get`` is
answered on its ``…/ota/chunk``; nothing reaches across districts."""

import queue
import time

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gridlink.firmware.core import desired, messages, otachunk
from gridlink.gateway.api import MIGRATIONS
from gridlink.gateway.errors import GatewayError
from gridlink.gateway.fleet_config import FleetConfig, public_hex
from gridlink.gateway.jetstream.link import JetStreamLink, NatsURL
from gridlink.gateway.rollouts import Rollouts
from gridlink.gateway.service import Gateway, WebOptions

from tests.support.fleet import mcu_release_repo
from tests.support.gateway_rig import grid_map_file
from tests.support.nats_rig import DeviceLeaves, district_gateway
from tests.support.rollouts import set_device, status
from tests.support.waiting import wait_until

pytestmark = pytest.mark.nats

KEY = Ed25519PrivateKey.generate()
BODY = bytes(range(256)) * 20     # 5120 bytes: two pieces of 4096


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """An update repository with sensor-node release mcu 2.0 holding ``image/lib/x.mpy``
    (read only: the module's gateways share it)."""
    return mcu_release_repo(tmp_path_factory.mktemp("repo"), BODY)


def gateway(cluster, tmp_path, repo):
    """District 410106's gateway on node 2; its retained messages go to node 3's MQTT
    listener (node 1's if node 3 is away)."""
    n1, n2, n3 = cluster.nodes
    return district_gateway(cluster, tmp_path, n2,
                            f"&mqtt=127.0.0.1:{n3.mqtt_port},127.0.0.1:{n1.mqtt_port}",
                            web=WebOptions(update_repo=repo))


def test_a_device_connecting_later_gets_its_document_and_its_update_offer(district_cluster,
                                                                           tmp_path, repo):
    gw = gateway(district_cluster, tmp_path, repo)
    gw.store.migrate(extra=MIGRATIONS)
    for device, district in (("pv-0001", "410106"), ("pv-0002", "410105")):
        set_device(gw.store, device, status(), district=district)
    try:
        assert gw.runtime.wait_ready(15)
        wait_until(gw.runtime.link.retained.connected.is_set, 15, "the MQTT connection")
        fleet = FleetConfig(gw.store, key=KEY, publisher=gw.runtime.publish)
        change = fleet.change("device", "pv-0001", {"status_interval_s": 30})
        assert change["sent"] == ["pv-0001"]
        rollout = Rollouts(gw.store, publisher=gw.runtime.publish).create(
            kind="pi", version="1.1", target={"district": "410106"}, stages=(100,))
        assert [d["device"] for d in rollout["devices"]] == ["pv-0001"]
        # a message to another district's device: refused by the cluster, kept nowhere
        gw.runtime.publish("gridlink/v1/410105/pv-0002/config", b"{}", retain=True)
        assert gw.runtime.link.flush(10)  # the cluster has acknowledged all of them
    finally:
        gw.stop()
    # the gateway is gone: a device connecting now still gets both, retained
    dev = DeviceLeaves(district_cluster, "pv-0001", "410106", ("config", "update"))
    other = DeviceLeaves(district_cluster, "pv-0002", "410105", ("config", "update"))
    try:
        (cfg_leaf, cfg, cfg_retained), (upd_leaf, offer, upd_retained) = dev.take(2)
        assert (cfg_leaf, cfg_retained, upd_leaf, upd_retained) == (
            "config", True, "update", True)
        doc = desired.check(cfg, [bytes.fromhex(public_hex(KEY))], "pv-0001")
        assert doc["version"] == change["version"] and doc["settings"] == {
            "status_interval_s": 30}
        update = messages.decode_for("update", offer)
        assert (update["kind"], update["version"]) == ("pi", "1.1")
        with pytest.raises(queue.Empty):
            other.got.get(timeout=2)
    finally:
        dev.close()
        other.close()


def test_a_sensor_nodes_piece_requests_are_answered(district_cluster, tmp_path, repo):
    gw = gateway(district_cluster, tmp_path, repo)
    node = DeviceLeaves(district_cluster, "sn-0001", "410106", ("ota/chunk",), qos=0)
    try:
        assert gw.runtime.wait_ready(15)

        def ask(offset):
            """The reply for ``offset``, asking again after 2 s as the node does (QoS 0:
            a request sent before the cluster knows the gateway's subscription is lost)."""
            for _ in range(10):
                node.client.publish(node.base + "ota/get", otachunk.make_request(
                    "2.0", "image/lib/x.mpy", offset, 4096), qos=0)
                deadline = time.monotonic() + 2
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        leaf, reply, _ = node.got.get(timeout=left)
                    except queue.Empty:
                        break
                    head, data = otachunk.parse_reply(reply)
                    assert leaf == "ota/chunk", leaf
                    if head["offset"] == offset:  # not a late answer to an earlier ask
                        return head, data
            raise AssertionError(f"no answer for offset {offset}")

        got, offset = b"", 0
        while True:
            head, data = ask(offset)
            assert head["size"] == len(BODY), head
            if not data:
                break
            got += data
            offset += len(data)
        assert got == BODY
        assert gw.store.fetchall("SELECT * FROM dead_letters") == []
    finally:
        node.close()
        gw.stop()


def test_a_retained_message_without_mqtt_listeners_in_the_url_is_refused():
    link = JetStreamLink("nats://127.0.0.1:4222", "gw", on_message=print)
    with pytest.raises(GatewayError, match=r"\?mqtt=host:port"):
        link.publish("gridlink/v1/410106/pv-0001/config", b"{}", retain=True)


@pytest.mark.parametrize("url", ["nats://h:1?mqtt=", "nats://h:1?mqtt=h", "nats://h:1?mqtt=h:0",
                                 "nats://h:1?mqtt=h:1,:2"])
def test_a_bad_mqtt_listener_list_is_refused(url):
    from gridlink.gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="mqtt"):
        NatsURL(url)


def test_the_mqtt_listeners_are_read_in_order():
    assert NatsURL("nats://a:4222,b:4222?mqtt=a:1883,b:1884").mqtt == [("a", 1883),
                                                                          ("b", 1884)]


def test_retained_messages_move_to_the_next_listener_when_a_node_dies(nats_cluster, tmp_path):
    n1, n2, n3 = nats_cluster.nodes
    gw = Gateway(broker=f"{n2.nats_url}?mqtt=127.0.0.1:{n3.mqtt_port},127.0.0.1:{n1.mqtt_port}",
                 db=f"sqlite:///{tmp_path}/intake.sqlite", grid=str(grid_map_file(tmp_path)),
                 photos=str(tmp_path / "photos")).start()
    retained = gw.runtime.link.retained
    topic = "gridlink/v1/410106/pv-0001/update"
    try:
        wait_until(lambda: retained.address == n3.mqtt_address, 15, "MQTT to node 3")
        nats_cluster.kill(2)
        # (nats-server takes a new MQTT session only once the session stream has a new
        # leader: ~5-10 s here, longer on a busy machine)
        wait_until(lambda: retained.address == n1.mqtt_address, 45, "MQTT to node 1")
        gw.runtime.publish(topic, b"offer-1", retain=True)
        gw.runtime.publish(topic, b"offer-2", retain=True)   # the newer one stays
        assert gw.runtime.link.flush(30), "not acknowledged through node 1"
    finally:
        gw.stop()
    # a QoS 1 subscription made while the cluster still recovers can fail ("Unable to add
    # JetStream consumer", SUBACK 0x80): the device subscribes again until granted
    nats_cluster.wait_healthy(60, [n1, n2])
    got, granted = queue.Queue(), []
    dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pv-0001",
                      protocol=mqtt.MQTTv311)
    dev.on_message = lambda c, u, m: got.put((m.payload, m.retain))
    dev.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, 1)
    dev.on_subscribe = lambda c, u, mid, codes, p: granted.append(codes[0].value)
    dev.connect(*n1.mqtt_address)
    dev.loop_start()
    try:
        deadline = time.monotonic() + 45
        while not (granted and granted[-1] == 1):
            assert time.monotonic() < deadline, f"subscription refused: {granted}"
            if granted and granted[-1] != 1:
                granted.clear()
                dev.subscribe(topic, 1)
            time.sleep(0.1)
        assert got.get(timeout=15) == (b"offer-2", True)
        with pytest.raises(queue.Empty):
            got.get(timeout=1)
    finally:
        dev.disconnect()
        dev.loop_stop()
