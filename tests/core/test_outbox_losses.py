"""Every outbox record lost to damage is counted, the count survives restarts (META), and
the device's status carries it; boundaries of the record format and the outbox's cursor,
sizes and eviction (tests that would notice a flipped comparison or a shifted constant)."""

import io
import shutil
import struct

import pytest
from gridlink.firmware.core import fsio, records
from gridlink.firmware.core.outbox import (
    _META_SIZE,
    ACKS,
    KIND_NAMES,
    LOG,
    PHOTO_PROGRESS,
    REPORT,
    TASK_RESULT,
    TRACK,
    Outbox,
    OutboxError,
    OutboxFull,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython


def spans(path):
    """[(start, end, seq, kind)] of the records in a log, in order."""
    data = (path / LOG).read_bytes()
    with open(path / LOG, "rb") as f:
        return [(off, nxt, seq, kind) for off, kind, seq, _p, nxt in
                records.scan(f, 0, len(data))]


def make(path, n=6, sync=False, **kw):
    ob = Outbox(str(path), sync=sync, **kw)
    for i in range(n):
        ob.append(REPORT, b'{"n":%d,"text":"abcdefgh"}' % i)
    return ob


def damage(path, offsets):
    raw = bytearray((path / LOG).read_bytes())
    for off in offsets:
        raw[off] ^= 0x5A
    (path / LOG).write_bytes(bytes(raw))


def test_a_damaged_record_in_the_middle_is_counted_and_the_count_survives(tmp_path):
    make(tmp_path).close()
    recs = spans(tmp_path)
    _start, end, seq, _ = recs[3]
    damage(tmp_path, [end - 6])                       # payload of record 3
    ob = Outbox(str(tmp_path), sync=False)
    assert ob.lost == 1 and seq not in [s for s, _k, _p in ob.pending()]
    assert [p[3] for p in ob.problems] == ["payload CRC mismatch; damaged record skipped; "
                                           "1 record(s) lost"]
    ob.close()
    again = Outbox(str(tmp_path), sync=False)         # compacted: the damage is gone...
    assert again.problems == [] and again.lost == 1   # ...the count is not
    again.append(REPORT, b"x")
    again.compact()
    again.close()
    assert Outbox(str(tmp_path), sync=False).lost == 1


def test_two_damaged_records_count_two_and_a_header_hit_counts_one(tmp_path):
    make(tmp_path).close()
    recs = spans(tmp_path)
    damage(tmp_path, [recs[2][1] - 6, recs[3][1] - 6])    # payloads of two neighbours
    ob = Outbox(str(tmp_path), sync=False)
    assert ob.lost == 2 and len(ob.problems) == 1          # one span, two records
    ob.close()
    damage(tmp_path, [spans(tmp_path)[2][0] + 4])          # the header (length) of another
    ob = Outbox(str(tmp_path), sync=False)
    assert ob.lost == 3
    ob.close()


def test_a_torn_tail_is_not_a_loss_but_a_whole_damaged_last_record_is(tmp_path):
    make(tmp_path, n=3).close()
    raw = (tmp_path / LOG).read_bytes()
    end = spans(tmp_path)[-1]
    (tmp_path / LOG).write_bytes(raw[:end[1] - 3])         # an append cut short by power
    ob = Outbox(str(tmp_path), sync=False)
    assert ob.lost == 0 and "torn tail cut; 0 record(s) lost" in ob.problems[0][3]
    ob.close()
    make(tmp_path / "b", n=3).close()
    damage(tmp_path / "b", [spans(tmp_path / "b")[-1][1] - 1])   # its CRC, written whole
    ob = Outbox(str(tmp_path / "b"), sync=False)
    assert ob.lost == 1
    ob.close()


def test_a_damaged_meta_record_is_not_counted_as_a_lost_report(tmp_path):
    make(tmp_path, n=3).close()
    damage(tmp_path, [_META_SIZE - 6])                     # inside META's payload
    ob = Outbox(str(tmp_path), sync=False)
    assert ob.lost == 0 and len(list(ob.pending())) == 3
    ob.close()


def test_damage_found_while_compacting_is_counted_and_persisted(tmp_path):
    ob = make(tmp_path, n=4)
    _start, end, _seq, _ = spans(tmp_path)[2]
    with open(tmp_path / LOG, "r+b") as f:                 # goes bad after it was read
        f.seek(end - 6)
        f.write(b"\x00")
    ob.ack(1)
    ob.compact()
    assert ob.lost == 1 and "found while compacting" in ob.problems[-1][3]
    ob.close()
    assert Outbox(str(tmp_path), sync=False).lost == 1


def test_an_unknown_record_kind_is_a_counted_loss(tmp_path):
    ob = make(tmp_path, n=1)
    ob.close()
    with open(tmp_path / LOG, "ab") as f:
        f.write(records.encode(99, 7, b"from a newer firmware"))
    ob = Outbox(str(tmp_path), sync=False)
    assert ob.lost == 1 and "unknown record kind 99" in ob.problems[0][3]
    ob.close()


def test_a_log_with_the_old_nine_byte_meta_is_read_with_zero_lost(tmp_path):
    old_meta = records.encode(0, 0, b"GLOB\x01" + struct.pack(">I", 40))
    (tmp_path / LOG).write_bytes(old_meta + records.encode(REPORT, 3, b"kept"))
    ob = Outbox(str(tmp_path), sync=False)
    assert ob.lost == 0 and ob.next_seq == 40
    assert list(ob.pending()) == [(3, REPORT, b"kept")]
    ob.close()


NO_RESET = [HealthCheck.function_scoped_fixture]


@settings(max_examples=50, deadline=None, suppress_health_check=NO_RESET)
@given(data=st.data())
def test_flipped_bytes_count_between_one_and_the_records_hit(tmp_path_factory, data):
    src = tmp_path_factory.mktemp("src")
    make(src, n=8).close()
    recs = spans(src)
    size = (src / LOG).stat().st_size
    flips = data.draw(st.lists(st.integers(_META_SIZE, size - 1), min_size=1, max_size=3,
                               unique=True))
    hit = {seq for a, b, seq, _ in recs for off in flips if a <= off < b}
    work = tmp_path_factory.mktemp("work") / "ob"
    shutil.copytree(src, work)
    damage(work, flips)
    ob = Outbox(str(work), sync=False)
    try:
        kept = {s for s, _k, _p in ob.pending()}
        assert kept == {seq for _a, _b, seq, kind in recs if kind == REPORT} - hit
        assert 1 <= ob.lost <= len(hit)
        payload_only = all(a + records.HEAD_SIZE <= off for a, b, _s, _k in recs
                           for off in flips if a <= off < b)
        if payload_only:
            assert ob.lost == len(hit)
    finally:
        ob.close()


# -- the record format at its boundaries -----------------------------------------------------

def test_record_layout_and_every_single_byte_of_damage_is_caught():
    rec = records.encode(REPORT, 0x01020304, b"abc")
    assert len(rec) == records.OVERHEAD + 3 == 22
    assert rec[:2] == records.MAGIC and rec[2] == REPORT
    assert rec[3:7] == b"\x00\x00\x00\x03" and rec[7:11] == b"\x01\x02\x03\x04"
    f = io.BytesIO(rec)
    assert records.read_record(f, 0, len(rec)) == (REPORT, 0x01020304, b"abc", 22)
    for i in range(len(rec)):
        bad = bytearray(rec)
        bad[i] ^= 1
        assert isinstance(records.read_record(io.BytesIO(bytes(bad)), 0, len(rec)), str), i


def test_read_record_bounds():
    rec = records.encode(TRACK, 5, b"")
    f = io.BytesIO(rec + b"\0" * 4)
    assert records.read_record(f, 0, len(rec)) == (TRACK, 5, b"", records.OVERHEAD)
    assert records.read_record(f, 0, len(rec) - 1) == "incomplete record header"
    longer = records.encode(TRACK, 5, b"xy")
    assert records.read_record(io.BytesIO(longer), 0, len(longer) - 1) == \
        "record cut short (torn write)"
    assert records.read_record(io.BytesIO(longer[:-1] + b"\0" * 8), 0, len(longer)) == \
        "payload CRC mismatch"
    assert records.read_record(io.BytesIO(b"\0" * 30), 0, 30) == "no record marker"


def test_encode_accepts_the_edges_of_kind_and_seq():
    assert records.encode(0, 0, b"")[2] == 0
    assert records.encode(255, records.SEQ_LIMIT, b"")[7:11] == b"\xff\xff\xff\xff"
    for kind, seq in ((-1, 0), (256, 0), (0, -1), (0, records.SEQ_LIMIT + 1)):
        with pytest.raises(records.RecordError):
            records.encode(kind, seq, b"")


def test_records_in_counts_whole_records_of_a_tail_and_one_for_an_empty_span():
    a, b = records.encode(REPORT, 1, b"aaaa"), records.encode(REPORT, 2, b"bbbb")
    data = a + b
    f = io.BytesIO(data)
    cut = records.TORN[1]
    assert records.records_in(f, 0, len(data)) == 2
    assert records.records_in(f, 0, len(data), tail=True, reason=cut) == 2
    assert records.records_in(f, 0, len(data) - 1, tail=True, reason=cut) == 1   # b cut
    assert records.records_in(f, 0, len(data) - 1, tail=True, reason="header CRC") == 2
    assert records.records_in(f, 0, len(a), tail=True, reason=cut, ignore=(REPORT,)) == 0
    assert records.records_in(f, 0, len(a), ignore=(REPORT,)) == 0
    zeros = io.BytesIO(b"\0" * 40)
    assert records.records_in(zeros, 0, 40) == 1                         # mid-log garbage
    assert records.records_in(zeros, 0, 40, tail=True, reason="no record marker") == 0
    junk = io.BytesIO(b"\1" * 40)                                        # a damaged whole
    assert records.records_in(junk, 0, 40, tail=True, reason="no record marker") == 1
    assert records.records_in(f, len(a), len(data)) == 1


# -- outbox cursor, sizes, eviction ----------------------------------------------------------

def test_cursor_next_seq_and_depth_follow_acks_exactly(tmp_path):
    ob = Outbox(str(tmp_path), sync=False)
    assert (ob.cursor, ob.next_seq, ob.depth()) == (0, 1, 0)
    for kind in (REPORT, TRACK, TASK_RESULT, PHOTO_PROGRESS):
        ob.append(kind, b"p")
    assert (ob.cursor, ob.next_seq, ob.depth(), ob.depth(TRACK)) == (0, 5, 4, 1)
    assert ob.ack(2) and ob.cursor == 0                    # a gap keeps the cursor
    assert ob.ack(1) and ob.cursor == 2
    assert not ob.ack(1) and not ob.ack(99)                # twice, or never pending
    assert ob.ack_many([3, 3, 4, 50]) == 2
    assert (ob.cursor, ob.depth(), ob.depth(REPORT), ob.depth(9)) == (4, 0, 0, 0)
    with pytest.raises(OutboxError, match="no pending record 1"):
        ob.get(1)
    with pytest.raises(OutboxError, match="unknown record kind"):
        ob.append(9, b"x")
    ob.close()


def test_size_limits_at_the_byte(tmp_path):
    smallest = _META_SIZE + records.OVERHEAD + 1
    with pytest.raises(OutboxError, match="too small"):
        Outbox(str(tmp_path / "a"), max_bytes=smallest - 1)
    ob = Outbox(str(tmp_path / "b"), max_bytes=smallest, sync=False)
    assert ob.size == _META_SIZE
    with pytest.raises(OutboxFull, match="can never fit"):
        ob.append(REPORT, b"xy")
    assert ob.append(REPORT, b"x") == 1 and ob.size == smallest
    with pytest.raises(OutboxFull, match="NOT stored"):
        ob.append(REPORT, b"y")                             # reports are never evicted
    ob.close()


def test_an_ack_file_of_a_dropped_record_is_ignored(tmp_path):
    ob = make(tmp_path, n=2)
    ob.ack(1)
    ob.close()
    with open(tmp_path / ACKS, "ab") as f:
        f.write(records.encode(0x41, 77, b""))             # ack of a record not in the log
    ob = Outbox(str(tmp_path), sync=False)
    assert [s for s, _k, _p in ob.pending()] == [2] and ob.next_seq == 78
    ob.close()


def test_track_goes_in_eighths_and_photo_progress_only_when_needed(tmp_path):
    ob = Outbox(str(tmp_path), max_bytes=4096, sync=False)   # room 4064: 34 records of 119
    rec = records.OVERHEAD + 100
    tracks = [ob.append(TRACK, b"t" * 100) for _ in range(34)]
    assert ob.evicted[TRACK] == 0 and ob.size == _META_SIZE + 34 * rec
    t35 = ob.append(TRACK, b"t" * 100)
    # room for one more means down to 4064 - 4096/8 = 3552 bytes: the 6 oldest go
    assert ob.evicted[TRACK] == 6
    assert [s for s, _k, _p in ob.pending()] == [*tracks[6:], t35]
    photo = ob.append(PHOTO_PROGRESS, b"p" * 100)
    reports = []
    while True:
        try:
            reports.append(ob.append(REPORT, b"r" * 100))
        except OutboxFull:
            break
    left = [s for s, _k, _p in ob.pending()]
    assert ob.evicted[TRACK] == 35 and ob.depth(TRACK) == 0        # every track first
    assert ob.evicted[PHOTO_PROGRESS] == 1 and photo not in left   # then the progress
    assert left == reports and len(reports) == 34                  # reports never
    assert ob.size == _META_SIZE + 34 * rec <= 4096
    ob.close()


def test_record_kinds_on_disk_never_change():
    # logs written by earlier firmware must read the same: the numbers are the format
    assert (REPORT, TASK_RESULT, TRACK, PHOTO_PROGRESS) == (1, 2, 3, 4)
    assert KIND_NAMES == {1: "report", 2: "task_result", 3: "track", 4: "photo_progress"}


def test_the_default_size_is_one_mebibyte(tmp_path):
    ob = Outbox(str(tmp_path))
    assert ob.max_bytes == 1048576 and ob.sync
    ob.close()


def test_an_empty_log_file_gets_its_meta_record(tmp_path):
    (tmp_path / LOG).write_bytes(b"")
    ob = Outbox(str(tmp_path), sync=False)
    assert ob.size == _META_SIZE == (tmp_path / LOG).stat().st_size
    ob.close()


def test_a_kind_zero_record_without_the_meta_tag_is_not_read_as_meta(tmp_path):
    other = records.encode(0, 0, b"XLOB\x01" + struct.pack(">I", 500))
    longer = records.encode(0, 0, b"GLOB\x01" + struct.pack(">III", 600, 7, 9))
    (tmp_path / LOG).write_bytes(other + longer + records.encode(REPORT, 3, b"r"))
    ob = Outbox(str(tmp_path), sync=False)
    assert ob.next_seq == 4 and ob.lost == 0 and ob.problems == []
    ob.close()


def test_the_lost_count_saturates_at_its_four_bytes(tmp_path):
    ob = make(tmp_path, n=1)
    ob.lost = 2 ** 32 + 5
    ob.compact()
    ob.close()
    assert Outbox(str(tmp_path), sync=False).lost == 0xFFFFFFFF


def test_problem_items_give_the_offset_and_size_of_what_was_skipped(tmp_path):
    dup = records.encode(REPORT, 2, b"again")
    odd = records.encode(77, 9, b"kind 77")
    ob = make(tmp_path, n=2)
    ob.close()
    size = (tmp_path / LOG).stat().st_size
    with open(tmp_path / LOG, "ab") as f:
        f.write(dup + odd)
    ob = Outbox(str(tmp_path), sync=False)
    assert ob.problems[0][:3] == (LOG, size, len(dup))
    assert ob.problems[1][:3] == (LOG, size + len(dup), len(odd))
    ob.close()
    ob = make(tmp_path / "c", n=3)
    start, end, _seq, _ = spans(tmp_path / "c")[2]
    with open(tmp_path / "c" / LOG, "r+b") as f:
        f.seek(end - 6)
        f.write(b"\x00")
    ob.compact()
    assert ob.problems[-1][:3] == (LOG, start, end - start)
    ob.close()


def test_a_long_rejection_reason_is_kept_to_255_bytes(tmp_path):
    ob = make(tmp_path, n=1)
    assert ob.reject(1, "理" * 100)                       # 300 bytes of UTF-8
    [(seq, kind, payload, reason)] = list(ob.rejected())
    assert (seq, kind) == (1, REPORT) and payload.startswith(b'{"n":0')
    assert reason == "理" * 85 and len(reason.encode()) == 255
    assert not ob.reject(1, "again")
    ob.close()


def test_all_acked_compacts_only_beyond_half_the_limit(tmp_path):
    rec = records.OVERHEAD + 100
    # 4 records make the log _META_SIZE + 4 * rec bytes; the limit puts that at exactly half
    half = _META_SIZE + 4 * rec
    ob = Outbox(str(tmp_path / "a"), max_bytes=2 * half, sync=False)
    for _ in range(4):
        ob.append(REPORT, b"r" * 100)
    ob.ack_many([1, 2, 3])
    assert ob.size == half                                 # one still pending: kept
    ob.ack(4)
    assert ob.size == half                                 # at half: not compacted
    ob.close()
    ob = Outbox(str(tmp_path / "b"), max_bytes=2 * half - 1, sync=False)
    for _ in range(4):
        ob.append(REPORT, b"r" * 100)
    ob.ack_many([1, 2, 3, 4])
    assert ob.size == _META_SIZE                           # beyond half: compacted
    ob.close()


def test_an_append_that_fits_exactly_does_not_compact(tmp_path):
    rec = records.OVERHEAD + 100
    ob = Outbox(str(tmp_path), max_bytes=_META_SIZE + 4 * rec, sync=False)
    for _ in range(3):
        ob.append(REPORT, b"r" * 100)
    ob.ack(1)                                              # droppable, but not needed yet
    ob.append(REPORT, b"r" * 100)
    assert ob.size == ob.max_bytes and len(spans(tmp_path)) == 5   # META + 4, all kept
    ob.append(REPORT, b"r" * 100)                          # now it must make room
    assert [s for s, _k, _p in ob.pending()] == [2, 3, 4, 5] and ob.size == ob.max_bytes
    with pytest.raises(OutboxFull):
        ob.append(REPORT, b"r")
    ob.close()


def test_photo_progress_is_evicted_until_a_report_fits_to_the_byte(tmp_path):
    rec = records.OVERHEAD + 100
    ob = Outbox(str(tmp_path), max_bytes=_META_SIZE + 4 * rec, sync=False)
    reports = [ob.append(REPORT, b"r" * 100) for _ in range(2)]
    for _ in range(2):
        ob.append(PHOTO_PROGRESS, b"p" * 100)
    # one byte more than a progress record frees: both go, and the report is kept
    reports.append(ob.append(REPORT, b"r" * 101))
    assert [s for s, _k, _p in ob.pending()] == reports
    assert ob.evicted[PHOTO_PROGRESS] == 2 and ob.depth(PHOTO_PROGRESS) == 0
    assert ob.size == _META_SIZE + 3 * rec + 1
    ob.close()


def test_track_eviction_stops_exactly_at_its_target(tmp_path):
    # room 3968, an eighth 500: the target 3468 is 34 records of 102 bytes
    ob = Outbox(str(tmp_path), max_bytes=4000, sync=False)
    tracks = [ob.append(TRACK, b"t" * 83) for _ in range(38)]
    assert ob.evicted[TRACK] == 0
    ob.append(TRACK, b"t" * 83)
    assert ob.evicted[TRACK] == 5                          # 33 left + 1 new = 34 records
    assert [s for s, _k, _p in ob.pending()][:2] == tracks[5:7]
    ob.close()


def test_photo_progress_eviction_stops_at_the_room_itself(tmp_path):
    rec = records.OVERHEAD + 100
    ob = Outbox(str(tmp_path), max_bytes=_META_SIZE + 6 * rec, sync=False)
    photos = [ob.append(PHOTO_PROGRESS, b"p" * 100) for _ in range(2)]
    for _ in range(4):
        ob.append(REPORT, b"r" * 100)
    ob.append(REPORT, b"r" * 100)                          # one photo record must go
    assert ob.evicted[PHOTO_PROGRESS] == 1
    assert [s for s, k, _p in ob.pending() if k == PHOTO_PROGRESS] == photos[1:]
    ob.close()


def test_the_folder_is_synced_when_the_ack_file_is_created(tmp_path, monkeypatch):
    synced = []
    ob = make(tmp_path / "a", n=3, sync=True)
    monkeypatch.setattr(fsio, "sync_dir", synced.append)
    ob.ack(1)
    ob.ack(2)                                              # the file exists by now
    assert synced == [str(tmp_path / "a")]
    ob.close()
    ob = make(tmp_path / "b", n=2, sync=False)
    ob.ack(1)
    assert synced == [str(tmp_path / "a")]                 # unsynced outbox: never
    ob.close()


@pytest.mark.micropython
def test_the_lost_count_on_micropython():
    out = run_micropython("""
import os
os.mkdir('/data')
from gridcore.outbox import Outbox, REPORT
ob = Outbox('/data/ob', 4096)
for i in range(4):
    ob.append(REPORT, b'{"n":%d}' % i)
ob.close()
f = open('/data/ob/outbox.log', 'rb'); raw = bytearray(f.read()); f.close()
raw[60] ^= 0x5a
f = open('/data/ob/outbox.log', 'wb'); f.write(raw); f.close()
ob = Outbox('/data/ob', 4096)
print(ob.lost, [s for s, k, p in ob.pending()])
ob.close()
print(Outbox('/data/ob', 4096).lost)
""")
    assert out.split("\n")[:2] == ["1 [1, 3, 4]", "1"]
