"""Reports: time and position rules, flags, size limits, clear errors, CPython = MicroPython."""

import csv
import datetime
import json

import pytest
from gridlink.firmware.core import canonjson
from gridlink.firmware.core.errors import CoreError
from gridlink.firmware.core.nmea_fix import Fix
from gridlink.firmware.core.report import (
    MAX_BYTES,
    ReportError,
    decode_report,
    encode_report,
    make_report,
    report_id,
    validate_report,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython

STD = "GB/T 47678.5-2026"
T0 = 1795832107.0                              # 2026-11-28T02:15:07Z
FIX = {"lat": 34.8123456789, "lon": 113.2912345678, "alt": 120.456, "mode": 3, "status": 2,
       "sats": 9, "hdop": 0.912, "epoch": T0}


def rep(fix=FIX, clock=0.0, seq=42, kind="event", standard=STD, code="06010", **kw):
    kw.setdefault("fix_age", 0.25)
    return make_report("pv-0001", seq, fix, clock, kind, standard, code, **kw)


def test_capture_time_is_gnss_time_plus_monotonic_age_and_fix_is_rounded():
    r = rep(clock=1.0)
    assert r["time"] == "2026-11-28T02:15:07.250Z"
    assert r["time_source"] == "gnss" and r["flags"] == []
    assert r["fix"] == {"lat": 34.8123457, "lon": 113.2912346, "alt": 120.46, "mode": 3,
                        "status": 2, "sats": 9, "hdop": 0.91, "age": 0.25}
    assert r["id"] == "pv-0001:000000000042" and r["seq"] == 42


class IsoFix:
    """A fix object that knows its time only as an ISO string."""

    def __init__(self, time, **kw):
        self.time = time
        self.__dict__.update(kw)


def test_a_fix_object_with_only_an_iso_time_is_accepted():
    fix = IsoFix("2026-11-28T02:15:07.000Z", lat=34.81, lon=113.29, alt=None, mode=2,
                 status=1, sats=5, hdop=1.4)
    r = make_report("pv-0001", 1, fix, 0, "event", STD, "06010", fix_age=1.5)
    assert r["time"] == "2026-11-28T02:15:08.500Z"
    assert r["fix"]["alt"] is None and r["fix"]["mode"] == 2
    with pytest.raises(ReportError) as e:
        make_report("pv-0001", 1, IsoFix("28/11/2026", lat=1, lon=1, mode=2), 0, "event", STD,
                    "06010", fix_age=1.5)
    assert e.value.field == "fix.time"


def test_the_nmea_decoders_fix_object_is_accepted():
    fix = Fix(date=(2026, 11, 28), tod=(2 * 3600 + 15 * 60 + 7) * 1000, lat=34.81, lon=113.29,
              alt=120.5, mode=3, status=1, sats=9, hdop=0.9)
    r = make_report("pv-0001", 1, fix, 0, "event", STD, "06010", fix_age=0.25)
    assert r["time"] == "2026-11-28T02:15:07.250Z" and r["time_source"] == "gnss"
    assert r["fix"]["sats"] == 9 and r["flags"] == []


def test_system_clock_only_as_flagged_fallback():
    no_time = dict(FIX, epoch=None)
    r = rep(fix=no_time, clock=lambda: T0 + 3.5)
    assert r["time"] == "2026-11-28T02:15:10.500Z"
    assert r["time_source"] == "system" and r["flags"] == ["clock_fallback"]
    assert r["fix"]["lat"] == 34.8123457            # the position is still used
    r = rep(fix=FIX, clock=T0, fix_age=None)        # fix age unknown: time cannot be derived
    assert r["time_source"] == "system" and r["flags"] == ["clock_fallback", "stale_fix"]


def test_no_fix_never_drops_the_report():
    for fix in (None, dict(FIX, mode=1), dict(FIX, lat=None)):
        r = rep(fix=fix, clock=T0)
        assert r["fix"] is None
        assert "no_fix" in r["flags"]
    r = rep(fix=dict(FIX, mode=1), clock=5.0)      # time-only fix: GNSS time, no position
    assert r["time_source"] == "gnss" and r["flags"] == ["no_fix"]


def test_stale_fix_is_kept_and_flagged_at_the_parameter():
    assert rep(fix_age=10.0)["flags"] == []
    r = rep(fix_age=10.001)
    assert r["flags"] == ["stale_fix"] and r["fix"]["age"] == 10.001
    assert rep(fix_age=3.0, max_fix_age=2.0)["flags"] == ["stale_fix"]


def test_fixed_position_replaces_gnss_position():
    r = rep(fixed_position=(34.8, 113.3, 101.0), fix_age=60.0)
    assert r["flags"] == ["fixed_position"]
    assert r["fix"] == {"lat": 34.8, "lon": 113.3, "alt": 101.0, "mode": 3, "status": 0,
                        "sats": None, "hdop": None, "age": 0}
    r = rep(fix=None, clock=T0, fixed_position=(34.8, 113.3))
    assert r["flags"] == ["clock_fallback", "fixed_position", "no_fix"]
    assert r["fix"]["mode"] == 2


def test_text_is_never_truncated_too_long_is_a_clear_error():
    assert rep(text="x" * 256)["text"] == "x" * 256
    assert rep(text="中" * 200)["text"] == "中" * 200
    with pytest.raises(ReportError) as e:
        rep(text="x" * 257)
    assert e.value.field == "text" and "257" in str(e.value)
    with pytest.raises(ReportError) as e:
        rep(text="中" * 256)                    # 256 characters, but 768 bytes of UTF-8
    assert e.value.field == "report" and str(MAX_BYTES) in str(e.value)
    photos = [(f"{i:064x}", 100) for i in range(8)]
    with pytest.raises(ReportError) as e:
        rep(text="中" * 256, photos=photos)
    assert e.value.field == "report" and str(MAX_BYTES) in str(e.value)
    assert len(encode_report(rep(text="中" * 100, photos=photos[:4]))) <= MAX_BYTES


def _codebook():
    from gridlink.firmware.codebooks.build import SOURCES

    # the shipped copy of the shared table (tests/codes/test_books.py holds them equal)
    rows = csv.DictReader((SOURCES / "classes.csv").open(encoding="utf-8"))
    known = {(r["kind"], r["minor_code"]) for r in rows
             if r["source"].startswith("GB/T47678.5") and r["minor_code"]}
    return lambda standard, kind, code: standard == STD and (kind, code) in known


def test_class_code_is_checked_against_a_code_book_callable():
    check = _codebook()
    assert rep(check_code=check)["code"] == "06010"
    with pytest.raises(ReportError) as e:
        rep(code="06999", check_code=check)
    assert e.value.field == "code" and "06999" in str(e.value)

    def raising(standard, kind, code):
        raise CoreError(f"standard {standard} has no loaded code book")
    with pytest.raises(ReportError, match="no loaded code book"):
        rep(check_code=raising)


def test_task_results_and_components():
    r = rep(source="task", task="T-20261128-0007", result="resolved")
    assert r["task"] == "T-20261128-0007" and r["result"] == "resolved"
    with pytest.raises(ReportError) as e:
        rep(source="task")
    assert e.value.field == "task"
    with pytest.raises(ReportError) as e:
        rep(task="T-1", result="resolved")
    assert e.value.field == "source"
    r = rep(kind="component", code="01001", object_id="41010601001000001")
    assert r["object"] == "41010601001000001"
    with pytest.raises(ReportError) as e:
        rep(kind="component", code="01001", object_id="4101060100100001")
    assert e.value.field == "object" and "17" in str(e.value)


@pytest.mark.parametrize("change,field", [
    ({"seq": 0}, "seq"), ({"seq": 42.0}, "seq"), ({"id": "pv-0001:000000000043"}, "id"),
    ({"time": "2026-02-29T00:00:00.000Z"}, "time"), ({"flags": ["no_fix"]}, "flags"),
    ({"fix": None}, "flags"), ({"grid": "41010600100"}, "grid"), ({"kind": "thing"}, "kind"),
    ({"code": "0601"}, "code"), ({"source": "radio"}, "source"), ({"v": 2}, "v"),
    ({"extra": 1}, "extra"), ({"photos": [{"sha256": "A" * 64, "bytes": 1}]},
                              "photos[0].sha256"),
])
def test_validate_report_names_the_field(change, field):
    r = rep()
    r.update(change)
    with pytest.raises(ReportError) as e:
        validate_report(r)
    assert e.value.field == field, str(e.value)
    assert str(e.value).startswith(field + ":")


def test_fix_fields_are_named_with_their_path():
    r = rep()
    r["fix"]["lat"] = 91
    with pytest.raises(ReportError) as e:
        validate_report(r)
    assert e.value.field == "fix.lat" and "91" in str(e.value)


def test_encode_decode_round_trip_and_garbage():
    r = rep(text='引号" 反斜杠\\ 换行\n tab\t', photos=[("ab" * 32, 218345)])
    data = encode_report(r)
    assert json.loads(data) == r and decode_report(data) == r
    assert b"\\u" not in data                       # UTF-8, not escaped
    for bad in (b"", b"{", b"\xff\xfe", b"[]", b'{"v":1}', b"x" * (MAX_BYTES + 1)):
        with pytest.raises(ReportError):
            decode_report(bad)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_decode_report_raises_only_report_error(data):
    try:
        decode_report(data)
    except ReportError as exc:
        assert exc.field
    else:
        raise AssertionError("random bytes decoded as a report")


def test_report_id_format():
    assert report_id("sn-07", 1) == "sn-07:000000000001"
    for device, seq in (("PV", 1), ("-pv", 1), ("pv-0001", 10 ** 12), ("pv-0001", 0)):
        with pytest.raises(ReportError):
            report_id(device, seq)


# -- CPython and MicroPython give the same bytes and the same errors -----------------------

VECTORS = [
    dict(fix=FIX, clock=0.0, fix_age=0.25),
    dict(fix=None, clock=T0 + 0.0005, text="暴露垃圾 \"路口\"\n东侧"),
    dict(fix=dict(FIX, epoch=None), clock=T0 - 86400 * 400, fix_age=12.0),
    dict(fix=dict(FIX, alt=None, sats=None, hdop=None), clock=0, fix_age=99.5,
         fixed_position=(-33.8688, 151.2093)),
    dict(fix=FIX, clock=0, fix_age=0.0, photos=[("0f" * 32, 1), ("a1" * 32, 16777216)],
         source="task", task="T-9", result="not_found"),
    dict(fix=dict(FIX, lat=-0.00000004, lon=-179.99999996), clock=0, fix_age=1.0),
]
BAD_VECTORS = [dict(text="x" * 257), dict(code="0601"), dict(grid="1234"),
               dict(text="中" * 256, photos=[(f"{i:064x}", 100) for i in range(8)])]


def _cpython_outputs():
    out = []
    for v in VECTORS:
        kw = dict(v)
        fix, clock = kw.pop("fix"), kw.pop("clock")
        out.append(encode_report(make_report("pv-0001", 7, fix, clock, "event", STD, "06010",
                                             **kw)).hex())
    for v in BAD_VECTORS:
        try:
            make_report("pv-0001", 7, FIX, 0, "event", STD, v.pop("code", "06010"),
                        fix_age=0.1, **v)
        except ReportError as exc:
            out.append(str(exc))
    return out


@pytest.mark.micropython
def test_micropython_makes_the_same_bytes_and_errors():
    script = f"""
from gridcore.report import make_report, encode_report, ReportError
STD = {STD!r}
FIX = {FIX!r}
for v in {VECTORS!r}:
    fix = v.pop("fix"); clock = v.pop("clock")
    print(encode_report(make_report("pv-0001", 7, fix, clock, "event", STD, "06010", **v)).hex())
for v in {BAD_VECTORS!r}:
    try:
        make_report("pv-0001", 7, FIX, 0, "event", STD, v.pop("code", "06010"), fix_age=0.1, **v)
    except ReportError as exc:
        print(str(exc))
"""
    got = run_micropython(script).splitlines()
    assert got == _cpython_outputs()


def test_times_match_datetime():
    r = rep(fix=dict(FIX, epoch=951782400.0), fix_age=0.0)   # 2000-02-29
    assert r["time"] == datetime.datetime(2000, 2, 29, tzinfo=datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z")
    assert canonjson.loads(encode_report(r))["time"] == r["time"]
