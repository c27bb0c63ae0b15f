"""The photo store (gateway/photos.py) at its edges: its folder, the per-device quota and
the expiry of waiting transfers at their exact boundaries, chunks that disagree with
their report, the stamp of a stored chunk and the length of a resend's list — on SQLite
and PostgreSQL.  The paths through the broker are in test_probing_photos.py."""

import hashlib
import re
from pathlib import Path

import pytest
from gridlink.firmware.core import messages
from gridlink.gateway import photos
from gridlink.gateway.clock import wire_time
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.ingest import Ingest, Item
from gridlink.gateway.photos import PhotoDir, add_chunks, expire_unfinished, report_photos
from gridlink.gateway.validate import Validator

from tests.support.gateway_rig import count, encode, report, topic

T = 1_795_000_000.0
DAY = 86400
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 150  # 38,404 bytes: 3 chunks of 16 KiB
SHA = hashlib.sha256(PHOTO).hexdigest()
OTHER = b"\x00" + PHOTO[1:]
OTHER_SHA = hashlib.sha256(OTHER).hexdigest()
JUDGE = Validator()


def rid(seq, device="pv-0001"):
    return f"{device}:{seq:012d}"


def chunk(seq, n, photo=PHOTO, cut=16384, device="pv-0001", size=None):
    """The judged data of chunk ``n`` of ``photo`` cut into ``cut``-byte chunks, sent
    under report ``seq`` (``size``: what the header claims, default the true one)."""
    sha = hashlib.sha256(photo).hexdigest()
    parts = [photo[i:i + cut] for i in range(0, len(photo), cut)]
    size = len(photo) if size is None else size
    payload = messages.make_photo_chunk(sha, n, len(parts), size, parts[n])
    v = JUDGE.decode(topic(device, f"photo/{rid(seq, device)}/{n}"), payload, T)
    assert v.kind == "photo", v.reason
    return v.data


@pytest.fixture
def photo_dir(tmp_path):
    return PhotoDir(tmp_path / "photos")


@pytest.fixture
def announce(store, photo_dir):
    """Commit report ``seq`` of ``device`` announcing ``photos`` [(bytes, sha256)]."""
    ingest = Ingest(store, photo_dir)

    def run(seq, *shown, device="pv-0001"):
        shown = shown or ((PHOTO, SHA),)
        t, p = topic(device, "report"), encode(report(device, seq, photos=[
            {"sha256": sha, "bytes": len(data)} for data, sha in shown]))
        (it,) = [Item(t, p, T, JUDGE.decode(t, p, T))]
        ingest.commit([it])
        assert it.outcome == "accepted", it.reason

    return run


@pytest.fixture
def add(store, photo_dir):
    """add_chunks in a transaction of its own."""
    def run(*chunks, **kw):
        with store.connect() as conn:
            return add_chunks(store, conn, photo_dir, list(chunks), **kw)
    return run


def waiting(store, device="pv-0001"):
    rows = store.fetchall("SELECT COALESCE(SUM(bytes), 0) AS n FROM photo_parts "
                          "WHERE device = ?", (device,))
    return rows[0]["n"]


# --- the folder ----------------------------------------------------------------------

def test_the_folder_is_made_with_its_parents_and_reopened(tmp_path):
    root = tmp_path / "var" / "lib" / "gridlink" / "photos"
    PhotoDir(root).write(SHA, PHOTO)
    again = PhotoDir(root)  # a restarted gateway finds its folder there
    assert again.path_for(SHA, PHOTO).read_bytes() == PHOTO


def test_photos_sharing_a_prefix_share_a_subfolder_and_the_kind_names_the_file(photo_dir):
    a, b = "ab" + "0" * 62, "ab" + "1" * 62
    first = photo_dir.write(a, PHOTO)
    second = photo_dir.write(b, b"not a jpeg")
    assert first == photo_dir.root / "ab" / f"{a}.jpg"
    assert second == photo_dir.root / "ab" / f"{b}.bin"
    assert first.read_bytes() == PHOTO and second.read_bytes() == b"not a jpeg"


def test_a_folder_that_cannot_be_made_is_a_clear_error(tmp_path):
    blocker = tmp_path / "photos"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ConfigError, match=re.escape(f"photos folder {blocker / 'new'}")):
        PhotoDir(blocker / "new")
    assert blocker.read_text() == "a file where the folder should be"


# --- the per-device quota ------------------------------------------------------------

@pytest.mark.parametrize("quota, taken", [(3 * 16384, True), (3 * 16384 - 1, False)])
def test_the_quota_takes_a_chunk_up_to_the_byte_and_refuses_one_byte_more(
        announce, add, store, quota, taken):
    announce(1)
    announce(2, (OTHER, OTHER_SHA))
    assert add(chunk(1, 0), chunk(1, 1), quota=quota) == ([], {})
    assert waiting(store) == 2 * 16384
    late = chunk(2, 0, OTHER)  # 16,384 bytes more: exactly at the quota, or one over
    _, refused = add(late, quota=quota)
    if taken:
        assert refused == {} and waiting(store) == quota
        return
    r = refused[id(late)]
    assert (r.category, r.resend) == ("photo_quota", None)
    assert r.reason.endswith(f"pv-0001 has 32768 bytes in unfinished photos; the limit is "
                             f"{quota}")
    # nothing good is lost: the chunks waiting stay, the first photo completes, and the
    # refused chunk is taken once there is room
    assert waiting(store) == 2 * 16384
    assert add(chunk(1, 2), quota=quota) == ([SHA], {})
    assert add(late, quota=quota) == ([], {}) and waiting(store) == 16384


def test_ingest_holds_each_device_to_the_quota_it_is_given(announce, store, tmp_path):
    ingest = Ingest(store, PhotoDir(tmp_path / "photos"), photo_quota=16384)
    announce(1)
    announce(1, device="pv-0002")
    sent = [(topic(d, f"photo/{rid(1, d)}/0"),
             messages.make_photo_chunk(SHA, 0, 3, len(PHOTO), PHOTO[:16384]))
            for d in ("pv-0001", "pv-0002")]
    sent.append((topic("pv-0001", f"photo/{rid(1)}/1"),
                 messages.make_photo_chunk(SHA, 1, 3, len(PHOTO), PHOTO[16384:32768])))
    batch = [Item(t, p, T, JUDGE.decode(t, p, T)) for t, p in sent]
    ingest.commit(batch)
    assert [it.outcome for it in batch] == ["stored", "stored", "rejected"]
    assert "the limit is 16384" in batch[2].reason
    assert count(store, "dead_letters") == 1 and count(store, "photo_parts") == 2


def test_the_default_limits_are_the_ones_the_protocol_states():
    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    mib, days = re.search(r"unfinished photos ≤ (\d+) MiB of chunks per device, dropped "
                          r"after (\d+) days", text).groups()
    in_code = photos.DEVICE_UNFINISHED_MAX_BYTES, photos.UNFINISHED_MAX_AGE_S
    assert in_code == (int(mib) * 1024 * 1024, int(days) * DAY)


# --- expiry of waiting transfers -----------------------------------------------------

def test_a_transfer_waits_seven_days_to_the_millisecond_then_is_dropped(announce, add, store):
    announce(3)
    add(chunk(3, 0), now=wire_time(T))
    for age in (7 * DAY - 1, 7 * DAY - 0.001, 7 * DAY):  # just before, and at the limit
        assert expire_unfinished(store, T + age) == 0
    assert count(store, "photo_parts") == 1
    assert expire_unfinished(store, T + 7 * DAY + 0.001) == 1  # just after
    assert count(store, "photo_parts") == 0
    (photo,) = store.fetchall("SELECT error, chunks_received, complete FROM photos")
    assert photo == {"error": "unfinished for 7 days: chunks dropped", "chunks_received": 0,
                     "complete": 0}


def test_a_transfer_waits_from_its_newest_chunk_and_for_the_age_it_is_given(
        announce, add, store):
    announce(3)
    add(chunk(3, 0), now=wire_time(T))
    add(chunk(3, 1), now=wire_time(T + 2 * DAY))
    assert expire_unfinished(store, T + 7 * DAY + 1) == 0  # the newest is 5 days old
    assert expire_unfinished(store, T + 2 * DAY + 3600, max_age_s=3600) == 0
    assert expire_unfinished(store, T + 2 * DAY + 3600.001, max_age_s=3600) == 1
    assert store.fetchall("SELECT error FROM photos")[0]["error"].startswith(
        "unfinished for 0.0416667 days")


def test_the_sweep_marks_only_the_photos_whose_transfer_it_dropped(announce, add, store):
    announce(3)
    announce(4, (PHOTO, SHA), (OTHER, OTHER_SHA))
    add(chunk(3, 0), chunk(3, 1), chunk(3, 2), chunk(4, 0, OTHER), now=wire_time(T))
    assert expire_unfinished(store, T + 30 * DAY) == 1
    rows = {r["sha256"]: r for r in store.fetchall("SELECT sha256, complete, error "
                                                    "FROM photos")}
    assert (rows[SHA]["complete"], rows[SHA]["error"]) == (1, None)
    assert rows[OTHER_SHA]["error"].startswith("unfinished")


# --- the stamp of a stored chunk -----------------------------------------------------

def test_a_chunk_is_stamped_with_the_time_given_or_else_now(announce, add, store):
    import time

    announce(3)
    add(chunk(3, 0), now="2026-11-28T02:15:07.250Z")
    before = wire_time(time.time())
    add(chunk(3, 1))
    after = wire_time(time.time())
    stamps = [r["received_at"] for r in store.fetchall("SELECT received_at FROM photo_parts "
                                                        "ORDER BY n")]
    assert stamps[0] == "2026-11-28T02:15:07.250Z"
    assert before <= stamps[1] <= after


# --- chunks that disagree with their report ------------------------------------------

def test_a_chunk_claiming_another_size_than_its_report_is_refused_alone(announce, add, store):
    announce(5)
    bad = chunk(5, 0, size=len(PHOTO) + 1)
    _, refused = add(chunk(5, 1), bad)
    r = refused[id(bad)]
    assert (r.category, r.resend) == ("photo", None)
    assert f"chunk says {len(PHOTO) + 1} bytes in 3 chunks, the report announced " \
           f"{len(PHOTO)} bytes in 3" in r.reason
    assert list(refused) == [id(bad)]
    assert add(chunk(5, 0), chunk(5, 2)) == ([SHA], {})


def test_a_chunk_cut_into_another_count_than_the_first_is_refused(announce, add, store):
    announce(5)
    assert report_photos(store, rid(5))[0]["chunks_received"] == 0
    add(chunk(5, 0))
    (shown,) = report_photos(store, rid(5))
    assert (shown["chunks"], shown["chunks_received"], shown["complete"]) == (3, 1, False)
    other_cut = chunk(5, 1, cut=12800)  # the photo in 4 chunks
    _, refused = add(other_cut)
    assert refused[id(other_cut)].category == "photo"
    assert refused[id(other_cut)].reason.endswith(f"announced {len(PHOTO)} bytes in 3")
    assert add(chunk(5, 1), chunk(5, 2)) == ([SHA], {})
    assert report_photos(store, rid(5))[0]["chunks_received"] == 3


# --- what a resend lists -------------------------------------------------------------

@pytest.mark.parametrize("total, listed", [(messages.RESEND_CHUNKS_MAX + 1, True),
                                           (messages.RESEND_CHUNKS_MAX + 2, False)])
def test_a_resend_lists_up_to_its_maximum_of_chunks_and_else_asks_for_all(
        announce, add, store, total, listed):
    photo = bytes(range(100)) * (total - 1) + b"end"  # ``total`` chunks of 100 bytes
    sha = hashlib.sha256(photo).hexdigest()
    announce(6, (photo, sha))
    add(chunk(6, 0, photo, cut=100), now=wire_time(T))
    assert expire_unfinished(store, T + 8 * DAY) == 1
    again = chunk(6, 0, photo, cut=100)
    _, refused = add(again)
    r = refused[id(again)]
    assert r.category is None and "send the missing ones again" in r.reason
    missing = list(range(1, total))
    assert r.resend == (rid(6), sha, missing if listed else None)
    assert len(missing) == messages.RESEND_CHUNKS_MAX + (0 if listed else 1)


# --- what a report shows -------------------------------------------------------------

def test_a_report_shows_its_photos_in_its_order_and_an_unknown_report_none(
        announce, add, store):
    announce(7, (OTHER, OTHER_SHA), (PHOTO, SHA))
    add(chunk(7, 0), chunk(7, 1), chunk(7, 2))
    shown = report_photos(store, rid(7))
    assert [(p["sha256"], p["bytes"], p["complete"]) for p in shown] == [
        (OTHER_SHA, len(OTHER), False), (SHA, len(PHOTO), True)]
    assert shown[1]["path"].endswith(f"{SHA}.jpg") and shown[0]["path"] is None
    assert report_photos(store, rid(8)) == []
