"""Issue 19 item 1 (gateway side): a repeated report id is a duplicate only when its
content is the same; a reused id (a device whose counter restarted) is refused as
``id_reused``, dead-lettered and counted on the fleet view — never acked as stored."""

import json

import pytest
from gridlink.firmware.codebooks import load_books
from gridlink.firmware.core import messages
from gridlink.gateway.ingest import Ingest, Item
from gridlink.gateway.photos import PhotoDir
from gridlink.gateway.validate import Validator

from tests.support.gateway_rig import count, encode, report, topic
from tests.support.probing_rig import acks_of, http_json, scrape_metrics, start_gateway

T = 1_795_000_000.0
RID = "pv-0001:000000000002"


@pytest.mark.broker
def test_a_reused_id_is_refused_not_taken_for_a_duplicate(broker, store_url, tmp_path,
                                                          listener):
    gw = start_gateway(broker, store_url, tmp_path, http="127.0.0.1:0")
    try:
        first = encode(report(seq=2, text="垃圾满溢"))
        listener.publish(topic("pv-0001", "report"), first)
        acks_of(listener, 1)
        listener.publish(topic("pv-0001", "report"), first)  # the same report again
        listener.publish(topic("pv-0001", "report"), encode(report(seq=2, text="井盖缺失")))
        got = acks_of(listener, 3)
        assert [s for _, s, _ in got] == ["accepted", "duplicate", "id_reused"]
        rid, _, reason = got[2]
        assert rid == RID and reason.startswith(f"id reused: {RID}")
        # the ack reads as a valid protocol ack, one a device must not drop the report for
        ack = messages.decode_for("ack", [p for t, p in listener.messages
                                          if t.endswith("/ack")][-1])
        assert not messages.ack_drops_report(ack)
        (kept,) = gw.store.fetchall("SELECT text FROM reports")
        assert kept["text"] == "垃圾满溢"
        (dead,) = gw.store.fetchall("SELECT reason, payload FROM dead_letters")
        assert dead["reason"] == reason and "井盖缺失" in dead["payload"]
        devices = http_json(gw, "/api/devices")
        (dev,) = [d for d in devices if d["device"] == "pv-0001"]
        assert (dev["id_reused"], dev["refused"]) == (1, 1)
        metrics = scrape_metrics(gw)
        assert 'gridlink_gateway_rejects_total{reason="id_reused"} 1.0' in metrics
    finally:
        gw.stop()


@pytest.fixture
def judged(tmp_path, store):
    judge = Validator(None, load_books())
    ingest = Ingest(store, PhotoDir(tmp_path / "photos"))

    def commit(*payloads):
        batch = [Item(topic("pv-0001", "report"), p, T + i,
                      judge.decode(topic("pv-0001", "report"), p, T + i))
                 for i, p in enumerate(payloads)]
        ingest.commit(batch)
        return [(it.outcome, it.reason) for it in batch]

    return commit


def test_in_one_batch_the_first_holds_the_id(judged, store):
    a, b = encode(report(seq=2, text="甲")), encode(report(seq=2, text="乙"))
    got = judged(a, b, a, b)
    assert [o for o, _ in got] == ["accepted", "id_reused", "duplicate", "id_reused"]
    assert count(store, "dead_letters") == 1  # the same refused message once
    (tally,) = store.fetchall("SELECT refused, id_reused FROM dead_letter_devices")
    assert (tally["refused"], tally["id_reused"]) == (1, 1)


def test_the_same_report_in_another_key_order_is_a_duplicate(judged):
    obj = report(seq=2)
    again = json.dumps(dict(reversed(list(obj.items()))), ensure_ascii=False).encode()
    assert again != encode(obj)
    assert [o for o, _ in judged(encode(obj))] == ["accepted"]
    assert [o for o, _ in judged(again)] == ["duplicate"]


def test_rows_without_a_digest_compare_by_their_payload(judged, store):
    """Reports stored before migration 0003 have no digest: the stored payload decides."""
    judged(encode(report(seq=2)), encode(report(seq=3)))
    with store.connect() as conn:
        conn.execute("UPDATE reports SET digest = NULL")
    got = judged(encode(report(seq=2)), encode(report(seq=3, text="别的")))
    assert [o for o, _ in got] == ["duplicate", "id_reused"]


def test_a_repeat_after_a_reuse_stays_refused(judged):
    judged(encode(report(seq=2, text="甲")))
    assert [o for o, _ in judged(encode(report(seq=2, text="乙")))] == ["id_reused"]
    assert [o for o, _ in judged(encode(report(seq=2, text="乙")))] == ["id_reused"]
