"""Reports the centre files (hotline 12319/12345, 领导交办, 视频, 其他) on SQLite and
PostgreSQL: they wait in the queue like a device's, keep the caller's details apart, and
are 立案 only once a 核实 task confirmed them."""

import pytest
from gridlink.gateway.queue import Conflict, Invalid

from .conftest import DEVICE

CALL = {"source": "12345", "code": "06034", "lat": 34.8205, "lon": 113.2871,
        "text": "小区门口有废弃车辆", "caller_name": "王女士", "caller_phone": "138 0000 0000",
        "address": "上街区中心路 12 号"}


def file(desk, **kw):
    return desk.sources.file(**{**CALL, **kw}, operator="op-a", audit=desk.record("op-a"))


def test_a_hotline_complaint_waits_in_the_queue_with_its_caller_apart(desk):
    rid = file(desk)
    assert rid == "centre:000000000001"
    report = desk.queue.get(rid)
    assert (report["source"], report["kind"], report["code"], report["state"]) == (
        "12345", "event", "06034", "pending")
    assert report["text"] == "小区门口有废弃车辆" and report["device"] == "centre"
    caller = desk.sources.caller(rid)
    assert (caller["name"], caller["phone"], caller["created_by"]) == (
        "王女士", "138 0000 0000", "op-a")
    with desk.store.connect() as conn:
        payload = conn.execute(desk.store.sql("SELECT payload FROM reports WHERE id = ?"),
                               (rid,)).fetchone()[0]
    assert "138" not in str(payload) and "王女士" not in str(payload)
    assert desk.trail.entries(target=f"report:{rid}")[0]["action"] == "report.file"
    assert file(desk, source="视频") == "centre:000000000002"


def test_a_complaint_is_accepted_only_after_a_confirmed_verification(desk):
    rid = file(desk)
    with pytest.raises(Conflict, match=r"立案 only once a 核实 .* came back confirmed"):
        desk.queue.accept(rid, "op-a")
    assert desk.queue.get(rid)["state"] == "pending" and desk.book.by_report(rid) is None
    first = desk.desk.create(type="verify", report_id=rid, device=DEVICE, operator="op-a")
    desk.answer(first["id"], "not_found")
    with pytest.raises(Conflict, match="核实"):
        desk.queue.accept(rid, "op-a")
    second = desk.desk.create(type="verify", report_id=rid, device=DEVICE, operator="op-a")
    desk.answer(second["id"], "confirmed")
    case_no = desk.queue.accept(rid, "op-a")["case_no"]
    case = desk.book.get(case_no)
    assert (case["report_id"], case["state"], case["code"]) == (rid, "registered", "06034")
    # a device's report needs no 核实 before 立案
    assert desk.queue.accept(desk.report(), "op-a")["state"] == "accepted"


def test_a_citizens_kiosk_report_is_accepted_only_after_a_confirmed_verification(desk):
    rid = desk.report(source="citizen", device="ft-0001")
    with pytest.raises(Conflict, match=r"\(citizen\) is 立案 only once a 核实"):
        desk.queue.accept(rid, "op-a")
    assert desk.queue.get(rid)["state"] == "pending"
    task = desk.desk.create(type="verify", report_id=rid, device=DEVICE, operator="op-a")
    desk.answer(task["id"], "confirmed")
    assert desk.queue.accept(rid, "op-a")["state"] == "accepted"


def test_the_same_ticket_files_one_report(desk):
    one = file(desk, key="12345-20261128-0042")
    assert file(desk, key="12345-20261128-0042", text="again") == one
    assert desk.queue.counts()["pending"] == 1


@pytest.mark.parametrize(("change", "why"), [
    ({"source": "微信"}, "source: one of 12319, 12345"),
    ({"code": "99999"}, "not a class of GB/T 47678.5-2026"),
    ({"lat": 91}, "lat: a number"), ({"lon": "113"}, "lon: a number"),
    ({"caller_phone": "call me"}, "caller_phone"), ({"text": "字" * 257}, "text"),
    ({"address": "x" * 201}, "address")])
def test_a_bad_complaint_is_refused_and_nothing_is_filed(desk, change, why):
    kept = file(desk)
    with pytest.raises(Invalid, match=why):
        file(desk, **change)
    assert desk.queue.counts()["pending"] == 1 and desk.queue.get(kept)["text"] == CALL["text"]
