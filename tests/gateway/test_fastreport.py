"""The gateway's msgspec fast path for reports vouches only for what the core accepts.

``decode_report(payload)`` returns a dict only when ``validate_report(json.loads(payload),
encoded_size=len(payload))`` accepts it, and then exactly ``json.loads``'s dict (values and
their types); otherwise None and the Validator takes the json + core path.  Checked
differentially: valid reports of every shape (each must take the fast path), mutated
ones (each field broken, raw-text tricks), arbitrary bytes and JSON, and the Validator's
verdicts with and without the fast path.
"""

import contextlib
import copy
import importlib.util
import json
import math
import sys
from datetime import date
from unittest import mock

import pytest
from gridlink.firmware.codebooks import load_books
from gridlink.firmware.core import canonjson
from gridlink.firmware.core.checks import DEVICE_CHARS, DIGITS, HEX, TASK_CHARS, UPPER_DIGITS
from gridlink.firmware.core.report import (
    CODE_DIGITS,
    KINDS,
    MAX_BYTES,
    OBJECT_DIGITS,
    PHOTO_MAX_BYTES,
    PHOTOS_MAX,
    RESULTS,
    SEQ_MAX,
    SOURCES,
    STANDARD_CHARS,
    TEXT_MAX,
    ReportError,
    validate_report,
)
from gridlink.firmware.maps import open_map
from gridlink.gateway import fastreport
from gridlink.gateway import validate as gw_validate
from gridlink.gateway.fastreport import decode_report
from gridlink.gateway.validate import Validator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.gateway_rig import encode, grid_map_file, report, topic

T = 1_795_000_000.0
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SLOW = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- the property ---------------------------------------------------------------------------

def same(a, b):
    """Equal, with equal types all the way down (1 is not 1.0 nor True; -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


def slow_verdict(payload):
    """None if the core accepts ``json.loads(payload)`` with the wire size, else why not."""
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        return f"json: {exc}"
    try:
        validate_report(obj, encoded_size=len(payload))
    except ReportError as exc:
        return str(exc)
    return None


def vouched(payload):
    """decode_report(payload), checked: a dict only for what the core accepts, == json's."""
    fast = decode_report(payload)
    if fast is not None:
        assert slow_verdict(payload) is None, (payload, slow_verdict(payload))
        ref = json.loads(payload)
        assert same(fast, ref), (fast, ref)
        # the row stores the photos as text: their keys keep the payload's order
        assert [list(p) for p in fast["photos"]] == [list(p) for p in ref["photos"]]
    return fast


# -- valid reports of every shape -------------------------------------------------------------

def nums(lo, hi):
    """An int or a float in [lo, hi] (ints are valid for every number field)."""
    return st.integers(lo, hi) | st.floats(lo, hi, allow_nan=False, allow_infinity=False)


devices = st.builds(str.__add__, st.sampled_from(DEVICE_CHARS.replace("-", "")),
                    st.text(DEVICE_CHARS, min_size=2, max_size=31))
days = st.dates() | st.sampled_from([date(2028, 2, 29), date(2000, 2, 29), date(1, 1, 1)])
times = st.builds(
    lambda d, h, m, s, ms: f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{h:02d}:{m:02d}:{s:02d}"
                           f".{ms:03d}Z",
    days, st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
fixes = st.fixed_dictionaries({
    "lat": nums(-90, 90), "lon": nums(-180, 180), "alt": st.none() | nums(-1000, 100000),
    "mode": st.integers(1, 3), "status": st.integers(0, 8),
    "sats": st.none() | st.integers(0, 255), "hdop": st.none() | nums(0, 100),
    "age": nums(0, 10**9)})
standards = st.sampled_from(sorted({*CODE_DIGITS, *OBJECT_DIGITS})) | st.builds(
    str.__add__, st.sampled_from(LETTERS), st.text(STANDARD_CHARS, min_size=2, max_size=39))
texts = (st.text(st.characters(blacklist_categories=("Cs",)), max_size=TEXT_MAX)
         | st.text("垃圾满溢占道经营井盖缺失，。 \"\\\n\t🚧", max_size=TEXT_MAX))

ENCODERS = {
    "compact": lambda o: json.dumps(o, ensure_ascii=False, separators=(",", ":"))
    .encode("utf-8", "surrogatepass"),
    "ascii": lambda o: json.dumps(o, separators=(",", ":")).encode(),
    "spaced": lambda o: json.dumps(o, ensure_ascii=False, indent=1)
    .encode("utf-8", "surrogatepass"),
    "canonical": canonjson.dumps,  # the devices' encoder (protocol key order, short floats)
}


@st.composite
def valid_reports(draw):
    """(report dict, its payload) for a report the core accepts, of any valid shape."""
    device, seq = draw(devices), draw(st.integers(1, SEQ_MAX))
    system = draw(st.booleans())
    fix = draw(st.none() | fixes)
    if fix is None:
        flags = ["no_fix"]
    else:
        flags = draw(st.sampled_from([[], ["stale_fix"], ["fixed_position"],
                                      ["fixed_position", "no_fix"]]))
    flags = list(draw(st.permutations(flags + ["clock_fallback"] * system)))
    std = draw(standards)
    n = CODE_DIGITS.get(std)
    code = draw(st.text(DIGITS, min_size=n, max_size=n) if n
                else st.text(UPPER_DIGITS, min_size=2, max_size=12))
    obj = {"v": 1, "id": f"{device}:{seq:012d}", "device": device, "seq": seq,
           "time": draw(times), "time_source": "system" if system else "gnss", "fix": fix,
           "flags": flags, "grid": draw(st.none() | st.text(DIGITS, min_size=14, max_size=15)),
           "kind": draw(st.sampled_from(KINDS)), "standard": std, "code": code}
    if draw(st.booleans()):
        n = OBJECT_DIGITS.get(std)
        obj["object"] = draw(st.text(DIGITS, min_size=n, max_size=n) if n
                             else st.text(UPPER_DIGITS, min_size=6, max_size=32))
    obj["source"] = draw(st.sampled_from(SOURCES))
    if obj["source"] == "task":
        obj["task"] = "T-" + draw(st.text(TASK_CHARS, min_size=1, max_size=62))
        obj["result"] = draw(st.sampled_from(RESULTS))
    photos = draw(st.lists(st.tuples(st.text(HEX, min_size=64, max_size=64),
                                     st.integers(1, PHOTO_MAX_BYTES)),
                           max_size=PHOTOS_MAX, unique=True))
    obj["photos"] = [{"sha256": h, "bytes": b} if draw(st.booleans()) else
                     {"bytes": b, "sha256": h} for h, b in photos]
    obj["text"] = draw(texts)
    if draw(st.booleans()):
        obj["urgent"] = True
    if draw(st.booleans()):  # any key order
        obj = dict(draw(st.permutations(list(obj.items()))))
    enc = ENCODERS[draw(st.sampled_from(sorted(ENCODERS)))]
    payload = enc(obj)
    while len(payload) > MAX_BYTES:  # fit the 1 KB: shorten the text, then drop photos
        if obj["text"]:
            obj["text"] = obj["text"][:len(obj["text"]) * 3 // 4]
        else:
            obj["photos"].pop()
        payload = enc(obj)
    return obj, payload


@SLOW
@given(valid_reports())
def test_every_valid_report_takes_the_fast_path(case):
    _, payload = case
    assert slow_verdict(payload) is None  # the strategy makes valid reports
    fast = vouched(payload)
    assert fast is not None, payload
    assert same(fast, json.loads(payload))


def test_the_benchmark_report_takes_the_fast_path_in_protocol_key_order():
    payload = encode(report("pv-0200", 7))
    got = decode_report(payload)
    assert same(got, json.loads(payload))
    assert list(got) == list(json.loads(payload))  # the order devices send
    assert list(got["fix"]) == list(json.loads(payload)["fix"])


# -- mutations -------------------------------------------------------------------------------

NASTY = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(),  # NaN, ±inf as json's tokens
    st.sampled_from([0, 1, -1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30), 1.0, 3.0, -0.0,
                     1e308, 1e-308, 90.0000001, 1e9 + 1, SEQ_MAX + 1, PHOTO_MAX_BYTES + 1]),
    st.text(max_size=6),
    st.sampled_from(["", "1", "x\n", "\ud800", "a\udc00b", "T-", "T-1", "gnss", "no_fix",
                     "２０２６", "410106001001001\n", "0" * 14, "0" * 16, "GB/T 47678.5-2026",
                     "2026-11-28T02:15:07.250Z"]),
    st.just([]), st.just({}), st.lists(st.sampled_from([None, "no_fix", 1, True]), max_size=3),
)


def _boxes(obj):
    """The objects a mutation may touch: the report, its fix, its photos."""
    photos = obj.get("photos")
    inner = [obj.get("fix"), *(photos if isinstance(photos, list) else ())]
    return [obj, *(b for b in inner if isinstance(b, dict))]


def _targets(obj):
    """(object, key) pairs a mutation may change or drop."""
    return [(box, k) for box in _boxes(obj) for k in box]


def _set_text_time(obj, day):
    obj["time"] = day + obj["time"][10:]


NEAR = [  # targeted near-misses: one rule broken, the rest kept
    lambda o: o.update(seq=o["seq"] % SEQ_MAX + 1),
    lambda o: o.update(id=o["id"][:-1]),
    lambda o: o.update(id=o["id"].upper()),
    lambda o: o.update(id="x" + o["id"]),
    lambda o: o.update(id=o["id"] + "\n"),
    lambda o: o.update(device=o["device"] + "\n", id=f"{o['device']}\n:{o['seq']:012d}"),
    lambda o: o.update(device="-" + o["device"], id=f"-{o['device']}:{o['seq']:012d}"),
    lambda o: o.update(device=o["device"].upper(), id=f"{o['device'].upper()}:{o['seq']:012d}"),
    lambda o: o.update(device="pv", id=f"pv:{o['seq']:012d}"),
    lambda o: o.update(device="p" * 33, id=f"{'p' * 33}:{o['seq']:012d}"),
    lambda o: o.update(seq=SEQ_MAX + 1, id=f"{o['device']}:{SEQ_MAX + 1}"),
    lambda o: o.update(v=1.0), lambda o: o.update(v=True), lambda o: o.update(v=2),
    lambda o: _set_text_time(o, "2026-02-30"), lambda o: _set_text_time(o, "2026-02-29"),
    lambda o: _set_text_time(o, "2100-02-29"), lambda o: _set_text_time(o, "2026-04-31"),
    lambda o: _set_text_time(o, "2026-13-01"), lambda o: _set_text_time(o, "2026-00-10"),
    lambda o: _set_text_time(o, "２０２６-11-28"),
    lambda o: o.update(time=o["time"][:11] + "24" + o["time"][13:]),
    lambda o: o.update(time=o["time"][:14] + "60" + o["time"][16:]),
    lambda o: o.update(time=o["time"] + "\n"),
    lambda o: o.update(time=o["time"][:-2] + "Z"),
    lambda o: o.update(time=o["time"].replace("T", " ")),
    lambda o: o.update(time_source="system" if o["time_source"] == "gnss" else "gnss"),
    lambda o: o["flags"].append(o["flags"][0] if o["flags"] else "no_fix"),
    lambda o: o["flags"].append("stale_fix"),
    lambda o: o["flags"].append("fixed_position"),
    lambda o: o["flags"].append("no_fix"),
    lambda o: o["flags"].append("clock_fallback"),
    lambda o: o["flags"].clear(),
    lambda o: o.update(fix=None),
    lambda o: o.update(fix={"lat": 34.8, "lon": 113.3, "alt": None, "mode": 2, "status": 1,
                            "sats": None, "hdop": None, "age": 0}),
    lambda o: o.update(grid="0" * 13), lambda o: o.update(grid="0" * 16),
    lambda o: o.update(grid="0" * 14 + "\n"), lambda o: o.update(grid="４" * 14),
    lambda o: o.update(grid=41010600100100),
    lambda o: o.update(code=o["code"] + "0"), lambda o: o.update(code=o["code"][:-1]),
    lambda o: o.update(code="A" * len(o["code"])), lambda o: o.update(code=o["code"].lower()),
    lambda o: o.update(code="0" * 13), lambda o: o.update(code=int(o["code"] or 0)),
    lambda o: o.update(standard="1" + o["standard"]),
    lambda o: o.update(standard=o["standard"] + "\n"),
    lambda o: o.update(standard=o["standard"] + "_"),
    lambda o: o.update(standard="G" * 41), lambda o: o.update(standard="GB"),
    lambda o: o.update(standard="CJ/T 214-2007"), lambda o: o.update(standard="GB/T 1-1999"),
    lambda o: o.update(standard="GB/T 47678.5-2026"),
    lambda o: o.update(object="0" * 16), lambda o: o.update(object="0" * 17),
    lambda o: o.update(object="0" * 5), lambda o: o.update(object="A" * 33),
    lambda o: o.update(object=None), lambda o: o.update(object="abcdef"),
    lambda o: o.update(source="task"),
    lambda o: o.update(source="button"),
    lambda o: o.update(task="T-1", result="resolved"),
    lambda o: o.update(task="T-1"), lambda o: o.update(result="confirmed"),
    lambda o: o.update(task=None), lambda o: o.update(result=None),
    lambda o: o.update(task="X-1"), lambda o: o.update(task="T-"),
    lambda o: o.update(task="T-a b"), lambda o: o.update(task="T-" + "a" * 63),
    lambda o: o.update(result="done"),
    lambda o: o["photos"].append(dict(o["photos"][0]) if o["photos"] else
                                 {"sha256": "a" * 64, "bytes": 0}),
    lambda o: o.update(photos=[{"sha256": f"{i:064x}", "bytes": 1} for i in range(9)]),
    lambda o: o["photos"].append({"sha256": "A" * 64, "bytes": 1}),
    lambda o: o["photos"].append({"sha256": "a" * 63, "bytes": 1}),
    lambda o: o["photos"].append({"sha256": "a" * 64, "bytes": PHOTO_MAX_BYTES + 1}),
    lambda o: o["photos"].append({"sha256": "a" * 64, "bytes": True}),
    lambda o: o["photos"].append({"sha256": "a" * 64}),
    lambda o: o["photos"].append({"sha256": "a" * 64, "bytes": 1, "n": 1}),
    lambda o: o["photos"].append(["a" * 64, 1]),
    lambda o: o.update(text="x" * (TEXT_MAX + 1)), lambda o: o.update(text="x" * TEXT_MAX),
    lambda o: o.update(text=o["text"] + "\ud800"), lambda o: o.update(text="\udc00"),
    lambda o: o.update(text=o["text"] + "\x00\x1f\x7f"),
    lambda o: o.update(text="字" * TEXT_MAX),  # often over 1024 bytes with the rest
]
for _name, _lo, _hi in (("lat", -90, 90), ("lon", -180, 180), ("alt", -1000, 100000),
                        ("hdop", 0, 100), ("age", 0, 10**9)):
    NEAR += [lambda o, k=_name, x=_hi: o["fix"] and o["fix"].update({k: x + 1e-7}),
             lambda o, k=_name, x=_lo: o["fix"] and o["fix"].update({k: x - 1}),
             lambda o, k=_name, x=_hi: o["fix"] and o["fix"].update({k: x}),
             lambda o, k=_name: o["fix"] and o["fix"].update({k: True})]
for _name, _lo, _hi in (("mode", 1, 3), ("status", 0, 8), ("sats", 0, 255)):
    NEAR += [lambda o, k=_name, x=_hi: o["fix"] and o["fix"].update({k: x + 1}),
             lambda o, k=_name, x=_lo: o["fix"] and o["fix"].update({k: x - 1}),
             lambda o, k=_name, x=_hi: o["fix"] and o["fix"].update({k: float(x)}),
             lambda o, k=_name: o["fix"] and o["fix"].update({k: False})]

RAW_VALUES = st.sampled_from(["null", "true", "1", "1.0", "-0", "1e400", "NaN", "-Infinity",
                              '"x"', '"\\ud800"', "[]", "{}", "2", '"pv-0001"', '"no_fix"'])
NUMBERS = st.from_regex(r"-?(0|[1-9][0-9]{0,22})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?",
                        fullmatch=True)


@st.composite
def raw_mutation(draw, payload, obj):
    """A change to the payload's text: duplicate keys, odd number/escape tokens, framing."""
    text = payload.decode("utf-8", "surrogatepass")
    key = draw(st.sampled_from([*sorted(obj), "lat", "lon", "age", "text", "zz"]))
    other = draw(RAW_VALUES | st.builds(json.dumps, NASTY)
                 | st.just(json.dumps(obj.get(key), ensure_ascii=False)))
    kind = draw(st.integers(0, 9))
    if kind == 0:  # a duplicate key first: json keeps the payload's (last) one
        text = f'{{"{key}":{other},{text.lstrip()[1:]}'
    elif kind == 1:  # a duplicate key last: json keeps this one
        text = text.rstrip()[:-1] + f',"{key}":{other}}}'
    elif kind == 2:  # another number token for a number field
        for k in ("lat", "lon", "alt", "hdop", "age", "seq", "mode", "sats", "v"):
            if f'"{k}":' in text and draw(st.booleans()):
                head, _, tail = text.partition(f'"{k}":')
                end = min((i for i in (tail.find(","), tail.find("}")) if i >= 0),
                          default=len(tail))
                text = head + f'"{k}":' + draw(NUMBERS | RAW_VALUES) + tail[end:]
    elif kind == 3:  # a key written with escapes
        escaped = "".join(f"\\u{ord(c):04x}" for c in key)
        text = text.replace(f'"{key}":', f'"{escaped}":', 1)
    elif kind == 4:  # the text as an escaped lone surrogate (or a valid pair)
        text = text.replace('"text":"', '"text":"' + draw(st.sampled_from(
            ["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\ud83d", "\\ude00\\ud83d"])), 1)
    elif kind == 5:
        return draw(st.sampled_from([b"\xef\xbb\xbf", b" \n\t", b""])) + payload \
            + draw(st.sampled_from([b"", b" ", b"\n", b"x", b"{}", b"\x00"]))
    elif kind == 6:  # cut short
        return payload[:draw(st.integers(0, max(0, len(payload) - 1)))]
    elif kind == 7:  # bytes that are not UTF-8, or CESU-8 surrogates json.loads lets through
        cut = draw(st.integers(0, len(payload)))
        return payload[:cut] + draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc0\xaf",
                                                     b"\xe4\xb8"])) + payload[cut:]
    elif kind == 8:  # over the limit with whitespace only
        return payload[:1] + b" " * (MAX_BYTES + 1 - len(payload)) + payload[1:]
    else:  # UTF-16 (json.loads of bytes detects it; the gateway does not)
        return text.encode("utf-16-le", "surrogatepass")
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated_reports(draw):
    obj = copy.deepcopy(draw(valid_reports())[0])
    for _ in range(draw(st.integers(1, 2))):
        how = draw(st.sampled_from(["drop", "unknown", "value", "near", "near", "raw"]))
        targets = _targets(obj)
        if how in ("drop", "value") and not targets:
            continue
        if how == "drop":
            box, k = draw(st.sampled_from(targets))
            del box[k]
        elif how == "unknown":
            box = draw(st.sampled_from(_boxes(obj)))
            box[draw(st.sampled_from(["zz", "Object", "v ", "", "fix", "lat", "id"]) |
                     st.text(max_size=4))] = draw(NASTY)
        elif how == "value":
            box, k = draw(st.sampled_from(targets))
            box[k] = draw(NASTY)
        elif how == "near":
            # (a change may not apply after an earlier one)
            with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError,
                                     ValueError):
                draw(st.sampled_from(NEAR))(obj)
        else:
            enc = ENCODERS[draw(st.sampled_from(["compact", "ascii", "spaced"]))]
            return draw(raw_mutation(enc(obj), obj))
    return ENCODERS[draw(st.sampled_from(["compact", "ascii", "spaced"]))](obj)


@SLOW
@given(mutated_reports())
def test_mutated_reports_are_vouched_for_only_when_the_core_accepts_them(payload):
    vouched(payload)


@SLOW
@given(valid_reports(), NUMBERS, st.sampled_from(["lat", "lon", "alt", "hdop", "age"]))
def test_number_literals_read_as_json_reads_them(case, number, field):
    obj, _ = case
    if obj["fix"] is None:
        obj = {**obj, "fix": report()["fix"], "flags": [f for f in obj["flags"]
                                                        if f != "no_fix"]}
    text = ENCODERS["compact"](obj).decode()
    head, _, tail = text.partition(f'"{field}":')
    end = min(i for i in (tail.find(","), tail.find("}")) if i >= 0)
    payload = (head + f'"{field}":' + number + tail[end:]).encode()
    got = vouched(payload)
    if got is not None:
        assert same(got["fix"][field], json.loads(number))


# -- the pitfalls, one by one ------------------------------------------------------------------

def _raw(obj, old, new):
    text = encode(obj).decode()
    assert old in text
    return text.replace(old, new, 1).encode("utf-8", "surrogatepass")


BASE = report("pv-0001", 42)
REFUSED = {  # the core refuses each; the fast path must not vouch for it
    "object null": encode({**BASE, "object": None}),
    "task null": encode({**BASE, "source": "task", "task": None, "result": "resolved"}),
    "dup key, bad last": _raw(BASE, '"seq":42', '"seq":42,"seq":43'),
    "dup key, last is a bool": _raw(BASE, '"mode":3', '"mode":3,"mode":true'),
    "bool for int": _raw(BASE, '"mode":3', '"mode":true'),
    "float for int": _raw(BASE, '"mode":3', '"mode":3.0'),
    "float v": _raw(BASE, '"v":1', '"v":1.0'),
    "NaN": _raw(BASE, '"hdop":0.9', '"hdop":NaN'),
    "Infinity": _raw(BASE, '"age":0.4', '"age":Infinity'),
    "overflow to infinity": _raw(BASE, '"age":0.4', '"age":1e400'),
    "huge int": _raw(BASE, '"sats":9', '"sats":' + "9" * 40),
    "huge seq": _raw(BASE, '"seq":42', '"seq":' + "4" * 30),
    "escaped lone surrogate": _raw(BASE, '"text":"', '"text":"\\ud800'),
    "reversed surrogate pair": _raw(BASE, '"text":"', '"text":"\\udc00\\ud800'),
    "CESU-8 surrogate bytes": _raw(BASE, '"text":"', '"text":"\ud800'),
    "no 30 February": encode({**BASE, "time": "2026-02-30T00:00:00.000Z"}),
    "no 29 February 2026": encode({**BASE, "time": "2026-02-29T00:00:00.000Z"}),
    "no 29 February 2100": encode({**BASE, "time": "2100-02-29T00:00:00.000Z"}),
    "time with a newline": encode({**BASE, "time": "2026-11-28T02:15:07.250Z\n"}),
    "fullwidth digits": encode({**BASE, "time": "２０２６-11-28T02:15:07.250Z"}),
    "device with a newline": encode({**BASE, "device": "pv-0001\n",
                                     "id": "pv-0001\n:000000000042"}),
    "grid with a newline": encode({**BASE, "grid": "41010600100100\n"}),
    "standard with a newline": encode({**BASE, "standard": "GB/T 47678.5-2026\n"}),
    "id is not device:seq": encode({**BASE, "id": "pv-0001:000000000043"}),
    "id of another device": encode({**BASE, "id": "pv-0002:000000000042"}),
    "duplicate flag": encode({**BASE, "flags": ["stale_fix", "stale_fix"]}),
    "clock_fallback without system time": encode({**BASE, "flags": ["clock_fallback"]}),
    "system time without clock_fallback": encode({**BASE, "time_source": "system"}),
    "no fix without no_fix": encode({**BASE, "fix": None}),
    "no_fix with a fix": encode({**BASE, "flags": ["no_fix"]}),
    "stale and fixed": encode({**BASE, "flags": ["stale_fix", "fixed_position"]}),
    "stale without a fix": encode({**BASE, "fix": None, "flags": ["no_fix", "stale_fix"]}),
    "4-digit code for GB/T 47678.5": encode({**BASE, "code": "0601"}),
    "16-digit object for GB/T 47678.5": encode({**BASE, "object": "0" * 16}),
    "17-digit object for CJ/T 214": encode({**BASE, "standard": "CJ/T 214-2007",
                                            "code": "0601", "object": "0" * 17}),
    "lower-case code, unknown standard": encode({**BASE, "standard": "DB41/T 1-2020",
                                                 "code": "ab12"}),
    "task without source task": encode({**BASE, "task": "T-1", "result": "resolved"}),
    "source task without task": encode({**BASE, "source": "task"}),
    "task id": encode({**BASE, "source": "task", "task": "X-1", "result": "resolved"}),
    "result": encode({**BASE, "source": "task", "task": "T-1", "result": "done"}),
    "duplicate photo": encode({**BASE, "photos": [{"sha256": "a" * 64, "bytes": 1}] * 2}),
    "nine photos": encode({**BASE, "photos": [{"sha256": f"{i:064x}", "bytes": 1}
                                              for i in range(9)]}),
    "text of 257": encode({**BASE, "text": "x" * 257}),
    "text of 257 code points": encode({**BASE, "text": "🚧" * 100 + "x" * 157}),
    "text not a string": encode({**BASE, "text": 1}),
    "over 1024 bytes": encode({**BASE, "text": "字" * 250, "photos": [
        {"sha256": f"{i:064x}", "bytes": 1} for i in range(4)]}),
    "unknown key": encode({**BASE, "colour": "red"}),
    "unknown photo key": encode({**BASE, "photos": [{"sha256": "a" * 64, "bytes": 1, "n": 1}]}),
    "photo without bytes": encode({**BASE, "photos": [{"sha256": "a" * 64}]}),
    "photo of 0 bytes": encode({**BASE, "photos": [{"sha256": "a" * 64, "bytes": 0}]}),
    "photo too big": encode({**BASE, "photos": [{"sha256": "a" * 64,
                                                 "bytes": PHOTO_MAX_BYTES + 1}]}),
    "photo bytes a bool": encode({**BASE, "photos": [{"sha256": "a" * 64, "bytes": True}]}),
    "upper-case sha256": encode({**BASE, "photos": [{"sha256": "A" * 64, "bytes": 1}]}),
    "short sha256": encode({**BASE, "photos": [{"sha256": "a" * 63, "bytes": 1}]}),
    "device starting with -": encode({**BASE, "device": "-pv-0001",
                                      "id": "-pv-0001:000000000042"}),
    "device of 2": encode({**BASE, "device": "pv", "id": "pv:000000000042"}),
    "device of 33": encode({**BASE, "device": "p" * 33, "id": "p" * 33 + ":000000000042"}),
    "upper-case device": encode({**BASE, "device": "PV-0001", "id": "PV-0001:000000000042"}),
    "seq 0": encode({**BASE, "seq": 0, "id": "pv-0001:000000000000"}),
    "seq of 13 digits": encode({**BASE, "seq": SEQ_MAX + 1, "id": f"pv-0001:{SEQ_MAX + 1}"}),
    "id of 11 digits": encode({**BASE, "id": "pv-0001:00000000042"}),
    "grid of 13": encode({**BASE, "grid": "4" * 13}),
    "grid of 16": encode({**BASE, "grid": "4" * 16}),
    "grid a number": encode({**BASE, "grid": 410106001001001}),
    "standard starting with a digit": encode({**BASE, "standard": "1DB41/T 1-2020",
                                              "code": "A1"}),
    "standard of 41": encode({**BASE, "standard": "G" * 41, "code": "A1"}),
    "standard of 2": encode({**BASE, "standard": "GB", "code": "A1"}),
    "standard with _": encode({**BASE, "standard": "DB_41", "code": "A1"}),
    "code of 13, unknown standard": encode({**BASE, "standard": "DB41/T 1-2020",
                                            "code": "A" * 13}),
    "code of 1, unknown standard": encode({**BASE, "standard": "DB41/T 1-2020", "code": "A"}),
    "object of 5, unknown standard": encode({**BASE, "standard": "DB41/T 1-2020", "code": "A1",
                                             "object": "A" * 5}),
    "object of 33, unknown standard": encode({**BASE, "standard": "DB41/T 1-2020",
                                              "code": "A1", "object": "A" * 33}),
    "letters in a known code": encode({**BASE, "code": "0601A"}),
    "kind": encode({**BASE, "kind": "incident"}),
    "source": encode({**BASE, "source": "phone"}),
    "time_source": encode({**BASE, "time_source": "ntp"}),
    "flag": encode({**BASE, "flags": ["late"]}),
    "five flags": encode({**BASE, "flags": ["stale_fix"] * 5}),
    "v true": encode({**BASE, "v": True}),
    "hour 24": encode({**BASE, "time": "2026-11-28T24:00:00.000Z"}),
    "second 60": encode({**BASE, "time": "2026-11-28T23:59:60.000Z"}),
    "month 13": encode({**BASE, "time": "2026-13-28T00:00:00.000Z"}),
    "unknown fix key": encode({**BASE, "fix": {**BASE["fix"], "speed": 1}}),
    "missing key": encode({k: v for k, v in BASE.items() if k != "text"}),
    "lat out of range": encode({**BASE, "fix": {**BASE["fix"], "lat": 90.0000001}}),
    **{f"fix {k} {x!r}": encode({**BASE, "fix": {**BASE["fix"], k: x}}) for k, x in [
        ("lon", 180.5), ("lon", -181), ("alt", 100000.5), ("alt", -1001), ("mode", 0),
        ("mode", 4), ("status", -1), ("status", 9), ("sats", 256), ("sats", -1),
        ("hdop", -0.1), ("hdop", 100.1), ("age", -1), ("age", 1e9 + 1), ("lat", None),
        ("age", None), ("mode", None), ("status", 1.0), ("lat", "34.8")]},
    "v 2": encode({**BASE, "v": 2}),
    "not an object": b"[1, 2]",
    "trailing data": encode(BASE) + b"x",
}
ACCEPTED = {  # valid, if unusual: the fast path takes them (same dict as json.loads)
    "leap day": encode({**BASE, "time": "2028-02-29T23:59:59.999Z"}),
    "year 0": encode({**BASE, "time": "0000-02-29T00:00:00.000Z"}),
    "ints for floats": encode({**BASE, "fix": {**BASE["fix"], "lat": 34, "alt": 0, "age": 0,
                                               "hdop": 1}}),
    "minus zero": _raw(BASE, '"lat":34.805', '"lat":-0.0'),
    "int minus zero": _raw(BASE, '"alt":120.5', '"alt":-0'),
    "exponent float": _raw(BASE, '"age":0.4', '"age":4E-1'),
    "null optionals of the fix": encode({**BASE, "fix": {**BASE["fix"], "alt": None,
                                                         "sats": None, "hdop": None}}),
    "dup key, good last": _raw(BASE, '"seq":42', '"seq":41,"seq":42'),
    "escaped key": _raw(BASE, '"v":1', '"\\u0076":1'),
    "whitespace": json.dumps(BASE, ensure_ascii=False, indent=2).encode(),
    "escaped CJK": json.dumps(BASE).encode(),
    "surrogate pair escape": _raw(BASE, '"text":"', '"text":"\\ud83d\\ude00'),
    "text of 256 code points": encode({**BASE, "text": "🚧" * 100 + "x" * 156}),
    "no fix": encode({**BASE, "fix": None, "flags": ["no_fix"]}),
    "fixed terminal": encode({**BASE, "flags": ["no_fix", "fixed_position"]}),
    "system clock": encode({**BASE, "time_source": "system",
                            "flags": ["stale_fix", "clock_fallback"]}),
    "object": encode({**BASE, "object": "4101060010010010" + "1"}),
    "unknown standard": encode({**BASE, "standard": "DB41/T 1-2020", "code": "A1",
                                "object": "OBJ001"}),
    "CJ/T 214": encode({**BASE, "standard": "CJ/T 214-2007", "code": "0601",
                        "object": "0" * 16}),
    "task": encode({**BASE, "source": "task", "task": "T-2026.11:a_b-c", "result": "resolved"}),
    "photos": encode({**BASE, "photos": [{"sha256": "a" * 64, "bytes": 1},
                                         {"bytes": 1, "sha256": "b" * 64}]}),
    "seq max": encode({**BASE, "seq": SEQ_MAX, "id": f"pv-0001:{SEQ_MAX}"}),
    "grid null": encode({**BASE, "grid": None}),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_the_core_refuses_is_not_vouched_for(name):
    payload = REFUSED[name]
    assert slow_verdict(payload) is not None, "the case must be invalid"
    assert decode_report(payload) is None


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_unusual_valid_reports_take_the_fast_path(name):
    payload = ACCEPTED[name]
    assert len(payload) <= MAX_BYTES
    assert vouched(payload) is not None


@pytest.mark.parametrize("payload", [
    b"\xef\xbb\xbf" + encode(BASE),                   # json.loads(bytes) skips a UTF-8 BOM
    json.dumps(BASE).encode("utf-16"),                # ... and reads UTF-16
])
def test_what_only_json_loads_of_bytes_reads_falls_back(payload):
    assert slow_verdict(payload) is None
    assert decode_report(payload) is None


# -- never an exception ------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=20)


@SLOW
@given(st.binary(max_size=1100) | st.builds(lambda b: encode(BASE)[:40] + b, st.binary()))
def test_arbitrary_bytes_never_raise(payload):
    vouched(payload)


@SLOW
@given(JSON | st.builds(lambda k, v: {**BASE, k: v}, st.sampled_from(sorted(BASE)), JSON))
def test_arbitrary_json_never_raises(obj):
    vouched(json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("payload", [None, 42, "text", bytearray(encode(BASE)), b""])
def test_not_bytes_is_not_vouched_for_or_raised(payload):
    got = decode_report(payload)
    assert got is None or (isinstance(payload, bytearray) and same(got, BASE))


def test_without_msgspec_nothing_is_vouched_for_and_the_gateway_still_judges(monkeypatch):
    monkeypatch.setitem(sys.modules, "msgspec", None)  # import msgspec → ImportError
    spec = importlib.util.spec_from_file_location("gridlink.gateway._fastreport_bare",
                                                  fastreport.__file__)
    bare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bare)
    assert bare.msgspec is None
    assert bare.decode_report(encode(BASE)) is None and bare.check_report(encode(BASE)) is None
    monkeypatch.setattr(gw_validate, "check_report", bare.check_report)
    v = Validator().decode(topic("pv-0001", "report"), encode(BASE), T)
    assert v.kind == "report" and v.data["seq"] == 42


# -- the Validator, with and without the fast path ---------------------------------------------

@pytest.fixture(scope="module")
def judges(tmp_path_factory):
    grid = open_map(grid_map_file(tmp_path_factory.mktemp("grid")))
    books = load_books()
    return (Validator(grid, books), Validator(grid, books),
            Validator(grid, books, validate_report=validate_report))


def _verdict(judge, t, payload, slow=False):
    if slow:  # what the gateway does without msgspec: every report on json + the core
        with mock.patch.object(gw_validate, "check_report", lambda p: None):
            v = judge.decode(t, payload, T, 5.0)
    else:
        v = judge.decode(t, payload, T, 5.0)
    return (v.kind, v.district, v.device, v.report_id, v.category, v.reason, v.sent_at), v.data


def _same_verdicts(judges, t, payload):
    """The verdict with the fast path is the one without it; returns it."""
    fast, plain, _ = judges
    got, got_row = _verdict(fast, t, payload)
    want, want_row = _verdict(plain, t, payload, slow=True)
    assert got == want
    assert (got_row is None) == (want_row is None)
    if got_row is not None:
        assert list(got_row) == list(want_row) and same(got_row, want_row)
    return got, got_row


def _topic_of(payload):
    """The report topic of the payload's device (when it has one)."""
    try:
        device = json.loads(payload)["device"]
    except (ValueError, TypeError, KeyError):
        return TOPIC
    return topic(device, "report") if isinstance(device, str) else TOPIC


TOPIC = topic("pv-0001", "report")
GOOD_AND_BAD = [
    *ACCEPTED.values(), *REFUSED.values(),
    encode(report("pv-0001", 1, grid="410106001001001", at=(34.815, 113.295))),  # mismatch
    encode(report("pv-0001", 2, code="99999")), encode(report("pv-0002", 3)),
    encode(report("pv-0001", 4, standard="GB/T 1-1999")),
    encode(report("pv-0001", 5, fix=False, flags=["no_fix", "clock_fallback"],
                  time_source="system")),
    encode(report("pv-0001", 6, photos=[{"sha256": "c" * 64, "bytes": 9}])),
    encode(report("pv-0001", 7, source="task", task="T-9", result="resolved")),
]


@pytest.mark.parametrize("i", range(len(GOOD_AND_BAD)))
@pytest.mark.parametrize("leaf", ["report", "task/result"])
def test_verdicts_are_the_same_with_and_without_the_fast_path(judges, i, leaf):
    payload = GOOD_AND_BAD[i]
    t = topic("pv-0001", leaf)
    got, row = _same_verdicts(judges, t, payload)
    # a custom validator (no fast path, re-encodes for the size): same acceptance and row
    v = judges[2].decode(t, payload, T, 5.0)
    assert (v.kind == "rejected") == (got[0] == "rejected")
    assert v.category == got[4]
    if row is not None:
        assert same(v.data, row)


@SLOW
@given(valid_reports(), st.booleans(), mutated_reports())
def test_generated_verdicts_are_the_same_with_and_without_the_fast_path(judges, case, booked,
                                                                       mutated):
    obj, payload = case
    if booked:  # a class the code book has, so that most become rows
        obj = {k: v for k, v in obj.items() if k != "object"}
        obj.update(standard=BASE["standard"], code=BASE["code"])
        payload = encode(obj)
    for p in (payload, mutated):
        _same_verdicts(judges, _topic_of(p), p)


def test_a_custom_validator_is_always_asked():
    asked = []

    def refuse_all(obj):
        asked.append(obj)
        raise ReportError("report", "not today")

    v = Validator(validate_report=refuse_all).decode(TOPIC, encode(BASE), T)
    assert asked == [BASE]
    assert (v.kind, v.category, v.reason) == ("rejected", "schema", "report: not today")


# -- cheaper parts of the Validator: topics, flags ---------------------------------------------

TOPICS = [TOPIC, topic("pv-0001", "status"), topic("pv-0001", "track"),
          topic("pv-0001", "task/result"), topic("pv-0001", "ack"), topic("pv-0001", "task"),
          "gridlink/v1/410106/pv-0001/photo/pv-0001:000000000042/0",
          "gridlink/v1/4101/pv-0001/report", "gridlink/v2/410106/pv-0001/report",
          "gridlink/v1/410106/PV_1/report", "gridlink/v1/410106/pv-0001/nope", "x"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(TOPICS) | st.text(max_size=40).map(lambda s: TOPIC[:-6] + s)
                | st.text(max_size=40), min_size=1, max_size=6))
def test_a_topic_gets_the_same_verdict_the_second_time(topics):
    def verdict(judge, t):
        v = judge.decode(t, encode(BASE), T)
        return v.kind, v.district, v.device, v.report_id, v.category, v.reason

    seen = Validator()
    for t in topics:
        verdict(seen, t)
    for t in topics:  # a fresh Validator has no remembered topics
        assert verdict(seen, t) == verdict(Validator(), t)


def test_remembered_topics_are_bounded_and_photo_topics_are_not_kept(monkeypatch):
    monkeypatch.setattr(gw_validate, "TOPICS_CACHED", 3)
    v = Validator()
    for rnd in range(2):
        for n in range(10):
            device = f"pv-{n:04d}"
            got = v.decode(topic(device, "report"), encode(report(device, rnd + 1)), T)
            assert (got.kind, got.device) == ("report", device)
            assert len(v._topics) <= 3
    v._topics.clear()
    for n in range(5):
        v.decode(f"gridlink/v1/410106/pv-0001/photo/pv-0001:000000000042/{n}", b"", T)
    assert v._topics == {}
    assert v.decode(topic("pv-0001", "ack"), b"{}", T).category == "topic"
    assert v.decode(topic("pv-0001", "ack"), b"{}", T).category == "topic"


@pytest.mark.parametrize("flags", [
    [], None, ["no_fix"], ["no_fix"], ["fixed_position", "no_fix"], ["占"], [1], [True], [1.0],
    [True], [1], [None], [[1]], [{"a": 1}], "no_fix", ("no_fix",),
])
def test_flags_text_is_the_compact_json_text(flags):
    for _ in range(2):  # the second time from the remembered texts
        want = json.dumps(flags, ensure_ascii=False, separators=(",", ":")) if flags else "[]"
        assert gw_validate._flags_text(flags) == want
