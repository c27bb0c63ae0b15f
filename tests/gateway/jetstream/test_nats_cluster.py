"""The gateway on a three-node NATS JetStream cluster, with real nats-server processes:
devices speak MQTT 3.1.1 to one node, the gateway consumes from another; a node killed
mid-stream, a gateway worker killed, the whole cluster restarted."""

import asyncio
import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core import messages
from gridlink.gateway.jetstream.cluster import FrontDoor
from gridlink.gateway.jetstream.link import NatsURL
from gridlink.gateway.service import Gateway

from tests.support.gateway_rig import GatewayProcess, count, grid_map_file, topic
from tests.support.nats_rig import Device311, acked_ids, report_ids, settle_acks
from tests.support.waiting import wait_until

pytestmark = pytest.mark.nats


def gateway(url, tmp_path, **kw):
    return Gateway(broker=url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                   grid=str(grid_map_file(tmp_path)), photos=str(tmp_path / "photos"), **kw)


def consumer_info(nats_url):
    """The shared consumer's state, read over NATS as an operator's tool would."""
    import nats

    async def read():
        nc = await nats.connect(NatsURL(nats_url).servers)
        try:
            return await nc.jetstream().consumer_info("$MQTT_msgs", "gridlink")
        finally:
            await nc.close()

    return asyncio.run(read())


def test_device_on_node_1_gateway_on_node_2_reports_acks_status_and_will(
        nats_cluster, tmp_path):
    n1, n2 = nats_cluster.nodes[0], nats_cluster.nodes[1]
    gw = gateway(n2.nats_url, tmp_path).start()
    dev = Device311(*n1.mqtt_address)
    other = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pv-0003",
                        clean_session=False, protocol=mqtt.MQTTv311)
    other.will_set(topic("pv-0003", "status"),
                   messages.encode(messages.will_status("pv-0003")), qos=1, retain=True)
    states = lambda: [r["state"] for r in gw.store.fetchall(  # noqa: E731
        "SELECT state FROM devices WHERE device = 'pv-0003'")]
    try:
        assert gw.runtime.wait_ready(15)
        dev.send_reports(range(1, 101))
        dev.wait_acked(100)
        wait_until(lambda: count(gw.store, "reports") == 100, 20, "100 reports stored")
        wait_until(lambda: len(acked_ids(dev)) == 100, 20, "the device's acks")
        # the stream keeps nothing the gateway has acknowledged (interest retention)
        wait_until(lambda: consumer_info(n2.nats_url).num_ack_pending == 0, 10, "all acked")
        ids = report_ids(gw.store)
        # status (retained QoS 1) and the will reach the gateway through the stream too
        other.connect(*n1.mqtt_address)
        other.loop_start()
        status = messages.make_status("pv-0003", "online", "1.0", "x", "patrol-vehicle",
                                      time="2026-11-28T02:15:07.250Z")
        other.publish(topic("pv-0003", "status"), messages.encode(status), qos=1,
                      retain=True)
        wait_until(lambda: states() == ["online"], 15, "the online status")
        other.loop_stop()
        other.socket().close()  # gone without a DISCONNECT: the broker publishes the will
        wait_until(lambda: states() == ["offline"], 30, "the will")
        assert count(gw.store, "dead_letters") == 0
    finally:
        other.loop_stop()
        dev.close()
        gw.stop()
    assert sorted(ids) == [f"pv-0001:{s:012d}" for s in range(1, 101)]


def test_node_killed_mid_stream_devices_move_nothing_lost_nothing_doubled(
        nats_cluster, tmp_path):
    _, n2, n3 = nats_cluster.nodes
    front = FrontDoor([n.mqtt_address for n in nats_cluster.nodes])
    # the gateway knows nodes 2 and 3; the devices enter by the front door (node 1 first)
    gw = gateway(f"nats://{n2.host}:{n2.client_port},{n3.host}:{n3.client_port}",
                 tmp_path).start()
    devices = [Device311(front.host, front.port, f"pv-000{i}") for i in (1, 2)]
    try:
        assert gw.runtime.wait_ready(15)
        senders = [d.send_paced(range(1, 301)) for d in devices]
        wait_until(lambda: count(gw.store, "reports") >= 60, 20, "the stream flowing")
        nats_cluster.kill(0)  # the front door gave the first device node 1
        assert devices[0].acked < 300, "the stream was over before the node died"
        for s in senders:
            s.join(30)
        for d in devices:
            d.wait_acked(300, 60)
        wait_until(lambda: count(gw.store, "reports") == 600, 60, "600 reports stored")
        for d in devices:
            settle_acks(d, range(1, 301))
        assert any(d.connects > 1 for d in devices), "no device had to reconnect"
        ids = report_ids(gw.store)
        dead = count(gw.store, "dead_letters")
    finally:
        for d in devices:
            d.close()
        gw.stop()
        front.close()
    assert len(ids) == len(set(ids)) == 600
    assert dead == 0


def test_gateway_worker_killed_its_unacked_messages_go_to_the_other_worker(
        nats_cluster, tmp_path):
    n1, n2, _ = nats_cluster.nodes
    url = n2.nats_url + "?ack_wait=2"
    grid = grid_map_file(tmp_path)
    db = f"sqlite:///{tmp_path}/intake.sqlite"
    a = GatewayProcess(url, db, grid, tmp_path, worker=0).start()
    b = GatewayProcess(url, db, grid, tmp_path, worker=1)
    dev = Device311(*n1.mqtt_address)
    lock = sqlite3.connect(tmp_path / "intake.sqlite", isolation_level=None)
    try:
        # worker A takes messages but commits (so acknowledges) nothing: the store is locked
        lock.execute("BEGIN IMMEDIATE")
        dev.send_reports(range(1, 201))
        dev.wait_acked(200)
        wait_until(lambda: consumer_info(n2.nats_url).num_ack_pending > 0, 30,
                   "worker A to hold unacknowledged messages")
        a.kill()
        lock.execute("ROLLBACK")
        b.start()
        from gridlink.gateway.store import open_store

        store = open_store(db)
        try:
            wait_until(lambda: count(store, "reports") == 200, 30, "200 reports stored")
            # more deliveries than messages: worker A's were delivered again, to worker B
            delivered = consumer_info(n2.nats_url).delivered
            assert delivered.consumer_seq > delivered.stream_seq
            ids = report_ids(store)
        finally:
            store.close()
    finally:
        lock.close()
        dev.close()
        a.kill()
        b.terminate()
        b.kill()
    assert len(ids) == len(set(ids)) == 200


def test_whole_cluster_restarted_keeps_what_was_accepted(nats_cluster, tmp_path):
    n1, n2, n3 = nats_cluster.nodes
    gw = gateway(n3.nats_url, tmp_path).start()
    assert gw.runtime.wait_ready(15)
    gw.stop()  # the consumer exists; its worker is gone
    dev = Device311(*n1.mqtt_address)
    dev.send_reports(range(1, 101))
    dev.wait_acked(100)
    dev.close()
    nats_cluster.stop()
    t = time.monotonic()
    nats_cluster.start(60)
    gw = gateway(n2.nats_url, tmp_path).start()
    dev = Device311(*n1.mqtt_address)  # same client id: its session and acks wait for it
    try:
        wait_until(lambda: count(gw.store, "reports") == 100, 60, "100 reports after restart")
        wait_until(lambda: len(acked_ids(dev)) == 100, 30, "the device's acks after restart")
        ids = report_ids(gw.store)
    finally:
        dev.close()
        gw.stop()
    assert time.monotonic() - t < 60
    assert len(ids) == len(set(ids)) == 100


def test_a_live_worker_keeps_what_it_holds_while_its_commit_waits(nats_cluster, tmp_path):
    """ack_wait 1 s, the store locked for 2.5 s: the worker marks its messages as in
    progress, so none is delivered again, and all are stored once the lock goes."""
    import sqlite3

    n1, n2, _ = nats_cluster.nodes
    gw = gateway(n2.nats_url + "?ack_wait=1", tmp_path).start()
    dev = Device311(*n1.mqtt_address)
    locker = sqlite3.connect(tmp_path / "intake.sqlite", isolation_level=None)
    try:
        assert gw.runtime.wait_ready(15)
        locker.execute("BEGIN EXCLUSIVE")
        dev.send_reports(range(1, 101))
        dev.wait_acked(100)
        wait_until(lambda: gw.runtime.queue_depth() == 100, 10, "the worker holding all")
        time.sleep(2.5)
        locker.execute("ROLLBACK")
        wait_until(lambda: count(gw.store, "reports") == 100, 30, "100 reports stored")
        delivered = consumer_info(n2.nats_url).delivered
        assert delivered.consumer_seq == delivered.stream_seq  # nothing delivered twice
    finally:
        locker.close()
        dev.close()
        gw.stop()
