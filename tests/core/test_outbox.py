"""The outbox: durable appends, out-of-order acks, damage and power cuts at every byte."""

import os
import shutil

import pytest
from gridlink.firmware.core import records
from gridlink.firmware.core.outbox import (
    ACKS,
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

from tests.support.power_cuts import Faults, PowerCut, install

KINDS = (REPORT, TRACK, TASK_RESULT, PHOTO_PROGRESS)


def payload(i, kind):
    """Distinct payloads of varied length, some empty, some binary."""
    if i % 7 == 3:
        return b""
    body = (f'{{"n":{i},"kind":{kind},"text":"' + "测试" * (i % 5) + '"}').encode()
    return body + bytes(range(i % 4))


def fill(path, n=12, acked=(2, 5, 6, 11), max_bytes=1 << 20, sync=False):
    """An outbox with n records of mixed kinds, some acked out of order; returns the
    expected log as [(seq, kind, payload)] and the acked set."""
    ob = Outbox(str(path), max_bytes, sync=sync)
    written = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        seq = ob.append(kind, payload(i, kind))
        written.append((seq, kind, payload(i, kind)))
    for s in sorted(acked, reverse=True):
        assert ob.ack(s)
    ob.close()
    return written, set(acked)


def reopen(path, **kw):
    ob = Outbox(str(path), kw.pop("max_bytes", 1 << 20), **kw)
    try:
        return list(ob.pending()), ob.problems, ob.next_seq
    finally:
        ob.close()


def test_append_pending_ack_in_order_and_across_reopen(tmp_path):
    written, acked = fill(tmp_path, sync=True)
    pending, problems, _ = reopen(tmp_path)
    assert problems == []
    assert pending == [w for w in written if w[0] not in acked]
    ob = Outbox(str(tmp_path))
    assert ob.depth() == len(pending)
    assert ob.depth(REPORT) == sum(1 for w in pending if w[1] == REPORT)
    assert ob.cursor == 0                     # 1 is pending: nothing is acked up to it
    assert not ob.ack(2)                      # already acked
    assert not ob.ack(999)                    # never existed
    assert ob.ack(1) and ob.cursor == 2       # 2 was acked before: cursor jumps past it
    assert list(ob.pending(TRACK)) == [w for w in pending if w[1] == TRACK]
    assert ob.get(3) == (written[2][1], written[2][2])
    with pytest.raises(OutboxError, match="no pending record 2"):
        ob.get(2)
    ob.close()


def test_acking_while_iterating_and_sequence_survives_compaction(tmp_path):
    ob = Outbox(str(tmp_path))
    seqs = [ob.append(REPORT, b"r%d" % i) for i in range(5)]
    seen = []
    for seq, _, _ in ob.pending():
        seen.append(seq)
        ob.ack(seq)
        if seq == 2:
            ob.ack(4)                          # acked mid-iteration: skipped
    assert seen == [1, 2, 3, 5] and ob.depth() == 0
    ob.compact()
    ob.close()
    ob = Outbox(str(tmp_path))
    assert ob.append(REPORT, b"next") == seqs[-1] + 1    # numbering survives an empty log
    ob.close()


@pytest.mark.parametrize("cut_file", [LOG, ACKS])
def test_cut_at_every_byte_offset_keeps_exactly_the_complete_records(tmp_path, cut_file):
    src = tmp_path / "src"
    written, acked = fill(src)
    data = (src / cut_file).read_bytes()
    # where each record of the cut file ends
    ends = []
    with open(src / cut_file, "rb") as f:
        for _off, kind, seq, _p, nxt in records.scan(f, 0, len(data)):
            assert kind is not None
            ends.append((nxt, kind, seq))
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    for length in range(len(data) + 1):
        work = tmp_path / f"cut{length}"
        work.mkdir()
        for name, content in files.items():
            (work / name).write_bytes(content[:length] if name == cut_file else content)
        if cut_file == LOG:
            kept = {seq for end, kind, seq in ends if end <= length and kind != 0}
            expect = [w for w in written if w[0] in kept and w[0] not in acked]
        else:
            got_acks = {seq for end, _, seq in ends if end <= length}
            expect = [w for w in written if w[0] not in got_acks]
        pending, problems, next_seq = reopen(work, sync=False)   # fsync adds nothing here
        assert pending == expect, length
        assert next_seq > max([w[0] for w in expect] + [0])
        torn = length not in {0} | {end for end, _, _ in ends}
        assert bool(problems) == torn, (length, problems)
        # the cut was repaired: a second open finds nothing wrong, appends go on
        ob = Outbox(str(work), sync=False)
        assert ob.problems == []
        assert ob.append(REPORT, b"after") >= max([w[0] for w in expect] + [0]) + 1
        assert list(ob.pending())[-1][2] == b"after"
        ob.close()


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    src = tmp_path_factory.mktemp("filled")
    written, acked = fill(src)
    return src, written, acked


NO_FIXTURE_RESET = [HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=NO_FIXTURE_RESET)
@given(data=st.data())
def test_flipped_bytes_lose_only_the_records_they_hit(tmp_path_factory, filled, data):
    base = tmp_path_factory.mktemp("flip")
    src, written, acked = filled
    raw = bytearray((src / LOG).read_bytes())
    spans = []
    with open(src / LOG, "rb") as f:
        for off, _kind, seq, _p, nxt in records.scan(f, 0, len(raw)):
            spans.append((off, nxt, seq))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)),
                               min_size=1, max_size=3, unique_by=lambda t: t[0]))
    for off, x in flips:
        raw[off] ^= x
    hit = {seq for a, b, seq in spans for off, _ in flips if a <= off < b}
    work = base / "work"
    shutil.copytree(src, work)
    (work / LOG).write_bytes(bytes(raw))
    pending, problems, next_seq = reopen(work, sync=False)
    assert pending == [w for w in written if w[0] not in acked and w[0] not in hit]
    assert problems and all(p[0] == LOG and p[3] for p in problems)
    assert next_seq > max(w[0] for w in written if w[0] not in hit)


@settings(max_examples=40, deadline=None, suppress_health_check=NO_FIXTURE_RESET)
@given(data=st.data())
def test_flipped_bytes_in_the_ack_file_only_bring_back_those_records(tmp_path_factory, filled,
                                                                     data):
    base = tmp_path_factory.mktemp("ackflip")
    src, written, acked = filled
    raw = bytearray((src / ACKS).read_bytes())
    off = data.draw(st.integers(0, len(raw) - 1))
    raw[off] ^= data.draw(st.integers(1, 255))
    lost = sorted(acked, reverse=True)[off // records.OVERHEAD]   # acks were written newest first
    work = base / "work"
    shutil.copytree(src, work)
    (work / ACKS).write_bytes(bytes(raw))
    pending, problems, _ = reopen(work, sync=False)
    assert pending == [w for w in written if w[0] not in acked or w[0] == lost]
    assert problems and problems[0][0] == ACKS


# -- bounded size and priorities --------------------------------------------------------------

def test_track_is_evicted_for_reports_reports_never_and_full_is_an_error(tmp_path):
    problems = []
    ob = Outbox(str(tmp_path), max_bytes=4096, on_problem=problems.append)
    tracks = [ob.append(TRACK, b"t" * 100) for _ in range(60)]
    assert ob.depth(TRACK) < 60 and ob.evicted[TRACK] == 60 - ob.depth(TRACK)
    kept = [s for s, _, _ in ob.pending(TRACK)]
    assert kept == tracks[-len(kept):]                     # the oldest went first
    reports = []
    with pytest.raises(OutboxFull) as e:
        while True:
            reports.append(ob.append(REPORT, b"r" * 200))
    assert "NOT stored" in str(e.value) and "never evicted" in str(e.value)
    assert ob.depth(TRACK) == 0 and ob.depth(REPORT) == len(reports)
    assert [s for s, _, _ in ob.pending()] == reports
    assert ob.size <= 4096 and os.path.getsize(tmp_path / LOG) <= 4096
    with pytest.raises(OutboxFull):
        ob.append(TRACK, b"t" * 200)                       # nothing evictable for track either
    with pytest.raises(OutboxFull):
        ob.append(TASK_RESULT, b"x" * 200)
    ob.close()
    ob = Outbox(str(tmp_path), max_bytes=4096)             # nothing was lost by the refusal
    assert [s for s, _, _ in ob.pending()] == reports
    ob.ack(reports[0])
    ob.ack(reports[1])
    assert ob.append(REPORT, b"r" * 200) == reports[-1] + 1   # the refused one took no seq
    ob.close()
    assert problems == []


def test_photo_progress_goes_after_track_and_huge_records_are_refused(tmp_path):
    ob = Outbox(str(tmp_path), max_bytes=2048)
    p = ob.append(PHOTO_PROGRESS, b"p" * 300)
    t = ob.append(TRACK, b"t" * 300)
    for _ in range(6):
        ob.append(REPORT, b"r" * 300)
    assert ob.evicted == {TRACK: 1, PHOTO_PROGRESS: 1}
    assert t not in {s for s, _, _ in ob.pending()} and p not in {s for s, _, _ in ob.pending()}
    with pytest.raises(OutboxFull, match="can never fit"):
        ob.append(REPORT, b"x" * 4000)
    with pytest.raises(OutboxError, match="unknown record kind"):
        ob.append(99, b"x")
    ob.close()


def test_rejected_reports_are_kept_with_the_reason_not_retried(tmp_path):
    ob = Outbox(str(tmp_path))
    assert list(ob.rejected()) == []                            # none yet: no file
    a = ob.append(REPORT, b'{"a":1}')
    b = ob.append(REPORT, b'{"b":2}')
    assert ob.reject(a, "code: 06999 is not an event class")
    assert not ob.reject(a, "the same rejection again")        # a repeated ack: no-op
    ob.close()
    ob = Outbox(str(tmp_path))
    assert [s for s, _, _ in ob.pending()] == [b]
    assert list(ob.rejected()) == [(a, REPORT, b'{"a":1}', "code: 06999 is not an event class")]
    ob.close()


def test_all_acked_log_is_compacted_small(tmp_path):
    ob = Outbox(str(tmp_path), max_bytes=8192)
    for _ in range(40):
        ob.ack(ob.append(REPORT, b"r" * 100))
    assert (ob.size < 8192 // 2 + 200 and not (tmp_path / ACKS).exists()) or ob.size < 8192
    ob.close()


def test_damaged_counter_of_a_reopened_log_still_never_reuses_a_seq(tmp_path):
    written, acked = fill(tmp_path)
    raw = bytearray((tmp_path / LOG).read_bytes())
    raw[5] ^= 0xFF                                          # META record's header
    (tmp_path / LOG).write_bytes(bytes(raw))
    pending, problems, next_seq = reopen(tmp_path)
    assert problems and pending == [w for w in written if w[0] not in acked]
    assert next_seq == written[-1][0] + 1


# -- power cut in the middle of compaction ----------------------------------------------------

def _compaction_scenario(path):
    """Reports, track and task results, some acked; the next append must evict track."""
    ob = Outbox(str(path), max_bytes=3000)
    for i in range(24):
        kind = (REPORT, TRACK, TRACK, TASK_RESULT)[i % 4]
        ob.append(kind, payload(i, kind) + b"." * 40)
    for s in (1, 4, 9, 10):
        ob.ack(s)
    before = list(ob.pending())
    ob.close()
    return before


@pytest.mark.parametrize("lose_unsynced,fat_rename", [(False, False), (True, False),
                                                      (True, True)])
def test_power_cut_at_every_step_of_a_compacting_append(tmp_path, monkeypatch, lose_unsynced,
                                                        fat_rename):
    src = tmp_path / "src"
    before = _compaction_scenario(src)
    new = b"R" * 900
    must_keep = [w for w in before if w[1] in (REPORT, TASK_RESULT)]
    at = 0
    while True:
        at += 1
        work = tmp_path / f"w{at}"
        shutil.copytree(src, work)
        faults = Faults(at, lose_unsynced, fat_rename)
        with monkeypatch.context() as m:
            install(m, faults)
            try:
                ob = Outbox(str(work), max_bytes=3000)
                seq = ob.append(REPORT, new)
                finished = True
            except PowerCut:
                finished = False
        pending, _problems, _next = reopen(work, max_bytes=3000)
        got = [w for w in pending if w[2] != new]
        assert [w for w in got if w[1] in (REPORT, TASK_RESULT)] == must_keep, at
        assert all(w in before for w in got), at              # nothing acked comes back
        assert [w for w in got if w[1] == TRACK] == [w for w in before if w[1] == TRACK][
            -len([w for w in got if w[1] == TRACK]) or len(before):], at
        if finished:
            assert pending[-1] == (seq, REPORT, new)
            break
        assert at < 200
    assert at > 5                                              # the append did compact


def test_power_cut_during_ack_and_plain_compaction(tmp_path, monkeypatch):
    src = tmp_path / "src"
    before = _compaction_scenario(src)
    at = 0
    while True:
        at += 1
        work = tmp_path / f"w{at}"
        shutil.copytree(src, work)
        with monkeypatch.context() as m:
            install(m, Faults(at, lose_unsynced=True))
            try:
                ob = Outbox(str(work), max_bytes=3000)
                ob.ack(before[0][0])
                ob.compact()
                finished = True
            except PowerCut:
                finished = False
        pending, _problems, _ = reopen(work, max_bytes=3000)
        assert pending in (before, before[1:]), at
        if finished:
            assert pending == before[1:]
            break
    assert at > 4


def test_a_failed_write_is_a_clear_error_and_loses_nothing_stored(tmp_path):
    ob = Outbox(str(tmp_path))
    kept = [ob.append(REPORT, b"kept%d" % i) for i in range(3)]
    real_write = ob._w.write

    def disk_full(data):                                   # the disk fills mid-record
        real_write(data[:7])                               # part of the record lands
        raise OSError(28, "No space left on device")
    ob._w = type("Failing", (), {"write": staticmethod(disk_full), "flush": ob._w.flush,
                                 "fileno": ob._w.fileno, "close": ob._w.close})()
    with pytest.raises(OutboxError, match=r"could not store a report: .*No space left"):
        ob.append(REPORT, b"lost")
    assert [s for s, _, _ in ob.pending()] == kept         # the half record was cut at once
    assert ob.append(REPORT, b"next") == kept[-1] + 1
    ob.close()
    pending, problems, _ = reopen(tmp_path)
    assert [p for _, _, p in pending] == [b"kept0", b"kept1", b"kept2", b"next"]
    assert problems == []


def test_a_damaged_rejected_file_is_reported_and_the_rest_kept(tmp_path):
    ob = Outbox(str(tmp_path))
    for i in range(3):
        ob.reject(ob.append(REPORT, b"r%d" % i), f"reason {i}")
    raw = bytearray((tmp_path / "outbox.rejected").read_bytes())
    raw[records.OVERHEAD + 10] ^= 0x20                     # inside the first record
    (tmp_path / "outbox.rejected").write_bytes(bytes(raw))
    assert [(s, p, r) for s, _, p, r in ob.rejected()] == [(2, b"r1", "reason 1"),
                                                          (3, b"r2", "reason 2")]
    assert ob.problems and ob.problems[0][0] == "outbox.rejected"
    with pytest.raises(OutboxError, match="too small"):
        Outbox(str(tmp_path / "tiny"), max_bytes=40)
    ob.close()
