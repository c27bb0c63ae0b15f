"""The case routes over HTTP on SQLite and PostgreSQL: the loop from 立案 to 结案 (and one
返工) in the names of the people who act, 409 with the reason for a move the state does not
allow, and Open311 status following the case (closed only once it is closed)."""

import pytest
from gridlink.gateway.api import create_app
from gridlink.gateway.httpserver import BackgroundServer

from tests.support.intake_api import Api, Clock, Tokens, add_report

GRID = "410106001001001"
PHOTO = "ef" * 32
PEOPLE = {"op-a": ("acceptor",), "disp": ("dispatcher",), "dept": ("department",),
          "lead": ("shift_lead",)}


@pytest.fixture
def served(store):
    app = create_app(store, clock=Clock(), poll_interval=0.2)
    with BackgroundServer(app) as server:
        api = Api(server.url, Tokens(store, roles=PEOPLE))
        api.call("PUT", f"/api/assignments/{GRID}", {"device": "pv-0001"}, user="lead")
        api.call("PUT", "/api/departments/sanitation", {"name": "环卫处", "classes": ["06"]},
                 user="lead")
        yield api, app


def answer(app, store, seq, task_id, result):
    rid = add_report(store, seq, source="task", task=task_id, result=result)
    app.state.on_report([{"id": rid, "device": "pv-0001", "source": "task", "task": task_id,
                          "result": result}])


def open311(api, rid):
    status, found = api.get(f"/open311/v2/requests/{rid}.json")
    assert status == 200
    return found[0]


def test_the_loop_from_acceptance_to_closing(served, store):
    api, app = served
    rid = add_report(store, 1, grid=GRID, code="06010")
    status, decision = api.call("POST", f"/api/reports/{rid}/accept", {}, user="op-a")
    assert status == 200
    case_no = decision["case_no"]
    assert api.get(f"/api/reports/{rid}")[1]["case"]["state"] == "registered"

    status, case = api.call("POST", f"/api/cases/{case_no}/dispatch",
                            {"department": "sanitation", "deadline_s": 7200}, user="disp")
    assert status == 200 and case["state"] == "dispatched"
    assert open311(api, rid)["agency_responsible"] == "环卫处"
    assert open311(api, rid)["expected_datetime"] == case["stage_due"]
    assert api.call("POST", f"/api/cases/{case_no}/start", {}, user="dept")[0] == 200
    status, case = api.call("POST", f"/api/cases/{case_no}/feedback",
                            {"note": "已清运", "photos": [PHOTO]}, user="dept")
    assert status == 200 and case["state"] == "reported"

    status, sent = api.call("POST", f"/api/cases/{case_no}/check", {"text": "核查清运"},
                            user="lead")
    assert status == 201, sent
    task = sent["task"]
    assert (task["type"], task["device"], task["report_id"]) == ("check", "pv-0001", rid)
    assert sent["case"]["state"] == "checking" and sent["case"]["check_task"] == task["id"]
    assert open311(api, rid)["status"] == "open"

    answer(app, store, 2, task["id"], "resolved")
    status, case = api.get(f"/api/cases/{case_no}")
    assert case["state"] == "closed" and case["label"] == "结案"
    assert [(h["actor"], h["action"]) for h in case["history"]] == [
        ("op-a", "register"), ("disp", "dispatch"), ("dept", "start"), ("dept", "feedback"),
        ("lead", "check"), ("device:pv-0001", "resolved")]
    found = open311(api, rid)
    assert found["status"] == "closed" and found["status_notes"] == f"结案 {case_no}"

    moves = [("disp", "case.dispatch"), ("dept", "case.start"), ("dept", "case.feedback"),
             ("lead", "case.check"), ("device:pv-0001", "case.resolved")]
    _, entries = api.get(f"/api/audit?target=case:{case_no}")
    assert [(e["actor"], e["action"]) for e in entries] == moves
    # the report's history goes on past 立案: its case's moves and its 核查 task
    _, history = api.get(f"/api/reports/{rid}/history")
    assert [(e["actor"], e["action"]) for e in history["entries"]] == [
        ("op-a", "report.accept"), *moves[:4], ("lead", "task.create"), moves[4]]


def test_a_check_result_closes_the_open311_request_only_with_the_case(served, store):
    """Before: a 核查 task's "resolved" closed the request while intake still said 立案."""
    api, app = served
    rid = add_report(store, 1, grid=GRID, code="06010")
    status, body = api.post("/api/tasks", {"type": "check", "report_id": rid})
    assert status == 409 and "only after 处置反馈" in body["detail"]
    case_no = api.call("POST", f"/api/reports/{rid}/accept", {}, user="op-a")[1]["case_no"]
    status, body = api.post("/api/tasks", {"type": "check", "report_id": rid})
    assert status == 409 and "立案 (registered)" in body["detail"]
    assert body["allowed"] == ["dispatch", "defer", "void"]
    api.call("POST", f"/api/cases/{case_no}/dispatch", {"department": "sanitation"}, user="disp")
    api.call("POST", f"/api/cases/{case_no}/start", {}, user="dept")
    api.call("POST", f"/api/cases/{case_no}/feedback", {"photos": [PHOTO]}, user="dept")
    # the tasks route sends the same 核查, and the case follows
    status, task = api.post("/api/tasks", {"type": "check", "report_id": rid})
    assert status == 201
    answer(app, store, 2, task["id"], "unresolved")
    assert api.get(f"/api/cases/{case_no}")[1]["state"] == "rework"
    found = open311(api, rid)
    assert found["status"] == "open" and found["status_notes"] == f"返工 {case_no}"


def test_a_move_the_state_does_not_allow_is_409_with_the_reason(served, store):
    api, _ = served
    rid = add_report(store, 1, grid=GRID)
    case_no = api.call("POST", f"/api/reports/{rid}/accept", {}, user="op-a")[1]["case_no"]
    status, body = api.call("POST", f"/api/cases/{case_no}/feedback", {"photos": [PHOTO]},
                            user="dept")
    assert status == 409
    assert body["detail"] == (
        f"case {case_no}: cannot feedback (处置反馈): the case is 立案 (registered), and "
        "feedback is only from 处置中 (handling); from 立案 (registered) only dispatch, "
        "defer, void")
    assert (body["state"], body["case_no"]) == ("registered", case_no)
    status, body = api.call("POST", f"/api/cases/{case_no}/void", {"reason": "重复"},
                            user="lead")
    assert status == 200 and body["state"] == "voided"
    status, body = api.call("POST", f"/api/cases/{case_no}/dispatch",
                            {"department": "sanitation"}, user="disp")
    assert status == 409 and "is final" in body["detail"]
    status, body = api.call("POST", f"/api/cases/{case_no}/override",
                            {"state": "registered", "reason": "误作废"}, user="lead")
    assert status == 200 and body["state"] == "registered"
    assert body["history"][-1]["reason"] == "误作废"
    status, body = api.get("/api/cases/NO-SUCH")
    assert status == 404 and "NO-SUCH" in body["detail"]
    status, page = api.get("/api/cases?state=registered")
    assert [c["case_no"] for c in page["items"]] == [case_no] and page["total"] == 1


def test_departments_and_deadlines_over_the_api(served):
    api, _ = served
    status, body = api.call("PUT", "/api/deadlines/handle/06", {"seconds": 7200}, user="lead")
    assert status == 200 and body["seconds"] == 7200
    status, body = api.call("PUT", "/api/deadlines/handle/default", {"seconds": 86400},
                            user="lead")
    assert status == 200
    _, listed = api.get("/api/deadlines")
    assert [(d["stage"], d["code"], d["seconds"]) for d in listed] == [
        ("handle", "default", 86400), ("handle", "06", 7200)]
    status, _ = api.call("PUT", "/api/departments/roads", {"name": "市政", "classes": ["x"]},
                         user="lead")
    assert status == 400
    _, depts = api.get("/api/departments")
    assert [d["id"] for d in depts] == ["sanitation"]


def test_a_hotline_complaint_becomes_a_case_after_verification(served, store):
    api, app = served
    status, report = api.call("POST", "/api/reports", {
        "source": "12319", "code": "06034", "lat": 34.8205, "lon": 113.2871,
        "text": "废弃车辆", "caller_name": "李先生", "caller_phone": "13900000000",
        "key": "12319-0001"}, user="op-a")
    assert status == 201, report
    rid = report["id"]
    assert (report["source"], report["state"], report["caller"]["phone"]) == (
        "12319", "pending", "13900000000")
    status, body = api.call("POST", f"/api/reports/{rid}/accept", {}, user="op-a")
    assert status == 409 and "核实" in body["detail"]
    assert api.get(f"/api/reports/{rid}")[1]["state"] == "pending"
    status, task = api.post("/api/tasks", {"type": "verify", "report_id": rid,
                                           "device": "pv-0001"})
    assert status == 201
    answer(app, store, 1, task["id"], "confirmed")
    status, decision = api.call("POST", f"/api/reports/{rid}/accept", {}, user="op-a")
    assert status == 200 and decision["state"] == "accepted"
    status, case = api.get(f"/api/cases/{decision['case_no']}")
    assert case["report_id"] == rid and case["code"] == "06034"
    status, body = api.call("POST", "/api/reports", {"source": "微信", "code": "06034",
                                                     "lat": 34.8, "lon": 113.2}, user="op-a")
    assert status == 422 and "source" in str(body["detail"])
    assert api.get("/api/reports?status=all")[1]["total"] == 2  # the complaint and the result


def test_the_working_calendar_over_the_api(served):
    api, _ = served
    status, day = api.call("PUT", "/api/calendar/2026-10-01", {"kind": "holiday",
                                                               "note": "国庆节"}, user="lead")
    assert status == 200 and day["note"] == "国庆节"
    status, body = api.call("PUT", "/api/calendar/2026-02-30", {"kind": "holiday"},
                            user="lead")
    assert status == 400 and "YYYY-MM-DD" in body["detail"]
    status, body = api.call("PUT", "/api/deadlines/check/default",
                            {"seconds": 7200, "clock": "working"}, user="lead")
    assert status == 200 and body["clock"] == "working"
    assert [d["day"] for d in api.get("/api/calendar")[1]] == ["2026-10-01"]
    assert api.call("DELETE", "/api/calendar/2026-10-01", user="lead")[0] == 204
    assert api.call("DELETE", "/api/calendar/2026-10-01", user="lead")[0] == 404


def test_only_the_departments_own_accounts_act_for_it(served, store):
    api, _ = served
    api.tokens.roles.update({"dept-b": ("department",)})
    status, dept = api.call("PUT", "/api/departments/sanitation", {
        "name": "环卫处", "classes": ["06"], "accounts": ["dept"]}, user="lead")
    assert status == 200 and dept["accounts"] == ["dept"]
    status, body = api.call("PUT", "/api/departments/sanitation", {
        "name": "环卫处", "classes": ["06"], "accounts": ["Not A Name"]}, user="lead")
    assert status == 400 and "accounts: at most 100 user names" in body["detail"]
    assert api.get("/api/departments")[1][0]["accounts"] == ["dept"]
    rid = add_report(store, 1, grid=GRID)
    case_no = api.call("POST", f"/api/reports/{rid}/accept", {}, user="op-a")[1]["case_no"]
    api.call("POST", f"/api/cases/{case_no}/dispatch", {"department": "sanitation"}, user="disp")
    status, body = api.call("POST", f"/api/cases/{case_no}/start", {}, user="dept-b")
    assert status == 403
    assert body["detail"] == (f"dept-b does not act for the department case {case_no} is "
                              "dispatched to")
    assert api.get(f"/api/cases/{case_no}")[1]["state"] == "dispatched"
    status, case = api.call("POST", f"/api/cases/{case_no}/start", {}, user="dept")
    assert status == 200 and case["state"] == "handling"


def test_a_duplicate_merged_over_http_stays_with_the_case(served, store):
    """``POST /api/reports/{id}/merge``: the case lists both reports, the merged one says
    where it went and follows the case on Open311; a bad merge is refused with why."""
    api, _app = served
    first = add_report(store, 1, grid=GRID, code="06010")
    again = add_report(store, 2, grid=GRID, code="06010", lat=34.8206)   # ~11 m north
    status, page = api.get("/api/reports")
    assert status == 200
    assert {it["id"]: it["likely_same"] for it in page["items"]} == {first: [again],
                                                                     again: [first]}
    case_no = api.call("POST", f"/api/reports/{first}/accept", {}, user="op-a")[1]["case_no"]
    status, body = api.call("POST", f"/api/reports/{again}/merge", {"into": again},
                            user="op-a")
    assert (status, body["detail"]) == (409, f"cannot merge {again} into itself")
    status, body = api.call("POST", f"/api/reports/{again}/merge", {}, user="op-a")
    assert status == 422
    status, body = api.call("POST", f"/api/reports/{again}/merge", {"into": first},
                            user="op-a")
    assert (status, body["into"], body["merged_by"]) == (200, first, "op-a")
    assert api.get(f"/api/cases/{case_no}")[1]["reports"] == [first, again]
    assert api.get(f"/api/reports/{again}")[1]["merged_into"] == first
    assert open311(api, again)["status_notes"].startswith("立案 ")
    status, body = api.call("POST", f"/api/reports/{again}/accept", {}, user="op-a")
    assert status == 409 and f"merged into {first}" in body["detail"]
    assert api.call("POST", f"/api/reports/{again}/merge", {"into": first},
                    user="disp")[0] == 403                  # a 派遣员 does not decide intake
