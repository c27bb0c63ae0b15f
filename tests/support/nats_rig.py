"""Parts of the NATS cluster tests: device-side MQTT 3.1.1 clients, a district's
gateway worker and store checks."""

import queue
import threading
import time

import paho.mqtt.client as mqtt

from tests.support.gateway_rig import DISTRICT, encode, grid_map_file, report, topic
from tests.support.pki import client_tls
from tests.support.waiting import wait_until

GW6 = "gridlink-gateway-410106"   # district 410106's gateway identity
# the devices of the district-scoped cluster (conftest's ``district_cluster``)
DISTRICT_DEVICES = {"410106": ["pv-0001", "sn-0001"], "410105": ["pv-0002"]}


class Device311:
    """A device's MQTT side as the firmware makes it (paho, MQTT 3.1.1, persistent
    session, QoS 1): publishes reports, counts PUBACKs, collects its acks.  paho
    reconnects by itself and resends what had no PUBACK."""

    def __init__(self, host, port, device="pv-0001", tls=None, inflight=50,
                 district=DISTRICT):
        self.device = device
        self.district = district
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device,
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 1)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.acked = 0
        self.acks = []
        self.connects = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.granted = []  # the SUBACK's reason code of each (re)subscription to its acks
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.granted.append(
            codes[0].value)
        self.client.connect(host, port, keepalive=5)
        self.client.loop_start()
        wait_until(lambda: self.granted, 15, f"{device} to connect and subscribe")
        assert self.granted == [1], f"{device}: subscription refused ({self.granted})"

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            return
        client.subscribe(topic(self.device, "ack", self.district), 1)
        with self._lock:
            self.connects += 1
        self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._lock:
            self.acked += 1

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.acks.append(msg.payload)

    def send_reports(self, seqs):
        t = topic(self.device, "report", self.district)
        for seq in seqs:
            self.client.publish(t, encode(report(self.device, seq)), qos=1)

    def send_paced(self, seqs, interval=0.01):
        """Publish reports ``seqs`` in a thread, one every ``interval`` s (a stream that is
        still flowing when a node dies)."""
        t = threading.Thread(target=lambda: [self.send_reports([s]) or time.sleep(interval)
                                             for s in seqs], daemon=True)
        t.start()
        return t

    def wait_acked(self, n, timeout=30):
        wait_until(lambda: self.acked >= n, timeout, f"{n} PUBACKs (have {self.acked})")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def report_ids(store):
    return [r["id"] for r in store.fetchall("SELECT id FROM reports")]


def acked_ids(device):
    """Report ids the device's acks answered (as accepted or duplicate)."""
    from tests.support.gateway_rig import answers

    return {rid for rid, status, _ in answers(device.acks) if status != "rejected"}



def settle_acks(device, seqs, timeout=45.0, resend_after=4.0):
    """Wait until the device holds an ack for each of its reports ``seqs``, resending the
    unanswered ones every ``resend_after`` seconds as the firmware does (an ack lost with
    a node is answered again: "duplicate")."""
    want = {f"{device.device}:{s:012d}": s for s in seqs}
    deadline = time.monotonic() + timeout
    resend_at = time.monotonic() + resend_after
    while True:
        missing = set(want) - acked_ids(device)
        if not missing:
            return
        now = time.monotonic()
        if now > deadline:
            raise AssertionError(f"{device.device}: {len(missing)} reports without an ack "
                                 f"(connects {device.connects}, SUBACKs {device.granted}, "
                                 f"acks {len(device.acks)}, connected "
                                 f"{device.connected.is_set()})")
        if now > resend_at:
            device.send_reports(sorted(want[i] for i in missing))
            resend_at = now + resend_after
        time.sleep(0.05)


class DeviceLeaves:
    """A device's MQTT 3.1.1 connection on node 1 (with its certificate on a TLS
    cluster: one with ``.pki``), collecting what arrives on ``leaves`` of its own topics:
    (leaf, payload, retained)."""

    def __init__(self, cluster, device, district, leaves, qos=1):
        self.got = queue.Queue()
        self.base = f"gridlink/v1/{district}/{device}/"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device,
                                  clean_session=True, protocol=mqtt.MQTTv311)
        if getattr(cluster, "pki", None) is not None:
            self.client.tls_set_context(client_tls(cluster.pki, device))
        self.client.on_message = lambda c, u, m: self.got.put(
            (m.topic[len(self.base):], m.payload, m.retain))
        granted = []
        self.client.on_subscribe = lambda c, u, mid, codes, p: granted.extend(
            x.value for x in codes)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(self.base + leaf, qos) for leaf in leaves])
        self.client.connect(*cluster.nodes[0].mqtt_address)
        self.client.loop_start()
        wait_until(lambda: granted, 15, f"{device}'s SUBACK")
        assert granted == [qos] * len(leaves), granted

    def take(self, n, timeout=15):
        return sorted(self.got.get(timeout=timeout) for _ in range(n))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def district_gateway(cluster, tmp_path, node, query="", **kw):
    """District 410106's gateway worker (identity ``GW6``) on ``node`` of a TLS
    cluster, started; ``query``: more broker URL options (``&mqtt=…``); ``kw``: more
    ``Gateway`` options.  Workers made on one ``tmp_path`` share its intake store."""
    from gridlink.gateway.service import Gateway
    from gridlink.gateway.tls import TLSFiles

    pki = cluster.pki
    return Gateway(
        broker=f"nats+tls://127.0.0.1:{node.client_port}?district=410106{query}",
        db=f"sqlite:///{tmp_path}/intake.sqlite", grid=str(grid_map_file(tmp_path)),
        photos=str(tmp_path / "photos"), districts=["410106"],
        tls=TLSFiles(str(pki / "ca.crt"), str(pki / f"{GW6}.crt"), str(pki / f"{GW6}.key")),
        **kw).start()


def lead_elsewhere(servers, node, stream="$MQTT_msgs", consumer="gridlink", timeout=30.0):
    """Move the leadership of ``stream`` and of its ``consumer`` off the node named
    ``node`` (stepdown requests until another node leads both), while that node still
    answers: nats-server 2.9 hangs a leader whose disk fills (docs/scaling.md)."""
    import asyncio

    import nats

    async def move():
        nc = await nats.connect(servers)
        try:
            js = nc.jetstream(timeout=5)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                leaders = ((await js.stream_info(stream)).cluster.leader,
                           (await js.consumer_info(stream, consumer)).cluster.leader)
                if node not in leaders:
                    return leaders
                if leaders[0] == node:
                    await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
                if leaders[1] == node:
                    await nc.request(f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}",
                                     b"", timeout=5)
                await asyncio.sleep(1)
            raise AssertionError(f"{node} still leads {stream} or {consumer} after {timeout}s")
        finally:
            await nc.close()

    return asyncio.run(move())
