"""A node's disk full: three real nats-server processes, node 3's JetStream store on a
3 MiB filesystem of its own.  Devices keep publishing through the other nodes while the
gateway is down; everything PUBACKed is stored once when the gateway comes back; the
node, given room and an empty store, rejoins; every device gets an ack for every report.

Node 3 is a follower of the reports' stream and of the gateway's consumer: nats-server
2.9.10 deadlocks a replica that cannot write, and a leader that hangs so keeps its
leadership and answers nothing (docs/scaling.md, "A node's disk full")."""

import os
import shutil

import pytest
from gridlink.gateway.jetstream.cluster import NatsCluster
from gridlink.gateway.service import Gateway

from tests.support.gateway_rig import count, grid_map_file
from tests.support.nats_rig import Device311, lead_elsewhere, report_ids, settle_acks
from tests.support.tmpfs import resize, tmpfs
from tests.support.waiting import wait_until

pytestmark = pytest.mark.nats

PER_DEVICE = 3000  # 6,000 reports: more than twice what node 3's 3 MiB holds


def free_bytes(folder):
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def gateway(url, tmp_path):
    return Gateway(broker=url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                   grid=str(grid_map_file(tmp_path)), photos=str(tmp_path / "photos")).start()


def test_a_node_whose_disk_fills_loses_nothing_and_rejoins_when_it_has_room(
        tmp_path, nats_server):
    cluster = NatsCluster(tmp_path / "c", mqtt_ack_wait="3s")
    n1, n2, n3 = cluster.nodes
    with tmpfs(n3.dir / "jetstream", "3m") as disk:
        devices, gw = [], None
        try:
            cluster.start()
            url = f"nats://{n1.host}:{n1.client_port},{n2.host}:{n2.client_port}"
            gw = gateway(url, tmp_path)  # it ran before: its consumer is there
            assert gw.runtime.wait_ready(15)
            gw.stop()
            lead_elsewhere([n1.nats_url, n2.nats_url], n3.name)
            # the devices on nodes 1 and 2; the gateway is down (an outage: the stream
            # holds everything on every node, node 3's disk fills)
            devices = [Device311(*n.mqtt_address, f"pv-{i:04d}", inflight=100)
                       for i, n in enumerate((n1, n2), 1)]
            senders = [d.send_paced(range(1, PER_DEVICE + 1), 0.001) for d in devices]
            wait_until(lambda: free_bytes(disk) < 64 * 1024, 60, "node 3's disk full")
            for t in senders:
                t.join(60)
            for d in devices:  # every report accepted, node 3's disk full or not
                d.wait_acked(PER_DEVICE, 60)
            assert free_bytes(disk) < 64 * 1024
            # the gateway back, on nodes 1 and 2: every accepted report stored once
            gw = gateway(url, tmp_path)
            assert gw.runtime.wait_ready(30)
            wait_until(lambda: count(gw.store, "reports") >= 2 * PER_DEVICE, 90,
                       "every accepted report stored")
            # room again: node 3 stopped, its store emptied (what it wrote when the disk
            # filled may be torn), started: it takes the streams from the other two and
            # rejoins.  The devices' acks: those a full node held up come now, or the
            # device's resend is answered "duplicate"
            cluster.kill(2)
            for p in disk.iterdir():
                shutil.rmtree(p)
            resize(disk, "64m")
            cluster.start_node(2, timeout=90)
            for d in devices:
                settle_acks(d, range(1, PER_DEVICE + 1), timeout=60)
            late = Device311(*n3.mqtt_address, "pv-0003")
            devices.append(late)
            late.send_reports(range(1, 101))
            late.wait_acked(100, 30)
            settle_acks(late, range(1, 101), timeout=30)
            ids = report_ids(gw.store)
            assert len(ids) == len(set(ids)) == 2 * PER_DEVICE + 100
            assert count(gw.store, "dead_letters") == 0
        finally:
            for d in devices:
                d.close()
            if gw is not None:
                gw.stop()
            cluster.stop()
