"""The judge: every message gets a verdict, with a reason naming the field; never an exception."""

import hashlib
import json
from datetime import UTC, datetime

import pytest
from gridlink.firmware.codebooks import load_books
from gridlink.firmware.maps import open_map
from gridlink.gateway.validate import MAX_REPORT, Validator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.gateway_rig import encode, grid_map_file, report, topic

T = 1_795_000_000.0


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grid")
    return Validator(open_map(grid_map_file(folder)), load_books())


def test_good_report_becomes_a_row(judge):
    v = judge.decode(topic("pv-0001", "report"), encode(report(seq=42)), T)
    assert v.kind == "report", v
    row = v.data
    assert row["id"] == "pv-0001:000000000042" and row["seq"] == 42
    assert (row["district"], row["device"]) == ("410106", "pv-0001")
    assert row["grid"] == row["grid_device"] == "410106001001001"
    assert row["grid_mismatch"] == 0 and row["street"] == "410106001"
    assert json.loads(row["payload"])["text"] == "垃圾满溢"
    assert (row["lat"], row["lon"], row["fix_mode"], row["fix_status"]) == (34.805, 113.285, 3, 1)


def test_grid_is_relocated_and_a_mismatch_keeps_both_codes(judge):
    wrong = report(seq=1, grid="410106001001001", at=(34.815, 113.295))  # lies in …004
    v = judge.decode(topic("pv-0001", "report"), encode(wrong), T)
    assert v.kind == "report", v
    assert (v.data["grid"], v.data["grid_device"], v.data["grid_mismatch"]) == \
        ("410106001001004", "410106001001001", 1)
    outside = report(seq=2, grid="410106001001001", at=(30.0, 100.0))
    v = judge.decode(topic("pv-0001", "report"), encode(outside), T)
    assert (v.data["grid"], v.data["grid_device"], v.data["grid_mismatch"]) == \
        (None, "410106001001001", 1)


def test_without_a_fix_the_device_grid_stands(judge):
    v = judge.decode(topic("pv-0001", "report"), encode(report(seq=3, fix=False)), T)
    assert v.kind == "report"
    assert (v.data["grid"], v.data["grid_mismatch"], v.data["lat"]) == ("410106001001001", 0, None)


@pytest.mark.parametrize("t, payload, category, words", [
    (topic("pv-0001", "report"), b"\xff\xfe", "encoding", "not UTF-8"),
    (topic("pv-0001", "report"), b"{nope", "json", "not JSON"),
    (topic("pv-0001", "report"), b"[1, 2]", "json", "JSON object"),
    (topic("pv-0001", "report"), b'{"v": NaN}', "json", "not JSON"),
    (topic("pv-0001", "report"), b"x" * (MAX_REPORT + 1), "size", "limit is 1024"),
    (topic("pv-0001", "report"), encode({**report(), "seq": "1"}), "schema", "seq"),
    (topic("pv-0001", "report"), encode({**report(), "colour": "red"}), "schema", "colour"),
    (topic("pv-0001", "report"), encode(report(device="pv-0002")), "identity", "pv-0002"),
    (topic("pv-0001", "report"), encode(report(code="99999")), "code", "99999"),
    (topic("pv-0001", "report"), encode(report(standard="GB/T 1-1999")), "code",
     "no code book"),
    (topic("pv-0001", "task/result"), encode(report()), "schema", "task"),
    ("gridlink/v1/4101/pv-0001/report", encode(report()), "topic", "district"),
    ("gridlink/v1/410106/PV_1/report", encode(report()), "topic", "device"),
    ("gridlink/v1/410106/pv-0001/ack", b"{}", "topic", "gateway to devices"),
    ("gridlink/v1/410106/pv-0001/config", b"{}", "topic", "gateway to devices"),
    ("elsewhere/x", b"{}", "topic", "gridlink"),
])
def test_rejections_name_what_is_wrong(judge, t, payload, category, words):
    v = judge.decode(t, payload, T)
    assert v.kind == "rejected", v
    assert v.category == category
    assert words in v.reason


def test_a_rejected_report_keeps_its_id_for_the_device_ack(judge):
    v = judge.decode(topic("pv-0001", "report"), encode(report(seq=9, code="99999")), T)
    assert v.kind == "rejected" and v.report_id == "pv-0001:000000000009"
    v = judge.decode(topic("pv-0001", "report"), encode(report(seq=9, device="pv-0002")), T)
    assert v.report_id is None  # another device's id is never echoed


def chunk_payload(sha, n, of, size, data):
    head = json.dumps({"sha256": sha, "n": n, "of": of, "size": size}, separators=(",", ":"))
    return head.encode() + b"\n" + data


def test_photo_chunk(judge):
    photo = bytes(range(256)) * 100
    sha = hashlib.sha256(photo).hexdigest()
    t = topic("pv-0001", "photo/pv-0001:000000000001/1")
    v = judge.decode(t, chunk_payload(sha, 1, 2, len(photo), photo[16384:]), T)
    assert v.kind == "photo", v
    assert (v.data["n"], v.data["total"], v.data["size"]) == (1, 2, len(photo))
    bad = judge.decode(t, chunk_payload(sha, 0, 2, len(photo), photo[:16384]), T)
    assert bad.kind == "rejected" and "topic says 1" in bad.reason
    other = judge.decode(topic("pv-0001", "photo/pv-0002:000000000001/0"),
                         chunk_payload(sha, 0, 2, len(photo), photo[:16384]), T)
    assert other.category == "identity"


def test_track_points(judge):
    track = {"v": 1, "device": "pv-0001", "t0": 1_795_000_000,
             "pts": [[0, 34805000, 113285000, 0], [5, 34805100, 113285200, 550]]}
    v = judge.decode(topic("pv-0001", "track"), encode(track), T)
    assert v.kind == "track"
    t1 = datetime.fromtimestamp(1_795_000_005, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert v.data[1][1:] == (t1, 34.8051, 113.2852, 5.5)
    v = judge.decode(topic("pv-0002", "track"), encode(track), T)
    assert v.category == "identity"


def test_status_and_will(judge):
    status = {"v": 1, "device": "pv-0001", "state": "online", "time": "2026-11-28T02:00:00.000Z",
              "fix": {"lat": 34.8, "lon": 113.29, "alt": None, "mode": 3, "status": 1,
                      "sats": 8, "hdop": 1.0, "age": 0.2},
              "outbox": {"reports": 3, "track": 0}, "disk_free": 10**9, "cpu_temp": 51.0,
              "uptime": 3600, "firmware": "0.1.0", "codebook": "GB/T 47678.5-2026@x",
              "profile": "patrol-vehicle"}
    v = judge.decode(topic("pv-0001", "status"), encode(status), T)
    assert v.kind == "status", v
    assert (v.data["state"], v.data["outbox_reports"], v.data["last_lat"]) == ("online", 3, 34.8)
    from gridlink.gateway.clock import wire_time

    assert v.data["last_seen"] == wire_time(T)    # seen when received, not when judged
    # the fix was taken at the status's time; a status without a time (a device whose
    # clock is not set) dates its fix by its arrival; no fix, no fix time
    assert v.data["last_fix_at"] == "2026-11-28T02:00:00.000Z"
    untimed = judge.decode(topic("pv-0001", "status"), encode({**status, "time": None}), T)
    assert untimed.data["last_fix_at"] == wire_time(T)
    unfixed = judge.decode(topic("pv-0001", "status"), encode({**status, "fix": None}), T)
    assert unfixed.data["last_fix_at"] is None and unfixed.data["last_lat"] is None
    will = judge.decode(topic("pv-0001", "status"),
                        encode({"v": 1, "device": "pv-0001", "state": "offline"}), T)
    assert will.kind == "status" and will.data["state"] == "offline"
    assert will.data["firmware"] is None


TOPICS = st.sampled_from([topic("pv-0001", leaf) for leaf in
                          ("report", "track", "status", "task/result",
                           "photo/pv-0001:000000000001/0")] + ["gridlink/v1/x", "", "#"])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                        max_size=6),
                    max_leaves=20)


def report_like():
    """Reports with one field replaced by arbitrary JSON: near-misses reach deep checks."""
    base = report()
    return st.builds(lambda k, val: {**base, k: val}, st.sampled_from(sorted(base)), JSON)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=TOPICS, payload=st.binary(max_size=1200))
def test_fuzz_arbitrary_bytes_always_get_a_verdict(judge, t, payload):
    v = judge.decode(t, payload, T)
    assert v.kind in ("report", "task/result", "track", "status", "photo", "rejected")
    if v.kind == "rejected":
        assert v.reason and v.category != "internal", v.reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=TOPICS, obj=JSON | report_like())
def test_fuzz_arbitrary_json_always_gets_a_verdict(judge, t, obj):
    payload = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
    v = judge.decode(t, payload, T)
    assert v.kind in ("report", "task/result", "track", "status", "photo", "rejected")
    if v.kind == "rejected":
        assert v.reason and v.category != "internal", v.reason


def test_published_json_schemas_are_held_too(judge):
    from jsonschema import Draft202012Validator

    assert set(judge.schemas) == {"status", "track", "photo", "media"}  # docs/schemas/ loaded
    will = encode({"v": 1, "device": "pv-0001", "state": "offline"})
    assert judge.decode(topic("pv-0001", "status"), will, T).kind == "status"
    strict = Validator(judge.grid_map, judge.codebooks, schemas={
        "status": Draft202012Validator({"properties": {"state": {"const": "online"}}})})
    v = strict.decode(topic("pv-0001", "status"), will, T)
    assert v.kind == "rejected" and v.category == "schema"
    assert v.reason.startswith("state:") and "JSON Schema" in v.reason


def test_the_size_limit_of_a_report_is_the_cores(judge):
    from gridlink.firmware.core.report import MAX_BYTES

    at_limit = judge.decode(topic("pv-0001", "report"), b" " * MAX_BYTES, T)
    over = judge.decode(topic("pv-0001", "report"), b" " * (MAX_BYTES + 1), T)
    assert at_limit.category == "json" and over.category == "size", (at_limit, over)
    assert f"limit is {MAX_BYTES}" in over.reason


def test_the_gateways_topics_are_the_cores_tree():
    from gridlink.firmware.core.topics import PREFIX, parse_topic
    from gridlink.gateway import topics

    assert parse_topic(topics.ack_topic("410106", "pv-0001")) == \
        ("410106", "pv-0001", "ack", None)
    assert parse_topic(topics.task_topic("410106", "pv-0001")) == \
        ("410106", "pv-0001", "task", None)
    for f in topics.subscriptions(shared=False):
        assert f.startswith(PREFIX + "/+/+/"), f


# -- edges the mutation run (tests/mutate.py) showed untested ----------------------------


def padded_to(size, **kw):
    """A report whose encoded form is exactly ``size`` bytes (its text filled up)."""
    base = len(encode(report(text="", **kw)))
    extra = size - base
    wide = min(extra // 3, 256 - (extra % 3)) if extra > 0 else 0
    text = "垃" * wide + "a" * (extra - 3 * wide)
    obj = report(text=text, **kw)
    assert len(encode(obj)) == size and len(text) <= 256
    return obj


def test_a_refused_report_of_exactly_the_size_limit_still_names_its_id(judge):
    obj = padded_to(MAX_REPORT, seq=7, code="99999")        # refused for its class code
    v = judge.decode(topic("pv-0001", "report"), encode(obj), T)
    assert v.kind == "rejected" and v.category != "size", v
    assert v.report_id == "pv-0001:000000000007"            # so the device gets its answer


def test_a_plain_report_on_the_task_result_topic_is_refused(judge):
    v = judge.decode(topic("pv-0001", "task/result"), encode(report(seq=8)), T)
    assert v.kind == "rejected" and "task result must have source 'task'" in v.reason, v


@pytest.mark.parametrize(("source", "task"), [("button", "T-20261128-0001"), ("task", None)])
def test_a_task_and_the_task_source_go_together(judge, source, task):
    obj = report(seq=8, source=source, task=task, result="confirmed")
    v = judge.decode(topic("pv-0001", "task/result"), encode(obj), T)
    assert v.kind == "rejected" and v.category == "schema", v


def test_a_chunk_payload_is_refused_for_size_only_past_its_limit(judge):
    from gridlink.firmware.core.messages import CHUNK_MAX
    from gridlink.gateway.validate import MAX_CHUNK_PAYLOAD

    assert MAX_CHUNK_PAYLOAD == CHUNK_MAX + 200   # a chunk and its header line (protocol)
    t = topic("pv-0001", "photo/pv-0001:000000000001/0")
    at_limit = judge.decode(t, b"x" * MAX_CHUNK_PAYLOAD, T)
    over = judge.decode(t, b"x" * (MAX_CHUNK_PAYLOAD + 1), T)
    assert at_limit.kind == "rejected" and at_limit.category != "size", at_limit
    assert over.kind == "rejected" and over.category == "size", over


def test_a_capture_time_is_old_only_past_thirty_days(judge):
    from gridlink.gateway.clock import wire_time
    from gridlink.gateway.validate import TIME_OLD_S

    assert TIME_OLD_S == 30 * 86400
    received = 1_790_000_000.0
    for captured, flag in ((received - TIME_OLD_S, None), (received - TIME_OLD_S - 1, "old")):
        obj = report(seq=9, time=wire_time(captured))
        v = judge.decode(topic("pv-0001", "report"), encode(obj), received)
        assert v.kind == "report" and v.data["time_flag"] == flag, (captured, v.data)


def test_a_capture_time_is_ahead_only_past_ten_minutes_after_the_receive_second(judge):
    from gridlink.gateway.clock import wire_time
    from gridlink.gateway.validate import TIME_AHEAD_S

    assert TIME_AHEAD_S == 600
    received = 1_790_000_000.25          # the bound counts from the end of its second
    for captured, flag in ((1_790_000_601.0, None), (1_790_000_601.001, "ahead")):
        obj = report(seq=11, time=wire_time(captured))
        v = judge.decode(topic("pv-0001", "report"), encode(obj), received)
        assert v.kind == "report" and v.data["time_flag"] == flag, (captured, v.data)


def test_a_message_judged_without_a_receive_time_is_stamped_now(judge):
    import time

    from gridlink.gateway.clock import parse_iso

    v = judge.decode(topic("pv-0001", "report"), encode(report(seq=10)))
    assert abs(parse_iso(v.data["received_at"]).timestamp() - time.time()) < 5


def test_the_id_of_a_refused_report_is_echoed_only_when_short(judge):
    for length, echoed in ((63, True), (64, False)):
        rid = "pv-0001:" + "9" * (length - len("pv-0001:"))
        payload = json.dumps({"v": 1, "id": rid, "device": "pv-0001"}).encode()
        v = judge.decode(topic("pv-0001", "report"), payload, T)
        assert v.kind == "rejected" and v.report_id == (rid if echoed else None), (length, v)


def test_a_damaged_chunk_is_refused_for_its_report_and_asked_for_again(judge):
    from gridlink.firmware.core import messages

    data = b"\xff" * 100
    chunk = messages.make_photo_chunk("ab" * 32, 1, 2, 16384 + 100, data,
                                      digest=hashlib.sha256(b"other bytes").hexdigest())
    v = judge.decode(topic("pv-0001", "photo/pv-0001:000000000005/1"), chunk, T)
    assert (v.kind, v.category, v.report_id) == ("rejected", "photo_digest",
                                                 "pv-0001:000000000005"), v
    assert v.data["resend"] == ("pv-0001:000000000005", "ab" * 32, 1)


def test_a_capture_before_the_device_was_provisioned_is_flagged_to_the_millisecond(tmp_path):
    from gridlink.gateway.clock import parse_iso

    since = "2026-11-28T02:15:07.250Z"
    judge = Validator(open_map(grid_map_file(tmp_path)), load_books(),
                      provisioned=lambda device: since if device == "pv-0001" else None)
    received = parse_iso(since).timestamp() + 60
    for captured, flag in ((since, None), ("2026-11-28T02:15:07.249Z", "before_provisioning")):
        v = judge.decode(topic("pv-0001", "report"), encode(report(seq=12, time=captured)),
                         received)
        assert v.kind == "report" and v.data["time_flag"] == flag, (captured, v.data)


def test_a_class_of_a_book_the_gateway_serves_devices_is_accepted(tmp_path):
    # the centre sends its devices the next version of their book (--codebook-files), with
    # a class the gateway's own book lacks: the devices' reports coded with it are taken,
    # a class in neither book is still refused by name
    from gridlink.firmware.codebooks import build
    from gridlink.firmware.codebooks import path as book_path
    from gridlink.gateway.update_chunks import CodeBookFiles

    book = json.loads(book_path("GB/T 47678.5-2026").read_text(encoding="utf-8"))
    book["event"]["classes"]["06901"] = ["餐厨垃圾外溢", *book["event"]["classes"]["06010"][1:]]
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "next.json").write_bytes(
        build.dump({**book, "version": build.content_version(book)}))
    (tmp_path / "books" / "not-a-book.json").write_text('{"standard": "GB/T 47678.5-2026", '
                                                         '"version": "x"}')
    grid = open_map(grid_map_file(tmp_path))
    own = Validator(grid, load_books())
    assert own.decode(topic("pv-0001", "report"), encode(report(code="06901")), T).category \
        == "code"
    served = Validator(grid, load_books(),
                       served_books=CodeBookFiles(tmp_path / "books").of_standard)
    assert served.decode(topic("pv-0001", "report"), encode(report(code="06901")), T).kind \
        == "report"
    v = served.decode(topic("pv-0001", "report"), encode(report(seq=2, code="06902")), T)
    assert (v.category, "06902" in v.reason) == ("code", True), v
