"""How fast is the gateway?  Against a trivial subscriber measured in the same run.

    .venv/bin/python benchmarks/bench_gateway.py [--quick] [--soak]

Everything runs on this machine: a private Mosquitto, a paho publisher (this process),
and the consumer in its own process — a trivial paho subscriber (the reference: receive
and count) or ``gridlink gateway run`` (judge, group commit, PUBACK after commit, device
ack).  Figures:

- ceiling: publisher → trivial subscriber, messages/s; gateway: the same publisher →
  gateway → committed rows (zero loss checked), and the ratio (goal ≥ 0.8);
- drain: a backlog published while the gateway is down, drained into SQLite (goal ≥ 20,000/s),
  timed from the first message received to the last row committed (and, separately, from
  the process start, imports and connect included);
- latency: publish → committed_at (and → device ack received) at a paced 2,000 reports/s
  (goal p99 ≤ 50 ms) and at 400/s, p50/p99;
- workers: the backlog drained into PostgreSQL by one worker vs two (shared subscription).

Writes benchmarks/results/gateway.json.
"""

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridlink.gateway.clock import epoch_from_iso  # noqa: E402
from gridlink.gateway.store import open_store  # noqa: E402
from gridlink.mosquitto import Mosquitto  # noqa: E402

from tests.support.gateway_rig import (  # noqa: E402
    GatewayProcess,
    Publisher,
    count,
    drop_store,
    encode,
    grid_map_file,
    pg_available,
    pg_url,
    scattered_report,
    topic,
)
from tests.support.waiting import wait_until  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "gateway.json"
# the one performance setting of the shipped gateway/broker/mosquitto.conf (the rest of it
# needs certificates): without it Nagle + delayed ACK add ~40 ms to every held PUBACK
BROKER_CONF = "set_tcp_nodelay true\n"

TRIVIAL_SUBSCRIBER = """
import sys, time, threading, json
import paho.mqtt.client as mqtt
port, n = int(sys.argv[1]), int(sys.argv[2])
got = [0, None, None]
done = threading.Event()
def on_message(c, u, m):
    if got[1] is None:
        got[1] = time.time()
    got[0] += 1
    if got[0] >= n:
        got[2] = time.time()
        done.set()
def on_subscribe(*a):
    print("ready", flush=True)
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-trivial",
                protocol=mqtt.MQTTv5)
c.on_message = on_message
c.on_subscribe = on_subscribe
c.on_connect = lambda c, *a: c.subscribe("gridlink/v1/+/+/report", 1)
c.connect("127.0.0.1", port)
c.loop_start()
done.wait(300)
print(json.dumps({"n": got[0], "last": got[2]}), flush=True)
"""


def payloads(device, n):
    """``n`` reports of one device from points all over the test map (each located anew,
    as a moving vehicle's are)."""
    rnd = random.Random(device)
    return [(topic(device, "report"), encode(scattered_report(device, s, rnd, time=_now_iso())))
            for s in range(1, n + 1)]


def _now_iso():
    from gridlink.gateway.clock import utc_now_iso

    return utc_now_iso()


def publish_all(pub, msgs):
    t0 = time.time()
    for t, p in msgs:
        pub.publish(t, p)
    return t0


def ceiling(broker, n):
    sub = subprocess.Popen([sys.executable, "-c", TRIVIAL_SUBSCRIBER, str(broker.port), str(n)],
                           stdout=subprocess.PIPE, text=True)
    assert sub.stdout.readline().strip() == "ready"
    pub = Publisher(broker.port, inflight=200)
    msgs = payloads("pv-0101", n)
    t0 = publish_all(pub, msgs)
    result = json.loads(sub.stdout.readline())
    sub.wait()
    pub.close()
    assert result["n"] == n, f"trivial subscriber lost messages: {result}"
    return n / (result["last"] - t0)


def gateway_live(broker, workdir, n):
    db = f"sqlite:///{workdir}/live.sqlite"
    store = open_store(db)
    store.migrate()
    with GatewayProcess(broker.url, db, grid_map_file(workdir), workdir, "--client-id",
                        "bench-live"):
        pub = Publisher(broker.port, inflight=200)
        msgs = payloads("pv-0102", n)
        t0 = publish_all(pub, msgs)
        wait_until(lambda: count(store, "reports") >= n, 300, f"{n} rows")
        pub.close()
    assert count(store, "reports") == n, "loss or duplicates"
    # the last commit's own time (same clock), as the reference takes its last message's,
    # not when this process's 20 ms poll noticed it
    t1 = epoch_from_iso(store.fetchall("SELECT MAX(committed_at) AS b FROM reports")[0]["b"])
    store.close()
    return n / (t1 - t0)


def machine_speed_ms():
    """A fixed pure-Python loop, best of three, in ms: this shared machine's speed drifts
    by 1.5× within minutes, so each run records it beside its figures."""
    def loop():
        t0 = time.perf_counter()
        s = 0
        for i in range(3_000_000):
            s += i
        return time.perf_counter() - t0
    return round(min(loop() for _ in range(3)) * 1000, 1)


def cpu_seconds(pid):
    """User + system CPU seconds a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    """User + system CPU seconds of this process's ended (waited-for) descendants: a
    gateway and every worker process it started, once it has exited."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class MachineLoad:
    """Samples the whole machine's CPU ticks (/proc/stat) every 0.1 s in a thread;
    ``busy(a, b)``: the share of the CPUs busy (not idle, not waiting on I/O) between the
    Unix times a and b."""

    def __init__(self):
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.1):
            first = Path("/proc/stat").read_text().split("\n", 1)[0]
            ticks = [int(x) for x in first.split()[1:]]
            self.samples.append((time.time(), sum(ticks) - ticks[3] - ticks[4], sum(ticks)))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def busy(self, a, b):
        inside = [x for x in self.samples if a <= x[0] <= b]
        if len(inside) < 2:
            return None
        return round((inside[-1][1] - inside[0][1]) / max(1, inside[-1][2] - inside[0][2]), 3)


def drain(broker, workdir, db, n, workers=1, tag="drain"):
    """Reports/s draining a backlog (first received → last committed), the same counting
    the start-up, the CPU each report costs the gateway (all its workers) and the broker,
    and how busy the whole machine was meanwhile."""
    store = open_store(db)
    store.migrate()
    extra = ["--client-id", f"bench-{tag}", "--workers", str(workers)]
    # register the session(s), then go down: the workers' start-up and stop CPU, to
    # subtract below
    before = children_cpu_seconds()
    gw = GatewayProcess(broker.url, db, grid_map_file(workdir), workdir, *extra).start()
    if workers > 1:
        # (counted since this start: an earlier stage's workers logged into the same file,
        # and stopping before the second worker subscribed left one session to take the
        # whole backlog — the two-worker figure was then one worker's)
        wait_until(lambda: gw.subscribed() >= workers, 30, "all workers subscribed")
    gw.terminate()
    startup_cpu = children_cpu_seconds() - before
    devices = [f"pv-{200 + i:04d}" for i in range(4)]
    pubs = [Publisher(broker.port, inflight=500) for _ in devices]
    threads = [threading.Thread(target=publish_all, args=(p, payloads(d, n // len(devices))))
               for p, d in zip(pubs, devices, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in pubs:
        p.wait_acked(n // len(devices), 300)
        p.close()
    total = (n // len(devices)) * len(devices)
    broker_cpu0 = cpu_seconds(broker.proc.pid)
    before = children_cpu_seconds()
    t0 = time.time()
    with MachineLoad() as load:
        gw.start(wait=False)
        wait_until(lambda: count(store, "reports") >= total, 600, f"{total} rows")
    with_start = total / (time.time() - t0)
    broker_cpu = cpu_seconds(broker.proc.pid) - broker_cpu0
    gw.terminate()
    gateway_cpu = children_cpu_seconds() - before - startup_cpu
    assert count(store, "reports") == total
    # the drain itself: first message received → last row committed (gateway clock), not
    # the process's start-up (imports, connect), which the figure with start-up includes
    span = store.fetchall("SELECT MIN(received_at) AS a, MAX(committed_at) AS b FROM reports")[0]
    drop_store(store)
    a, b = epoch_from_iso(span["a"]), epoch_from_iso(span["b"])
    cpu = {"gateway_us_per_report": round(gateway_cpu / total * 1e6, 1),
           "broker_us_per_report": round(broker_cpu / total * 1e6, 1),
           "machine_busy": load.busy(a, b)}
    return total / (b - a), with_start, cpu


def judge_costs(workdir, n=20000):
    """µs per report, in this process: msgspec's decode + check (fastreport) vs json + the
    core's validate_report, and the whole of Validator.decode (grid look-up, row)."""
    from gridlink.firmware.codebooks import load_books
    from gridlink.firmware.core.report import validate_report
    from gridlink.firmware.maps import open_map
    from gridlink.gateway.fastreport import decode_report
    from gridlink.gateway.validate import Validator

    msgs = payloads("pv-0500", n)
    bodies = [p for _, p in msgs]

    def best_us(fn):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - t0) / n * 1e6)
        return min(runs)

    fast = best_us(lambda: [decode_report(b) for b in bodies])
    core = best_us(lambda: [validate_report(json.loads(b), encoded_size=len(b))
                            for b in bodies])
    v = Validator(grid_map=open_map(grid_map_file(workdir)), codebooks=load_books())
    now = time.time()
    whole = best_us(lambda: [v.decode(t, b, now, None) for t, b in msgs])
    # locating on the district map (4,288 cells): the gateway's raster vs the core GridMap
    from gridlink.firmware.core.gridmap import GridMap
    from gridlink.gateway.gridindex import RasterLocator

    district = GridMap((ROOT / "firmware" / "maps" / "shangjie.glgm").read_bytes())
    t0 = time.perf_counter()
    raster = RasterLocator(district)
    build_s = time.perf_counter() - t0
    w, s, e, north = district.bbox
    rnd = random.Random(5)
    points = [(rnd.uniform(w, e), rnd.uniform(s, north)) for _ in range(n)]
    by_map = best_us(lambda: [district.locate(x, y) for x, y in points])
    by_raster = best_us(lambda: [raster.locate(x, y) for x, y in points])
    return {"fastreport_us": round(fast, 2), "json_and_core_validator_us": round(core, 2),
            "fastreport_speedup": round(core / fast, 2), "validator_decode_us": round(whole, 2),
            "locate_gridmap_us": round(by_map, 2), "locate_raster_us": round(by_raster, 2),
            "locate_raster_speedup": round(by_map / by_raster, 2),
            "raster_build_s": round(build_s, 2)}


def fill_backlog(broker, client_ids, n):
    """Register persistent sessions for ``client_ids`` (subscribed to reports), then
    publish ``n`` reports while they are away: the broker queues the backlog for them."""
    from gridlink.gateway.link import BrokerLink

    for cid in client_ids:
        subscribed = threading.Event()
        link = BrokerLink(cid, "127.0.0.1", broker.port,
                          subscriptions=[("gridlink/v1/+/+/report", 1)],
                          on_message=lambda *a: None,
                          on_subscribed=lambda r, e=subscribed: e.set())
        link.start()
        assert subscribed.wait(10)
        link.stop()
    pub = Publisher(broker.port, inflight=500)
    publish_all(pub, payloads("pv-0400", n))
    pub.wait_acked(n, 300)
    pub.close()


def receive_drain(broker, n):
    """Messages/s a backlog is received and PUBACKed at, nothing else done: by paho's
    client (manual_ack, the gateway's client before) and by the gateway's link."""
    import paho.mqtt.client as mqtt
    from gridlink.gateway.link import BrokerLink
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    fill_backlog(broker, ["recv-paho", "recv-link"], n)
    rates = {}
    # paho
    got, done, t = [0], threading.Event(), {}

    def on_message(client, userdata, msg):
        t.setdefault("first", time.perf_counter())
        client.ack(msg.mid, msg.qos)
        got[0] += 1
        if got[0] == n:
            t["last"] = time.perf_counter()
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="recv-paho",
                    protocol=mqtt.MQTTv5, manual_ack=True)
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    c.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    c.loop_start()
    assert done.wait(300), f"paho received {got[0]} of {n}"
    c.disconnect()
    c.loop_stop()
    rates["paho"] = n / (t["last"] - t["first"])
    # the link, acknowledging in batches of 100 as the gateway acknowledges a batch
    got, done, t, mids = [0], threading.Event(), {}, []

    def on_link_message(topic, payload, mid, qos, user, generation):
        t.setdefault("first", time.perf_counter())
        mids.append(mid)
        got[0] += 1
        if len(mids) >= 100 or got[0] == n:
            link.ack(mids[:], generation)
            mids.clear()
        if got[0] == n:
            t["last"] = time.perf_counter()
            done.set()

    link = BrokerLink("recv-link", "127.0.0.1", broker.port,
                      subscriptions=[("gridlink/v1/+/+/report", 1)],
                      on_message=on_link_message, receive_maximum=1000)
    link.start()
    assert done.wait(300), f"the link received {got[0]} of {n}"
    link.stop()
    rates["link"] = n / (t["last"] - t["first"])
    return rates


PACED_PUBLISHER = """
import sys, time, json, random
sys.path.insert(0, sys.argv[4])
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tests.support.gateway_rig import Publisher, encode, scattered_report, topic
port, rate, n = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
device = "pv-0301"
pub = Publisher(port, inflight=200)
rnd = random.Random(device)
bodies = [encode(scattered_report(device, seq, rnd, time="2026-11-28T02:15:07.250Z"))
          for seq in range(1, n + 1)]
sent = {}
t_start = time.perf_counter()
for seq, body in enumerate(bodies, 1):
    due = t_start + (seq - 1) / rate
    while time.perf_counter() < due:
        time.sleep(max(0.0, min(0.001, due - time.perf_counter())))
    props = Properties(PacketTypes.PUBLISH)
    now = time.time()
    props.UserProperty = ("sent_at", repr(now))
    sent[f"{device}:{seq:012d}"] = now
    pub.publish(topic(device, "report"), body, properties=props)
achieved = n / (time.perf_counter() - t_start)
pub.wait_acked(n, 60)
pub.close()
print(json.dumps({"achieved": achieved, "sent": sent}), flush=True)
"""

ACK_LISTENER = """
import sys, time, json, threading
import paho.mqtt.client as mqtt
port, n, filt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
acked = {}
done = threading.Event()
def on_message(c, u, m):
    ack, now = json.loads(m.payload), time.time()
    for rid in ack.get("ids") or [ack["id"]]:  # a grouped ack answers several reports
        acked.setdefault(rid, now)
    if len(acked) >= n:
        done.set()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-acks",
                protocol=mqtt.MQTTv5)
c.on_message = on_message
c.on_subscribe = lambda *a: print("ready", flush=True)
c.on_connect = lambda c, *a: c.subscribe(filt, 1)
c.connect("127.0.0.1", port)
c.loop_start()
done.wait(120)
print(json.dumps(acked), flush=True)
"""


def latency(broker, workdir, rate, seconds):
    """Paced publish → commit (and → device ack).  The publisher and the ack listener
    each run in their own process, as devices do: sharing one interpreter with the
    measurement, paho's threads delay each other by hundreds of milliseconds at 2,000/s,
    which is the harness, not the gateway."""
    db = f"sqlite:///{workdir}/latency-{rate}.sqlite"
    store = open_store(db)
    store.migrate()
    n = int(rate * seconds)
    with GatewayProcess(broker.url, db, grid_map_file(workdir), workdir, "--client-id",
                        "bench-latency"):
        listener = subprocess.Popen(
            [sys.executable, "-c", ACK_LISTENER, str(broker.port), str(n),
             "gridlink/v1/410106/pv-0301/ack"], stdout=subprocess.PIPE, text=True)
        assert listener.stdout.readline().strip() == "ready"
        publisher = subprocess.run(
            [sys.executable, "-c", PACED_PUBLISHER, str(broker.port), str(rate), str(n),
             str(ROOT)], stdout=subprocess.PIPE, text=True, check=True, timeout=300)
        result = json.loads(publisher.stdout)
        acked = json.loads(listener.stdout.readline())
        listener.wait(30)
        wait_until(lambda: count(store, "reports") >= n, 120, "all committed")
    sent = result["sent"]
    rows = store.fetchall("SELECT id, received_at, committed_at FROM reports")
    store.close()
    assert len(rows) == n and len(acked) == n, "loss"
    to_commit = sorted(epoch_from_iso(r["committed_at"]) - sent[r["id"]] for r in rows)
    # where the time goes: broker and socket (publish → the gateway read it), and the
    # gateway itself (read → committed)
    to_receive = sorted(epoch_from_iso(r["received_at"]) - sent[r["id"]] for r in rows)
    in_gateway = sorted(epoch_from_iso(r["committed_at"]) - epoch_from_iso(r["received_at"])
                        for r in rows)
    to_ack = sorted(acked[k] - sent[k] for k in sent)

    def pct(xs, p):
        return round(1000 * xs[min(len(xs) - 1, int(p * len(xs)))], 2)

    return {"rate_asked": rate, "rate_achieved": round(result["achieved"]), "reports": n,
            "commit_p50_ms": pct(to_commit, 0.50), "commit_p99_ms": pct(to_commit, 0.99),
            "ack_p50_ms": pct(to_ack, 0.50), "ack_p99_ms": pct(to_ack, 0.99),
            "receive_p50_ms": pct(to_receive, 0.50), "receive_p99_ms": pct(to_receive, 0.99),
            "gateway_p50_ms": pct(in_gateway, 0.50), "gateway_p99_ms": pct(in_gateway, 0.99)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="quarter-size runs")
    ap.add_argument("--soak", action="store_true", help="larger runs (several minutes)")
    args = ap.parse_args(argv)
    scale = 0.25 if args.quick else (5 if args.soak else 1)
    # sizes: each timed stage lasts well over a second on a fast machine (in a 0.3 s
    # drain of two workers the second one's start-up weighs: 0.70 of one worker's rate)
    n_live, n_drain, n_pg = int(20000 * scale), int(20000 * scale), int(24000 * scale)
    out = {"machine": {"cpus": os.cpu_count(), "load_avg_1m_at_start": os.getloadavg()[0],
                       "python_loop_ms_at_start": machine_speed_ms()}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        judge = out["judge"] = judge_costs(work, n_drain)
        print(f"judging a report: msgspec fast path {judge['fastreport_us']} µs vs json + "
              f"core validator {judge['json_and_core_validator_us']} µs "
              f"({judge['fastreport_speedup']}×); whole Validator.decode "
              f"{judge['validator_decode_us']} µs")
        print(f"locating on the district map: the gateway's raster {judge['locate_raster_us']} "
              f"µs vs the core GridMap {judge['locate_gridmap_us']} µs "
              f"({judge['locate_raster_speedup']}×; raster built in {judge['raster_build_s']} s)")
        # a fresh broker per stage: a stopped worker's persistent session stays in the
        # $share group and would be handed its share of a later stage's messages
        with Mosquitto(work / "b1", extra_conf=BROKER_CONF) as broker:
            ceil = statistics.median(ceiling(broker, n_live) for _ in range(2))
        with Mosquitto(work / "b2", extra_conf=BROKER_CONF) as broker:
            live = gateway_live(broker, work, n_live)
        out["ceiling_msgs_per_s"] = round(ceil)
        out["gateway_live_reports_per_s"] = round(live)
        out["gateway_vs_ceiling"] = round(live / ceil, 3)
        print(f"ceiling (paho → trivial subscriber): {ceil:9.0f} msg/s")
        print(f"gateway (paho → gateway → commit):   {live:9.0f} reports/s  "
              f"ratio {live / ceil:.2f} (goal ≥ 0.80)")
        with Mosquitto(work / "b3", extra_conf=BROKER_CONF) as broker:
            d, d_start, cpu = drain(broker, work, f"sqlite:///{work}/drain.sqlite", n_drain)
        out["drain_sqlite_reports_per_s"] = round(d)
        out["drain_sqlite_with_startup_per_s"] = round(d_start)
        out["drain_vs_ceiling"] = round(d / ceil, 3)
        # what 20,000/s would take: CPU per report of the gateway and of the broker
        cores = (cpu["gateway_us_per_report"] + cpu["broker_us_per_report"]) * 20000 / 1e6
        out["drain_cpu"] = {**cpu, "cores_for_20000_per_s": round(cores, 2)}
        print(f"backlog drain, SQLite, {n_drain} reports: {d:9.0f} reports/s (goal ≥ 20,000); "
              f"{d_start:.0f}/s counting the process start-up")
        print(f"  CPU per report: gateway {cpu['gateway_us_per_report']} µs, broker "
              f"{cpu['broker_us_per_report']} µs → {cores:.2f} cores for 20,000/s "
              f"(this machine: {os.cpu_count()}; {cpu['machine_busy']} of it busy meanwhile)")
        # one worker per core, taking turns to commit (a bigger backlog: the second
        # worker's share waits for its process to start, which the span includes)
        with Mosquitto(work / "b3w", extra_conf=BROKER_CONF) as broker:
            d2, d2_start, cpu2 = drain(broker, work, f"sqlite:///{work}/drain2.sqlite",
                                       n_drain * 3, workers=2, tag="drain2")
        out["drain_sqlite_2_workers_per_s"] = round(d2)
        out["drain_sqlite_2_workers_with_startup_per_s"] = round(d2_start)
        out["drain_2_workers_cpu"] = cpu2
        print(f"backlog drain, SQLite, 2 workers, {n_drain * 3} reports: {d2:9.0f} reports/s "
              f"(goal ≥ 20,000); {d2_start:.0f}/s counting the start-up")
        print(f"  CPU per report: gateway (both workers) {cpu2['gateway_us_per_report']} µs, "
              f"broker {cpu2['broker_us_per_report']} µs; {cpu2['machine_busy']} of the "
              f"machine busy meanwhile")
        with Mosquitto(work / "b3r", extra_conf=BROKER_CONF) as broker:
            recv = receive_drain(broker, n_drain)
        out["receive_drain_paho_per_s"] = round(recv["paho"])
        out["receive_drain_link_per_s"] = round(recv["link"])
        out["receive_link_vs_paho"] = round(recv["link"] / recv["paho"], 2)
        print(f"  receiving alone (PUBACK, no judging): paho {recv['paho']:.0f}/s, the "
              f"gateway's link {recv['link']:.0f}/s")
        # at the goal's 2,000/s, and at a rate well inside this machine's capacity (a
        # saturated gateway measures its queue, not its latency)
        out["latency"] = []
        for rate in ((400,) if args.quick else (2000, 400)):
            with Mosquitto(work / f"b4-{rate}", extra_conf=BROKER_CONF) as broker:
                lat = latency(broker, work, rate, 2 if args.quick else 4)
            out["latency"].append(lat)
            print(f"publish → commit at {lat['rate_achieved']}/s: p50 {lat['commit_p50_ms']} "
                  f"ms, p99 {lat['commit_p99_ms']} ms (goal ≤ 50); → device ack: p50 "
                  f"{lat['ack_p50_ms']} ms, p99 {lat['ack_p99_ms']} ms")
        if pg_available():
            with Mosquitto(work / "b5", extra_conf=BROKER_CONF) as broker:
                one = drain(broker, work, pg_url("bench1"), n_pg, 1, "pg1")[0]
            with Mosquitto(work / "b6", extra_conf=BROKER_CONF) as broker:
                two = drain(broker, work, pg_url("bench2"), n_pg, 2, "pg2")[0]
            out["drain_postgres_1_worker"] = round(one)
            out["drain_postgres_2_workers"] = round(two)
            out["postgres_2_vs_1"] = round(two / one, 3)
            print(f"backlog drain, PostgreSQL, {n_pg} reports: 1 worker {one:.0f}/s, "
                  f"2 workers {two:.0f}/s, ratio {two / one:.2f}")
    out["sizes"] = {"live": n_live, "drain": n_drain, "drain_2_workers": n_drain * 3,
                    "postgres": n_pg}
    out["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    out["machine"]["python_loop_ms_at_end"] = machine_speed_ms()
    print(f"machine speed (3M-step Python loop, lower is faster): "
          f"{out['machine']['python_loop_ms_at_start']} ms at start, "
          f"{out['machine']['python_loop_ms_at_end']} ms at the end")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
