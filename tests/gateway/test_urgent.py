"""Urgent reports (突发事件) at the gateway: the field judged, the urgent lane committed
ahead of the queue, and the intake queue listing them above every other report (SQLite
and PostgreSQL)."""

import json

import pytest
from gridlink.firmware.codebooks import load_books
from gridlink.gateway.ingest import Ingest, Item
from gridlink.gateway.photos import PhotoDir
from gridlink.gateway.queue import MIGRATIONS, IntakeQueue
from gridlink.gateway.runtime import GatewayRuntime, is_urgent_message
from gridlink.gateway.validate import Validator

from tests.support.gateway_rig import encode, report, topic


def _canonical(obj):
    from gridlink.firmware.core import canonjson

    return canonjson.dumps(obj)


@pytest.mark.parametrize("fast", [True, False])
def test_the_field_reaches_the_row_and_a_bad_value_is_refused_by_name(fast, monkeypatch):
    if not fast:
        monkeypatch.setattr("gridlink.gateway.validate.check_report", lambda payload: None)
    judge = Validator(codebooks=load_books())
    v = judge.decode(topic("pv-0001", "report"), encode(report(seq=1, urgent=True)), 1.0)
    assert v.kind == "report" and v.data["urgent"] == 1
    v = judge.decode(topic("pv-0001", "report"), encode(report(seq=2)), 1.0)
    assert v.kind == "report" and v.data["urgent"] == 0
    for bad in (False, "yes", 1, None):
        v = judge.decode(topic("pv-0001", "report"), encode(report(seq=3, urgent=bad)), 1.0)
        assert v.kind == "rejected" and v.category == "schema"
        assert v.reason.startswith("urgent: must be true when present"), v.reason


def test_the_lane_takes_what_devices_send_as_urgent():
    urgent = _canonical(report(urgent=True))
    assert is_urgent_message(topic("pv-0001", "report"), urgent)
    assert is_urgent_message(topic("pv-0001", "task/result"), urgent)
    assert not is_urgent_message(topic("pv-0001", "report"), _canonical(report()))
    assert not is_urgent_message(topic("pv-0001", "status"), urgent)
    assert not is_urgent_message(topic("pv-0001", "report"), memoryview(urgent))


def test_an_urgent_report_is_committed_ahead_of_everything_queued(tmp_path):
    """300 routine reports wait in the writer's queue when an urgent one arrives: the
    writer's next batch is the urgent one alone."""
    from gridlink.gateway.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/i.sqlite")
    store.migrate()
    rt = GatewayRuntime(broker_url="mqtt://127.0.0.1:1", store=store,
                        validator=Validator(codebooks=load_books()), photo_dir=tmp_path,
                        batch_max=100)
    try:
        def arrive(seq, **kw):
            payload = _canonical(report(seq=seq, **kw))
            rt._on_message(topic("pv-0001", "report"), payload, seq, 1, (), 0)

        for seq in range(1, 301):
            arrive(seq)
        arrive(301, urgent=True)
        first = rt._collect()
        assert [it.verdict.report_id for it in first] == ["pv-0001:000000000301"]
        rt.ingest.commit(first)
        assert store.fetchall("SELECT id, urgent FROM reports") == [
            {"id": "pv-0001:000000000301", "urgent": 1}]
        second = rt._collect()
        assert len(second) == 100 and second[0].verdict.report_id.endswith(":000000000001")
        for seq in range(302, 305):
            arrive(seq)
        arrive(305, urgent=True)        # behind 203 routine ones: the next batch again
        batches = [rt._collect() for _ in range(4)]
        assert [len(b) for b in batches] == [1, 100, 100, 3]
        assert batches[0][0].verdict.report_id.endswith(":000000000305")
        assert rt.queue_depth() == 305 - 0   # received, none finished by the writer loop
    finally:
        store.close()


def _commit(store, tmp_path, reports):
    judge = Validator(codebooks=load_books())
    items = [Item(topic(r["device"], "report"), encode(r), 1_795_000_000.0 + r["seq"],
                  judge.decode(topic(r["device"], "report"), encode(r),
                               1_795_000_000.0 + r["seq"])) for r in reports]
    Ingest(store, PhotoDir(tmp_path / "photos")).commit(items)
    return [r["id"] for r in reports]


def _minute(seq, urgent=False):
    obj = report(seq=seq, **({"urgent": True} if urgent else {}))
    obj["time"] = f"2026-11-28T02:{seq:02d}:00.000Z"
    return obj


def test_the_queue_lists_urgent_reports_first_on_every_page(store, tmp_path):
    store.migrate(extra=MIGRATIONS)
    ids = _commit(store, tmp_path, [_minute(s, urgent=s in (2, 5)) for s in range(1, 9)])
    q = IntakeQueue(store)

    def page(**kw):
        return [it["id"][-2:] for it in q.list(**kw)["items"]]

    assert page() == ["05", "02", "08", "07", "06", "04", "03", "01"]   # newest first
    assert page(order="asc") == ["02", "05", "01", "03", "04", "06", "07", "08"]
    assert page(limit=3) == ["05", "02", "08"]
    assert page(limit=3, offset=1) == ["02", "08", "07"]
    assert page(limit=3, offset=3) == ["07", "06", "04"]
    assert page(code="0601", limit=2, offset=6) == ["03", "01"]
    assert q.list()["items"][0]["urgent"] is True
    assert q.list()["items"][2]["urgent"] is False
    assert q.counts()["urgent_pending"] == 2
    q.reject(ids[4], "centre", reason="重复上报")
    assert page() == ["02", "08", "07", "06", "04", "03", "01"]
    assert page(status="rejected") == ["05"]
    assert q.counts()["urgent_pending"] == 1
    assert q.list()["total"] == 7
    assert json.loads(store.fetchall("SELECT payload FROM reports WHERE id = ?",
                                     (ids[1],))[0]["payload"])["urgent"] is True
