"""The ingest's fast paths give the same results as the slow ones they replace.

validate_report with the wire size (no re-encode), the time check's cached dates, the
cheaper field checks (also under MicroPython), the SQLite batch insert, the plain device
ack bytes, and the paho client's buffered reads, coalesced writes and PUBACK fast path.
"""

import json

import pytest
from gridlink.firmware.core import checks, messages
from gridlink.firmware.core.checks import MessageError, check_time, is_num, only
from gridlink.firmware.core.messages import ACK_IDS_MAX
from gridlink.firmware.core.report import ReportError, validate_report
from gridlink.firmware.core.timefmt import TimeFormatError, parse_iso_utc
from gridlink.gateway.ingest import ACCEPTED, DUPLICATE, REJECTED, Item, device_acks
from gridlink.gateway.validate import Verdict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.gateway_rig import report
from tests.support.mpy_wasm import run_micropython

# -- validate_report(obj, encoded_size=...) ----------------------------------------------

def _verdict(obj, **kw):
    try:
        validate_report(obj, **kw)
        return None
    except ReportError as exc:
        return str(exc)


BAD = [
    {"text": "x" * 257}, {"seq": 0}, {"time": "2026-02-30T00:00:00.000Z"}, {"code": "0601"},
    {"flags": ["no_fix", "no_fix"]}, {"grid": "41010600100100"}, {"v": 2},
    {"photos": [{"sha256": "a" * 64, "bytes": 1}] * 2}, {"text": "bad \ud800 surrogate"},
]


@pytest.mark.parametrize("change", [{}, {"text": "占道经营 near the gate"}, *BAD])
def test_wire_size_gives_the_same_verdict_as_the_re_encode(change):
    obj = dict(report("pv-0001", 42), **change)
    size = len(json.dumps(obj, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    assert _verdict(dict(obj), encoded_size=size) == _verdict(dict(obj))


def test_wire_size_over_the_limit_is_refused_with_the_encoder_message():
    obj = report("pv-0001", 42)
    assert _verdict(obj, encoded_size=1024) is None
    assert _verdict(obj, encoded_size=1025) == (
        "report: encodes to 1025 bytes, more than 1024; shorten the text or attach fewer photos")


# -- field checks --------------------------------------------------------------------------

@given(st.text(alphabet="0123456789-T:.Z xé", min_size=0, max_size=26))
@settings(max_examples=400, deadline=None)
def test_check_time_agrees_with_parse_iso_utc(text):
    def ref(x):
        try:
            parse_iso_utc(x)
        except TimeFormatError as exc:
            return f"time: {exc}"
        return None

    def got(x):
        try:
            check_time(MessageError, x, "time")
        except MessageError as exc:
            return str(exc)
        return None

    checks._DAYS_SEEN["2026-11-28"] = True  # the fast path is taken for this date
    for x in (text, "2026-11-28" + text[10:], "2026-11-28T" + text[11:]):
        assert got(x) == ref(x)


@pytest.mark.parametrize("x, ok", [
    ("2026-11-28T23:59:59.999Z", True), ("2026-11-28T24:00:00.000Z", False),
    ("2026-11-28T12:60:00.000Z", False), ("2026-11-28T12:00:60.000Z", False),
    ("2026-11-28T12:0a:00.000Z", False), ("2026-11-28 12:00:00.000Z", False),
    ("2026-11-28T12:00:00.000z", False), ("2026-02-29T00:00:00.000Z", False),
])
def test_check_time_on_a_seen_date(x, ok):
    check_time(MessageError, "2026-11-28T00:00:00.000Z", "time")
    check_time(MessageError, "2026-02-28T00:00:00.000Z", "time")
    if ok:
        check_time(MessageError, x, "time")
    else:
        with pytest.raises(MessageError):
            check_time(MessageError, x, "time")


@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                 st.none(), st.text(max_size=3)))
def test_is_num_is_finite_int_or_float(x):
    want = (isinstance(x, int) and not isinstance(x, bool)) or (
        isinstance(x, float) and x == x and abs(x) != float("inf"))
    assert is_num(x) == want


@given(st.text(max_size=20), st.text(min_size=1, max_size=12))
def test_only_is_every_character_allowed(s, allowed):
    assert only(s, allowed) == all(ch in allowed for ch in s)


@pytest.mark.micropython
def test_the_fast_checks_under_micropython():
    times = ["2026-11-28T02:15:07.250Z", "2026-11-28T24:15:07.250Z", "2026-11-28T02:15:07.250Z",
             "2026-02-30T02:15:07.250Z", "2026-11-28T02:1x:07.250Z", "2026-11-28T02:15:07.250"]
    nums = [1, 1.5, True, float("nan"), float("inf"), "1", None]
    script = f"""
from gridcore.checks import MessageError, check_time, is_num, only
for t in {times!r}:
    try:
        check_time(MessageError, t, "time")
        print("ok")
    except MessageError as exc:
        print(str(exc))
for x in [1, 1.5, True, float("nan"), float("inf"), "1", None]:
    print(is_num(x))
print(only("pv-0001", "pv-0123456789"), only("pv-x", "pv-0123456789"), only("", "a"))
"""
    got = run_micropython(script).splitlines()
    want = []
    for t in times:
        try:
            check_time(MessageError, t, "time")
            want.append("ok")
        except MessageError as exc:
            want.append(str(exc))
    want += [str(is_num(x)) for x in nums]
    want.append("True False True")
    assert got == want


# -- store and acks ------------------------------------------------------------------------

def test_insert_new_in_bulk_skips_present_and_repeated_keys(store):
    cols = ("device", "t", "lat", "lon", "speed")
    old = [("a", f"{i:04d}", 1.0, 1.0, 0.0) for i in range(0, 1200, 2)]
    with store.connect() as conn:
        assert len(store.insert_new(conn, "track_points", cols, old, "t")) == 600
    rows = [("a", f"{i:04d}", 2.0, 2.0, 0.0) for i in range(1200)] + [("a", "0001", 3.0, 3.0, 0)]
    with store.connect() as conn:
        new = store.insert_new(conn, "track_points", cols, rows, "t")
    assert new == [f"{i:04d}" for i in range(1, 1200, 2)]
    got = {r["t"]: r["lat"] for r in store.fetchall("SELECT t, lat FROM track_points")}
    assert len(got) == 1200 and got["0000"] == 1.0 and got["0001"] == 2.0


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.lists(st.integers(0, 60), max_size=30),
       batch=st.lists(st.integers(0, 60), max_size=80))
def test_insert_new_is_first_row_wins_whatever_is_present(store, before, batch):
    """All-new batches take the optimistic path, any present key the careful one: either
    way the new keys in first-seen order, present rows untouched, one row a key."""
    cols = ("device", "t", "lat", "lon", "speed")
    with store.connect() as conn:
        conn.execute("DELETE FROM track_points")
        store.insert_new(conn, "track_points", cols,
                         [("a", f"{k:03d}", -1.0, 0.0, 0.0) for k in before], "t")
    rows = [("a", f"{k:03d}", float(i), 0.0, 0.0) for i, k in enumerate(batch)]
    with store.connect() as conn:
        new = store.insert_new(conn, "track_points", cols, rows, "t")
    want = list(dict.fromkeys(f"{k:03d}" for k in batch if k not in set(before)))
    assert new == want
    got = {r["t"]: r["lat"] for r in store.fetchall("SELECT t, lat FROM track_points")}
    assert len(got) == len(set(before) | set(batch))
    for k in set(before):
        assert got[f"{k:03d}"] == -1.0
    for t in want:
        assert got[t] == float(next(i for i, k in enumerate(batch) if f"{k:03d}" == t))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), ids_max=st.integers(1, ACK_IDS_MAX),
       outcome=st.sampled_from([ACCEPTED, DUPLICATE]), device=st.from_regex(
           r"[a-z0-9][a-z0-9-]{2,31}", fullmatch=True))
def test_ack_bytes_are_the_cores_encoding_and_answer_every_report_once(n, ids_max, outcome,
                                                                          device):
    """The gateway formats plain and grouped acks itself (no JSON encoder per ack): the
    bytes must be the core's canonical encoding of make_ack, read back by the core."""
    batch = []
    for seq in range(1, n + 1):
        it = Item("t", b"", 0.0, Verdict("report", "410106", device, f"{device}:{seq:012d}"))
        it.outcome = outcome
        batch.append(it)
    acks = device_acks(batch, ids_max)
    assert len(acks) == -(-n // ids_max)
    for _district, _device, body in acks:
        ack = messages.decode_for("ack", body)
        assert body == messages.encode(ack)
        assert len(body) <= 1024  # what an MCU node reads
        assert len(messages.ack_ids(ack)) <= ids_max
    got = [rid for _, _, body in acks for rid in messages.ack_ids(json.loads(body))]
    assert got == [it.verdict.report_id for it in batch]


def test_rejected_ack_still_escapes_its_reason():
    it = Item("t", b"", 0.0, Verdict("rejected", "410106", "pv-0001", None, reason='a "b"'))
    it.outcome, it.reason = REJECTED, 'a "b" 占'
    [(_, _, body)] = device_acks([it])
    assert json.loads(body) == {"v": 1, "id": None, "status": "rejected",
                                "reason": 'a "b" 占'}
