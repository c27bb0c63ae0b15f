import shutil
import tempfile
from pathlib import Path

import pytest
from gridlink.gateway.jetstream.cluster import NatsCluster


@pytest.fixture
def nats_cluster():
    """Three real nats-server processes with JetStream and MQTT, routed to each other."""
    if not (shutil.which("nats-server") or Path("/usr/sbin/nats-server").exists()):
        pytest.skip("nats-server not installed (apt install nats-server)")
    work = Path(tempfile.mkdtemp(prefix="gridlink-nats-"))
    # deliveries to devices lost with a killed node come again after 3 s, not 30
    cluster = NatsCluster(work, mqtt_ack_wait="3s")
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
