"""Group commit into the store — the same tests on SQLite and PostgreSQL."""

import base64
import hashlib
import json
import threading

import pytest
from gridlink.firmware.codebooks import load_books
from gridlink.firmware.core import messages
from gridlink.firmware.maps import open_map
from gridlink.gateway.clock import wire_time
from gridlink.gateway.ingest import Ingest, Item, device_acks, message_digest
from gridlink.gateway.photos import PhotoDir, report_photos
from gridlink.gateway.store import open_store
from gridlink.gateway.validate import Validator

from tests.support.gateway_rig import count, encode, grid_map_file, report, topic

T = 1_795_000_000.0


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return Validator(open_map(grid_map_file(tmp_path_factory.mktemp("grid"))),
                     load_books())


@pytest.fixture
def ingest(store, tmp_path):
    return Ingest(store, PhotoDir(tmp_path / "photos"))


def items(judge, *messages):
    return [Item(t, p, T + i, judge.decode(t, p, T + i)) for i, (t, p) in enumerate(messages)]


def rep(seq, device="pv-0001", **kw):
    return topic(device, "report"), encode(report(device, seq, **kw))


def test_batch_commits_reports_and_reports_outcomes(judge, ingest, store):
    batch = items(judge, rep(1), rep(2), rep(1), (topic("pv-0001", "report"), b"\x00garbage"),
                  rep(3, code="99999"))
    committed = ingest.commit(batch)
    assert [it.outcome for it in batch] == ["accepted", "accepted", "duplicate", "rejected",
                                            "rejected"]
    assert [r["id"] for r in committed] == ["pv-0001:000000000001", "pv-0001:000000000002"]
    assert count(store, "reports") == 2
    row = store.fetchall("SELECT * FROM reports WHERE seq = 1")[0]
    assert row["committed_at"] and row["grid"] == "410106001001001"
    assert json.loads(row["payload"]) == report("pv-0001", 1)
    dead = store.fetchall("SELECT * FROM dead_letters ORDER BY id")
    assert [d["device"] for d in dead] == ["pv-0001", "pv-0001"]
    assert base64.b64decode(dead[0]["payload"]) == b"\x00garbage"
    assert dead[0]["payload_encoding"] == "base64" and "UTF-8" not in dead[0]["reason"]
    assert dead[1]["payload_encoding"] == "utf-8" and "99999" in dead[1]["reason"]
    assert json.loads(dead[1]["payload"])["code"] == "99999"


def test_redelivery_in_a_later_batch_is_a_duplicate_and_changes_nothing(judge, ingest, store):
    ingest.commit(items(judge, rep(1, text="first")))
    again = items(judge, rep(1, text="first"), rep(2))
    ingest.commit(again)
    assert [it.outcome for it in again] == ["duplicate", "accepted"]
    assert count(store, "reports") == 2


def test_a_rejection_handed_over_again_is_still_one_dead_letter(judge, ingest, store):
    # the gateway committed the batch and stopped before its PUBACK: the broker hands the
    # same messages over again, to this worker or another one
    bad = [rep(1, code="99999"), (topic("pv-0001", "report"), b"\x00garbage"),
           (topic("pv-0002", "status"), b"{")]
    first = items(judge, *bad)
    ingest.commit(first)
    again = items(judge, *bad, rep(2, code="99999"), bad[0])
    ingest.commit(again)
    assert [it.outcome for it in again] == ["rejected"] * 5  # each still answered
    dead = store.fetchall("SELECT topic, reason, payload, digest FROM dead_letters ORDER BY id")
    assert len(dead) == 4  # the three, and the one new message
    assert len({d["digest"] for d in dead}) == 4
    assert json.loads(dead[3]["payload"])["seq"] == 2
    # the same bytes on another device's topic are another message
    ingest.commit(items(judge, (topic("pv-0003", "report"), b"\x00garbage")))
    assert count(store, "dead_letters") == 5
    # each device's count, kept as they were written: the redelivery added nothing
    tally = store.fetchall("SELECT device, refused, newest_id FROM dead_letter_devices "
                           "ORDER BY device")
    newest = store.fetchall("SELECT device, MAX(id) AS id FROM dead_letters GROUP BY device "
                            "ORDER BY device")
    assert [(t["device"], t["refused"]) for t in tally] == [
        ("pv-0001", 3), ("pv-0002", 1), ("pv-0003", 1)]
    assert [t["newest_id"] for t in tally] == [n["id"] for n in newest]


def test_dead_letter_digest_is_topic_and_payload():
    one = message_digest("gridlink/v1/410106/pv-0001/report", b"{")
    assert one == hashlib.sha256(b"gridlink/v1/410106/pv-0001/report\x00{").hexdigest()
    assert one != message_digest("gridlink/v1/410106/pv-0001/repor", b"t{")
    assert message_digest(b"a/\xff", b"x") == hashlib.sha256(b"a/\xff\x00x").hexdigest()


def test_device_acks_one_a_report(judge, ingest):
    batch = items(judge, rep(1), rep(1), rep(2, code="99999"),
                  (topic("pv-0001", "report"), b"{"), (topic("pv-0001", "track"), b"{"))
    ingest.commit(batch)
    acks = device_acks(batch, ids_max=1)  # for devices that read only "id"
    bodies = [json.loads(a[2]) for a in acks]
    assert {a[:2] for a in acks} == {("410106", "pv-0001")}
    assert [(b["id"], b["status"]) for b in bodies] == [
        ("pv-0001:000000000001", "accepted"), ("pv-0001:000000000001", "duplicate"),
        ("pv-0001:000000000002", "rejected"), (None, "rejected"), (None, "rejected")]
    assert bodies[0]["reason"] is None and "99999" in bodies[2]["reason"]


def test_device_acks_group_a_devices_reports_by_status_rejections_alone(judge, ingest):
    batch = items(judge, *(rep(s) for s in range(1, 20)), rep(20, device="pv-0002"),
                  rep(3), rep(21, code="99999"), rep(22), rep(4, device="pv-0002"),
                  (topic("pv-0002", "status"), b"{"))
    ingest.commit(batch[:1])  # report 1 is in already: a duplicate below
    ingest.commit(batch)
    acks = device_acks(batch)
    got = [(district, device, json.loads(body)) for district, device, body in acks]
    # in the order of each ack's first report; 16 ids at most an ack
    assert [(d, a.get("ids") or [a["id"]], a["status"]) for _, d, a in got] == [
        ("pv-0001", ["pv-0001:000000000001", "pv-0001:000000000003"], "duplicate"),
        ("pv-0001", [f"pv-0001:{s:012d}" for s in range(2, 18)], "accepted"),
        ("pv-0001", ["pv-0001:000000000018", "pv-0001:000000000019",
                     "pv-0001:000000000022"], "accepted"),
        ("pv-0002", ["pv-0002:000000000020", "pv-0002:000000000004"], "accepted"),
        ("pv-0001", ["pv-0001:000000000021"], "rejected"),
        ("pv-0002", [None], "rejected")]
    assert {d for d, _, _ in got} == {"410106"}
    assert "99999" in got[4][2]["reason"] and got[1][2]["reason"] is None
    for _, _, body in acks:  # each is a valid ack as a device reads it
        messages.decode_for("ack", body)


def test_a_failed_commit_leaves_nothing(judge, ingest, store, monkeypatch):
    batch = items(judge, rep(1), (topic("pv-0001", "report"), b"junk"))

    def broken(*a, **kw):
        raise OSError("disk gone")

    monkeypatch.setattr(ingest, "_devices", broken)
    with pytest.raises(OSError):
        ingest.commit(batch)
    assert count(store, "reports") == 0 and count(store, "dead_letters") == 0
    monkeypatch.undo()
    ingest.commit(batch)
    assert [it.outcome for it in batch] == ["accepted", "rejected"]


def status(device="pv-0001", state="online", lat=34.81, outbox=3, t="2026-11-28T02:00:00.000Z"):
    return {"v": 1, "device": device, "state": state, "time": t,
            "fix": {"lat": lat, "lon": 113.29, "alt": None, "mode": 3, "status": 1, "sats": 8,
                    "hdop": 1.0, "age": 0.2},
            "outbox": {"reports": outbox, "track": 0}, "disk_free": 10**9, "cpu_temp": 50.0,
            "uptime": 60, "firmware": "0.1.0", "codebook": "GB/T 47678.5-2026@abc",
            "profile": "patrol-vehicle"}


def test_presence_status_then_will_then_reports(judge, ingest, store):
    st = topic("pv-0001", "status")
    ingest.commit(items(judge, (st, encode(status()))))
    dev = store.fetchall("SELECT * FROM devices")[0]
    assert (dev["state"], dev["outbox_reports"], dev["firmware"], dev["profile"]) == \
        ("online", 3, "0.1.0", "patrol-vehicle")
    assert (dev["last_lat"], dev["last_fix_at"]) == (34.81, "2026-11-28T02:00:00.000Z")
    ingest.commit(items(judge, (st, encode({"v": 1, "device": "pv-0001", "state": "offline"}))))
    dev = store.fetchall("SELECT * FROM devices")[0]
    assert dev["state"] == "offline" and dev["firmware"] == "0.1.0"  # the will keeps the rest
    # a report with a newer fix moves the last position; an older one does not
    newer = report("pv-0001", 5, grid="410106001001004")
    newer["time"] = "2026-11-28T03:00:00.000Z"
    older = report("pv-0001", 6)
    older["time"] = "2026-11-28T01:00:00.000Z"
    ingest.commit(items(judge, (topic("pv-0001", "report"), encode(newer)),
                        (topic("pv-0001", "report"), encode(older))))
    dev = store.fetchall("SELECT * FROM devices")[0]
    assert (dev["last_lat"], dev["last_fix_at"]) == (34.815, "2026-11-28T03:00:00.000Z")
    assert dev["last_seen"] == wire_time(T + 1)  # the later of the two arrivals


def test_track_points_are_stored_once(judge, ingest, store):
    track = {"v": 1, "device": "pv-0001", "t0": 1_795_000_000,
             "pts": [[0, 34805000, 113285000, 0], [5, 34805100, 113285200, 550]]}
    msg = (topic("pv-0001", "track"), encode(track))
    ingest.commit(items(judge, msg))
    ingest.commit(items(judge, msg))  # redelivered
    rows = store.fetchall("SELECT device, lat, lon, speed FROM track_points ORDER BY t")
    assert rows == [{"device": "pv-0001", "lat": 34.805, "lon": 113.285, "speed": 0.0},
                    {"device": "pv-0001", "lat": 34.8051, "lon": 113.2852, "speed": 5.5}]


def chunks(photo, report_id, device="pv-0001", size=16384):
    sha = hashlib.sha256(photo).hexdigest()
    parts = [photo[i:i + size] for i in range(0, len(photo), size)]
    out = []
    for n, part in enumerate(parts):
        head = json.dumps({"sha256": sha, "n": n, "of": len(parts), "size": len(photo)})
        out.append((topic(device, f"photo/{report_id}/{n}"), head.encode() + b"\n" + part))
    return sha, out


def test_photo_reassembles_across_a_restart_and_the_report_shows_it(judge, store, tmp_path):
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 200  # 51,204 bytes: 4 chunks
    rid = "pv-0001:000000000007"
    sha, parts = chunks(photo, rid)
    announce = report("pv-0001", 7, photos=[{"sha256": sha, "bytes": len(photo)}])
    first = Ingest(store, PhotoDir(tmp_path / "photos"))
    first.commit(items(judge, (topic("pv-0001", "report"), encode(announce)), parts[2], parts[0]))
    state = report_photos(store, rid)
    assert state == [{"sha256": sha, "bytes": len(photo), "complete": False, "path": None,
                      "chunks": 4, "chunks_received": 2}]
    # the gateway restarts: a new Ingest over the same store; chunk 0 arrives again
    second = Ingest(store, PhotoDir(tmp_path / "photos"))
    second.commit(items(judge, parts[0], parts[3]))
    assert report_photos(store, rid)[0]["complete"] is False
    second.commit(items(judge, parts[1]))
    (done,) = report_photos(store, rid)
    assert done["complete"] is True and done["chunks_received"] == 4
    path = tmp_path / "photos" / sha[:2] / f"{sha}.jpg"
    assert done["path"] == str(path) and path.read_bytes() == photo
    assert count(store, "photo_parts") == 0
    late = items(judge, parts[2])  # a copy after completion is harmless
    second.commit(late)
    assert late[0].outcome == "stored" and path.read_bytes() == photo


def test_corrupt_photo_is_dead_lettered_and_can_be_resent(judge, ingest, store, tmp_path):
    photo = bytes(range(256)) * 100
    rid = "pv-0001:000000000008"
    sha, parts = chunks(photo, rid)
    ingest.commit(items(judge, rep(8, photos=[{"sha256": sha, "bytes": len(photo)}])))
    t, good = parts[1]
    bad = items(judge, parts[0], (t, good[:-1] + b"\x00"))
    ingest.commit(bad)
    assert bad[1].outcome == "rejected" and "send the photo again" in bad[1].reason
    assert bad[1].resend == (rid, sha, None)  # the device is asked for every chunk
    assert count(store, "dead_letters") == 1 and count(store, "photo_parts") == 0
    ingest.commit(items(judge, *parts))
    assert store.fetchall("SELECT complete, error FROM photos") == [{"complete": 1, "error": None}]
    assert (tmp_path / "photos" / sha[:2] / f"{sha}.bin").read_bytes() == photo


def test_many_devices_and_kinds_in_one_batch(judge, ingest, store):
    msgs = [rep(s, device=f"pv-{d:04d}") for d in range(1, 6) for s in range(1, 41)]
    batch = items(judge, *msgs, (topic("pv-0001", "status"), encode(status())))
    ingest.commit(batch)
    assert count(store, "reports") == 200 and count(store, "devices") == 5
    assert {it.outcome for it in batch} == {"accepted", "stored"}

# -- two workers committing at the same moment into one store ---------------------------
# Each worker is an Ingest over a store object of its own (as each gateway worker process
# has).  On PostgreSQL a trigger makes the rows in question slow to write, so the two
# transactions surely overlap where they share rows; SQLite's write turn lets one
# transaction at a time in, and the same assertions hold there.


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


@pytest.mark.parametrize("together", [True, False], ids=["with-the-report", "after-it"])
def test_a_photos_last_chunks_at_two_workers_at_once_complete_it(judge, workers, store,
                                                                 tmp_path, together):
    # each worker stores its chunk and counts the photo's chunks; counted apart, each
    # would see two of three and the photo would never be put together.  (Chunks before
    # their report are refused and asked for again: tests/gateway/test_probing_photos.py)
    a, b = workers
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 150  # 38,404 bytes: 3 chunks
    rid = "pv-0001:000000000007"
    sha, parts = chunks(photo, rid)
    first = rep(7, "pv-0001", photos=[{"sha256": sha, "bytes": len(photo)}])
    if together:
        a.commit(items(judge, first, parts[0]))
    else:
        a.commit(items(judge, first))
        a.commit(items(judge, parts[0]))
    slow_writes(store, "photo_parts", 0.2)
    batches = items(judge, parts[1]), items(judge, parts[2])
    assert at_once((a, batches[0]), (b, batches[1])) == []
    assert [it.outcome for batch in batches for it in batch] == ["stored", "stored"]
    (state,) = store.fetchall("SELECT complete, chunks_received FROM photos WHERE sha256 = ?",
                              (sha,))
    assert state["complete"] == 1 and state["chunks_received"] == 3
    assert (tmp_path / "photos" / sha[:2] / f"{sha}.jpg").read_bytes() == photo
    assert count(store, "photo_parts") == 0
    assert report_photos(store, rid)[0]["complete"] is True


def test_the_will_saying_offline_is_not_the_devices_last_message(judge, ingest, store):
    """最后通信 on the board is the device's last message, not the moment the broker
    published its will (the connection dropping)."""
    st = topic("pv-0001", "status")
    will = encode({"v": 1, "device": "pv-0001", "state": "offline"})
    ingest.commit([Item(st, encode(status()), T, judge.decode(st, encode(status()), T))])
    ingest.commit([Item(st, will, T + 50, judge.decode(st, will, T + 50))])
    dev = store.fetchall("SELECT * FROM devices")[0]
    assert dev["state"] == "offline" and dev["last_seen"] == wire_time(T)
    ingest.commit([Item(st, encode(status()), T + 60, judge.decode(st, encode(status()), T + 60))])
    assert store.fetchall("SELECT * FROM devices")[0]["last_seen"] == wire_time(T + 60)


def track_msg(device, seq=None, t0=1_795_000_000, n=2):
    pts = [(t0 + 5 * i, 34.805 + i * 1e-4, 113.285, 3.0) for i in range(n)]
    return topic(device, "track"), messages.encode(messages.make_track(device, pts, seq=seq))


def test_committed_track_batches_are_confirmed_by_their_seqs(judge, ingest, store):
    """A device's numbered batches of one commit get one track_stored listing their seqs
    (64 at most an ack); a batch without seq (an older device) and a refused one get none;
    a batch sent again is confirmed again and doubles no point."""
    batch = items(judge, *(track_msg("pv-0001", seq, t0=1_795_000_000 + 10 * seq)
                           for seq in range(1, 67)),
                  track_msg("pv-0002", 7), track_msg("pv-0002"),
                  (topic("pv-0002", "track"), b'{"v":1,"device":"pv-0002","seq":-1}'))
    ingest.commit(batch)
    got = [(device, json.loads(body)) for _, device, body in device_acks(batch)]
    assert [(d, a["status"], a["seqs"]) for d, a in got if a["status"] == "track_stored"] == [
        ("pv-0001", "track_stored", list(range(1, 65))),
        ("pv-0001", "track_stored", [65, 66]),
        ("pv-0002", "track_stored", [7])]
    for _, a in got:
        messages.validate_received_ack(a)
    points = count(store, "track_points")
    again = items(judge, track_msg("pv-0001", 3, t0=1_795_000_030))
    ingest.commit(again)
    assert [json.loads(b)["seqs"] for _, _, b in device_acks(again)] == [[3]]
    assert count(store, "track_points") == points


def test_a_photo_held_whole_is_confirmed_and_a_repeated_last_chunk_asks_for_the_rest(
        judge, ingest, store):
    photo = bytes(range(256)) * 150  # 38,400 bytes: 3 chunks
    sha = hashlib.sha256(photo).hexdigest()
    rid = "pv-0001:000000000001"
    parts = [photo[i:i + 16384] for i in range(0, len(photo), 16384)]

    def chunk(n):
        return (topic("pv-0001", f"photo/{rid}/{n}"),
                messages.make_photo_chunk(sha, n, 3, len(photo), parts[n]))

    def acks_of(batch):
        return [json.loads(b) for _, _, b in device_acks(batch)]

    ingest.commit(items(judge, rep(1, photos=[{"sha256": sha, "bytes": len(photo)}])))
    first = items(judge, chunk(0), chunk(2))  # chunk 1 lost on the way
    ingest.commit(first)
    assert acks_of(first) == []  # the first copy of the last chunk: the rest may follow
    probe = items(judge, chunk(2))  # the device asks with its last chunk again
    ingest.commit(probe)
    (ask,) = acks_of(probe)
    assert (ask["status"], ask["id"], ask["sha256"], ask["chunks"]) == ("resend", rid, sha, [1])
    assert "last chunk came again" in ask["reason"]
    rest = items(judge, chunk(1), chunk(1))
    ingest.commit(rest)
    assert acks_of(rest) == [messages.make_photo_stored(rid, sha)]  # one per photo
    assert [p["complete"] for p in report_photos(store, rid)] == [True]
    late = items(judge, chunk(2))  # a probe whose photo_stored was lost: confirmed again
    ingest.commit(late)
    assert acks_of(late) == [messages.make_photo_stored(rid, sha)]
