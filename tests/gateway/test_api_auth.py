"""The HTTP API behind sign-in: the role matrix over every route, board sessions (cookie
flags, CSRF, sign-out), the 值班长 override, the audit trail of each decision, sign-in
rate limits, forwarded headers, body limits and Open311 token access.

The app runs under a real uvicorn and is driven over HTTP; users and tokens are made in
the app's own store.
"""

import json
import re
import ssl
import urllib.error
import urllib.request

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.routing import iter_route_contexts
from gridlink.firmware.maps import HERE, open_map
from gridlink.gateway.api import MIGRATIONS, create_app
from gridlink.gateway.auth import policy, roles
from gridlink.gateway.auth.accounts import Accounts
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.service import WebOptions
from gridlink.gateway.store import open_store

from tests.support.intake_api import Api, Clock, Tokens, add_report
from tests.support.pki import make_pki
from tests.support.rollouts import set_device
from tests.support.rollouts import status as ota_status
from tests.support.waiting import wait_until

PASSWORD = "Gr1dlink-test-pw"


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/intake.db")
    s.migrate(extra=MIGRATIONS)
    yield s
    s.close()


def serve(store, **kw):
    kw.setdefault("config_key", Ed25519PrivateKey.generate())   # desired state can change
    return BackgroundServer(create_app(store, clock=Clock(), poll_interval=0.2, **kw))


@pytest.fixture
def server(store):
    with serve(store) as srv:
        yield srv


@pytest.fixture
def tokens(store):
    return Tokens(store, roles={"lead": ("acceptor", "shift_lead"), "screen": ("viewer",),
                                "tech": ("technician",), "admin": ("admin",),
                                "dept": ("department",)})


def request(base, method, path, body=None, headers=None, data=None):
    """(status, headers, JSON or text) of one request (``data``: raw bytes to send)."""
    data = data if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, head, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, head, raw = err.code, err.headers, err.read()
    try:
        return status, head, json.loads(raw) if raw else None
    except ValueError:
        return status, head, raw.decode()


def sign_in(base, user, password=PASSWORD, headers=None):
    """(status, body, cookie header to send back, the Set-Cookie line)."""
    status, head, body = request(base, "POST", "/api/session",
                                 {"user": user, "password": password}, headers)
    line = head.get("Set-Cookie") or ""
    return status, body, line.split(";")[0], line


def app_routes(app):
    return {(m, c.path) for c in iter_route_contexts(app.routes)
            if c.methods and not c.path.startswith("/openapi")
            for m in c.methods - {"HEAD"}}


def concrete(path):
    return re.sub(r"\{[^}]+\}", "x", path)


# ---------------------------------------------------------------- the role matrix


def test_every_route_is_in_the_policy_table(store):
    app = create_app(store)
    routes = app_routes(app)
    documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    assert documented <= routes
    assert policy.unlisted(routes) == []
    assert len(routes) >= 28
    assert ("GET", "/metrics") in routes


def test_anonymous_gets_401_and_a_wrong_role_403_on_every_route(store, server, tokens):
    app = create_app(store, migrate=False)
    checked_403 = 0
    for method, path in sorted(app_routes(app)):
        need = policy.required(method, path)
        if need == policy.PUBLIC:
            continue
        url = concrete(path)
        body = {} if method in ("POST", "PUT") else None
        status, head, answer = request(server.url, method, url, body)
        assert status == 401, (method, path, status, answer)
        assert "Bearer" in head["WWW-Authenticate"]
        if need == policy.SIGNED_IN:
            continue
        lacking = [r for r in roles.ROLES if need not in roles.GRANTS[r]]
        for role in lacking:
            user = {"acceptor": "clerk", "shift_lead": "lead", "technician": "tech",
                    "viewer": "screen", "admin": "admin", "dispatcher": "disp",
                    "department": "dept"}[role]
            tokens.roles.setdefault(user, (role,))
            status, _, answer = request(server.url, method, url, body,
                                        {"Authorization": f"Bearer {tokens(user)}"})
            assert status == 403, (method, path, role, status, answer)
            assert need in answer["detail"]
            checked_403 += 1
    assert checked_403 >= 12


def test_a_route_missing_from_the_table_is_refused_to_everyone(store, tokens):
    app = create_app(store)

    @app.get("/api/new-thing")
    def new_thing():
        return {"secret": 1}

    with BackgroundServer(app) as srv:
        status, _, body = request(srv.url, "GET", "/api/new-thing",
                                  headers={"Authorization": f"Bearer {tokens()}"})
    assert status == 403 and "not in the access policy" in body["detail"]


def test_public_routes_answer_anonymous(server):
    status, _, services = request(server.url, "GET", "/open311/v2/services.json")
    assert status == 200 and services
    status, _, _ = request(server.url, "GET", "/board/")
    assert status == 200


def test_metrics_need_a_read_token(store, tokens):
    from gridlink.gateway.metrics import Metrics

    gauges = Metrics()
    gauges.reports.labels("accepted").inc(3)
    with serve(store, gauges=gauges) as srv:
        status, head, body = request(srv.url, "GET", "/metrics")
        assert status == 401 and "Bearer" in head["WWW-Authenticate"]
        assert "gridlink_gateway" not in json.dumps(body)
        tokens.roles["prometheus"] = ("viewer",)
        status, head, text = request(srv.url, "GET", "/metrics",
                                     headers={"Authorization": f"Bearer {tokens('prometheus')}"})
    assert status == 200 and head["Content-Type"].startswith("text/plain")
    assert 'gridlink_gateway_reports_total{outcome="accepted"} 3.0' in text


def test_open311_requests_need_a_token(store, server, tokens):
    rid = add_report(store, 1)
    status, _, body = request(server.url, "GET", "/open311/v2/requests.json")
    assert status == 401 and body[0]["code"] == 401  # the GeoReport v2 error format
    status, _, found = request(server.url, "GET", "/open311/v2/requests.json"
                               "?service_request_id=" + rid,
                               headers={"Authorization": f"Bearer {tokens('screen')}"})
    assert status == 200 and found[0]["service_request_id"] == rid
    status, _, _ = request(server.url, "GET", "/open311/v2/requests.json",
                           headers={"Authorization": "Bearer glt_not-a-real-token"})
    assert status == 401


def test_a_revoked_or_malformed_token_is_refused(store, server):
    accounts = Accounts(store)
    accounts.add("city", ("viewer",), PASSWORD)
    secret, record = accounts.issue_token("city", "platform")
    auth = {"Authorization": f"Bearer {secret}"}
    assert request(server.url, "GET", "/api/summary", headers=auth)[0] == 200
    accounts.revoke_token(record["id"])
    assert request(server.url, "GET", "/api/summary", headers=auth)[0] == 401
    status, _, body = request(server.url, "GET", "/api/summary",
                              headers={"Authorization": f"Basic {secret}"})
    assert status == 401 and "Bearer" in body["detail"]


# ---------------------------------------------------------------- board sessions


def test_sign_in_sets_a_strict_httponly_cookie_and_answers_the_csrf_token(store, server):
    Accounts(store).add("alice", ("acceptor",), PASSWORD, display="张三")
    status, body, cookie, line = sign_in(server.url, "alice")
    assert status == 200
    assert body["user"] == "alice" and body["display"] == "张三"
    assert body["roles"] == ["acceptor"] and body["labels"] == ["受理员"]
    assert body["csrf"] and body["via"] == "session"
    flags = {f.strip().split("=")[0].lower(): f.strip() for f in line.split(";")[1:]}
    assert "httponly" in flags and flags["samesite"].lower() == "samesite=strict"
    assert flags["path"] == "Path=/"
    assert "secure" not in flags  # plain HTTP: a Secure cookie would never come back
    status, _, again = request(server.url, "GET", "/api/session", headers={"Cookie": cookie})
    assert status == 200 and again["csrf"] == body["csrf"]


def test_the_cookie_is_secure_behind_a_trusted_https_proxy(store):
    Accounts(store).add("alice", ("acceptor",), PASSWORD)
    https = {"X-Forwarded-Proto": "https"}
    with serve(store, trusted_proxies=["127.0.0.1"]) as srv:
        assert "Secure" in sign_in(srv.url, "alice", headers=https)[3]
    with serve(store, migrate=False) as srv:  # not a trusted proxy: the header is ignored
        assert "Secure" not in sign_in(srv.url, "alice", headers=https)[3]


def test_a_change_by_cookie_needs_the_csrf_header(store, server):
    Accounts(store).add("alice", ("acceptor",), PASSWORD)
    rid = add_report(store, 1)
    _, body, cookie, _ = sign_in(server.url, "alice")
    path = f"/api/reports/{rid}/claim"
    status, _, answer = request(server.url, "POST", path, {}, {"Cookie": cookie})
    assert status == 403 and "X-CSRF-Token" in answer["detail"]
    status, _, _ = request(server.url, "POST", path, {},
                           {"Cookie": cookie, "X-CSRF-Token": "forged"})
    assert status == 403
    # not ASCII (a header may carry any Latin-1): refused, not a server error
    status, _, answer = request(server.url, "POST", path, {},
                                {"Cookie": cookie, "X-CSRF-Token": "forgé"})
    assert status == 403 and "X-CSRF-Token" in answer["detail"]
    status, _, _ = request(server.url, "GET", "/api/session",
                           headers={"Cookie": cookie[:-1] + "é"})
    assert status == 401
    status, _, claim = request(server.url, "POST", path, {},
                               {"Cookie": cookie, "X-CSRF-Token": body["csrf"]})
    assert status == 200 and claim["holder"] == "alice"
    # reads need no CSRF token
    assert request(server.url, "GET", "/api/reports", headers={"Cookie": cookie})[0] == 200


def test_sign_out_ends_the_session(store, server):
    Accounts(store).add("alice", ("viewer",), PASSWORD)
    _, body, cookie, _ = sign_in(server.url, "alice")
    status, head, _ = request(server.url, "DELETE", "/api/session",
                              headers={"Cookie": cookie, "X-CSRF-Token": body["csrf"]})
    assert status == 204 and "gridlink_session=" in head["Set-Cookie"]
    status, _, answer = request(server.url, "GET", "/api/session", headers={"Cookie": cookie})
    assert status == 401 and "sign in" in answer["detail"]


def test_wrong_password_is_401_and_audited(store, server):
    Accounts(store).add("alice", ("viewer",), PASSWORD)
    status, body, cookie, _ = sign_in(server.url, "alice", "not-the-password")
    assert status == 401 and not cookie
    assert body["detail"] == "wrong user name or password"
    status, *_ = sign_in(server.url, "nobody", "not-the-password")
    assert status == 401
    sign_in(server.url, "alice")
    trail = create_app(store, migrate=False).state.audit
    got = [(e["action"], e["target"], e["address"]) for e in trail.entries()]
    assert got == [("session.failed", "user:alice", "127.0.0.1"),
                   ("session.failed", "user:nobody", "127.0.0.1"),
                   ("session.open", "user:alice", "127.0.0.1")]


def test_sign_ins_are_rate_limited_per_address(store):
    Accounts(store).add("alice", ("viewer",), PASSWORD)
    with serve(store, sign_in_limit=3) as srv:
        for _ in range(3):
            assert sign_in(srv.url, "alice", "wrong-password-1")[0] == 401
        status, head, body = request(srv.url, "POST", "/api/session",
                                     {"user": "alice", "password": PASSWORD})
        assert status == 429 and int(head["Retry-After"]) >= 1
        assert "too many sign-in attempts" in body["detail"]


def test_the_account_locks_after_five_failures(store, server):
    Accounts(store).add("alice", ("viewer",), PASSWORD)
    for _ in range(5):
        assert sign_in(server.url, "alice", "wrong-password-1")[0] == 401
    status, head, body = request(server.url, "POST", "/api/session",
                                 {"user": "alice", "password": PASSWORD})
    assert status == 429 and int(head["Retry-After"]) > 60 and "locked" in body["detail"]


# ---------------------------------------------------------------- claims belong to their operator


def test_another_operators_claim_needs_the_shift_lead(store, server, tokens):
    api = Api(server.url, tokens)
    rid = add_report(store, 1)
    assert api.post(f"/api/reports/{rid}/claim", {"operator": "alice"})[0] == 200
    for verb, body in (("accept", {}), ("reject", {"reason": "重复"}), ("release", {}),
                       ("claim", {})):
        status, answer = api.post(f"/api/reports/{rid}/{verb}", {"operator": "bob", **body})
        assert status == 409 and answer["holder"] == "alice", verb
    status, claim = api.post(f"/api/reports/{rid}/claim", {"operator": "lead"})
    assert status == 200 and claim["holder"] == "lead"  # 值班长 takes the claim over
    api.post(f"/api/reports/{rid}/claim", {"operator": "alice"})
    assert api.get(f"/api/reports/{rid}")[1]["holder"] == "lead"
    status, decision = api.post(f"/api/reports/{rid}/reject",
                                {"operator": "lead", "reason": "重复上报"})
    assert status == 200 and decision["decided_by"] == "lead"


def test_the_shift_lead_releases_and_accepts_anothers_claim(store, server, tokens):
    api = Api(server.url, tokens)
    r1, r2 = add_report(store, 1), add_report(store, 2)
    api.post(f"/api/reports/{r1}/claim", {"operator": "alice"})
    api.post(f"/api/reports/{r2}/claim", {"operator": "alice"})
    assert api.post(f"/api/reports/{r1}/release", {"operator": "lead"})[0] == 200
    assert api.get(f"/api/reports/{r1}")[1]["holder"] is None
    status, decision = api.post(f"/api/reports/{r2}/accept", {"operator": "lead"})
    assert status == 200 and decision["state"] == "accepted"


def test_a_viewer_cannot_decide(store, server, tokens):
    rid = add_report(store, 1)
    status, body = Api(server.url, tokens).post(f"/api/reports/{rid}/claim",
                                                {"operator": "screen"})
    assert status == 403 and "intake.decide" in body["detail"]


# ---------------------------------------------------------------- the audit trail


def test_each_decision_is_audited_with_before_and_after(store, server, tokens):
    api = Api(server.url, tokens)
    r1, r2 = add_report(store, 1), add_report(store, 2)
    api.post(f"/api/reports/{r1}/claim", {"operator": "alice"})
    api.post(f"/api/reports/{r1}/release", {"operator": "alice"})
    api.post(f"/api/reports/{r1}/claim", {"operator": "alice"})
    api.post(f"/api/reports/{r1}/accept", {"operator": "alice", "case_no": "C-1"})
    api.post(f"/api/reports/{r1}/accept", {"operator": "alice", "case_no": "C-1"})  # a repeat
    api.post(f"/api/reports/{r2}/reject", {"operator": "bob", "reason": "重复"})
    status, history = api.get(f"/api/reports/{r1}/history")
    assert status == 200
    steps = [(e["actor"], e["action"]) for e in history["entries"]]
    assert steps == [("alice", "report.claim"), ("alice", "report.release"),
                     ("alice", "report.claim"), ("alice", "report.accept")]
    claim, _, _, accept = history["entries"]
    assert claim["before"]["holder"] is None and claim["after"]["holder"] == "alice"
    assert accept["before"]["state"] == "pending" and accept["before"]["holder"] == "alice"
    assert accept["after"] == {**accept["after"], "state": "accepted", "case_no": "C-1",
                               "decided_by": "alice", "holder": None}
    assert claim["address"] == "127.0.0.1"
    _, other = api.get(f"/api/reports/{r2}/history")
    [reject] = other["entries"]
    assert reject["after"]["reason"] == "重复" and reject["actor"] == "bob"
    assert api.get("/api/reports/pv-0001:000000000099/history")[0] == 404


def test_every_state_changing_route_names_its_audit_action(store):
    routes = app_routes(create_app(store))
    changing = {(m, p) for m, p in routes if m not in policy.SAFE_METHODS}
    assert changing | {("GET", "/api/session/oidc/callback")} == set(policy.AUDITED)


@pytest.fixture
def mapped_server(store, tmp_path):
    with serve(store, grid_map=open_map(HERE / "shangjie.glgm"),
               photos_dir=tmp_path / "photos") as srv:
        yield srv


def test_every_state_changing_route_writes_its_audit_entry(store, mapped_server, tokens):
    """Each route of ``policy.AUDITED`` driven once, successfully: the trail's newest entry
    is its action, in the caller's name.  (The identity provider's answer is driven
    against a real provider in tests/gateway/auth/test_oidc.py.)"""
    server = mapped_server
    api = Api(server.url, tokens)
    trail = create_app(store, migrate=False).state.audit
    rid, other = add_report(store, 1), add_report(store, 2)
    Accounts(store).add("desk", ["acceptor"], PASSWORD)
    cookie = {}
    task = {}

    def session_open():
        status, body, cookie["Cookie"], _ = sign_in(server.url, "desk")
        cookie["X-CSRF-Token"] = body["csrf"]
        return status, "desk"

    def case_no():
        return api.get(f"/api/reports/{rid}")[1]["case"]["case_no"]

    def create_task():
        status, task["body"] = api.post("/api/tasks", {"report_id": add_report(store, 3)})
        return status, "centre"

    set_device(store, "pv-0007", ota_status())
    rollout = {}

    def create_rollout():
        status, rollout["body"] = api.post("/api/rollouts", {
            "kind": "pi", "version": "1.1", "target": {"devices": ["pv-0007"]},
            "stages": [100], "operator": "tech"})
        return status, "tech"

    def act_on_rollout(step):
        return lambda: (api.call("POST", f"/api/rollouts/{rollout['body']['id']}/{step}",
                                 user="tech")[0], "tech")

    calls = {
        ("POST", "/api/session"): session_open,
        ("POST", "/api/reports/{report_id}/claim"):
            lambda: (request(server.url, "POST", f"/api/reports/{rid}/claim", {},
                             cookie)[0], "desk"),
        ("POST", "/api/reports/{report_id}/release"):
            lambda: (request(server.url, "POST", f"/api/reports/{rid}/release", {},
                             cookie)[0], "desk"),
        ("POST", "/api/reports/{report_id}/accept"):
            lambda: (api.post(f"/api/reports/{rid}/accept", {"operator": "alice"})[0],
                     "alice"),
        ("POST", "/api/reports/{report_id}/reject"):
            lambda: (api.post(f"/api/reports/{other}/reject",
                              {"operator": "alice", "reason": "重复"})[0], "alice"),
        ("POST", "/api/reports/{report_id}/merge"):
            lambda: (api.post(f"/api/reports/{add_report(store, 4)}/merge",
                              {"operator": "alice", "into": rid})[0], "alice"),
        ("PUT", "/api/assignments/{grid}"):
            lambda: (api.call("PUT", "/api/assignments/410106001001001",
                              {"device": "pv-0009"})[0], "centre"),
        ("POST", "/api/tasks"): create_task,
        ("POST", "/api/tasks/{task_id}/dispatch"):
            lambda: (api.post(f"/api/tasks/{task['body']['id']}/dispatch", {})[0], "centre"),
        ("POST", "/api/reports"):
            lambda: (api.post("/api/reports", {"source": "12319", "code": "06034",
                                               "lat": 34.8205, "lon": 113.2871,
                                               "text": "废弃车辆"})[0], "centre"),
        ("PUT", "/api/departments/{dept_id}"):
            lambda: (api.call("PUT", "/api/departments/sanitation",
                              {"name": "环卫处", "classes": ["06"],
                               "system": {"adapter": "webhook",
                                          "url": "http://127.0.0.1:9/cases"}})[0], "centre"),
        ("PUT", "/api/deadlines/{stage}/{code}"):
            lambda: (api.call("PUT", "/api/deadlines/handle/06", {"seconds": 7200})[0],
                     "centre"),
        ("PUT", "/api/calendar/{day}"):
            lambda: (api.call("PUT", "/api/calendar/2026-10-01", {"kind": "holiday"})[0],
                     "centre"),
        ("DELETE", "/api/calendar/{day}"):
            lambda: (api.call("DELETE", "/api/calendar/2026-10-01")[0], "centre"),
        **{("POST", f"/api/cases/{{case_no}}/{move}"):
           (lambda move=move, body=body, user=user: (
               api.call("POST", f"/api/cases/{case_no()}/{move}", body, user=user)[0],
               user or "centre"))
           for move, body, user in (
               ("defer", {"reason": "待协调"}, None), ("resume", {}, None),
               ("dispatch", {"department": "sanitation"}, None), ("start", {}, "dept"),
               ("feedback", {"photos": ["ef" * 32]}, "dept"), ("check", {"text": "核查"}, None),
               ("void", {"reason": "重复"}, None),
               ("override", {"state": "registered", "reason": "误作废"}, None))},
        ("DELETE", "/api/assignments/{grid}"):
            lambda: (api.call("DELETE", "/api/assignments/410106001001001")[0], "centre"),
        ("PUT", "/api/supervisors/{supervisor_id}"):
            lambda: (api.call("PUT", "/api/supervisors/s01", {"name": "张三"})[0], "centre"),
        ("POST", "/api/supervisors/{supervisor_id}/devices"):
            lambda: (api.post("/api/supervisors/s01/devices", {"device": "pv-0001"})[0],
                     "centre"),
        ("PUT", "/api/shifts/{name}"):
            lambda: (api.call("PUT", "/api/shifts/day", {"starts": "08:00", "ends": "16:00"})[0],
                     "centre"),
        ("PUT", "/api/work-grids/{work_grid_id}"):
            lambda: (api.call("PUT", "/api/work-grids/wg1",
                              {"supervisor": "s01", "shift": "day",
                               "cells": ["410106001001"]})[0], "centre"),
        ("POST", "/api/duty"):
            lambda: (api.post("/api/duty", {"supervisor": "s01",
                                            "on_at": "2026-11-28T00:00:00.000Z",
                                            "off_at": "2026-11-28T08:00:00.000Z"})[0],
                     "centre"),
        ("POST", "/api/duty/schedule"):
            lambda: (api.post("/api/duty/schedule", {"supervisor": "s01", "shift": "day",
                                                     "first_day": "2026-11-29",
                                                     "last_day": "2026-11-29"})[0], "centre"),
        ("DELETE", "/api/work-grids/{work_grid_id}"):
            lambda: (api.call("DELETE", "/api/work-grids/wg1")[0], "centre"),
        ("DELETE", "/api/session"):
            lambda: (request(server.url, "DELETE", "/api/session", None, cookie)[0], "desk"),
        ("POST", "/api/fleet/config"):
            lambda: (api.post("/api/fleet/config", {
                "scope": "device", "target": "pv-0001", "operator": "tech",
                "settings": {"status_interval_s": 30}})[0], "tech"),
        ("POST", "/api/rollouts"): create_rollout,
        ("POST", "/api/rollouts/{rollout_id}/pause"): act_on_rollout("pause"),
        ("POST", "/api/rollouts/{rollout_id}/resume"): act_on_rollout("resume"),
        ("POST", "/api/rollouts/{rollout_id}/abort"): act_on_rollout("abort"),
        ("POST", "/api/bridge/outbox/{msg_id}/retry"):   # the 派遣 above left a message
            lambda: (api.post(f"/api/bridge/outbox/sanitation:{case_no()}/retry", {})[0],
                     "centre"),
        ("POST", "/api/cases/{case_no}/photos"):
            lambda: (request(server.url, "POST", f"/api/cases/{case_no()}/photos", None,
                             {**api.auth("dept"), "Content-Type": "image/jpeg"},
                             data=b"\xff\xd8\xff\xe0 a photo")[0], "dept"),
    }
    assert set(calls) == set(policy.AUDITED) - {("GET", "/api/session/oidc/callback")}
    for route, call in calls.items():
        before = len(trail.entries())
        status, actor = call()
        assert status in (200, 201, 204), (route, status)
        newest = [(e["action"], e["actor"]) for e in trail.entries()[before:]]
        assert newest[:1] == [(policy.AUDITED[route], actor)], route   # its own entry first,
        assert {a for _, a in newest} == {actor}, route      # then what it caused, same actor


def test_tasks_and_assignments_are_audited_and_in_the_report_history(store, server, tokens):
    api = Api(server.url, tokens)
    rid = add_report(store, 1)
    status, _ = api.call("PUT", "/api/assignments/410106001001001", {"device": "pv-0009"})
    assert status == 200
    status, task = api.post("/api/tasks", {"report_id": rid, "key": "k-1"})
    assert status == 201
    api.post("/api/tasks", {"report_id": rid, "key": "k-1"})  # the same task: one entry
    api.post(f"/api/tasks/{task['id']}/dispatch", {})
    assert api.call("DELETE", "/api/assignments/410106001001001")[0] == 204
    _, history = api.get(f"/api/reports/{rid}/history")
    assert [e["action"] for e in history["entries"]] == ["task.create", "task.dispatch"]
    assert history["entries"][0]["after"]["report_id"] == rid
    status, entries = api.get("/api/audit?target=grid:410106001001001")
    assert status == 200
    assert [(e["action"], e["actor"]) for e in entries] == [("assignment.put", "centre"),
                                                           ("assignment.delete", "centre")]
    assert entries[0]["before"] is None and entries[0]["after"]["device"] == "pv-0009"
    assert entries[1]["before"]["device"] == "pv-0009"


def test_the_audit_export_needs_the_audit_permission(store, server, tokens):
    api = Api(server.url, tokens)
    rid = add_report(store, 1)
    api.post(f"/api/reports/{rid}/claim", {"operator": "alice"})
    status, _, text = request(server.url, "GET", "/api/audit?format=csv&since=2000-01-01T00:00:00Z",
                              headers={"Authorization": f"Bearer {tokens('lead')}"})
    assert status == 200
    header, row = text.strip().splitlines()
    assert header.startswith("n,at,actor,address,action,target,before,after")
    assert ",alice,127.0.0.1,report.claim,report:" in row
    status, _, entries = request(server.url, "GET", "/api/audit?until=2000-01-01T00:00:00Z",
                                 headers={"Authorization": f"Bearer {tokens('admin')}"})
    assert status == 200 and entries == []
    assert api.get("/api/audit?since=yesterday")[0] == 422
    assert api.call("GET", "/api/audit", user="alice")[0] == 403


# ---------------------------------------------------------------- addresses and limits


def test_forwarded_addresses_only_from_trusted_proxies(store, tokens):
    rid = add_report(store, 1)
    forwarded = {"X-Forwarded-For": "203.0.113.7, 10.0.0.2"}
    with serve(store, trusted_proxies=["127.0.0.1", "10.0.0.0/8"]) as srv:
        Api(srv.url, tokens).call("POST", f"/api/reports/{rid}/claim", {"operator": "alice"},
                                  headers=forwarded)
    with serve(store, migrate=False) as srv:
        Api(srv.url, tokens).call("POST", f"/api/reports/{rid}/release",
                                  {"operator": "alice"}, headers=forwarded)
    trail = create_app(store, migrate=False).state.audit
    assert [e["address"] for e in trail.entries(target=f"report:{rid}")] == [
        "203.0.113.7", "127.0.0.1"]


def test_an_oversized_body_is_413(store, server, tokens):
    rid = add_report(store, 1)
    status, body = Api(server.url, tokens).post(f"/api/reports/{rid}/reject",
                                                {"operator": "alice", "reason": "x" * 70000})
    assert status == 413 and "larger than" in body["detail"]


def test_answers_carry_the_security_headers(server):
    status, head, _ = request(server.url, "GET", "/open311/v2/services.json")
    assert status == 200
    assert head["X-Content-Type-Options"] == "nosniff" and head["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in head  # plain HTTP


def test_cors_is_closed_by_default_and_opens_to_configured_origins(store):
    preflight = {"Origin": "https://city.example", "Access-Control-Request-Method": "GET"}
    with serve(store) as srv:
        _, head, _ = request(srv.url, "OPTIONS", "/api/summary", headers=preflight)
        assert "Access-Control-Allow-Origin" not in head
    with serve(store, migrate=False, cors_origins=["https://city.example"]) as srv:
        status, head, _ = request(srv.url, "OPTIONS", "/api/summary", headers=preflight)
        assert status == 200
        assert head["Access-Control-Allow-Origin"] == "https://city.example"


def test_the_document_names_the_security_of_each_operation(store):
    doc = create_app(store).openapi()
    assert set(doc["components"]["securitySchemes"]) == {"token", "session"}
    claim = doc["paths"]["/api/reports/{report_id}/claim"]["post"]
    assert claim["security"] == [{"token": []}, {"session": []}]
    assert {"401", "403"} <= set(claim["responses"])
    assert doc["paths"]["/open311/v2/services.json"]["get"]["security"] == []
    assert "operator" not in json.dumps(doc["components"]["schemas"].get("ClaimBody", {}))


def test_https_sends_hsts_and_secure_cookies(store, tmp_path):
    pki = make_pki(tmp_path / "pki", identities=())
    Accounts(store).add("alice", ("viewer",), PASSWORD)
    app = create_app(store, migrate=False)
    with BackgroundServer(app, certfile=str(pki / "broker.crt"),
                          keyfile=str(pki / "broker.key")) as srv:
        assert srv.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        req = urllib.request.Request(srv.url + "/api/session", method="POST",
                                     data=json.dumps({"user": "alice",
                                                      "password": PASSWORD}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            assert resp.status == 200
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
            assert "Secure" in resp.headers["Set-Cookie"]


def test_web_options_refuse_half_a_certificate_and_bad_proxies(tmp_path):
    with pytest.raises(ConfigError, match="go together"):
        WebOptions(cert=str(tmp_path / "a.crt"))
    with pytest.raises(ConfigError, match="no file"):
        WebOptions(cert=str(tmp_path / "a.crt"), key=str(tmp_path / "a.key"))
    with pytest.raises(ConfigError, match="--trusted-proxy"):
        WebOptions(trusted_proxies=["proxy.example"])


def test_event_streams_are_limited_per_session(store, server, tokens):
    auth = {"Authorization": f"Bearer {tokens('screen')}"}

    def open_stream():
        return urllib.request.urlopen(urllib.request.Request(server.url + "/api/events",
                                                             headers=auth), timeout=10)

    streams = [open_stream() for _ in range(4)]
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            open_stream()
        assert refused.value.code == 429 and refused.value.headers["Retry-After"]
        streams.pop().close()
        # the server notices the closed stream at its next write (a keep-alive: 15 s)
        wait_until(lambda: _opens(open_stream), timeout=40, interval=0.5)
    finally:
        for s in streams:
            s.close()


def _opens(open_stream):
    try:
        open_stream().close()
    except urllib.error.HTTPError:
        return False
    return True
