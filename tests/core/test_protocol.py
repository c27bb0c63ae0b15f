"""docs/protocol.md, docs/schemas/*.json and the core validators say the same thing."""

import copy
import datetime
import hashlib
import json
import re

import jsonschema
import pytest
import referencing
import referencing.jsonschema
from gridlink.firmware.core import canonjson, messages, topics
from gridlink.firmware.core.checks import MessageError
from gridlink.firmware.core.report import ReportError, make_report, validate_report
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.paths import ROOT

SCHEMAS = ROOT / "docs" / "schemas"
PROTOCOL = ROOT / "docs" / "protocol.md"
NAMES = ("report", "task-result", "ack", "task", "track", "status", "photo-chunk-header",
         "media-chunk-header", "update")


def load_schemas():
    out = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return out


SCHEMA = load_schemas()
REGISTRY = referencing.Registry().with_resources(
    (s["$id"], referencing.Resource.from_contents(s)) for s in SCHEMA.values())
# The same schemas without "$schema", so a $ref keeps the oracle's validator class (with
# "$schema" jsonschema switches to the stock Draft 2020-12 validator behind a $ref).
ORACLE_REGISTRY = referencing.Registry().with_resources(
    (s["$id"], referencing.jsonschema.DRAFT202012.create_resource(
        {k: v for k, v in s.items() if k != "$schema"})) for s in SCHEMA.values())


def _ecma_pattern(validator, pattern, instance, schema):
    """ECMA-262 semantics: ``$`` is the end of the string (Python's also matches before a
    final newline)."""
    if isinstance(instance, str) and not re.search(pattern.replace("$", r"\Z"), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _strict_int(checker, x):
    return isinstance(x, int) and not isinstance(x, bool)


# The oracle: the schema, with integers that have no fraction and ECMA regexes.
Oracle = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_int))


ORACLES = {name: Oracle({k: v for k, v in s.items() if k != "$schema"},
                        registry=ORACLE_REGISTRY) for name, s in SCHEMA.items()}


def schema_ok(name, obj):
    return ORACLES[name].is_valid(obj)


def plain_schema_errors(name, obj):
    v = jsonschema.Draft202012Validator(SCHEMA[name], registry=REGISTRY)
    return [e.message for e in v.iter_errors(obj)]


def examples():
    """(schema name, text) of every ``<!-- example: name -->`` json block in protocol.md."""
    text = PROTOCOL.read_text(encoding="utf-8")
    return re.findall(r"<!-- example: ([a-z-]+) -->\n```json\n(.*?)\n```", text, re.S)


VALIDATORS = {
    "report": validate_report,
    "task-result": messages.validate_task_result,
    "ack": messages.validate_ack,
    "task": messages.validate_task,
    "track": messages.validate_track,
    "status": messages.validate_status,
    "photo-chunk-header": messages.validate_photo_header,
    "media-chunk-header": messages.validate_media_header,
    "update": messages.validate_update,
}


def test_every_schema_is_a_valid_draft_2020_12_schema():
    assert set(NAMES) <= set(SCHEMA)
    for name, schema in SCHEMA.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith(f"/{name}.json")


def test_protocol_md_has_an_example_of_every_message():
    assert {name for name, _ in examples()} == set(NAMES)


@pytest.mark.parametrize("name,text", examples(), ids=[n for n, _ in examples()])
def test_examples_validate_against_schema_and_core_and_are_canonical(name, text):
    obj = json.loads(text)
    assert plain_schema_errors(name, obj) == []
    assert schema_ok(name, obj)
    assert VALIDATORS[name](obj) is obj
    assert canonjson.dumps(obj) == text.encode("utf-8")


def test_task_result_schema_is_the_report_schema_with_source_task():
    (text,) = [t for n, t in examples() if n == "task-result"]
    obj = json.loads(text)
    assert schema_ok("report", obj)
    plain = json.loads(next(t for n, t in examples() if n == "report"))
    assert not schema_ok("task-result", plain)       # source "button", no task


# -- make_report output ---------------------------------------------------------------------

fixes = st.one_of(
    st.none(),
    st.fixed_dictionaries({
        "lat": st.floats(-90, 90), "lon": st.floats(-180, 180),
        "alt": st.one_of(st.none(), st.floats(-500, 9000)),
        "mode": st.integers(1, 3), "status": st.integers(0, 8),
        "sats": st.one_of(st.none(), st.integers(0, 40)),
        "hdop": st.one_of(st.none(), st.floats(0, 99)),
        "epoch": st.one_of(st.none(), st.floats(1.6e9, 2.0e9)),
    }))


@settings(max_examples=100, deadline=None)
@given(fix=fixes, age=st.one_of(st.none(), st.floats(0, 1e5)),
       now=st.floats(1.6e9, 2.0e9), seq=st.integers(1, 999999999999),
       fixed=st.one_of(st.none(), st.tuples(st.floats(-90, 90), st.floats(-180, 180))),
       text=st.text(max_size=120), nphotos=st.integers(0, 4),
       task=st.booleans(), max_age=st.floats(0.5, 60))
def test_make_report_output_always_validates_against_the_schema(
        fix, age, now, seq, fixed, text, nphotos, task, max_age):
    photos = [(f"{i:064x}", 1000 + i) for i in range(nphotos)]
    extra = {"source": "task", "task": "T-1", "result": "confirmed"} if task else {}
    rep = make_report("pv-0001", seq, fix, lambda: now, "event", "GB/T 47678.5-2026", "06010",
                      grid="410106001001001", photos=photos, text=text, fix_age=age,
                      fixed_position=fixed, max_fix_age=max_age, **extra)
    assert schema_ok("report", rep), plain_schema_errors("report", rep)
    assert schema_ok("task-result" if task else "report", rep)
    assert json.loads(canonjson.dumps(rep)) == rep


# -- validate_* agree with the schemas on near-valid messages -----------------------------

def _extra_rules_hold(name, obj):
    """What the validators check beyond the schema (listed in protocol.md)."""
    def real_date(t):
        if not isinstance(t, str):
            return True
        try:
            datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            return False
        return True

    if name in ("report", "task-result"):
        if obj["id"] != f"{obj['device']}:{obj['seq']:012d}":
            return False
        if not real_date(obj["time"]):
            return False
        return len(canonjson.dumps(obj)) <= 1024
    if name == "task":
        return real_date(obj["deadline"])
    if name == "status":
        return real_date(obj.get("time"))
    if name in ("photo-chunk-header", "media-chunk-header"):
        return obj["n"] < obj["of"] <= obj["size"] <= obj["of"] * 16384
    return True


def oracle(name, obj):
    return schema_ok(name, obj) and _extra_rules_hold(name, obj)


POOL = [None, True, False, 0, 1, -1, 2, 3, 9, 42, 42.0, 1.5, -91, 181, 10 ** 13, "", "x",
        "pv-0001", "PV-0001", "-pv", "pv-0001:000000000042", "pv-0001:42", "abc\n",
        "2026-11-28T02:15:07.250Z", "2026-02-30T02:15:07.250Z", "2026-11-28T02:15:07Z",
        "gnss", "system", "event", "component", "button", "task", "T-1", "T-", "confirmed",
        "410106001001001", "41010600100100", "4101060010010011", "06010", "0601", "BJ2101",
        "GB/T 47678.5-2026", "CJ/T 214-2007", "GB/T 30428.2-2013", "DB11/T 1234-2015",
        "41010601010000001", "4101060101000001", "no_fix", "stale_fix", "fixed_position",
        "clock_fallback", "accepted", "duplicate", "rejected", "verify", "check", "online",
        "offline", "buffering", "a" * 64, "A" * 64, "中" * 256, "中" * 257, [], {},
        ["no_fix"], ["clock_fallback", "no_fix"], ["stale_fix"], ["fixed_position"],
        ["no_fix", "no_fix"], ["fixed_position", "no_fix"], [[0, 1, 2, 3]], [[0, 1, 2]],
        {"reports": 0, "track": 0}, {"sha256": "a" * 64, "bytes": 1},
        [{"sha256": "a" * 64, "bytes": 1}] * 2,
        {"lat": 1, "lon": 2, "alt": None, "mode": 1, "status": 0, "sats": None,
         "hdop": None, "age": 0}]


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


INTS = [0, 1, -1, 2, 3, 4, 7, 8, 9, 255, 256, 500, 86400, 86401, 16777215, 16777216,
        16777217, 999999999999, 10 ** 12, 4102444800, 4102444801, 90000000, 90000001]
FLOATS = [0.0, -0.0, 0.5, 90.0, -90.0, 90.0000001, 180.0, -180.0, 180.5, 100.0, 100.01,
          1e9, 1e9 + 1, 150.0, 150.5, -60.0, -60.5, -1000.0, -1000.5, 100000.0, 100000.5]
CHARS = ["0", "9", "a", "z", "A", "Z", "-", ":", ".", "/", " ", "_", "中", "\n", "T", "x"]


def _near(data, value):
    """A value close to ``value`` of the same JSON type (boundaries, one-character edits)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return data.draw(st.sampled_from([value - 1, value + 1, -value, *INTS]))
    if isinstance(value, float):
        return data.draw(st.sampled_from([-value, value + 0.5, *FLOATS]))
    if isinstance(value, str):
        i = data.draw(st.integers(0, len(value)))
        c = data.draw(st.sampled_from(CHARS))
        op = data.draw(st.sampled_from(["insert", "replace", "delete", "upper", "cut"]))
        if op == "insert":
            return value[:i] + c + value[i:]
        if op == "replace":
            return value[:i] + c + value[i + 1:]
        if op == "delete":
            return value[:i] + value[i + 1:]
        if op == "upper":
            return value.upper()
        return value[:i]
    if isinstance(value, list) and value:
        op = data.draw(st.sampled_from(["drop", "dup", "reverse"]))
        if op == "drop":
            return value[1:]
        if op == "dup":
            return [*value, copy.deepcopy(value[-1])]
        return value[::-1]
    return copy.deepcopy(data.draw(st.sampled_from(POOL)))


def _mutate(data, obj):
    for _ in range(data.draw(st.integers(1, 2))):
        paths = [p for p in _paths(obj) if p]
        path = data.draw(st.sampled_from(paths))
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        op = data.draw(st.sampled_from(["near", "near", "near", "near", "set", "set",
                                        "delete", "add", "text"]))
        if op == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            key = data.draw(st.sampled_from(["extra", "id", "v", "task", "object"]))
            parent[key] = copy.deepcopy(data.draw(st.sampled_from(POOL)))
        elif op == "near":
            parent[path[-1]] = _near(data, parent[path[-1]])
        elif op == "text":
            parent[path[-1]] = data.draw(st.text(max_size=70))
        else:
            parent[path[-1]] = copy.deepcopy(data.draw(st.sampled_from(POOL)))
    return obj


BASES = {name: [json.loads(t) for n, t in examples() if n == name] for name in NAMES}
BASES["report"] += [
    make_report("pv-0001", 7, None, 1795832107.5, "component", "CJ/T 214-2007", "0101",
                object_id="4101060101000001", fixed_position=(34.8, 113.3), text="井盖缺失"),
    make_report("pv-0001", 8, {"lat": 34.8, "lon": 113.3, "mode": 2, "status": 1,
                               "epoch": 1795832107.0}, 0, "event", "DB41/T 9-2020", "ZZ01",
                fix_age=120.0, photos=[("b" * 64, 5)] * 1),
]


def _agree(name, obj):
    expected = oracle(name, obj) if isinstance(obj, dict) else False
    try:
        VALIDATORS[name](obj)
        got = True
    except MessageError as exc:
        got = False
        assert exc.field and exc.why, exc
    assert got == expected, (name, obj, plain_schema_errors(name, obj))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_validator_agrees_with_schema_on_near_valid_messages(name, data):
    base = copy.deepcopy(data.draw(st.sampled_from(BASES[name])))
    _agree(name, _mutate(data, base))


def test_oversized_report_is_refused_by_both_rules_the_validator_names_the_size():
    rep = copy.deepcopy(BASES["report"][0])
    rep["text"] = "中" * 256
    rep["photos"] = [{"sha256": f"{i:064x}", "bytes": 1} for i in range(8)]
    assert schema_ok("report", rep)                    # the schema cannot count bytes
    with pytest.raises(ReportError) as e:
        validate_report(rep)
    assert "1024" in str(e.value) and e.value.field == "report"


# -- topics -------------------------------------------------------------------------------

def test_topic_tree_round_trips_and_refuses_foreign_topics():
    for leaf in ("report", "track", "status", "ack", "task", "task/result"):
        name = topics.topic("410106", "pv-0001", leaf)
        assert name == f"gridlink/v1/410106/pv-0001/{leaf}"
        assert topics.parse_topic(name) == ("410106", "pv-0001", leaf, None)
    photo = topics.photo_topic("410106", "pv-0001", "pv-0001:000000000042", 3)
    assert topics.parse_topic(photo) == ("410106", "pv-0001", "photo",
                                         ("pv-0001:000000000042", 3))
    media = topics.media_topic("410106", "pv-0001", "pv-0001:000000000042", 7)
    assert media == "gridlink/v1/410106/pv-0001/media/pv-0001:000000000042/7"
    assert topics.parse_topic(media) == ("410106", "pv-0001", "media",
                                         ("pv-0001:000000000042", 7))
    with pytest.raises(MessageError, match="chunked"):
        topics.photo_topic("410106", "pv-0001", "pv-0001:000000000042", 7, leaf="report")
    with pytest.raises(MessageError, match="unknown leaf"):
        topics.topic("410106", "pv-0001", "media")
    for bad in ("gridlink/v1/410106/pv-0001/media/pv-0001:000000000042",
                "gridlink/v2/410106/pv-0001/report", "gridlink/v1/4101/pv-0001/report",
                "gridlink/v1/410106/PV/report", "gridlink/v1/410106/pv-0001/reports",
                "gridlink/v1/410106/pv-0001/photo/x/1", "other/v1/410106/pv-0001/report",
                "gridlink/v1/410106/pv-0001/photo/pv-0001:000000000042/-1"):
        with pytest.raises(MessageError):
            topics.parse_topic(bad)


@given(kind=st.sampled_from(messages.MEDIA_KINDS), data=st.binary(min_size=1, max_size=300),
       before=st.integers(0, 50), length=st.integers(1, 16384))
def test_media_chunk_round_trips(kind, data, before, length):
    size = before * length + len(data)
    if len(data) > length:
        return                         # the last chunk holds at most the others' length
    of = before + 1
    digest = hashlib.sha256(data).hexdigest()
    payload = messages.make_media_chunk(kind, "cd" * 32, before, of, size, data, digest)
    head, back = messages.split_media_chunk(payload)
    assert back == data
    assert head == {"kind": kind, "sha256": "cd" * 32, "n": before, "of": of, "size": size,
                    "digest": digest}


def test_media_chunk_header_errors_name_the_field():
    sha = "ab" * 32
    with pytest.raises(MessageError) as e:
        messages.make_media_chunk("photo", sha, 0, 1, 3, b"abc", sha)
    assert e.value.field == "kind"
    with pytest.raises(MessageError) as e:      # a media chunk always carries its digest
        messages.split_media_chunk(b'{"kind":"clip","sha256":"' + sha.encode()
                                   + b'","n":0,"of":1,"size":3}\nabc')
    assert "digest" in str(e.value)
    with pytest.raises(MessageError):          # a photo header is not a media header
        messages.split_media_chunk(messages.make_photo_chunk(sha, 0, 1, 3, b"abc"))


def test_photo_chunk_round_trip_and_clear_errors():
    sha = "ab" * 32
    payload = messages.make_photo_chunk(sha, 1, 2, 20000, b"\x00\n" * 10)
    head, data = messages.split_photo_chunk(payload)
    assert head == {"sha256": sha, "n": 1, "of": 2, "size": 20000}
    assert data == b"\x00\n" * 10
    with pytest.raises(MessageError, match="n"):
        messages.make_photo_chunk(sha, 2, 2, 20000, b"x")
    with pytest.raises(MessageError, match="header"):
        messages.split_photo_chunk(b"{not json\nxx")
    with pytest.raises(MessageError, match="16384"):
        messages.make_photo_chunk(sha, 0, 1, 20000, b"x" * 16385)


def _leaf_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaf_paths(v, (*prefix, k))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from _leaf_paths(v, (*prefix, i))
    else:
        yield prefix


@pytest.mark.parametrize("name", NAMES)
def test_validator_agrees_with_schema_on_every_boundary_value_of_every_field(name):
    """Deterministic sweep: each leaf of each example set to each boundary/pool value."""
    strings = [v for v in POOL if isinstance(v, str)]
    others = [None, True, 0, 1.5, "x", [], {}]
    checked = 0
    for base in BASES[name][:2]:
        for path in _leaf_paths(base):
            leaf = base
            for k in path:
                leaf = leaf[k]
            if isinstance(leaf, str):
                values = strings + others
            elif isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
                values = INTS + FLOATS + others
            else:
                values = INTS + FLOATS + POOL
            for value in values:
                obj = copy.deepcopy(base)
                parent = obj
                for k in path[:-1]:
                    parent = parent[k]
                parent[path[-1]] = copy.deepcopy(value)
                _agree(name, obj)
                checked += 1
    assert checked > 100


def test_topic_table_in_protocol_md_matches_the_topics_module():
    rows = re.findall(r"^\| `gridlink/v1/\{district\}/\{device\}/([a-z/{}_]+)` \| (\w+) .*?\| "
                      r"(\d) \| (\*\*yes\*\*|no) \|", PROTOCOL.read_text(encoding="utf-8"), re.M)
    table = {}
    for leaf, publisher, qos, retained in rows:
        leaf = leaf.split("/")[0] if leaf.startswith(("photo/", "media/")) else leaf
        table[leaf] = (publisher, int(qos), retained != "no")
    assert table == topics.LEAVES


def test_decode_for_each_leaf_checks_size_and_schema():
    for name, text in examples():
        leaf = {"task-result": "task/result"}.get(name, name)
        if leaf in messages.BY_LEAF:
            assert messages.decode_for(leaf, text.encode()) == json.loads(text)
    with pytest.raises(MessageError, match="more than 2048"):
        messages.decode_for("ack", b" " * 2049)
    with pytest.raises(MessageError) as e:
        messages.decode_for("task/result", next(t for n, t in examples() if n == "report"))
    assert e.value.field == "source"
    with pytest.raises(MessageError, match="no JSON message"):
        messages.decode_for("photo", b"{}")


def test_a_grouped_ack_names_what_is_wrong_and_lists_its_ids():
    ids = [f"pv-0001:{s:012d}" for s in range(1, 17)]
    ack = messages.make_ack(ids, "duplicate")
    assert messages.ack_ids(ack) == ids and messages.ack_ids(messages.make_ack(
        "pv-0001:000000000001", "accepted")) == ["pv-0001:000000000001"]
    for bad, field, words in [
            ({"ids": [*ids, "pv-0001:000000000017"]}, "ids", "1 to 16"),
            ({"ids": []}, "ids", "1 to 16"),
            ({"ids": "pv-0001:000000000001"}, "ids", "a list"),
            ({"ids": ["pv-0001:000000000001", "pv-0001:42"]}, "ids[1]", "12 digits"),
            ({"reason": "late"}, "reason", "no reason"),
            ({"status": "rejected"}, "status", "accepted, duplicate"),
            ({"id": "pv-0001:000000000001"}, "id", "not a field")]:
        with pytest.raises(MessageError, match=words) as e:
            messages.validate_ack({**ack, **bad})
        assert e.value.field == field
    # the largest grouped ack fits what a microcontroller node reads (1024 bytes)
    longest = [f"{'d' * 32}:{s:012d}" for s in range(1, 17)]
    assert len(messages.encode(messages.make_ack(longest, "duplicate"))) <= 1024


def test_photo_and_track_confirmations_name_what_is_wrong():
    sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    photo = messages.make_photo_stored("pv-0001:000000000042", sha)
    track = messages.make_track_stored([57, 58])
    for ack in (photo, track):
        assert messages.validate_received_ack(json.loads(messages.encode(ack))) == ack
        assert not messages.answers_reports(ack)
        assert schema_ok("ack", ack)
    assert messages.answers_reports(messages.make_ack("pv-0001:000000000042", "accepted"))
    for base, bad, field, words in [
            (photo, {"sha256": "9f86"}, "sha256", "64"),
            (photo, {"reason": "late"}, "reason", "no reason"),
            (photo, {"id": None}, "id", "12-digit"),
            (photo, {"chunks": None}, "chunks", "not a field"),
            (track, {"seqs": []}, "seqs", "1 to 64"),
            (track, {"seqs": list(range(65))}, "seqs", "1 to 64"),
            (track, {"seqs": [1, "2"]}, "seqs[1]", "integer"),
            (track, {"seqs": [-1]}, "seqs[0]", "between"),
            (track, {"seqs": [10 ** 12]}, "seqs[0]", "between"),
            (track, {"id": "pv-0001:000000000042"}, "id", "not a field"),
            (track, {"reason": "x"}, "reason", "no reason")]:
        obj = {**base, **bad}
        with pytest.raises(MessageError, match=words) as e:
            messages.validate_received_ack(obj)
        assert e.value.field == field
        assert not schema_ok("ack", obj), obj
    # a track_stored of 64 of the largest seqs stays within what a node reads
    assert len(messages.encode(messages.make_track_stored([10 ** 12 - 1] * 64))) <= 1024


def test_a_track_batch_carries_its_seq_or_none():
    pts = [(1795832100, 34.812345, 113.291234, 8.3)]
    assert "seq" not in messages.make_track("pv-0001", pts)
    numbered = messages.make_track("pv-0001", pts, seq=57)
    assert numbered["seq"] == 57 and schema_ok("track", numbered)
    for seq, words in [(-1, "between"), (10 ** 12, "between"), ("57", "integer")]:
        with pytest.raises(MessageError, match=words) as e:
            messages.validate_track({**numbered, "seq": seq})
        assert e.value.field == "seq"
