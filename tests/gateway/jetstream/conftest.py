import shutil
import tempfile
from pathlib import Path

import pytest
from gridlink.gateway.jetstream.cluster import NatsCluster, NodeTLS

from tests.support.nats_rig import DISTRICT_DEVICES, GW6
from tests.support.pki import make_pki


@pytest.fixture
def nats_server():
    """Skip unless Debian's nats-server is installed."""
    if not (shutil.which("nats-server") or Path("/usr/sbin/nats-server").exists()):
        pytest.skip("nats-server not installed (apt install nats-server)")


@pytest.fixture
def nats_cluster_factory(nats_server):
    """``make(**NatsCluster options)``: a started cluster of real nats-server processes,
    stopped at the end of the test.  Deliveries to devices lost with a killed node come
    again after 3 s, not 30."""
    made = []
    work = Path(tempfile.mkdtemp(prefix="gridlink-nats-"))

    def make(**kw):
        kw.setdefault("mqtt_ack_wait", "3s")
        cluster = NatsCluster(work / f"c{len(made)}", **kw)
        made.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:
        for c in made:
            c.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def nats_cluster(nats_cluster_factory):
    """Three nodes with JetStream and MQTT, routed to each other, no TLS."""
    return nats_cluster_factory()


@pytest.fixture
def district_cluster(tmp_path, nats_cluster_factory):
    """Three nodes over TLS with per-device and per-district permissions
    (``DISTRICT_DEVICES``); ``.pki`` the folder of its CA and every identity's files."""
    pki = make_pki(tmp_path / "pki", identities=(GW6, *(
        d for ids in DISTRICT_DEVICES.values() for d in ids)))
    c = nats_cluster_factory(
        tls=NodeTLS(str(pki / "ca.crt"), str(pki / "broker.crt"), str(pki / "broker.key")),
        devices=DISTRICT_DEVICES)
    c.pki = pki
    return c
