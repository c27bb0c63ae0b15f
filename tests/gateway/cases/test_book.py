"""The case book on SQLite and PostgreSQL: opening at 立案, departments, deadlines and the
on-time record of each stage, the 核查 task's result, and each refusal's message."""

import threading
from datetime import timedelta

import pytest
from gridlink.gateway.api import MIGRATIONS
from gridlink.gateway.cases.book import CaseBook
from gridlink.gateway.queue import MIGRATIONS as QUEUE
from gridlink.gateway.queue import Conflict, IntakeQueue, Invalid, NotFound
from gridlink.gateway.tasks import MIGRATIONS as TASKS

from tests.support.intake_api import T0, add_report, iso

PHOTO = "cd" * 32
HOUR = 3600


def test_a_case_opens_at_acceptance_with_its_report_class(desk):
    case_no, rid = desk.case(code="06010")
    case = desk.book.get(case_no)
    assert (case["report_id"], case["state"], case["label"]) == (rid, "registered", "立案")
    assert (case["kind"], case["code"], case["grid"]) == ("event", "06010", "410106001001001")
    assert case["actions"] == ["dispatch", "defer", "void"]
    assert [(h["actor"], h["action"], h["to_state"]) for h in case["history"]] == [
        ("op-a", "register", "registered")]
    assert desk.book.by_report(rid)["case_no"] == case_no
    assert desk.book.by_report(desk.report()) is None


def test_reports_accepted_before_the_case_table_become_cases(store):
    queue = IntakeQueue(store)  # no case book: an older gateway
    store.migrate(extra=QUEUE + TASKS)
    rid = add_report(store, 1, code="01001", kind="component")
    queue.accept(rid, "op-old", case_no="OLD-1")
    store.migrate(extra=MIGRATIONS)
    case = CaseBook(store).get("OLD-1")
    assert (case["report_id"], case["state"], case["code"]) == (rid, "registered", "01001")
    assert case["history"][0]["actor"] == "op-old"


def test_dispatch_needs_a_department_that_handles_the_class(desk):
    case_no, _ = desk.case(code="06010")
    desk.book.put_department("roads", "市政处", ["01", "0201"])
    with pytest.raises(Conflict, match=r"roads \(市政处\) does not handle class 06010: "
                                       r"it handles 01, 0201"):
        desk.act(case_no, "dispatch", department="roads")
    with pytest.raises(Invalid, match="no department 'nobody'"):
        desk.act(case_no, "dispatch", department="nobody")
    with pytest.raises(Invalid, match="department: required"):
        desk.act(case_no, "dispatch")
    assert desk.book.get(case_no)["state"] == "registered"  # nothing lost
    done = desk.act(case_no, "dispatch", department="sanitation", note="请尽快处理")
    assert (done["state"], done["department"]) == ("dispatched", "sanitation")
    assert done["history"][-1]["detail"]["department_name"] == "环卫处"


@pytest.mark.parametrize(("photos", "why"), [
    (None, "1 to 8 photos"), ([], "1 to 8 photos"), (["x" * 64], "sha256"),
    (["ftp://a/b.jpg"], "http"), ([PHOTO] * 9, "1 to 8")])
def test_feedback_needs_photos(desk, photos, why):
    case_no, _ = desk.case()
    desk.act(case_no, "dispatch", department="sanitation")
    desk.act(case_no, "start")
    with pytest.raises(Invalid, match=why):
        desk.act(case_no, "feedback", photos=photos)
    assert desk.book.get(case_no)["state"] == "handling"
    done = desk.act(case_no, "feedback", photos=[PHOTO, "https://dept.example/p/1.jpg"],
                    note="已清运")
    assert done["history"][-1]["detail"]["photos"] == [PHOTO, "https://dept.example/p/1.jpg"]


@pytest.mark.parametrize(("action", "kw"), [("defer", {}), ("void", {}),
                                            ("defer", {"reason": "  "}),
                                            ("override", {"state": "closed"})])
def test_a_reason_is_required(desk, action, kw):
    case_no, _ = desk.case()
    with pytest.raises(Invalid, match="reason: required"):
        desk.act(case_no, action, **kw)
    assert desk.book.get(case_no)["state"] == "registered"


def test_unknown_case_and_bad_override_state(desk):
    with pytest.raises(NotFound, match="no case 'nope'"):
        desk.act("nope", "start")
    case_no, _ = desk.case()
    with pytest.raises(Conflict, match="state to set must be one of"):
        desk.act(case_no, "override", state="archived", reason="x")
    with pytest.raises(Invalid, match="made by a 核查 task"):
        desk.act(case_no, "resolved")


def test_each_stage_records_on_time_or_late(desk):
    desk.book.put_deadline("dispatch", "default", HOUR)
    desk.book.put_deadline("handle", "06", 4 * HOUR)
    desk.book.put_deadline("handle", "06010", 2 * HOUR)  # the longest prefix wins
    desk.book.put_deadline("check", "default", HOUR)
    case_no, rid = desk.case(code="06010")
    assert desk.book.get(case_no)["stage_due"] == iso(T0 + timedelta(seconds=HOUR))
    desk.clock.advance(HOUR - 1)
    dispatched = desk.act(case_no, "dispatch", department="sanitation")
    assert dispatched["history"][-1]["on_time"] is True
    assert dispatched["history"][-1]["stage"] == "dispatch"
    desk.clock.advance(HOUR)
    desk.act(case_no, "start")  # within the handle stage: nothing judged
    assert desk.book.get(case_no)["history"][-1]["on_time"] is None
    desk.clock.advance(HOUR + 1)  # 2 h and 1 s after 派遣: late
    reported = desk.act(case_no, "feedback", photos=[PHOTO])
    assert (reported["history"][-1]["stage"], reported["history"][-1]["on_time"]) == (
        "handle", False)
    task = desk.check(rid)["id"]
    desk.clock.advance(60)
    desk.answer(task, "resolved")
    closed = desk.book.get(case_no)
    last = closed["history"][-1]
    assert (closed["state"], last["actor"], last["stage"], last["on_time"]) == (
        "closed", "device:pv-0001", "check", True)
    assert closed["stage_due"] is None


def test_an_explicit_dispatch_deadline_wins_and_must_be_ahead(desk):
    desk.book.put_deadline("handle", "default", 10 * HOUR)
    case_no, _ = desk.case()
    with pytest.raises(Invalid, match="has passed"):
        desk.act(case_no, "dispatch", department="sanitation", deadline="2026-01-01T00:00:00Z")
    with pytest.raises(Invalid, match="not both"):
        desk.act(case_no, "dispatch", department="sanitation", deadline="2027-01-01T00:00:00Z",
                 deadline_s=60)
    done = desk.act(case_no, "dispatch", department="sanitation", deadline_s=HOUR)
    assert done["stage_due"] == done["history"][-1]["detail"]["deadline"]
    assert done["stage_due"] == iso(T0 + timedelta(seconds=HOUR))


@pytest.mark.parametrize(("stage", "code", "seconds", "why"), [
    ("close", "06", 60, "stage"), ("handle", "6", 60, "code"), ("handle", "x1", 60, "code"),
    ("handle", "06", 59, "seconds"), ("handle", "06", True, "seconds")])
def test_bad_deadlines_are_refused(desk, stage, code, seconds, why):
    desk.book.put_deadline("handle", "06", 600)
    with pytest.raises(Invalid, match=why):
        desk.book.put_deadline(stage, code, seconds)
    assert [(d["stage"], d["code"], d["seconds"]) for d in desk.book.deadlines()] == [
        ("handle", "06", 600)]


@pytest.mark.parametrize(("dept", "name", "classes", "why"), [
    ("A", "x", ["06"], "department id"), ("ok", " ", ["06"], "name"),
    ("ok", "x", [], "classes"), ("ok", "x", ["6"], "2 to 17 digits")])
def test_bad_departments_are_refused(desk, dept, name, classes, why):
    with pytest.raises(Invalid, match=why):
        desk.book.put_department(dept, name, classes)
    assert [d["id"] for d in desk.book.departments()] == ["parks", "sanitation"]


def test_unresolved_check_sends_the_case_back_and_a_second_round_closes_it(desk):
    desk.book.put_deadline("handle", "default", 2 * HOUR)
    case_no, rid = desk.case()
    desk.act(case_no, "dispatch", department="sanitation")
    desk.act(case_no, "start")
    desk.act(case_no, "feedback", photos=[PHOTO])
    first = desk.check(rid)["id"]
    desk.clock.advance(600)
    desk.answer(first, "unresolved")
    rework = desk.book.get(case_no)
    assert rework["state"] == "rework" and rework["label"] == "返工"
    # 返工 gives the department a new handling deadline
    assert rework["stage"] == "handle" and rework["stage_since"] == iso(
        T0 + timedelta(seconds=600))
    desk.act(case_no, "start")
    desk.act(case_no, "feedback", photos=[PHOTO])
    second = desk.check(rid)["id"]
    desk.answer(first, "resolved")  # a late answer to the old 核查 moves nothing
    assert desk.book.get(case_no)["state"] == "checking"
    desk.answer(second, "resolved")
    done = desk.book.get(case_no)
    assert done["state"] == "closed"
    assert [h["action"] for h in done["history"]] == [
        "register", "dispatch", "start", "feedback", "check", "unresolved", "start",
        "feedback", "check", "resolved"]
    # the device's moves are on the audit trail in its name
    entries = desk.trail.entries(target=f"case:{case_no}")
    assert [(e["actor"], e["action"]) for e in entries][-1] == ("device:pv-0001", "case.resolved")


def test_two_people_moving_one_case_at_once_one_wins(desk):
    case_no, _ = desk.case()
    winners, refusals = [], []
    def go(dept):
        try:
            winners.append(desk.act(case_no, "dispatch", department=dept)["department"])
        except Conflict as exc:
            refusals.append(str(exc))

    threads = [threading.Thread(target=go, args=(d,)) for d in ("sanitation", "parks")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1 and len(refusals) == 1
    assert "派遣 (dispatched)" in refusals[0]
    case = desk.book.get(case_no)
    assert case["department"] == winners[0] and len(case["history"]) == 2


def test_task_types_fit_the_case(desk):
    rid = desk.report()
    verify = desk.desk.create(type="verify", report_id=rid, operator="lead")
    assert verify["type"] == "verify"
    with pytest.raises(Conflict, match=r"核查 .* only after 处置反馈: report .* not a case"):
        desk.desk.create(type="check", report_id=rid)
    case_no = desk.queue.accept(rid, "op-a")["case_no"]
    with pytest.raises(Conflict, match=f"核实 .* only before 立案: report {rid} is case "
                                       f"{case_no}"):
        desk.desk.create(type="verify", report_id=rid)
    with pytest.raises(Conflict, match="cannot check"):
        desk.desk.create(type="check", report_id=rid)
    rejected = desk.report()
    desk.queue.reject(rejected, "op-a", reason="重复")
    with pytest.raises(Conflict, match="is rejected"):
        desk.desk.create(type="verify", report_id=rejected)
    assert [t["id"] for t in desk.desk.list()] == [verify["id"]]


def test_a_deadline_in_working_time_skips_nights_and_the_calendars_holidays(desk):
    # T0 is 2026-11-28 02:00 UTC = 10:00 Saturday in Beijing; that Saturday is worked (调休)
    # and Monday the 30th is a holiday
    desk.book.put_day("2026-11-28", "workday", "调休")
    desk.book.put_day("2026-11-30", "holiday")
    desk.book.put_deadline("dispatch", "default", 4 * HOUR, clock="working")
    case_no, _ = desk.case()
    # 10:00-12:00 and 14:00-16:00 Saturday (Beijing) = 08:00 UTC
    assert desk.book.get(case_no)["stage_due"] == "2026-11-28T08:00:00.000Z"
    desk.book.put_deadline("dispatch", "default", 6 * HOUR, clock="working")
    second, _ = desk.case()
    # 10:00-17:30 Saturday is 5.5 h; Sunday off, Monday a holiday: Tuesday 09:00 Beijing
    assert desk.book.get(second)["stage_due"] == "2026-12-01T01:00:00.000Z"
    assert [(d["day"], d["kind"]) for d in desk.book.calendar()] == [
        ("2026-11-28", "workday"), ("2026-11-30", "holiday")]
    with pytest.raises(Invalid, match="YYYY-MM-DD"):
        desk.book.put_day("2026-02-30", "holiday")
    with pytest.raises(Invalid, match="holiday or workday"):
        desk.book.put_day("2026-12-01", "vacation")
    with pytest.raises(Invalid, match="clock"):
        desk.book.put_deadline("handle", "default", HOUR, clock="lunar")
    desk.book.delete_day("2026-11-30")
    with pytest.raises(NotFound):
        desk.book.delete_day("2026-11-30")
    assert len(desk.book.calendar()) == 1


def test_cases_past_their_stage_deadline_are_flagged_and_found(desk):
    desk.book.put_deadline("dispatch", "default", HOUR)
    late, _ = desk.case()
    desk.clock.advance(HOUR - 60)
    fresh, _ = desk.case()
    desk.clock.advance(61)
    assert desk.book.get(late)["overdue"] and not desk.book.get(fresh)["overdue"]
    assert [c["case_no"] for c in desk.book.list(overdue=True)["items"]] == [late]
    assert [c["case_no"] for c in desk.book.list(overdue=False)["items"]] == [fresh]
    desk.act(late, "dispatch", department="sanitation")  # no handle deadline: not overdue
    assert desk.book.list(overdue=True)["total"] == 0
    assert desk.book.get(late)["history"][-1]["on_time"] is False
