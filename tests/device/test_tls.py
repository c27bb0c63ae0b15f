"""The device over TLS with a client certificate, on a real Mosquitto TLS listener."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from gridlink.mosquitto import Mosquitto, free_port

from tests.support.device_rig import DeviceProc, GatewayAcker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


@pytest.fixture
def tls_broker(pki):
    work = Path(tempfile.mkdtemp(prefix="gridlink-device-tls-"))
    work.chmod(0o755)
    port = free_port()
    conf = (f"listener {port} 127.0.0.1\ncafile {pki}/ca.crt\ncertfile {pki}/broker.crt\n"
            f"keyfile {pki}/broker.key\nrequire_certificate true\n"
            "use_identity_as_username true\n")
    try:
        with Mosquitto(work / "broker", extra_conf=conf) as b:
            b.tls_port, b.pki = port, pki
            yield b
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_device_delivers_over_tls_with_its_client_certificate(tmp_path, tls_broker):
    pki = tls_broker.pki
    acker = GatewayAcker(tls_broker).start()
    url = f"mqtts://127.0.0.1:{tls_broker.tls_port}"
    dev = DeviceProc(tmp_path, tls_broker, extra=[
        "--sim", "--cancel-grace", "0", "--tls-ca", str(pki / "ca.crt"),
        "--tls-cert", str(pki / "pv-0001.crt"), "--tls-key", str(pki / "pv-0001.key")])
    dev.args[dev.args.index("--broker") + 1] = url
    try:
        with dev:
            wait_until(lambda: dev.status()["connected"], 20, "TLS connection")
            rid = dev.press("garbage")["last"]
            wait_until(lambda: acker.unique_reports(), 20, "the report over TLS")
    finally:
        acker.stop()
    assert acker.unique_reports()[0]["id"] == rid
    assert acker.errors == []


def test_device_without_a_client_certificate_is_refused_and_keeps_its_reports(
        tmp_path, tls_broker):
    url = f"mqtts://127.0.0.1:{tls_broker.tls_port}"
    dev = DeviceProc(tmp_path, tls_broker, extra=[
        "--sim", "--cancel-grace", "0", "--reconnect-max", "1",
        "--tls-ca", str(tls_broker.pki / "ca.crt")])
    dev.args[dev.args.index("--broker") + 1] = url
    with dev:
        dev.press("garbage")
        wait_until(lambda: "MQTT: cannot reach" in dev.log(), 20, "the refusal logged")
        st = dev.status()
        assert not st["connected"] and st["outbox"]["reports"] == 1
        assert dev.alive()
    assert os.path.exists(dev.data_dir / "outbox")
