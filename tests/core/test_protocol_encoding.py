"""Canonical JSON and wire timestamps: round trips, errors, and CPython = MicroPython bytes."""

import datetime
import json
import random

import pytest
from gridlink.firmware.core import canonjson
from gridlink.firmware.core.timefmt import TimeFormatError, iso_ms, iso_utc, parse_iso_utc
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@given(st.integers(-62135596800000, 253402300799999))       # years 1..9999, in ms
def test_iso_utc_matches_datetime_and_parses_back(ms):
    text = iso_utc(ms / 1000)
    dt = EPOCH + datetime.timedelta(milliseconds=ms)
    assert text == (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
                    f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z")
    assert round(parse_iso_utc(text) * 1000) == ms
    assert iso_ms(ms) == text  # whole milliseconds, no float on the way


def test_iso_ms_refuses_times_outside_years_0_to_9999():
    for ms in (253402300800000, -62167219200001):
        with pytest.raises(TimeFormatError, match=f"time out of range: {ms}"):
            iso_ms(ms)
    assert iso_ms(-62167219200000) == "0000-01-01T00:00:00.000Z"
    for text in ("0000-01-01T00:00:00.000Z", "0000-02-29T12:00:00.001Z",
                 "0000-03-01T00:00:00.000Z"):
        assert iso_ms(round(parse_iso_utc(text) * 1000)) == text  # year 0 (a leap year) too


@pytest.mark.parametrize("bad", [
    "2026-02-29T00:00:00.000Z", "2026-13-01T00:00:00.000Z", "2026-11-31T00:00:00.000Z",
    "2026-11-28T24:00:00.000Z", "2026-11-28T02:15:07Z", "2026-11-28 02:15:07.250Z",
    "2026-11-28T02:15:07.250+08", "２026-11-28T02:15:07.250Z", "", None, 1795832107])
def test_parse_iso_utc_rejects_with_a_reason(bad):
    with pytest.raises(TimeFormatError) as e:
        parse_iso_utc(bad)
    assert str(e.value)


json_scalars = (st.none() | st.booleans() | st.integers(-(2 ** 53), 2 ** 53)
                | st.integers(-10 ** 9, 10 ** 9).map(lambda n: n / 1000)
                | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["v", "id", "fix", "lat", "zeta", "alpha", "text", "中文"]) | st.text(
            max_size=5), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=150)
@given(json_values)
def test_canonical_json_round_trips_and_is_compact_utf8(value):
    data = canonjson.dumps(value)
    assert json.loads(data) == value
    assert canonjson.loads(data) == value
    assert canonjson.dumps(json.loads(data)) == data                # idempotent
    if not _has_dict_or_float(value):      # otherwise key order / float text differ
        assert data == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _has_dict_or_float(v):
    if isinstance(v, (dict, float)):
        return True
    return isinstance(v, list) and any(_has_dict_or_float(x) for x in v)


def test_canonical_key_order_escapes_and_floats():
    assert canonjson.dumps({"zeta": 1, "text": "a", "v": 1, "alpha": 2, "id": None}) == \
        b'{"v":1,"id":null,"text":"a","alpha":2,"zeta":1}'
    assert canonjson.dumps("\"\\\n\t\x01中") == '"\\"\\\\\\n\\t\\u0001中"'.encode()
    assert canonjson.dumps([34.81, -0.0, 1e-8, 120.0, 113.29123456]) == \
        b"[34.81,0,0,120,113.2912346]"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), b"x", {1: 2}, "\ud800", {"a": {3}}])
def test_values_without_json_are_a_clear_error(bad):
    with pytest.raises(canonjson.EncodeError):
        canonjson.dumps(bad)


def _random_value(rng, depth=0):
    r = rng.random()
    if depth > 2 or r < 0.5:
        return rng.choice([
            None, True, False, rng.randint(-10 ** 12, 10 ** 12),
            round(rng.uniform(-180, 180), rng.randint(0, 7)),
            "".join(rng.choice('ab"\\\n\t\x05 中文é:/-') for _ in range(rng.randint(0, 8)))])
    if r < 0.75:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["v", "id", "lat", "lon", "text", "zz", "a", "中"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


@pytest.mark.micropython
def test_micropython_encodes_the_same_bytes():
    rng = random.Random(20261128)
    values = [_random_value(rng) for _ in range(300)]
    expected = [canonjson.dumps(v).hex() for v in values]
    script = "from gridcore import canonjson\nimport json\n" \
             f"for v in json.loads({json.dumps(json.dumps(values))}):\n" \
             "    print(canonjson.dumps(v).hex())\n"
    assert run_micropython(script).splitlines() == expected


MESSAGE_SCRIPT = """
from gridcore import messages as m, topics as t
out = []
out.append(m.encode(m.make_ack("pv-0001:000000000042", "accepted")))
out.append(m.encode(m.make_ack(None, "rejected", "report: not valid UTF-8 JSON")))
grouped = m.make_ack(["pv-0001:000000000043", "pv-0001:000000000045"], "duplicate")
out.append(m.encode(grouped))
out.append(" ".join(m.ack_ids(grouped)).encode())
out.append(m.encode(m.make_task("T-7", "check", 34.8123, 113.2912, "核查", None, None, None)))
out.append(m.encode(m.make_track("pv-0001", [(1795832100, 34.812345, 113.291234, 8.3),
                                             (1795832105.9, -0.0000004, -179.9999996, None)])))
out.append(m.encode(m.make_status("pv-0001", "buffering", "0.1.0", "GB/T 47678.5-2026",
                                  "patrol-vehicle", None, None, 3, 0, None, 41.5, 12.25)))
out.append(m.encode(m.will_status("pv-0001")))
out.append(m.make_photo_chunk("ab" * 32, 1, 2, 20000, b"\\x00\\n\\xff"))
out.append(t.topic("410106", "pv-0001", "task/result").encode())
out.append(str(t.parse_topic("gridlink/v1/410106/pv-0001/photo/pv-0001:000000000042/3")).encode())
for bad in (lambda: m.make_ack("pv-0001:42", "accepted"),
            lambda: m.make_task("X-1", "verify", 1, 2),
            lambda: m.split_photo_chunk(b"no header"),
            lambda: t.parse_topic("gridlink/v2/410106/pv-0001/report"),
            lambda: m.decode_for("ack", b'{"v":1}'),
            lambda: m.make_ack(["pv-0001:000000000043"], "rejected")):
    try:
        bad()
    except m.MessageError as exc:
        out.append(str(exc).encode())
for o in out:
    print(o.hex())
"""


@pytest.mark.micropython
def test_micropython_builds_the_same_messages_and_errors(monkeypatch, capsys):
    import sys

    from gridlink.firmware import core
    from gridlink.firmware.core import messages, topics
    monkeypatch.setitem(sys.modules, "gridcore", core)
    monkeypatch.setitem(sys.modules, "gridcore.messages", messages)
    monkeypatch.setitem(sys.modules, "gridcore.topics", topics)
    exec(MESSAGE_SCRIPT, {})
    expected = capsys.readouterr().out
    assert len(expected.splitlines()) == 17
    assert run_micropython(MESSAGE_SCRIPT) == expected
