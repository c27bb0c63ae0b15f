"""The record codec under the outbox: round trips, resynchronisation after garbage."""

import io

import pytest
from gridlink.firmware.core import records
from hypothesis import given, settings
from hypothesis import strategies as st

recs = st.lists(st.tuples(st.integers(0, 255), st.integers(0, records.SEQ_LIMIT),
                          st.binary(max_size=300)), max_size=12)


def scan_all(data):
    return list(records.scan(io.BytesIO(data), 0, len(data)))


@settings(max_examples=200)
@given(recs)
def test_records_round_trip(items):
    data = b"".join(records.encode(k, s, p) for k, s, p in items)
    assert len(data) == sum(records.OVERHEAD + len(p) for _, _, p in items)
    assert [(k, s, p) for _, k, s, p, _ in scan_all(data)] == items


@settings(max_examples=100)
@given(recs, st.data())
def test_garbage_between_records_is_reported_and_every_record_found(items, data):
    out, expect_bad = b"", []
    for k, s, p in items:
        junk = data.draw(st.binary(max_size=40).filter(lambda b: records.MAGIC not in b))
        if junk:
            expect_bad.append((len(out), len(junk)))
        out += junk + records.encode(k, s, p)
    tail = data.draw(st.binary(max_size=30).filter(lambda b: records.MAGIC not in b))
    out += tail
    got = scan_all(out)
    assert [(k, s, p) for _, k, s, p, _ in got if k is not None] == items
    bad = [(off, n) for off, k, n, _, _ in got if k is None]
    assert bad == expect_bad + ([(len(out) - len(tail), len(tail))] if tail else [])
    for off, k, _n, reason, tail_flag in got:
        if k is None:
            assert reason and tail_flag == (off == len(out) - len(tail) and bool(tail))


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_scanning_arbitrary_bytes_never_raises(data):
    covered = 0
    for off, k, a, _b, nxt in scan_all(data):
        assert off == covered
        covered = nxt if k is not None else off + a
    assert covered == len(data)


def test_encode_refuses_out_of_range_kind_and_seq():
    with pytest.raises(records.RecordError):
        records.encode(256, 1, b"")
    with pytest.raises(records.RecordError):
        records.encode(1, records.SEQ_LIMIT + 1, b"")
