"""Item 4 of issue 19 on the shipped broker configuration: the identity comes from the
certificate alone.  A certificate connecting with another client's id (another device's,
a gateway worker's) is named after its certificate instead, so it can neither close that
client's connection nor wipe its session and queued messages."""

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from gridlink.gateway.service import Gateway
from gridlink.gateway.tls import TLSFiles

from tests.support.gateway_rig import Publisher, encode, grid_map_file, report, topic
from tests.support.pki import client_tls, make_pki, shipped_broker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

IDENTITIES = ("gridlink-gateway-0", "gridlink-gateway-1", "pv-0001", "pv-0002")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), identities=IDENTITIES)


@pytest.fixture
def broker(tmp_path, pki):
    with shipped_broker(tmp_path / "broker", pki) as b:
        yield b


class Device:
    """A device as the firmware connects: MQTT 3.1.1, persistent session, its task topic
    subscribed at QoS 1; counts how often the broker closed its connection."""

    def __init__(self, broker, pki, identity, client_id=None, clean=False):
        self.tasks = []
        self.dropped = 0
        self.connected = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or identity,
                             clean_session=clean, protocol=mqtt.MQTTv311)
        self.c.tls_set_context(client_tls(pki, identity))
        self.c.on_connect = lambda *a: self.connected.set()
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda c, u, m: self.tasks.append(json.loads(m.payload))
        self.c.reconnect_delay_set(5, 5)  # a kicked client must not simply kick back at once
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        assert self.connected.wait(10), f"{identity} could not connect"

    def _on_disconnect(self, *a):
        self.dropped += 1

    def subscribe(self, filt):
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(filt, 1)
        assert done.wait(10)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def broker_log(broker):
    return (broker.workdir / "mosquitto.log").read_text()


def test_a_device_certificate_cannot_take_another_devices_session(broker, pki):
    # pv-0002 registers its session and goes offline; a task is queued for it
    dev2 = Device(broker, pki, "pv-0002")
    dev2.subscribe(topic("pv-0002", "task"))
    dev2.close()
    gw = Publisher(broker.port, client_id="gridlink-gateway-0",
                   tls=client_tls(pki, "gridlink-gateway-0"))
    gw.publish(topic("pv-0002", "task"), b'{"task": "t-1"}')
    gw.wait_acked(1)
    # pv-0001's certificate asks for pv-0002's client id with a clean session (which,
    # granted, wipes pv-0002's session and its queued task)
    thief = Device(broker, pki, "pv-0001", client_id="pv-0002", clean=True)
    try:
        # pv-0002 comes back: its session and the queued task survived
        dev2 = Device(broker, pki, "pv-0002")
        wait_until(lambda: dev2.tasks, 10, "pv-0002's queued task")
        assert dev2.tasks == [{"task": "t-1"}]
        assert "as pv-0001 (p2, c1, k60, u'pv-0001')" in broker_log(broker)
        # and pv-0001's certificate, connecting as pv-0002 again, does not close it
        Device(broker, pki, "pv-0001", client_id="pv-0002").close()
        assert dev2.dropped == 0
        assert "Client pv-0002 already connected" not in broker_log(broker)
        dev2.close()
    finally:
        thief.close()
        gw.close()


def test_a_device_certificate_cannot_take_a_gateway_workers_place(broker, pki, tmp_path):
    tls = TLSFiles(str(pki / "ca.crt"), str(pki / "gridlink-gateway-0.crt"),
                   str(pki / "gridlink-gateway-0.key"))
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 grid=grid_map_file(tmp_path), photos=tmp_path / "photos", tls=tls).start()
    assert gw.runtime.wait_ready(15)
    dev = Publisher(broker.port, client_id="pv-0002", tls=client_tls(pki, "pv-0002"))
    thief = Device(broker, pki, "pv-0001", client_id="gridlink-gateway-0", clean=True)
    try:
        dev.subscribe(topic("pv-0002", "ack"))
        dev.publish(topic("pv-0002", "report"), encode(report("pv-0002", 1)))
        wait_until(lambda: dev.messages, 15, "pv-0002's ack")
        assert json.loads(dev.messages[0][1])["status"] == "accepted"
        assert gw.store.fetchall("SELECT id FROM reports") == [{"id": "pv-0002:000000000001"}]
        log = broker_log(broker)
        assert "Client gridlink-gateway-0 already connected" not in log
        assert "as pv-0001 (" in log
    finally:
        thief.close()
        dev.close()
        gw.stop()


def test_each_gateway_worker_connects_with_its_own_certificate(broker, pki, tmp_path):
    gws = []
    try:
        for worker in (0, 1):
            tls = TLSFiles(str(pki / "ca.crt"), str(pki / f"gridlink-gateway-{worker}.crt"),
                           str(pki / f"gridlink-gateway-{worker}.key"))
            gws.append(Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                               grid=grid_map_file(tmp_path), photos=tmp_path / "photos",
                               tls=tls, worker=worker).start())
            assert gws[-1].runtime.wait_ready(15)
        dev = Publisher(broker.port, client_id="pv-0001", tls=client_tls(pki, "pv-0001"))
        dev.subscribe(topic("pv-0001", "ack"))
        for seq in range(1, 21):
            dev.publish(topic("pv-0001", "report"), encode(report("pv-0001", seq)))
        wait_until(lambda: gws[0].store.fetchall("SELECT COUNT(*) AS n FROM reports")[0]["n"]
                 == 20, 20, "20 reports")
        dev.close()
        log = broker_log(broker)
        assert "already connected" not in log and "denied" not in log.lower()
    finally:
        for gw in gws:
            gw.stop()


def test_gridlink_gateway_run_gives_each_worker_its_own_certificate(broker, pki, tmp_path):
    """``--workers 2`` with ``{worker}`` in the certificate paths: each worker process
    connects with its own certificate, so the broker sees two clients, neither closing
    the other."""
    from tests.support.gateway_rig import GatewayProcess

    gw = GatewayProcess(broker.url, f"sqlite:///{tmp_path}/intake.sqlite",
                        grid_map_file(tmp_path), tmp_path, "--workers", "2",
                        "--tls-ca", str(pki / "ca.crt"),
                        "--tls-cert", str(pki / "gridlink-gateway-{worker}.crt"),
                        "--tls-key", str(pki / "gridlink-gateway-{worker}.key"))
    with gw:
        wait_until(lambda: gw.subscribed() >= 2, 30, "both workers subscribed")
        log = broker_log(broker)
        for worker in (0, 1):
            assert f"as gridlink-gateway-{worker} (p5, c0, k30, u'gridlink-gateway-{worker}')" \
                in log
        assert "already connected" not in log and "denied" not in log.lower()
