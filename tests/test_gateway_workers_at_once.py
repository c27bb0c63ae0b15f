"""Two workers committing at the same moment into one store: no deadlock, nothing lost.

Each worker is an ``Ingest`` over a store object of its own (as each gateway worker
process has).  On PostgreSQL a trigger makes the rows in question slow to write, so the
two transactions surely overlap where they share rows; SQLite's write turn lets one
transaction at a time in, and the same assertions hold there.
"""

import hashlib
import json
import threading

import pytest
from gridlink.gateway.codebooks import load_codebooks, load_grid_map
from gridlink.gateway.ingest import Ingest, Item
from gridlink.gateway.photos import PhotoDir, report_photos
from gridlink.gateway.store import open_store
from gridlink.gateway.validate import Validator

from tests.gateway_rig import count, encode, grid_map_file, report, topic

pytest_plugins = ["tests.gateway_stores"]

T = 1_795_000_000.0


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return Validator(load_grid_map(grid_map_file(tmp_path_factory.mktemp("grid"))),
                     load_codebooks())


@pytest.fixture
def workers(store, store_url, tmp_path):
    """Two ingests, each over its own store object on the same database."""
    other = open_store(store_url)
    photos = tmp_path / "photos"
    yield Ingest(store, PhotoDir(photos)), Ingest(other, PhotoDir(photos))
    other.close()


def slow_writes(store, table, seconds):
    """PostgreSQL: every row written into ``table`` first sleeps (a BEFORE trigger)."""
    if store.dialect != "postgres":
        return
    with store.connect() as conn:
        conn.execute(f"CREATE OR REPLACE FUNCTION slow_{table}() RETURNS trigger "
                     f"LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep({seconds}); "
                     f"RETURN NEW; END $$")
        conn.execute(f"CREATE TRIGGER slow_{table} BEFORE INSERT OR UPDATE ON {table} "
                     f"FOR EACH ROW EXECUTE FUNCTION slow_{table}()")


def at_once(*jobs):
    """Run each (ingest, items) commit in a thread of its own, released together; the
    exceptions raised, if any."""
    start = threading.Barrier(len(jobs))
    errors = []

    def run(ingest, batch):
        start.wait()
        try:
            ingest.commit(batch)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a commit never returned"
    return errors


def items(judge, *messages):
    return [Item(t, p, T + i, judge.decode(t, p, T + i)) for i, (t, p) in enumerate(messages)]


def rep(seq, device, **kw):
    return topic(device, "report"), encode(report(device, seq, **kw))


def test_two_workers_sharing_devices_in_opposite_orders_both_commit(judge, workers, store):
    # each batch updates the presence of both devices, first in the order they came:
    # taken row by row, each worker would hold one device and wait for the other's
    a, b = workers
    slow_writes(store, "devices", 0.05)
    first = items(judge, rep(1, "pv-0001"), rep(1, "pv-0002"))
    second = items(judge, rep(2, "pv-0002"), rep(2, "pv-0001"))
    assert at_once((a, first), (b, second)) == []
    assert [it.outcome for it in first + second] == ["accepted"] * 4
    assert count(store, "reports") == 4
    seen = store.fetchall("SELECT device, last_seen FROM devices ORDER BY device")
    assert [r["device"] for r in seen] == ["pv-0001", "pv-0002"]


def test_a_batch_of_many_devices_holds_few_locks_until_it_ends(store, store_url):
    # a city's batch may hold hundreds of devices: each advisory lock takes an entry of
    # PostgreSQL's lock table (max_locks_per_transaction, 64 by default)
    if store.dialect != "postgres":
        pytest.skip("SQLite takes no locks of its own: its write turn admits one writer")
    from gridlink.gateway.store.postgres import LOCK_SLOTS

    keys = {f"device:pv-{i:04d}" for i in range(1000)}
    other = open_store(store_url)
    held = ("SELECT objid::int FROM pg_locks WHERE locktype = 'advisory' "
            "AND pid = pg_backend_pid() ORDER BY 1")
    try:
        with store.connect() as conn:
            store.lock_keys(conn, keys)
            slots = [r[0] for r in conn.execute(held).fetchall()]
            assert 0 < len(slots) <= LOCK_SLOTS
            with other.connect() as peer:  # another worker waits for each of them
                space = conn.execute("SELECT classid::int FROM pg_locks WHERE locktype = "
                                     "'advisory' AND pid = pg_backend_pid() LIMIT 1").fetchone()
                taken = peer.execute("SELECT bool_or(pg_try_advisory_xact_lock(%s, s)) "
                                     "FROM unnest(%s::int[]) AS s", (space[0], slots))
                assert taken.fetchone()[0] is False
        with store.connect() as conn:  # the transaction ended: nothing is held
            assert conn.execute(held).fetchall() == []
    finally:
        other.close()


def photo_chunks(photo, report_id, device, size=16384):
    sha = hashlib.sha256(photo).hexdigest()
    parts = [photo[i:i + size] for i in range(0, len(photo), size)]
    return sha, [(topic(device, f"photo/{report_id}/{n}"),
                  json.dumps({"sha256": sha, "n": n, "of": len(parts), "size": len(photo)})
                  .encode() + b"\n" + part) for n, part in enumerate(parts)]


@pytest.mark.parametrize("announced", [True, False], ids=["report-first", "chunks-first"])
def test_a_photos_last_chunks_at_two_workers_at_once_complete_it(judge, workers, store,
                                                                 tmp_path, announced):
    # each worker stores its chunk and counts the photo's chunks; counted apart, each
    # would see two of three and the photo would never be put together
    a, b = workers
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 150  # 38,404 bytes: 3 chunks
    rid = "pv-0001:000000000007"
    sha, parts = photo_chunks(photo, rid, "pv-0001")
    first = [rep(7, "pv-0001", photos=[{"sha256": sha, "bytes": len(photo)}])] if announced \
        else []
    a.commit(items(judge, *first, parts[0]))
    slow_writes(store, "photo_chunks", 0.2)
    batches = items(judge, parts[1]), items(judge, parts[2])
    assert at_once((a, batches[0]), (b, batches[1])) == []
    assert [it.outcome for batch in batches for it in batch] == ["stored", "stored"]
    (state,) = store.fetchall("SELECT complete, chunks_received FROM photos WHERE sha256 = ?",
                              (sha,))
    assert state["complete"] == 1 and state["chunks_received"] == 3
    assert (tmp_path / "photos" / sha[:2] / f"{sha}.jpg").read_bytes() == photo
    assert count(store, "photo_chunks") == 0
    if announced:
        assert report_photos(store, rid)[0]["complete"] is True
