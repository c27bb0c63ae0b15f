"""What went wrong on the device reaches the centre: the status ``problems`` counters
(records lost to outbox damage, across restarts), valid for the core validator and the
JSON Schema alike; older statuses without them stay valid."""

import json
from pathlib import Path

import pytest
from gridlink.firmware.core import messages
from gridlink.firmware.core.checks import MessageError
from gridlink.firmware.core.outbox import LOG
from gridlink.firmware.core.report import encode_report, make_report
from gridlink.firmware.device.store import REPORT, Store
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def schema(name):
    resources = [(s["$id"], Resource.from_contents(s)) for s in
                 (json.loads(p.read_text()) for p in SCHEMAS.glob("*.json"))]
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.json").read_text()),
                                registry=Registry().with_resources(resources))


def status(**kw):
    return messages.make_status("pv-0001", "online", "0.1.0", "GB/T 47678.5-2026",
                                "patrol-vehicle", **kw)


def test_a_damaged_report_in_the_outbox_shows_in_the_status_across_restarts(tmp_path):
    store = Store(tmp_path)
    for seq in (1, 2, 3):
        store.append(REPORT, encode_report(make_report(
            "pv-0001", seq, None, 1796500000.0, "event", "GB/T 47678.5-2026", "06010")))
    store.close()
    log = tmp_path / "outbox" / LOG
    raw = bytearray(log.read_bytes())
    raw[len(raw) // 2] ^= 0xFF                       # the middle report goes bad
    log.write_bytes(bytes(raw))
    store = Store(tmp_path)
    assert store.problems()["lost"] == 1 and store.depth()["reports"] == 2
    store.close()
    store = Store(tmp_path)                          # after the restart, still counted
    problems = store.problems()
    store.close()
    assert problems == {"lost": 1, "reissued": 0, "photos_dropped": 0, "failed": 0,
                        "media_dropped": 0}
    msg = status(problems=problems)
    assert messages.validate_status(json.loads(messages.encode(msg))) == msg
    assert list(schema("status").iter_errors(msg)) == []


def test_status_problems_are_optional_and_checked():
    plain = status()
    assert "problems" not in plain and list(schema("status").iter_errors(plain)) == []
    v = schema("status")
    for bad in ({"lost": -1}, {"lost": 10 ** 9 + 1}, {"stolen": 1}, {"lost": 1.5},
                {"lost": True}, []):
        obj = {**plain, "problems": bad}
        with pytest.raises(MessageError):
            messages.validate_status(obj)
        assert list(v.iter_errors(obj)), bad
    edge = {**plain, "problems": {"lost": 10 ** 9, "failed": 0}}
    assert messages.validate_status(edge) == edge and list(v.iter_errors(edge)) == []


def test_received_acks_take_any_status_word_and_the_action_is_keep_unless_stored():
    ack = {"v": 1, "id": "pv-0001:000000000002", "status": "later", "reason": None}
    with pytest.raises(MessageError):
        messages.validate_ack(ack)                   # a gateway may only send known ones
    assert messages.validate_received_ack(ack) == ack
    reused = {**ack, "status": "id_reused", "reason": "id reused: other content"}
    assert messages.validate_ack(reused) == messages.validate_received_ack(reused) == reused
    with pytest.raises(MessageError, match="must say why"):
        messages.validate_received_ack({**reused, "reason": None})
    for status, action in (("accepted", "drop"), ("duplicate", "drop"),
                           ("rejected", "reject"), ("id_reused", "reissue"),
                           ("id reused", "keep"), ("resend", "keep"), ("later", "keep")):
        assert messages.ack_action({"status": status}) == action
    grouped = {"v": 1, "ids": [ack["id"]], "status": "id_reused", "reason": None}
    assert messages.validate_received_ack(grouped) == grouped
    for bad in ("", "x" * 33, "ID_REUSED", "id-reused", 3):
        with pytest.raises(MessageError):
            messages.validate_received_ack({**ack, "status": bad})
    assert messages.validate_received_ack({**ack, "status": "x" * 32})["status"] == "x" * 32
    with pytest.raises(MessageError, match="must say why"):
        messages.validate_received_ack({**ack, "status": "rejected"})
