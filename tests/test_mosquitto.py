"""gridlink.mosquitto, the one local-Mosquitto helper: the private broker keeps persistent
sessions across stop()/start() (as the fault tests assume), the shipped config is rendered
for a local folder and port with or without TLS, and a broker that cannot start says so."""

import socket
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from gridlink.mosquitto import (
    BrokerTLS,
    Mosquitto,
    MosquittoError,
    free_port,
    shipped_config,
    shipped_folder,
    wait_port,
)


def _client(**kw):
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)


def test_queued_qos1_message_survives_a_broker_restart(broker):
    got = []
    sub = _client(client_id="fixture-sub", clean_session=False)
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    sub.subscribe("fixture/x", 1)
    time.sleep(0.3)
    sub.disconnect()
    sub.loop_stop()

    pub = _client()
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    pub.publish("fixture/x", b"kept", qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()

    time.sleep(1.5)  # autosave_interval 1
    broker.stop()
    broker.start()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    sub.disconnect()
    sub.loop_stop()
    assert got == [b"kept"]


def settings(conf):
    return [line.split() for line in conf.splitlines() if line.split() and line[0] != "#"]


def test_the_shipped_config_keeps_its_settings_and_points_files_at_the_folder(tmp_path):
    tls = BrokerTLS(tmp_path / "ca.crt", tmp_path / "broker.crt", tmp_path / "broker.key")
    conf = settings(shipped_config(18883, tmp_path, tls))
    keys = [s[0] for s in conf]
    assert ["listener", "18883", "127.0.0.1"] in conf and keys.count("listener") == 1
    assert ["cafile", str(tls.ca)] in conf and ["keyfile", str(tls.key)] in conf
    assert ["require_certificate", "true"] in conf and ["allow_anonymous", "false"] in conf
    assert ["acl_file", str(shipped_folder() / "gridlink.acl")] in conf
    assert ["max_queued_messages", "0"] in conf and ["persistence", "true"] in conf
    assert ["persistence_location", f"{tmp_path}/"] in conf
    assert not [s for s in conf if any(v.startswith(("/etc/", "/var/")) for v in s[1:])]
    # everything after the listener line belongs to it: the TLS files follow at once
    at = keys.index("listener")
    assert keys[at + 1:at + 4] == ["cafile", "certfile", "keyfile"]


def test_without_tls_the_shipped_config_is_plain_and_anonymous(tmp_path):
    conf = settings(shipped_config(18883, tmp_path))
    keys = {s[0] for s in conf}
    assert not keys & {"cafile", "certfile", "keyfile", "require_certificate", "acl_file"}
    assert ["allow_anonymous", "true"] in conf and ["set_tcp_nodelay", "true"] in conf


def test_the_shipped_config_runs_plain(tmp_path):
    with Mosquitto(tmp_path / "b", shipped=True) as broker:
        assert broker.url.startswith("mqtt://")
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        assert c.connect("127.0.0.1", broker.port) == 0
        c.disconnect()
    assert broker.proc is None


def test_tls_without_the_shipped_config_is_refused(tmp_path):
    with pytest.raises(MosquittoError, match="shipped=True"):
        Mosquitto(tmp_path, tls=BrokerTLS(tmp_path, tmp_path, tmp_path))


def test_a_broker_that_dies_at_start_is_a_clear_error_and_reaped(tmp_path):
    broker = Mosquitto(tmp_path / "b", extra_conf="no_such_setting 1\n")
    with pytest.raises(MosquittoError, match="exited with status"):
        broker.start()
    assert broker.proc is None


def test_wait_port_names_the_port_nothing_listens_on():
    port = free_port()
    with pytest.raises(MosquittoError, match=f"nothing listens on 127.0.0.1:{port}"):
        wait_port(port, timeout=0.3)
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(MosquittoError, match="status 3"):
        wait_port(port, proc=proc)
    with socket.create_server(("127.0.0.1", port)):
        wait_port(port, timeout=2)
