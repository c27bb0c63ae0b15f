"""The bridge over HTTP on SQLite and PostgreSQL: a department's system setting, a 派遣
that leaves for it (seen in /api/bridge/outbox), a stuck message on /metrics and tried
again by a 值班长, and a department's 处置反馈 with a photo it uploads."""

import http.client
import json
import urllib.error
import urllib.request

import pytest
from gridlink.gateway.api import create_app
from gridlink.gateway.cases.sender import BridgeSender
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.metrics import Metrics

from tests.support.intake_api import Api, Clock, Tokens, add_report
from tests.support.receiver import Receiver

GRID = "410106001001001"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
PEOPLE = {"op-a": ("acceptor",), "disp": ("dispatcher",), "dept": ("department",),
          "dept-b": ("department",), "lead": ("shift_lead",), "screen": ("viewer",)}


@pytest.fixture
def served(store, tmp_path):
    gauges, clock = Metrics(), Clock()
    app = create_app(store, clock=clock, poll_interval=0.2, photos_dir=tmp_path / "photos",
                     gauges=gauges)
    with BackgroundServer(app) as server, Receiver() as receiver:
        api = Api(server.url, Tokens(store, roles=PEOPLE))
        status, dept = api.call("PUT", "/api/departments/sanitation", {
            "name": "环卫处", "classes": ["06"], "accounts": ["dept"],
            "system": {"adapter": "webhook", "url": receiver.url + "/cases", "timeout_s": 1,
                       "api_key": "secret-1"}}, user="lead")
        assert status == 200 and dept["system"]["api_key"] == "set"
        sender = BridgeSender(app.state.bridge, metrics=gauges)
        yield api, sender, receiver, clock


def dispatched(api, store, seq=1):
    rid = add_report(store, seq, grid=GRID, code="06010")
    case_no = api.call("POST", f"/api/reports/{rid}/accept", {}, user="op-a")[1]["case_no"]
    status, case = api.call("POST", f"/api/cases/{case_no}/dispatch",
                            {"department": "sanitation"}, user="disp")
    assert status == 200, case
    return case_no


def upload(api, case_no, data, user="dept", kind="image/jpeg"):
    req = urllib.request.Request(f"{api.base}/api/cases/{case_no}/photos", data=data,
                                 method="POST", headers={**api.auth(user), "Content-Type": kind})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_dispatch_leaves_once_and_the_department_reports_back_with_photos(served, store):
    api, sender, receiver, _ = served
    case_no = dispatched(api, store)
    status, page = api.get(f"/api/bridge/outbox?case_no={case_no}")
    assert status == 200 and (page["total"], page["pending"], page["stuck"]) == (1, 1, 0)
    assert page["items"][0]["message"]["department_name"] == "环卫处"
    assert sender.round() == {"sent": 1, "failed": 0}
    assert list(receiver.kept) == [case_no] and receiver.hits == {case_no: 1}
    status, msg = api.get(f"/api/bridge/outbox/sanitation:{case_no}")
    assert (msg["state"], msg["remote_id"]) == ("sent", "w-1")

    # the department's side: start, upload its photo, report back with it
    assert api.call("POST", f"/api/cases/{case_no}/start", {}, user="dept")[0] == 200
    status, photo = upload(api, case_no, JPEG)
    assert status == 201 and photo["bytes"] == len(JPEG)
    status, case = api.call("POST", f"/api/cases/{case_no}/feedback",
                            {"note": "已清运", "photos": [photo["sha256"]]}, user="dept")
    assert status == 200 and case["state"] == "reported"
    assert case["history"][-1]["detail"]["photos"] == [photo["sha256"]]
    req = urllib.request.Request(api.base + photo["url"], headers=api.auth("screen"))
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.read() == JPEG and resp.headers["Content-Type"] == "image/jpeg"
    _, entries = api.get(f"/api/audit?target=case:{case_no}")
    assert ("dept", "case.photo") in [(e["actor"], e["action"]) for e in entries]


def test_a_photo_upload_is_refused_clearly(served, store):
    api, *_ = served
    case_no = dispatched(api, store)
    for data, kind, why in ((b"", "image/jpeg", "was empty"),
                            (b"GIF89a....", "image/gif", "JPEG or PNG")):
        status, body = upload(api, case_no, data, kind=kind)
        assert status == 400 and why in body["detail"], body
    host, port = api.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", f"/api/cases/{case_no}/photos")    # 8 MiB + 1 announced
    for name, value in {**api.auth("dept"), "Content-Type": "image/jpeg",
                        "Content-Length": str(8 * 1024 * 1024 + 1)}.items():
        conn.putheader(name, value)
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert upload(api, case_no, JPEG + b"x" * (1024 * 1024))[0] == 201   # over the API's 64 KiB
    status, _ = api.call("POST", f"/api/cases/{case_no}/feedback",       # which other routes
                         {"photos": ["ab" * 32], "note": "x" * 70000}, user="dept")   # keep
    assert status == 413
    status, body = upload(api, case_no, JPEG, user="dept-b")
    assert status == 403 and "does not act for" in body["detail"]
    assert upload(api, "410106209912310001", JPEG)[0] == 404
    _, entries = api.get(f"/api/audit?target=case:{case_no}")
    assert [e["action"] for e in entries].count("case.photo") == 1   # the one taken


def test_a_stuck_message_shows_on_metrics_and_a_lead_tries_it_now(served, store):
    api, sender, receiver, clock = served
    receiver.mode = "fail"
    case_no = dispatched(api, store)
    for _ in range(5):
        sender.round()
        clock.advance(600)
    status, page = api.get("/api/bridge/outbox?state=stuck")
    assert status == 200 and page["stuck"] == 1
    (msg,) = page["items"]
    assert msg["stuck"] and msg["attempts"] == 5 and msg["last_error"].startswith("HTTP 500")
    req = urllib.request.Request(api.base + "/metrics", headers=api.auth("screen"))
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    assert "gridlink_gateway_bridge_stuck 1.0" in text
    assert "gridlink_gateway_bridge_pending 1.0" in text
    sender.round()                                  # the 6th failure: due 600 s from now
    receiver.mode = "ok"
    assert sender.round() == {"sent": 0, "failed": 0}
    status, body = api.call("POST", f"/api/bridge/outbox/{msg['id']}/retry", {}, user="dept")
    assert status == 403
    due = api.get(f"/api/bridge/outbox/{msg['id']}")[1]["next_at"]
    status, again = api.call("POST", f"/api/bridge/outbox/{msg['id']}/retry", {}, user="lead")
    assert status == 200 and again["next_at"] < due
    assert sender.round() == {"sent": 1, "failed": 0}
    assert list(receiver.kept) == [case_no]
    status, body = api.call("POST", f"/api/bridge/outbox/{msg['id']}/retry", {}, user="lead")
    assert status == 400 and "sent already" in body["detail"]
    assert api.call("POST", "/api/bridge/outbox/city:nope/retry", {}, user="lead")[0] == 404
    _, entries = api.get(f"/api/audit?target=outbox:{msg['id']}")
    assert [(e["actor"], e["action"]) for e in entries] == [("lead", "bridge.retry")]


def test_a_bad_system_setting_is_refused_and_changes_nothing(served):
    api, *_ = served
    for system, field in (({"adapter": "fax", "url": "http://x"}, "adapter"),
                          ({"adapter": "webhook", "url": "file:///etc"}, "url"),
                          ({"adapter": "webhook", "url": "http://x", "timeout_s": 0}, "timeout_s"),
                          ({"adapter": "webhook", "url": "http://x", "port": 8}, "port")):
        status, body = api.call("PUT", "/api/departments/sanitation", {
            "name": "环卫处", "classes": ["06"], "system": system}, user="lead")
        assert status == 422 and body["detail"][0]["loc"][-1] == field, body
    assert api.get("/api/departments")[1][0]["system"]["adapter"] == "webhook"


def test_a_void_over_http_leaves_after_its_dispatch_and_is_listed_by_its_key(served, store):
    api, sender, receiver, _ = served
    case_no = dispatched(api, store)
    status, _ = api.call("POST", f"/api/cases/{case_no}/void", {"reason": "重复上报"},
                         user="lead")
    assert status == 200
    status, page = api.call("GET", f"/api/bridge/outbox?case_no={case_no}", user="screen")
    assert [(m["event"], m["key"], m["seq"]) for m in page["items"]] == [
        ("dispatch", case_no, 2), ("void", f"{case_no}:3", 3)]
    assert sender.round() == {"sent": 2, "failed": 0}
    assert list(receiver.kept) == [case_no, f"{case_no}:3"]
    status, msg = api.call("GET", f"/api/bridge/outbox/sanitation:{case_no}:3", user="screen")
    assert status == 200 and msg["state"] == "sent"
    assert msg["message"]["reason"] == "重复上报" and msg["message"]["by"] == "lead"
