"""The gateway on a three-node NATS JetStream cluster against the Mosquitto path, in one run.

    .venv/bin/python benchmarks/bench_cluster.py [--quick]

Everything runs on this machine: three ``nats-server`` processes (the shipped template,
plain), a private Mosquitto, MQTT 3.1.1 publishers in this process (as the devices
speak), and ``gridlink gateway run`` with 1 and 2 workers into SQLite.  Figures:

- broker ingest: how fast the broker PUBACKs a backlog that nobody reads yet;
- drain: a backlog published while the gateway is down, first message received → last
  row committed, reports/s (NATS: devices on node 1, gateway on node 2);
- live: the gateway running, the same publishers as fast as they go, first publish →
  last row committed, reports/s;
- resume: a device publishing 100 reports/s through a front door (a TCP relay over the
  three nodes' MQTT listeners) when its node is killed: seconds from the kill to its next
  PUBACK, and to the next report committed.

Writes benchmarks/results/cluster.json.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridlink.gateway.clock import epoch_from_iso  # noqa: E402
from gridlink.gateway.jetstream.cluster import FrontDoor, NatsCluster  # noqa: E402
from gridlink.gateway.store import open_store  # noqa: E402
from gridlink.mosquitto import Mosquitto  # noqa: E402

from tests.support.gateway_rig import GatewayProcess, count, grid_map_file  # noqa: E402
from tests.support.nats_rig import Device311  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "cluster.json"
INGEST = {}  # (path, workers) → reports/s the broker took (PUBACKed) with no gateway reading
DEVICES = 20  # concurrent MQTT connections (nats-server stores one connection's QoS 1
# publishes one after another, each replicated before its PUBACK)


class Route:
    """One broker path: where devices publish and what the gateway's --broker is."""

    def __init__(self, name, mqtt_address, broker_url):
        self.name, self.mqtt_address, self.broker_url = name, mqtt_address, broker_url


def connect_devices(path, tag):
    return [Device311(*path.mqtt_address, f"{tag}-{i:04d}", inflight=500)
            for i in range(DEVICES)]


def publish_all(devs, n):
    """Each device publishes its share of ``n`` reports at once; returns when every one
    has its PUBACK, with the number published."""
    per = n // len(devs)
    threads = [threading.Thread(target=d.send_reports, args=(range(1, per + 1),))
               for d in devs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for d in devs:
        d.wait_acked(per, 300)
    return per * len(devs)


def run_gateway(path, workdir, db, workers, tag):
    gw = GatewayProcess(path.broker_url, db, grid_map_file(workdir), workdir,
                        "--client-id", f"bench-{tag}", "--workers", str(workers))
    gw.start()
    wait_until(lambda: gw.subscribed() >= workers, 60, "all workers subscribed")
    return gw


def drain(path, workdir, n, workers):
    tag = f"d{path.name[0]}{workers}"
    db = f"sqlite:///{workdir}/{tag}.sqlite"
    store = open_store(db)
    store.migrate()
    gw = run_gateway(path, workdir, db, workers, tag)  # the session / consumer exists
    gw.terminate()
    devs = connect_devices(path, f"pv-{tag}")
    t0 = time.monotonic()
    total = publish_all(devs, n)
    INGEST[path.name, workers] = round(total / (time.monotonic() - t0))
    for d in devs:
        d.close()
    gw.start(wait=False)
    wait_until(lambda: count(store, "reports") >= total, 180, f"{total} rows")
    gw.terminate()
    span = store.fetchall("SELECT MIN(received_at) AS a, MAX(committed_at) AS b, "
                          "COUNT(*) AS n FROM reports")[0]
    store.close()
    assert span["n"] == total
    return round(total / (epoch_from_iso(span["b"]) - epoch_from_iso(span["a"])))


def live(path, workdir, n, workers):
    tag = f"l{path.name[0]}{workers}"
    db = f"sqlite:///{workdir}/{tag}.sqlite"
    store = open_store(db)
    store.migrate()
    gw = run_gateway(path, workdir, db, workers, tag)
    devs = connect_devices(path, f"pv-{tag}")
    try:
        t0 = time.time()
        total = publish_all(devs, n)
        wait_until(lambda: count(store, "reports") >= total, 180, f"{total} rows")
        last = store.fetchall("SELECT MAX(committed_at) AS b, COUNT(*) AS n FROM reports")[0]
    finally:
        for d in devs:
            d.close()
        gw.terminate()
        store.close()
    assert last["n"] == total
    return round(total / (epoch_from_iso(last["b"]) - t0))


def resume(cluster, workdir):
    """Seconds from killing the device's node to its next PUBACK and next committed row."""
    front = FrontDoor([n.mqtt_address for n in cluster.nodes])
    n2, n3 = cluster.nodes[1], cluster.nodes[2]
    db = f"sqlite:///{workdir}/resume.sqlite"
    store = open_store(db)
    store.migrate()
    path = Route("nats", None, f"nats://{n2.host}:{n2.client_port},{n3.host}:{n3.client_port}")
    gw = run_gateway(path, workdir, db, 1, "resume")
    dev = Device311(front.host, front.port, "pv-9000")  # the front door's first: node 1
    try:
        sender = dev.send_paced(range(1, 1001), interval=0.01)
        wait_until(lambda: count(store, "reports") >= 200, 30, "the stream flowing")
        acked, stored = dev.acked, count(store, "reports")
        t_kill = time.monotonic()
        cluster.kill(0)
        time.sleep(0.3)  # PUBACKs already on their way count as before the kill
        acked = max(acked, dev.acked)
        wait_until(lambda: dev.acked > acked, 120, "a PUBACK after the kill")
        to_puback = time.monotonic() - t_kill
        stored = max(stored, count(store, "reports"))
        wait_until(lambda: count(store, "reports") > stored, 120, "a row after the kill")
        to_commit = time.monotonic() - t_kill
        sender.join(60)
        dev.wait_acked(1000, 120)
        wait_until(lambda: count(store, "reports") == 1000, 120, "all 1000 rows")
    finally:
        dev.close()
        gw.terminate()
        front.close()
        store.close()
    return {"to_next_puback_s": round(to_puback, 2), "to_next_commit_s": round(to_commit, 2),
            "reports_stored": 1000}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    args = ap.parse_args()
    n = 2000 if args.quick else 10000
    work = Path(tempfile.mkdtemp(prefix="gridlink-bench-cluster-"))
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "reports": n, "store": "sqlite", "devices": DEVICES, "mqtt": "3.1.1",
               "drain_reports_per_s": {}, "live_reports_per_s": {}}
    def record(key, measure, route):
        results[measure.__name__ + "_reports_per_s"][key] = measure(route, work, n, workers)
        print(key, measure.__name__, results[measure.__name__ + "_reports_per_s"][key],
              flush=True)

    for workers in (1, 2):
        key = f"mosquitto_{workers}_worker{'s' if workers > 1 else ''}"
        for measure in (drain, live):
            # a fresh broker each time: stopped workers' sessions stay in the shared
            # subscription's group and would take their share (docs/scaling.md)
            with Mosquitto(work / f"mosquitto-{measure.__name__}-{workers}",
                           extra_conf="set_tcp_nodelay true\n") as mosq:
                record(key, measure, Route("mosquitto", ("127.0.0.1", mosq.port), mosq.url))
    with NatsCluster(work / "nats") as cluster:
        route = Route("nats", cluster.nodes[0].mqtt_address, cluster.nodes[1].nats_url)
        for workers in (1, 2):
            key = f"nats_{workers}_worker{'s' if workers > 1 else ''}"
            for measure in (drain, live):
                record(key, measure, route)
        results["broker_ingest_reports_per_s"] = {
            f"{p}_backlog_before_{w}_worker{'s' if w > 1 else ''}": v
            for (p, w), v in INGEST.items()}
        results["nats_node_killed"] = resume(cluster, work)
        print(results["nats_node_killed"], flush=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
