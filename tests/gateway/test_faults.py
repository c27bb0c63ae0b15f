"""Faults during a stream: the gateway SIGKILLed at random moments, the broker restarted,
the database briefly unreachable, one of two workers killed.  Every time: rows = reports
sent, no duplicates, nothing lost.

Default sizes keep the suite short; ``pytest --soak`` runs the full 50,000 reports × 20
kills.  The kill moments come from a seeded RNG (GRIDLINK_FAULT_SEED to replay one).
"""

import os
import random
import threading

import pytest
from gridlink.gateway.service import Gateway
from gridlink.gateway.store import open_store

from hil_tests.shaper import Shaper
from tests.support.gateway_rig import (
    GatewayProcess,
    Publisher,
    count,
    drop_store,
    encode,
    grid_map_file,
    pg_available,
    pg_url,
    report,
    stream,
    topic,
)
from tests.support.waiting import wait_until

SEED = int(os.environ.get("GRIDLINK_FAULT_SEED", random.SystemRandom().randrange(10**6)))


def assert_exactly(store, devices, n, rejected=0):
    rows = store.fetchall("SELECT device, COUNT(*) AS n, COUNT(DISTINCT seq) AS d, "
                          "MIN(seq) AS lo, MAX(seq) AS hi FROM reports GROUP BY device "
                          "ORDER BY device")
    assert rows == [{"device": d, "n": n, "d": n, "lo": 1, "hi": n} for d in devices]
    assert count(store, "dead_letters") == rejected


def bad_stream(pub, device, seqs):
    """Reports that are rejected (a code no book has): each must be one dead letter."""
    t = topic(device, "report")
    for seq in seqs:
        pub.publish(t, encode(report(device, seq, code="99999")))


def kill_storm(broker, db_url, tmp_path, n, kills, devices=("pv-0001", "pv-0002")):
    rng = random.Random(SEED)
    print(f"fault seed {SEED}: {kills} kills over {n * len(devices)} reports")
    grid = grid_map_file(tmp_path)
    store = open_store(db_url)
    store.migrate()
    gw = GatewayProcess(broker.url, db_url, grid, tmp_path).start()
    pubs = [Publisher(broker.port, inflight=200) for _ in devices]
    senders = [threading.Thread(target=stream, args=(p, d, range(1, n + 1)))
               for p, d in zip(pubs, devices, strict=True)]
    # a device with a wrong code book, through the whole storm: its rejections, like the
    # reports, are neither lost nor doubled by the kills
    n_bad = max(1, n // 20)
    pubs.append(Publisher(broker.port, inflight=200))
    senders.append(threading.Thread(target=bad_stream,
                                    args=(pubs[-1], "pv-0009", range(1, n_bad + 1))))
    for s in senders:
        s.start()
    total = n * len(devices)
    try:
        # random moments: kill once the committed rows pass each of `kills` random points
        # (a point already passed means "kill now"); all points lie before the end
        points = sorted(rng.uniform(0.02, 0.95) * total for _ in range(kills))
        for k, point in enumerate(points):
            wait_until(lambda t=point: count(store, "reports") >= t, 120,
                     f"{int(point)} rows before kill {k + 1}")
            gw.kill()
            gw.start()
        for s in senders:
            s.join()
        for p, sent in zip(pubs, [n] * len(devices) + [n_bad], strict=True):
            p.wait_acked(sent, 120)
        wait_until(lambda: count(store, "reports") >= total
                 and count(store, "dead_letters") >= n_bad, 180, f"{total} reports")
        gw.terminate()
        assert_exactly(store, devices, n, rejected=n_bad)
    finally:
        gw.kill()
        for p in pubs:
            p.close()
        drop_store(store)


def test_sigkill_at_random_moments_sqlite(broker, tmp_path, request):
    soak = request.config.getoption("--soak")
    n, kills = (25_000, 20) if soak else (10_000, 5)
    kill_storm(broker, f"sqlite:///{tmp_path}/intake.sqlite", tmp_path, n, kills)


@pytest.mark.soak
@pytest.mark.postgres
def test_sigkill_soak_postgres(broker, tmp_path):
    if not pg_available():
        pytest.skip("PostgreSQL not reachable")
    kill_storm(broker, pg_url("soak"), tmp_path, 25_000, 20)


def test_broker_restarted_mid_stream(broker, tmp_path):
    persistent_broker = broker  # the fixture keeps its store across stop/start
    n = 6000
    url = f"sqlite:///{tmp_path}/intake.sqlite"
    gw = Gateway(broker=persistent_broker.url, db=url, grid=grid_map_file(tmp_path),
                 photos=tmp_path / "photos").start()
    assert gw.runtime.wait_ready(10)
    pub = Publisher(persistent_broker.port, inflight=200)
    sender = threading.Thread(target=stream, args=(pub, "pv-0001", range(1, n + 1)))
    sender.start()
    try:
        wait_until(lambda: count(gw.store, "reports") >= n // 4, 60, "a quarter committed")
        persistent_broker.stop()
        persistent_broker.start()
        sender.join()
        pub.wait_acked(n, 120)
        wait_until(lambda: count(gw.store, "reports") >= n, 120, f"{n} reports")
        assert_exactly(gw.store, ["pv-0001"], n)
    finally:
        pub.close()
        gw.stop()


@pytest.mark.postgres
def test_database_unreachable_pauses_ingest_and_acks_nothing(broker, tmp_path):
    """PostgreSQL cut off behind a proxy mid-stream: commits fail and are retried, the
    gateway is SIGKILLed during the outage (so anything it had acked uncommitted would be
    lost), the database comes back, a new gateway finishes: every report, once."""
    if not pg_available():
        pytest.skip("PostgreSQL not reachable")
    proxy = Shaper(5432)  # a relay with no faults but the cuts below
    direct = pg_url("cut")
    url = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")  # the gateway's way
    store = open_store(direct)
    store.migrate()
    grid = grid_map_file(tmp_path)
    n = 4000
    gw = GatewayProcess(broker.url, url, grid, tmp_path).start()
    pub = Publisher(broker.port, inflight=200)
    sender = threading.Thread(target=stream, args=(pub, "pv-0001", range(1, n + 1)))
    sender.start()
    try:
        wait_until(lambda: count(store, "reports") >= n // 4, 60, "a quarter committed")
        proxy.cut()
        wait_until(lambda: b"commit of" in gw.log.read_bytes(), 60, "a failed commit")
        gw.kill()
        proxy.restore()
        sender.join()
        pub.wait_acked(n, 120)
        gw.start()
        wait_until(lambda: count(store, "reports") >= n, 120, f"{n} reports")
        assert_exactly(store, ["pv-0001"], n)
        # a cut while running: the same gateway pauses, reconnects and goes on
        more = threading.Thread(target=stream, args=(pub, "pv-0002", range(1, n + 1)))
        more.start()
        wait_until(lambda: count(store, "reports", "device = 'pv-0002'") >= n // 4, 60)
        proxy.cut()
        wait_until(lambda: gw.log.read_bytes().count(b"commit of") >= 2, 60, "a failed commit")
        proxy.restore()
        more.join()
        wait_until(lambda: count(store, "reports") >= 2 * n, 120, f"{2 * n} reports")
        assert gw.alive()
        assert_exactly(store, ["pv-0001", "pv-0002"], n)
    finally:
        gw.kill()
        pub.close()
        proxy.close()
        drop_store(store)


@pytest.mark.postgres
def test_two_workers_one_killed_mid_stream(broker, tmp_path):
    if not pg_available():
        pytest.skip("PostgreSQL not reachable")
    url = pg_url("two")
    store = open_store(url)
    store.migrate()
    grid = grid_map_file(tmp_path)
    n = 5000
    workers = [GatewayProcess(broker.url, url, grid, tmp_path, worker=i).start()
               for i in (0, 1)]
    pubs = [Publisher(broker.port, inflight=200) for _ in range(2)]
    senders = [threading.Thread(target=stream, args=(p, f"pv-000{i}", range(1, n + 1)))
               for i, p in enumerate(pubs, 1)]
    for s in senders:
        s.start()
    try:
        wait_until(lambda: count(store, "reports") >= n // 2, 60, "progress")
        workers[1].kill()
        wait_until(lambda: count(store, "reports") >= n, 60, "worker 0 carrying on")
        workers[1].start()
        for s in senders:
            s.join()
        for p in pubs:
            p.wait_acked(n, 120)
        wait_until(lambda: count(store, "reports") >= 2 * n, 120, f"{2 * n} reports")
        for w in workers:
            w.terminate()
        assert_exactly(store, ["pv-0001", "pv-0002"], n)
        # both workers' batches held both devices all along: not one commit failed on
        # the other's locks (a deadlock is a failed commit, retried after a second)
        for w in workers:
            assert b"commit of" not in w.log.read_bytes(), w.log.read_text()[-2000:]
    finally:
        for w in workers:
            w.kill()
        for p in pubs:
            p.close()
        drop_store(store)
