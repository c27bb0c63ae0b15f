"""The running gateway against a real Mosquitto: PUBACK after commit, device acks, hooks,
presence with a real last will, metrics, graceful SIGTERM, a locked store."""

import json
import signal
import sqlite3
import subprocess
import sys
import urllib.request

import pytest
from gridlink.gateway.service import Gateway
from gridlink.gateway.store import open_store

from tests.support.gateway_rig import (
    ROOT,
    GatewayProcess,
    Publisher,
    answers,
    count,
    encode,
    grid_map_file,
    report,
    topic,
)
from tests.support.probing_rig import scrape_metrics
from tests.support.waiting import wait_until


@pytest.fixture
def gateway(broker, store_url, tmp_path):
    gw = Gateway(broker=broker.url, db=store_url, grid=grid_map_file(tmp_path),
                 photos=tmp_path / "photos", http="127.0.0.1:0")
    gw.start()
    assert gw.runtime.wait_ready(10)
    yield gw
    gw.stop()


@pytest.fixture
def device(broker):
    pub = Publisher(broker.port)
    pub.subscribe("gridlink/v1/410106/+/ack")
    pub.subscribe("gridlink/v1/410106/+/task")
    yield pub
    pub.close()


def acks(device, n):
    """The first ``n`` reports answered, as {"id", "status", "reason"} (grouped acks
    expanded)."""
    def answered():
        return answers(p for t, p in list(device.messages) if t.endswith("/ack"))

    wait_until(lambda: len(answered()) >= n, 30, f"{n} acks")
    return [{"id": i, "status": s, "reason": r} for i, s, r in answered()]


def test_reports_are_committed_and_acked_to_the_device(gateway, device):
    seen = []
    gateway.runtime.on_report.append(lambda rows: seen.extend(r["id"] for r in rows))
    for seq in (1, 2, 1):
        device.publish(topic("pv-0001", "report"), encode(report(seq=seq)))
    device.publish(topic("pv-0001", "report"), encode(report(seq=3, code="99999")))
    device.publish(topic("pv-0001", "report"), encode(report(seq=4, device="pv-0002")))
    got = acks(device, 5)
    assert sorted((a["id"] or "", a["status"]) for a in got) == sorted([
        ("pv-0001:000000000001", "accepted"), ("pv-0001:000000000002", "accepted"),
        ("pv-0001:000000000001", "duplicate"), ("pv-0001:000000000003", "rejected"),
        ("", "rejected")])
    assert count(gateway.store, "reports") == 2 and count(gateway.store, "dead_letters") == 2
    assert sorted(seen) == ["pv-0001:000000000001", "pv-0001:000000000002"]


@pytest.mark.parametrize("ids_max", [16, 1])
def test_a_devices_reports_of_one_batch_are_acked_together(broker, device, store_url,
                                                           tmp_path, ids_max):
    """A backlog sent while the gateway is away arrives in one batch: its acks are grouped,
    ``ack_ids_max`` ids at most (1: one plain ack a report, for devices reading only id)."""
    gw = Gateway(broker=broker.url, db=store_url, grid=grid_map_file(tmp_path),
                 photos=tmp_path / "photos", ack_ids_max=ids_max).start()
    assert gw.runtime.wait_ready(10)  # subscribed: the session keeps what comes now
    gw.stop()
    for seq in range(1, 21):
        device.publish(topic("pv-0001", "report"), encode(report(seq=seq))).wait_for_publish(5)
    gw = Gateway(broker=broker.url, db=store_url, grid=grid_map_file(tmp_path),
                 photos=tmp_path / "photos", ack_ids_max=ids_max).start()
    try:
        got = acks(device, 20)
    finally:
        gw.stop()
    assert sorted(a["id"] for a in got) == [f"pv-0001:{s:012d}" for s in range(1, 21)]
    bodies = [json.loads(p) for t, p in device.messages if t.endswith("/ack")]
    sizes = [len(b.get("ids") or [b["id"]]) for b in bodies]
    assert sum(sizes) == 20 and max(sizes) <= ids_max
    if ids_max == 1:
        assert all("ids" not in b for b in bodies)
    else:  # grouped (how many batches the backlog came in may vary)
        assert len(bodies) < 20 and max(sizes) > 1


def test_a_batch_committed_but_never_pubacked_comes_again_and_changes_nothing(
        broker, device, store_url, tmp_path):
    """The gateway dies between its commit and its PUBACK (here: its PUBACKs are dropped,
    then it stops keeping its session): the broker hands the messages over again, and the
    reports come back as duplicates, the rejections as the same dead letters."""
    kw = {"broker": broker.url, "db": store_url, "grid": grid_map_file(tmp_path),
          "photos": tmp_path / "photos", "client_id": "gw-redelivered"}
    good = [encode(report(seq=s)) for s in (1, 2, 3)]
    bad = [encode(report(seq=s, code="99999")) for s in (4, 5)] + [b"\x00garbage"]
    first = Gateway(**kw)
    first.runtime.link.ack = lambda mids, generation: 0
    first.start()
    assert first.runtime.wait_ready(10)
    for body in good + bad:
        device.publish(topic("pv-0001", "report"), body)
    store = first.store
    wait_until(lambda: count(store, "reports") == 3 and count(store, "dead_letters") == 3, 30,
             "the first commit")
    first.stop()
    again = []
    second = Gateway(**kw)
    second.runtime.on_commit.append(again.extend)
    second.start()
    try:
        wait_until(lambda: len(again) >= 6, 30, "the six messages handed over again")
        assert sorted(it.outcome for it in again) == ["duplicate"] * 3 + ["rejected"] * 3
        assert count(second.store, "reports") == 3
        assert count(second.store, "dead_letters") == 3
    finally:
        second.stop()


def test_runtime_publishes_tasks_down(gateway, device):
    task = {"v": 1, "task": "T-1", "type": "verify", "report": None, "lat": 34.8,
            "lon": 113.29, "grid": None, "text": "核实", "deadline": None}
    gateway.runtime.publish(topic("pv-0001", "task"), json.dumps(task).encode())
    wait_until(lambda: any(t.endswith("/task") for t, _ in device.messages), 10, "the task")


def test_metrics_endpoint(gateway, device):
    device.publish(topic("pv-0001", "report"), encode(report(seq=1)))
    device.publish(topic("pv-0001", "report"), b"not json")
    acks(device, 2)
    text = scrape_metrics(gateway)
    lines = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines()
             if ln and not ln.startswith("#")}
    assert lines['gridlink_gateway_reports_total{outcome="accepted"}'] == 1
    assert lines['gridlink_gateway_rejects_total{reason="json"}'] == 1
    assert lines["gridlink_gateway_batch_size_count"] >= 1
    assert lines["gridlink_gateway_publish_to_commit_seconds_count"] == 1
    assert lines["gridlink_gateway_queue_depth"] == 0
    assert lines["gridlink_gateway_broker_connected"] == 1
    assert "gridlink_gateway_devices_online" in lines


DEVICE_SCRIPT = """
import json, sys, time
import paho.mqtt.client as mqtt
port = int(sys.argv[1])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pv-0009", protocol=mqtt.MQTTv5)
t = "gridlink/v1/410106/pv-0009/status"
c.will_set(t, json.dumps({"v": 1, "device": "pv-0009", "state": "offline"}), qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=5)
c.loop_start()
status = {"v": 1, "device": "pv-0009", "state": "online", "time": None, "fix": None,
          "outbox": {"reports": 2, "track": 1}, "disk_free": 1000, "cpu_temp": None,
          "uptime": 5, "firmware": "0.1.0", "codebook": "GB/T 47678.5-2026@x",
          "profile": "fixed-terminal"}
c.publish(t, json.dumps(status), qos=1, retain=True).wait_for_publish(5)
print("online", flush=True)
time.sleep(600)
"""


def test_presence_follows_status_and_the_last_will(gateway, broker):
    dev = subprocess.Popen([sys.executable, "-c", DEVICE_SCRIPT, str(broker.port)],
                           stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert dev.stdout.readline().strip() == b"online"
        row = wait_until(lambda: gateway.store.fetchall(
            "SELECT * FROM devices WHERE device = 'pv-0009' AND state = 'online'"), 10)
        assert (row[0]["outbox_reports"], row[0]["profile"]) == (2, "fixed-terminal")
    finally:
        dev.kill()  # no DISCONNECT: the broker publishes the will
        dev.wait()
    row = wait_until(lambda: gateway.store.fetchall(
        "SELECT * FROM devices WHERE device = 'pv-0009' AND state = 'offline'"), 20,
        "the last will")
    assert row[0]["profile"] == "fixed-terminal"


def test_a_fresh_gateway_learns_retained_status(broker, device, store_url, tmp_path):
    status = {"v": 1, "device": "pv-0003", "state": "buffering", "time": None, "fix": None,
              "outbox": {"reports": 40, "track": 3}, "disk_free": None, "cpu_temp": None,
              "uptime": 9, "firmware": "0.1.0", "codebook": "b", "profile": "patrol-vehicle"}
    device.publish(topic("pv-0003", "status"), encode(status), retain=True).wait_for_publish(5)
    gw = Gateway(broker=broker.url, db=store_url, grid=grid_map_file(tmp_path),
                 photos=tmp_path / "photos").start()
    try:
        row = wait_until(lambda: gw.store.fetchall("SELECT state, outbox_reports FROM devices"), 10)
        assert row == [{"state": "buffering", "outbox_reports": 40}]
    finally:
        gw.stop()


def test_nothing_is_acked_while_the_store_is_locked(broker, tmp_path):
    """A commit that cannot happen must leave the broker holding the messages: kill the
    gateway while SQLite is locked by another connection, and a new one gets them all."""
    db = tmp_path / "intake.sqlite"
    url = f"sqlite:///{db}"
    open_store(url).migrate()
    grid = grid_map_file(tmp_path)
    gw = GatewayProcess(broker.url, url, grid, tmp_path).start()
    pub = Publisher(broker.port)
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the writer lock, held by someone else
    try:
        for seq in range(1, 201):
            pub.publish(topic("pv-0001", "report"), encode(report(seq=seq)))
        pub.wait_acked(200)
        wait_until(lambda: b"commit of" in gw.log.read_bytes(), 30, "a failed commit")
        gw.kill()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    store = open_store(url)
    assert count(store, "reports") == 0
    with GatewayProcess(broker.url, url, grid, tmp_path):
        wait_until(lambda: count(store, "reports") == 200, 30, "200 reports after the restart")
    pub.close()
    store.close()


def metric(gw, name):
    text = urllib.request.urlopen(gw.http_url + "/metrics", timeout=5).read().decode()
    return next(float(ln.split(" ")[1]) for ln in text.splitlines() if ln.startswith(name + " "))


def test_the_store_down_is_said_once_and_its_return_too(broker, device, tmp_path, caplog):
    """A store that cannot commit: "intake store unavailable" once (not once a retry),
    ``gridlink_gateway_store_up`` 0 and nothing acked meanwhile; when it is back, "intake
    store back after N s", 1 again, and the reports committed and acked."""
    caplog.set_level("INFO", logger="gridlink.gateway")
    db = tmp_path / "intake.sqlite"
    gw = Gateway(broker=broker.url, db=f"sqlite:///{db}", grid=grid_map_file(tmp_path),
                 photos=tmp_path / "photos", http="127.0.0.1:0").start()
    assert gw.runtime.wait_ready(10)
    assert metric(gw, "gridlink_gateway_store_up") == 1
    lock = sqlite3.connect(db, isolation_level=None, timeout=0)
    lock.execute("BEGIN IMMEDIATE")  # the writer lock, held by someone else
    try:
        for seq in (1, 2):
            device.publish(topic("pv-0001", "report"), encode(report(seq=seq)))
        wait_until(lambda: metric(gw, "gridlink_gateway_commit_failures_total") >= 3, 60,
                   "three failed commits")
        assert metric(gw, "gridlink_gateway_store_up") == 0
        down = [r for r in caplog.records if r.getMessage().startswith("intake store")]
        assert len(down) == 1 and down[0].levelname == "ERROR", down
        assert "unavailable" in down[0].getMessage() and down[0].store == "down"
        assert "locked" in down[0].getMessage()   # the store's own reason
        assert not [t for t, _ in device.messages if t.endswith("/ack")]
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert [a["id"] for a in acks(device, 2)] == ["pv-0001:000000000001", "pv-0001:000000000002"]
    try:
        assert count(gw.store, "reports") == 2
        assert metric(gw, "gridlink_gateway_store_up") == 1
        back = [r for r in caplog.records if r.getMessage().startswith("intake store back")]
        assert len(back) == 1 and back[0].store == "up", back
    finally:
        gw.stop()


def test_sigterm_commits_or_leaves_unacked(broker, tmp_path):
    url = f"sqlite:///{tmp_path}/intake.sqlite"
    grid = grid_map_file(tmp_path)
    gw = GatewayProcess(broker.url, url, grid, tmp_path).start()
    pub = Publisher(broker.port, inflight=500)
    n = 4000
    for seq in range(1, n + 1):
        pub.publish(topic("pv-0001", "report"), encode(report(seq=seq)))
        if seq == n // 3:
            gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(30) == 0
    pub.wait_acked(n)
    store = open_store(url)
    first = count(store, "reports")
    with GatewayProcess(broker.url, url, grid, tmp_path):
        wait_until(lambda: count(store, "reports") == n, 60, f"{n} reports")
    assert count(store, "reports", "seq <= ?", (n,)) == n and first <= n
    store.close()
    pub.close()


def test_retire_hands_a_stopped_workers_share_back(broker, tmp_path):
    """A stopped worker's session keeps getting its share of a $share subscription;
    ``retire`` commits what it was given and ends the session, so nothing waits for it."""
    url = f"sqlite:///{tmp_path}/intake.sqlite"
    grid = grid_map_file(tmp_path)

    def worker(i):
        gw = Gateway(broker=broker.url, db=url, grid=grid, photos=tmp_path / "photos",
                     worker=i).start()
        assert gw.runtime.wait_ready(10)
        return gw

    w0, w1 = worker(0), worker(1)
    w1.stop()  # its session stays in the share group
    pub = Publisher(broker.port)
    for seq in range(1, 401):
        pub.publish(topic("pv-0001", "report"), encode(report(seq=seq)))
    pub.wait_acked(400)
    w1 = Gateway(broker=broker.url, db=url, grid=grid, photos=tmp_path / "photos", worker=1)
    w1.start()
    assert w1.runtime.retire(idle=0.5)
    parked = w1.metrics.reports.labels("accepted")._value.get()
    w1.stop()
    assert parked > 0  # the broker had parked a share in the stopped worker's session
    wait_until(lambda: count(w0.store, "reports") == 400, 20, "all 400")
    for seq in range(401, 601):
        pub.publish(topic("pv-0001", "report"), encode(report(seq=seq)))
    wait_until(lambda: count(w0.store, "reports") == 600, 20, "all 600 through worker 0")
    pub.close()
    w0.stop()


def test_without_the_board_only_metrics_are_served(broker, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gridlink.gateway.api", None)  # board not installed
    # (and not left on the package by a test that imported it before)
    monkeypatch.delattr(sys.modules["gridlink.gateway"], "api", raising=False)
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/i.sqlite",
                 grid=grid_map_file(tmp_path), photos=tmp_path / "photos",
                 http="127.0.0.1:0").start()
    try:
        body = urllib.request.urlopen(gw.http_url + "/metrics", timeout=5).read().decode()
        assert "gridlink_gateway_queue_depth" in body
    finally:
        gw.stop()


def test_logs_are_one_json_object_per_line():
    import io
    import logging

    from gridlink.gateway import logs

    out = io.StringIO()
    root = logging.getLogger("gridlink")
    saved = root.handlers[:], root.level, root.propagate
    logs.setup("info", worker=3, stream=out)
    try:
        logging.getLogger("gridlink.gateway").warning("rejected %s", "x", extra={"topic": "t"})
    finally:
        root.handlers[:], root.level, root.propagate = saved
    line = json.loads(out.getvalue())
    assert (line["level"], line["message"], line["worker"], line["topic"]) == \
        ("warning", "rejected x", 3, "t")
    import time

    from gridlink.firmware.core.timefmt import parse_iso_utc

    assert abs(parse_iso_utc(line["time"]) - time.time()) < 60  # the wire's time form
