"""Clips and memos arriving in chunks: kept, reassembled, hash-checked, checked as media
and stored content-addressed, linked to their report; each refusal a dead letter with its
reason, the report untouched.  On SQLite and PostgreSQL."""

import hashlib
import json
import time
import urllib.request

import pytest
from gridlink.firmware.codebooks import load_books
from gridlink.firmware.core import messages
from gridlink.firmware.device import memo
from gridlink.firmware.maps import open_map
from gridlink.gateway.ingest import Ingest, Item, device_acks
from gridlink.gateway.media import LocalMediaStore
from gridlink.gateway.media_ingest import MIGRATIONS, report_media
from gridlink.gateway.photos import PhotoDir
from gridlink.gateway.validate import Validator

from tests.support.clips import tiny_clip
from tests.support.gateway_rig import count, encode, grid_map_file, report, topic

T = 1_795_000_000.0
RID = "pv-0001:000000000007"


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return Validator(open_map(grid_map_file(tmp_path_factory.mktemp("grid"))), load_books())


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def memo_bytes():
    return memo.encode_memo(memo.synthetic_memo(2))


@pytest.fixture
def media_store(tmp_path):
    return LocalMediaStore(tmp_path / "media")


@pytest.fixture
def ingest(store, tmp_path, media_store):
    store.migrate(extra=MIGRATIONS)
    return Ingest(store, PhotoDir(tmp_path / "photos"), media_store)


def items(judge, *msgs):
    return [Item(t, p, T + i, judge.decode(t, p, T + i)) for i, (t, p) in enumerate(msgs)]


def rep(seq=7):
    return topic("pv-0001", "report"), encode(report("pv-0001", seq))


def chunks(data, kind, rid=RID, size=4096, sha=None):
    """The media chunks of ``data`` (``sha``: the whole-file hash the header claims)."""
    sha = sha or hashlib.sha256(data).hexdigest()
    parts = [data[i:i + size] for i in range(0, len(data), size)]
    return [(topic("pv-0001", f"media/{rid}/{n}"),
             messages.make_media_chunk(kind, sha, n, len(parts), len(data), part,
                                       hashlib.sha256(part).hexdigest()))
            for n, part in enumerate(parts)]


def dead(store):
    return store.fetchall("SELECT reason, device FROM dead_letters ORDER BY id")


def report_intact(store, seq=7):
    (row,) = store.fetchall("SELECT payload FROM reports WHERE seq = ?", (seq,))
    return json.loads(row["payload"]) == report("pv-0001", seq)


def test_a_clip_and_a_memo_resume_across_a_restart_and_the_report_lists_them(
        judge, ingest, store, tmp_path, media_store, clip_bytes, memo_bytes):
    parts = chunks(clip_bytes, "clip")
    assert len(parts) >= 3
    ingest.commit(items(judge, rep(), *parts[1:], *chunks(memo_bytes, "memo")))
    assert [m["kind"] for m in report_media(store, RID)] == ["memo"]
    assert count(store, "media_parts") == len(parts) - 1       # kept, waiting for chunk 0
    again = Ingest(store, PhotoDir(tmp_path / "photos"), media_store)   # a restart
    late = items(judge, parts[0], parts[1])                    # chunk 1 again: a repeat
    again.commit(late)
    assert [it.outcome for it in late] == ["stored", "stored"]
    listed = {m["kind"]: m for m in report_media(store, RID)}
    sha = hashlib.sha256(clip_bytes).hexdigest()
    assert listed["clip"]["sha256"] == sha and listed["clip"]["bytes"] == len(clip_bytes)
    assert listed["clip"]["content_type"] == "video/mp4"
    assert 1.0 <= listed["clip"]["trigger_offset_s"] <= 2.0   # the pre-trigger part
    assert listed["memo"]["content_type"] == "audio/ogg" and listed["memo"]["seconds"] > 1.5
    assert media_store.read(sha) == clip_bytes
    assert (tmp_path / "media" / sha[:2] / f"{sha}.mp4").exists()
    assert count(store, "media_parts") == 0 and count(store, "dead_letters") == 0
    # a copy after completion is harmless
    copy = items(judge, parts[2])
    again.commit(copy)
    assert copy[0].outcome == "stored" and len(report_media(store, RID)) == 2


def refused(judge, ingest, store, msgs):
    """Commit the report, then ``msgs``; the refused items, the report checked intact."""
    ingest.commit(items(judge, rep()))
    batch = items(judge, *msgs)
    ingest.commit(batch)
    assert report_intact(store) and count(store, "reports") == 1
    assert report_media(store, RID) == []
    return [it for it in batch if it.outcome == "rejected"]


def test_media_for_an_unknown_report_is_a_dead_letter(judge, ingest, store, memo_bytes):
    bad = refused(judge, ingest, store, chunks(memo_bytes, "memo",
                                               rid="pv-0001:000000000099"))
    assert bad and {it.verdict.category for it in bad} == {"media_unknown_report"}
    assert "no report pv-0001:000000000099" in dead(store)[0]["reason"]
    assert count(store, "media_parts") == 0
    assert device_acks(bad) == []          # a dead letter, not an answer to a report


def test_a_chunk_that_fails_its_hash_is_refused_and_the_good_copy_completes(
        judge, ingest, store, media_store, memo_bytes):
    parts = chunks(memo_bytes, "memo")
    t, good = parts[0]
    bad = refused(judge, ingest, store, [(t, good[:-1] + bytes([good[-1] ^ 1])), *parts[1:]])
    assert len(bad) == 1 and bad[0].verdict.category == "media_digest"
    assert "does not hash to its digest" in dead(store)[0]["reason"]
    sha = hashlib.sha256(memo_bytes).hexdigest()
    assert bad[0].resend == (RID, sha, [0])             # the device is asked for chunk 0
    ((_district, device, ack),) = device_acks(bad)
    assert device == "pv-0001" and messages.validate_ack(json.loads(ack)) == {
        "v": 1, "id": RID, "status": "resend", "reason": bad[0].reason, "sha256": sha,
        "chunks": [0]}
    ingest.commit(items(judge, parts[0]))
    assert media_store.read(hashlib.sha256(memo_bytes).hexdigest()) == memo_bytes


def oversized(kind, size):
    data = b"x" * 16384
    head = {"kind": kind, "sha256": "ab" * 32, "n": 0, "of": -(-size // 16384), "size": size,
            "digest": hashlib.sha256(data).hexdigest()}
    return topic("pv-0001", f"media/{RID}/0"), messages.encode(head) + b"\n" + data


def test_media_over_the_size_limit_is_refused_at_its_first_chunk(judge, ingest, store):
    bad = refused(judge, ingest, store, [oversized("memo", 2_000_000),
                                         oversized("clip", 17_000_000)])
    assert [it.verdict.category for it in bad] == ["media_size", "media"]
    memo_reason, clip_reason = (d["reason"] for d in dead(store))
    assert "2000000 bytes is over the memo limit of 1048576" in memo_reason
    assert "size" in clip_reason and "16777216" in clip_reason   # the protocol's limit
    assert count(store, "media_parts") == 0


def test_a_file_whose_bytes_do_not_hash_to_its_sha256_is_refused(
        judge, ingest, store, media_store, memo_bytes):
    claimed = "cd" * 32
    bad = refused(judge, ingest, store, chunks(memo_bytes, "memo", sha=claimed))
    assert [it.verdict.category for it in bad] == ["media_hash"]
    assert "hash to" in dead(store)[0]["reason"] and "send the file again" in \
        dead(store)[0]["reason"]
    assert bad[0].resend == (RID, claimed, None)         # every chunk again
    assert json.loads(device_acks(bad)[0][2])["chunks"] is None
    assert not media_store.has(claimed) and count(store, "media_parts") == 0


def test_a_truncated_mp4_is_refused(judge, ingest, store, media_store, clip_bytes):
    cut = clip_bytes[:len(clip_bytes) - 100]
    bad = refused(judge, ingest, store, chunks(cut, "clip"))
    assert [it.verdict.category for it in bad] == ["media_invalid"]
    assert "truncated MP4" in dead(store)[0]["reason"]
    assert not media_store.has(hashlib.sha256(cut).hexdigest())


def test_a_gateway_without_a_media_store_refuses_media_with_a_reason(
        judge, store, tmp_path, memo_bytes):
    plain = Ingest(store, PhotoDir(tmp_path / "photos"))
    plain.commit(items(judge, rep()))
    batch = items(judge, *chunks(memo_bytes, "memo"))
    plain.commit(batch)
    assert {it.outcome for it in batch} == {"rejected"}
    assert "keeps no clips or memos" in dead(store)[0]["reason"] and report_intact(store)


def test_a_store_without_the_media_tables_refuses_media_and_keeps_the_report(
        judge, store, tmp_path, media_store, memo_bytes):
    plain = Ingest(store, PhotoDir(tmp_path / "photos"), media_store)
    batch = items(judge, rep(), *chunks(memo_bytes, "memo"))
    plain.commit(batch)
    assert batch[0].outcome == "accepted" and report_intact(store)
    assert "run gridlink gateway migrate" in dead(store)[0]["reason"]


@pytest.mark.broker
def test_a_devices_clip_reaches_the_gateway_and_is_served(broker, tmp_path, clip_bytes):
    """End to end on a real Mosquitto: the device's media lane → the gateway as ``gridlink
    gateway run`` assembles it → the report's view and ``/api/media``."""
    from gridlink.firmware.device.delivery import Delivery
    from gridlink.firmware.device.shelf import MediaShelf
    from gridlink.firmware.device.store import REPORT, Store
    from gridlink.gateway.service import Gateway

    from tests.support.intake_api import Api, Tokens
    from tests.support.waiting import wait_until

    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 grid=str(grid_map_file(tmp_path)), http="127.0.0.1:0",
                 photos=str(tmp_path / "photos")).start()
    device = Store(tmp_path / "dev")
    shelf = MediaShelf(tmp_path / "dev" / "media", 1 << 20)
    rid = "pv-0001:000000000001"
    device.append(REPORT, encode(report("pv-0001", 1)))
    sha = shelf.add(clip_bytes, "clip", rid)["sha256"]
    status = {"time": None, "fix": None, "reports": 0, "track": 0, "disk_free": None,
              "cpu_temp": None, "uptime": 1.0, "firmware": "0.1.0", "codebook": "test",
              "profile": "patrol-vehicle"}
    d = Delivery(broker.url, "pv-0001", "410106", device, status_fn=lambda: status,
                 shelf=shelf, media_rate=200_000).start()
    api = Api(gw.http_url, Tokens(gw.store))
    try:
        wait_until(lambda: api.get(f"/api/reports/{rid}")[1].get("media"), 30,
                   "the clip listed in the report's view")
        wait_until(lambda: shelf.pending() == [], 10, "the clip pruned on the device")
        req = urllib.request.Request(f"{gw.http_url}/api/media/{sha}",
                                     headers={**api.auth(), "Range": "bytes=0-7"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 206 and resp.headers["Content-Type"] == "video/mp4"
            assert resp.read() == clip_bytes[:8]
    finally:
        d.stop()
        gw.stop()
        device.close()
    assert (tmp_path / "media" / sha[:2] / f"{sha}.mp4").read_bytes() == clip_bytes


def test_an_unfinished_transfer_expires_after_a_week_of_silence(judge, ingest, store,
                                                               memo_bytes):
    from gridlink.gateway.media_ingest import expire_media

    parts = chunks(memo_bytes, "memo", size=512)
    ingest.commit(items(judge, rep(), *parts[:-1]))       # the last chunk never comes
    assert count(store, "media_parts") == len(parts) - 1
    now = time.time()                                      # chunks are stamped at commit
    assert expire_media(store, now + 6 * 86400) == []
    sha = hashlib.sha256(memo_bytes).hexdigest()
    assert expire_media(store, now + 8 * 86400) == [(sha, "pv-0001", len(parts) - 1)]
    assert count(store, "media_parts") == 0 and report_intact(store)


def test_the_gateways_sweep_expires_media_transfers_too(judge, tmp_path, memo_bytes, caplog):
    from gridlink.gateway.service import Gateway

    gw = Gateway(broker="mqtt://127.0.0.1:1", db=f"sqlite:///{tmp_path}/intake.sqlite",
                 photos=str(tmp_path / "photos"))          # not started: no broker needed
    try:
        parts = chunks(memo_bytes, "memo", size=512)
        assert len(parts) > 2
        gw.runtime.ingest.commit(items(judge, rep(), *parts[:2]))
        assert count(gw.store, "media_parts") == 2
        gw.runtime.sweep(now=time.time() + 86400)
        assert count(gw.store, "media_parts") == 2
        assert "gridlink_gateway_media_bytes_waiting 1024.0" in gw.metrics.render()[0].decode()
        gw.runtime.sweep(now=time.time() + 8 * 86400)
        assert count(gw.store, "media_parts") == 0
        assert "dropped the unfinished media transfer" in caplog.text
        metrics = gw.metrics.render()[0].decode()
        assert "gridlink_gateway_media_expired_total 1.0" in metrics
        assert "gridlink_gateway_media_bytes_waiting 0.0" in metrics
    finally:
        gw.store.close()


def test_a_chunk_that_contradicts_the_transfer_under_way_is_refused(judge, ingest, store,
                                                                   memo_bytes):
    parts = chunks(memo_bytes, "memo", size=1024)
    ingest.commit(items(judge, rep(), parts[0]))
    # the same file announced as a clip and cut otherwise: it cannot join this transfer
    other = chunks(memo_bytes, "clip", size=2048)
    bad = items(judge, other[1])
    ingest.commit(bad)
    assert bad[0].outcome == "rejected" and bad[0].verdict.category == "media"
    of = len(parts)
    assert (f"chunk says {len(memo_bytes)} bytes in {len(other)} chunks, the transfer under "
            f"way {len(memo_bytes)} in {of}") in dead(store)[0]["reason"]
    assert count(store, "media_parts") == 1 and report_intact(store)


def test_a_device_may_hold_up_to_its_quota_of_unfinished_media(judge, ingest, store,
                                                                memo_bytes, monkeypatch):
    from gridlink.gateway import media_ingest

    monkeypatch.setattr(media_ingest, "DEVICE_UNFINISHED_MAX_BYTES", 2048)
    parts = chunks(memo_bytes, "memo", size=1024)
    assert len(parts) > 3
    batch = items(judge, rep(), *parts[:3])
    ingest.commit(batch)
    assert [it.outcome for it in batch] == ["accepted", "stored", "stored", "rejected"]
    assert batch[3].verdict.category == "media_quota"
    assert "pv-0001 has 2048 bytes in unfinished media; the limit is 2048" in \
        dead(store)[0]["reason"]
