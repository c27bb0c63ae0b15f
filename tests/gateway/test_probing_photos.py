"""Issue 19 items 6 and 9: a device cannot poison another's photo; chunks are checked
alone (length, digest) and the device is asked for what the gateway discarded; photos
have limits (chunk and photo size, a per-device quota, expiry of unfinished transfers),
each with a metric."""

import hashlib
import json
import time

import pytest
from gridlink.firmware.codebooks import load_books
from gridlink.firmware.core import messages
from gridlink.gateway import photos
from gridlink.gateway.ingest import Ingest, Item, device_acks
from gridlink.gateway.photos import PhotoDir, report_photos
from gridlink.gateway.validate import Validator
from hypothesis import given
from hypothesis import strategies as st

from tests.support.gateway_rig import count, encode, report, topic
from tests.support.probing_rig import scrape_metrics, start_gateway
from tests.support.waiting import wait_until

T = 1_795_000_000.0
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 150  # 38,404 bytes: 3 chunks
SHA = hashlib.sha256(PHOTO).hexdigest()


def chunk_msgs(device, rid, photo=PHOTO, sha=SHA, size=16384, digest=True):
    parts = [photo[i:i + size] for i in range(0, len(photo), size)]
    return [(topic(device, f"photo/{rid}/{n}"),
             messages.make_photo_chunk(sha, n, len(parts), len(PHOTO), part,
                                       hashlib.sha256(part).hexdigest() if digest else None))
            for n, part in enumerate(parts)]


def announce(device, seq, sha=SHA, size=None):
    size = len(PHOTO) if size is None else size
    return topic(device, "report"), encode(report(device, seq,
                                                  photos=[{"sha256": sha, "bytes": size}]))


def resends(client):
    return [json.loads(p) for t, p in list(client.messages)
            if t.endswith("/ack") and b'"resend"' in p]


@pytest.mark.broker
def test_a_device_cannot_poison_another_devices_photo(broker, store_url, tmp_path, listener):
    gw = start_gateway(broker, store_url, tmp_path, http="127.0.0.1:0")
    try:
        junk = bytes(len(PHOTO))
        # pv-0001 sends junk as chunk 0 of pv-0002's photo, under a report not showing it
        listener.publish(*chunk_msgs("pv-0001", "pv-0001:000000000001", junk)[0])
        # then announces the photo itself and sends all of it as junk
        listener.publish(*announce("pv-0001", 2))
        for msg in chunk_msgs("pv-0001", "pv-0001:000000000002", junk):
            listener.publish(*msg)
        wait_until(lambda: len(resends(listener)) >= 2, 15, "the gateway's resend acks")
        # pv-0002's own photo goes through whole
        listener.publish(*announce("pv-0002", 1))
        for msg in chunk_msgs("pv-0002", "pv-0002:000000000001"):
            listener.publish(*msg)
        wait_until(lambda: [p["complete"] for p in report_photos(
            gw.store, "pv-0002:000000000001")] == [True], 15, "pv-0002's photo")
        path = tmp_path / "photos" / SHA[:2] / f"{SHA}.jpg"
        assert path.read_bytes() == PHOTO
        got = {(r["id"], tuple(r["chunks"] or ())) for r in resends(listener)}
        # the unannounced chunk and pv-0001's junk photo (its transfer, apart from
        # pv-0002's, fails the photo's hash) are asked of pv-0001 alone; never of pv-0002
        assert got == {("pv-0001:000000000001", (0,)), ("pv-0001:000000000002", ())}
        reasons = {r["reason"] for r in gw.store.fetchall("SELECT reason FROM dead_letters")}
        assert any("does not announce it" in r for r in reasons)
        assert any("reassembled" in r for r in reasons)
        metrics = scrape_metrics(gw)
        assert 'gridlink_gateway_rejects_total{reason="photo_unannounced"} 1.0' in metrics
        assert 'gridlink_gateway_rejects_total{reason="photo_failed"} 1.0' in metrics
        assert "gridlink_gateway_photo_resends_total 2.0" in metrics
    finally:
        gw.stop()


@pytest.fixture
def commit(tmp_path, store):
    judge = Validator(None, load_books())
    ingest = Ingest(store, PhotoDir(tmp_path / "photos"))

    def run(*msgs, received=T):
        batch = [Item(t, p, received, judge.decode(t, p, received)) for t, p in msgs]
        ingest.commit(batch)
        return batch

    run.ingest = ingest
    return run


def test_a_photo_failing_its_hash_is_asked_for_whole_and_then_completes(commit, store):
    """A device without chunk digests: a damaged chunk shows only in the whole."""
    rid = "pv-0001:000000000005"
    commit(announce("pv-0001", 5))
    parts = chunk_msgs("pv-0001", rid, digest=False)
    t, body = parts[1]
    damaged = body[:-1] + bytes([body[-1] ^ 1])
    batch = commit(parts[0], (t, damaged), parts[2])
    assert batch[2].outcome == "rejected" and batch[2].resend == (rid, SHA, None)
    ((_, device, ack),) = device_acks(batch)
    assert device == "pv-0001"
    ack = messages.decode_for("ack", ack)
    assert (ack["status"], ack["id"], ack["chunks"]) == ("resend", rid, None)
    assert count(store, "photo_parts") == 0
    commit(*parts)  # the device sends it all again
    assert report_photos(store, rid)[0]["complete"] is True


@pytest.mark.parametrize("n, cut, why", [
    (0, 100, "does not fit"),         # a short middle chunk
    (2, 4000, "does not fit"),        # the last chunk, too short for the photo's size
])
def test_a_chunk_of_the_wrong_length_is_refused_and_asked_for(commit, n, cut, why):
    rid = "pv-0001:000000000006"
    commit(announce("pv-0001", 6))
    t, body = chunk_msgs("pv-0001", rid, digest=False)[n]
    _, data = messages.split_photo_chunk(body)
    (it,) = commit((t, messages.make_photo_chunk(SHA, n, 3, len(PHOTO), data[:cut])))
    assert it.outcome == "rejected" and why in it.reason
    assert it.verdict.category == "photo_length" and it.resend == (rid, SHA, [n])


def test_a_chunk_before_its_report_is_refused_and_asked_for_again(commit, store):
    rid = "pv-0001:000000000007"
    parts = chunk_msgs("pv-0001", rid)
    (early,) = commit(parts[0])
    assert early.outcome == "rejected" and early.resend == (rid, SHA, [0])
    assert early.verdict.category == "photo_unannounced" and count(store, "photo_parts") == 0
    commit(announce("pv-0001", 7), *parts)
    assert report_photos(store, rid)[0]["complete"] is True


def test_an_unannounced_blob_is_never_stored_or_served(commit, store, tmp_path):
    blob = bytes(range(256)) * 64  # 16,384 bytes: one chunk
    sha = hashlib.sha256(blob).hexdigest()
    msg = (topic("pv-0001", "photo/pv-0001:000000000009/0"),
           messages.make_photo_chunk(sha, 0, 1, len(blob), blob))
    (it,) = commit(msg)
    assert it.outcome == "rejected"
    assert count(store, "photos") == 0 and count(store, "photo_parts") == 0
    assert not (tmp_path / "photos" / sha[:2]).exists()


def test_the_limits_of_the_protocol_are_checked_alone():
    judge = Validator()
    big = messages.CHUNK_MAX + 1
    # a header promising more than 16 MiB, or chunks bigger than the protocol's
    for head in ({"sha256": SHA, "n": 0, "of": 1, "size": 16 * 1024 * 1024 + 1},
                 {"sha256": SHA, "n": 0, "of": 1, "size": big}):
        payload = json.dumps(head).encode() + b"\n" + b"x" * 10
        v = judge.decode(topic("pv-0001", "photo/pv-0001:000000000001/0"), payload, T)
        assert v.kind == "rejected", head


def test_a_devices_unfinished_photos_have_a_quota(commit, store):
    commit.ingest.photo_quota = 40_000
    other = b"\x00" + PHOTO[1:]
    other_sha = hashlib.sha256(other).hexdigest()
    commit(announce("pv-0001", 1), announce("pv-0001", 2, sha=other_sha))
    first = chunk_msgs("pv-0001", "pv-0001:000000000001")[:2]         # 32,768 bytes waiting
    second = chunk_msgs("pv-0001", "pv-0001:000000000002", other, other_sha)[:1]
    batch = commit(*first, *second)
    assert [it.outcome for it in batch] == ["stored", "stored", "rejected"]
    assert batch[2].verdict.category == "photo_quota" and batch[2].resend is None
    # another device has a quota of its own
    commit(announce("pv-0002", 1))
    (theirs,) = commit(chunk_msgs("pv-0002", "pv-0002:000000000001")[0])
    assert theirs.outcome == "stored"


def test_unfinished_transfers_expire_and_start_over_asking_for_the_rest(commit, store):
    rid = "pv-0001:000000000003"
    commit(announce("pv-0001", 3))
    parts = chunk_msgs("pv-0001", rid)
    commit(parts[0], parts[1])
    assert photos.expire_unfinished(store, time.time() + 6 * 86400) == 0
    assert photos.expire_unfinished(store, time.time() + 8 * 86400) == 1
    assert count(store, "photo_parts") == 0
    assert "unfinished for 7 days" in store.fetchall("SELECT error FROM photos")[0]["error"]
    # the device, unaware, sends its last chunk: kept, and the rest is asked for
    (last,) = commit(parts[2])
    assert last.outcome == "stored" and last.resend == (rid, SHA, [0, 1])
    commit(parts[0], parts[1])
    assert report_photos(store, rid)[0]["complete"] is True


@pytest.mark.broker
def test_the_sweep_runs_in_the_gateway_and_is_counted(broker, store_url, tmp_path,
                                                      listener):
    gw = start_gateway(broker, store_url, tmp_path, http="127.0.0.1:0")
    try:
        listener.publish(*announce("pv-0001", 3))
        listener.publish(*chunk_msgs("pv-0001", "pv-0001:000000000003")[0])
        wait_until(lambda: count(gw.store, "photo_parts") == 1, 10, "a chunk waiting")
        assert gw.runtime.sweep(time.time() + 8 * 86400) == 1
        metrics = scrape_metrics(gw)
        assert "gridlink_gateway_photos_expired_total 1.0" in metrics
        assert "gridlink_gateway_photo_bytes_waiting 0.0" in metrics
    finally:
        gw.stop()


@given(st.integers(1, 16 * 1024 * 1024), st.integers(1, messages.CHUNK_MAX))
def test_every_uniformly_cut_chunk_fits_and_a_cut_other_lengths_do_not(size, cut):
    of = messages.photo_chunk_count(size, cut)
    if of > size:
        return
    head = {"sha256": SHA, "of": of, "size": size}
    for n in {0, of - 1}:
        length = cut if n < of - 1 else size - (of - 1) * cut
        messages.check_chunk_length({**head, "n": n}, length)
        if of > 1:  # one byte more or less is another photo's cut (or none)
            for wrong in (length - 1, length + 1):
                if wrong > 0 and n < of - 1 and not (of - 1) * wrong < size <= of * wrong:
                    with pytest.raises(messages.MessageError):
                        messages.check_chunk_length({**head, "n": n}, wrong)


@pytest.mark.broker
def test_a_real_device_sends_a_chunk_damaged_on_the_way_again(broker, store_url, tmp_path):
    """The device (firmware/device/delivery.py) against the real gateway; chunk 1 is
    damaged on its first way in: the gateway refuses it by its digest and asks for it,
    the device sends it again, and the photo is complete."""
    from gridlink.firmware.core.report import encode_report, make_report
    from gridlink.firmware.device.delivery import Delivery
    from gridlink.firmware.device.store import REPORT, Store

    gw = start_gateway(broker, store_url, tmp_path)
    judge = gw.runtime.validator.decode
    damaged = []

    def in_transit(t, payload, *args):
        if t.endswith("/1") and "/photo/" in t and not damaged:
            damaged.append(t)
            payload = bytes(payload[:-1]) + bytes([payload[-1] ^ 0xFF])
        return judge(t, payload, *args)

    gw.runtime.validator.decode = in_transit
    store = Store(tmp_path / "dev")
    status = {"time": None, "fix": None, "reports": 0, "track": 0, "disk_free": None,
              "cpu_temp": None, "uptime": 1.0, "firmware": "0.1.0", "codebook": "test",
              "profile": "patrol-vehicle"}
    d = Delivery(broker.url, "pv-0001", "410106", store, status_fn=lambda: status).start()
    try:
        wait_until(lambda: d.connected, 10, "the device connected")
        store.save_photo(SHA, PHOTO)
        rep = make_report("pv-0001", 1, None, time.time(), "event", "GB/T 47678.5-2026",
                          "06010", photos=[(SHA, len(PHOTO))])
        with store.lock:
            store.append(REPORT, encode_report(rep))
            d.add_photo_job(rep["id"], SHA, len(PHOTO))
        d.kick()
        wait_until(lambda: [p["complete"] for p in report_photos(gw.store, rep["id"])] == [True],
                 30, "the photo, complete")
        assert damaged and d.counters["photo_resends"] == 1
        (dead,) = gw.store.fetchall("SELECT reason FROM dead_letters")
        assert "does not hash to its digest" in dead["reason"]
    finally:
        d.stop()
        store.close()
        gw.stop()


def test_chunks_in_flight_at_the_upgrade_move_to_their_devices_transfer(store_url, tmp_path):
    """A store of an earlier gateway holds photo_chunks of unfinished photos: migration
    0005 moves them into the first reporting device's transfer, which then completes."""
    import gridlink.gateway.store.base as base
    from gridlink.gateway.store import open_store

    s = open_store(store_url)
    try:
        names = [m[0] for m in base.BUILTIN]
        with pytest.MonkeyPatch.context() as m:
            m.setattr(base, "BUILTIN", base.BUILTIN[:names.index("0005_photo_parts")])
            s.migrate()
        rid = "pv-0001:000000000004"
        parts = chunk_msgs("pv-0001", rid)
        with s.connect() as conn:
            conn.execute(s.sql("INSERT INTO photos (sha256, size, complete, first_report, "
                               "chunks) VALUES (?, ?, 0, ?, 3)"), (SHA, len(PHOTO), rid))
            conn.execute(s.sql("INSERT INTO report_photos (report_id, sha256) VALUES (?, ?)"),
                         (rid, SHA))
            for n in (0, 1):
                _, data = messages.split_photo_chunk(parts[n][1])
                conn.execute(s.sql("INSERT INTO photo_chunks (sha256, n, total, data, "
                                   "received_at) VALUES (?, ?, 3, ?, ?)"),
                             (SHA, n, data, "2026-11-28T00:00:00.000Z"))
        assert s.migrate() == ["0005_photo_parts", "0006_report_seq_bigint",
                              "urgent_001_report_urgent", "0007_month_partitions"]
        moved = s.fetchall("SELECT device, n, bytes FROM photo_parts ORDER BY n")
        assert moved == [{"device": "pv-0001", "n": 0, "bytes": 16384},
                         {"device": "pv-0001", "n": 1, "bytes": 16384}]
        ingest = Ingest(s, PhotoDir(tmp_path / "photos"))
        judge = Validator()
        ingest.commit([Item(parts[2][0], parts[2][1], T, judge.decode(*parts[2], T))])
        assert s.fetchall("SELECT complete FROM photos") == [{"complete": 1}]
        assert (tmp_path / "photos" / SHA[:2] / f"{SHA}.jpg").read_bytes() == PHOTO
    finally:
        s.close()
