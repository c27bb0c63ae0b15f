"""Verification tasks (核实/核查), grid assignments, fleet presence, photos and Open311 reads.

Tasks are published through a real MQTT client to a private Mosquitto and received by a
subscriber standing in for the patrol device's side of the broker.
"""

import json
import queue
import uuid
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.codebooks import load_books
from gridlink.gateway.api import create_app
from gridlink.gateway.clock import wire_time
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.ingest import Ingest, Item
from gridlink.gateway.photos import PhotoDir
from gridlink.gateway.validate import Validator

from tests.support.gateway_rig import encode, report, topic
from tests.support.intake_api import T0, Api, Clock, Tokens, add_report, iso


def add_device(store, device, *, state="online", lat=None, lon=None, profile="patrol-vehicle",
               outbox=0, district="410106"):
    status = {"v": 1, "device": device, "state": state, "outbox": {"reports": outbox, "track": 3},
              "disk_free": 1 << 30, "cpu_temp": 48.5, "uptime": 120, "firmware": "0.1.0",
              "codebook": "GB/T 47678.5-2026@9b9bd01eda60", "profile": profile}
    with store.connect() as conn:
        conn.execute(store.sql(
            "INSERT INTO devices (device, district, state, last_seen, status, last_lat, last_lon,"
            " last_fix_at, outbox_reports, firmware, codebook, profile)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            (device, district, state, iso(T0), json.dumps(status), lat, lon,
             iso(T0) if lat is not None else None, outbox, "0.1.0", status["codebook"], profile))


class Subscriber:
    """A device-side MQTT client collecting the task messages of the district."""

    def __init__(self, broker):
        self.messages = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="task-watch")
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe("gridlink/v1/+/+/task", qos=1)
        self.client.loop_start()

    def next(self, timeout=5):
        return self.messages.get(timeout=timeout)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    """The gateway's publish(topic, payload, qos=1), over a real paho client."""

    def __init__(self, broker):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw-pub")
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def __call__(self, topic, payload, qos=1):
        self.client.publish(topic, payload, qos=qos).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """The real store, on SQLite and on PostgreSQL (a fresh schema per test)."""
    from gridlink.gateway.store import open_store

    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/intake.db")
    else:
        s = open_store("postgresql://postgres@127.0.0.1:5432/test"
                       f"?schema=t_{uuid.uuid4().hex[:12]}")
    yield s
    if request.param == "postgres":
        with s.connect() as conn:
            conn.execute(f'DROP SCHEMA "{s.schema}" CASCADE')
    s.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def wired(store, clock, broker, tmp_path):
    """(api, app, device-side subscriber) with tasks published to the private broker."""
    sub = Subscriber(broker)
    pub = Publisher(broker)
    app = create_app(store, clock=clock, publisher=pub, photos_dir=tmp_path / "photos")
    with BackgroundServer(app) as server:
        yield Api(server.url, Tokens(store)), app, sub
    pub.close()
    sub.close()


def test_task_for_a_report_goes_to_the_grid_assignee(wired, store):
    api, _, sub = wired
    add_device(store, "pv-0001", lat=34.80, lon=113.28)
    add_device(store, "pv-0002", lat=34.8205, lon=113.2871)  # nearer, but not assigned
    rid = add_report(store, 1, grid="410106001001001", lat=34.8205, lon=113.2871)
    status, body = api.call("PUT", "/api/assignments/410106001001001", {"device": "pv-0001"})
    assert status == 200 and body["device"] == "pv-0001"

    status, task = api.post("/api/tasks", {"type": "verify", "report_id": rid, "text": "核实井盖"})
    assert status == 201, task
    assert task["device"] == "pv-0001" and task["chosen_by"] == "assignment"
    assert task["state"] == "sent"
    topic, message = sub.next()
    assert topic == "gridlink/v1/410106/pv-0001/task"
    assert message == {"v": 1, "task": task["id"], "type": "verify", "report": rid,
                       "lat": 34.8205, "lon": 113.2871, "grid": "410106001001001",
                       "text": "核实井盖", "deadline": None, "kind": "event", "code": "06010"}


def test_task_for_a_point_goes_to_the_nearest_online_patrol_device(wired, store):
    api, _, sub = wired
    add_device(store, "pv-far", lat=34.90, lon=113.40)
    add_device(store, "pv-near", lat=34.821, lon=113.288)
    add_device(store, "pv-gone", lat=34.8205, lon=113.2871, state="offline")
    add_device(store, "ft-0001", lat=34.8205, lon=113.2871, profile="fixed-terminal")
    status, task = api.post("/api/tasks", {"type": "check", "lat": 34.8205, "lon": 113.2871})
    assert status == 201
    assert (task["device"], task["chosen_by"], task["state"]) == ("pv-near", "nearest", "sent")
    topic, message = sub.next()
    assert topic == "gridlink/v1/410106/pv-near/task" and message["type"] == "check"


def test_task_without_any_device_stays_open_then_dispatches(wired, store):
    api, _, sub = wired
    status, task = api.post("/api/tasks", {"lat": 34.82, "lon": 113.28, "key": "hotline-77"})
    assert status == 201 and task["state"] == "open" and task["device"] is None
    # the same idempotency key returns the same task, no second one
    status, again = api.post("/api/tasks", {"lat": 34.82, "lon": 113.28, "key": "hotline-77"})
    assert again["id"] == task["id"]
    status, listed = api.get("/api/tasks")
    assert [t["id"] for t in listed] == [task["id"]]

    add_device(store, "pv-0003", lat=34.82, lon=113.281)
    status, sent = api.post(f"/api/tasks/{task['id']}/dispatch", {})
    assert status == 200 and sent["state"] == "sent" and sent["device"] == "pv-0003"
    assert sub.next()[1]["task"] == task["id"]


def test_result_report_attaches_and_closes_the_task(wired, store):
    api, app, _ = wired
    add_device(store, "pv-0001", lat=34.82, lon=113.28)
    rid = add_report(store, 1)
    _, task = api.post("/api/tasks", {"report_id": rid})
    result_id = add_report(store, 2, source="task", task=task["id"], result="confirmed")
    # the runtime's after-commit hook
    app.state.on_report([{"id": result_id, "device": "pv-0001", "source": "task",
                          "task": task["id"], "result": "confirmed"}])
    _status, done = api.get(f"/api/tasks/{task['id']}")
    assert done["state"] == "done" and done["result"] == "confirmed"
    assert done["result_report"] == result_id
    # the result is attached to its task, not waiting in the pending list
    _, page = api.get("/api/reports")
    assert [r["id"] for r in page["items"]] == [rid]
    _, report = api.get(f"/api/reports/{rid}")
    assert [t["id"] for t in report["tasks"]] == [task["id"]]


def test_result_committed_elsewhere_is_attached_by_the_sweep(wired, store):
    api, _, _ = wired
    add_device(store, "pv-0001", lat=34.82, lon=113.28)
    _, task = api.post("/api/tasks", {"lat": 34.82, "lon": 113.28})
    add_report(store, 5, source="task", task=task["id"], result="not_found")
    _, done = api.get(f"/api/tasks/{task['id']}")
    assert done["state"] == "done" and done["result"] == "not_found"


def test_overdue_task_expires(wired, store, clock):
    api, _, _ = wired
    add_device(store, "pv-0001", lat=34.82, lon=113.28)
    _, task = api.post("/api/tasks", {"lat": 34.82, "lon": 113.28, "deadline_s": 600})
    assert task["deadline"] == iso(T0 + timedelta(seconds=600))
    clock.advance(599)
    assert api.get(f"/api/tasks/{task['id']}")[1]["state"] == "sent"
    clock.advance(2)
    assert api.get(f"/api/tasks/{task['id']}")[1]["state"] == "expired"
    _, expired = api.get("/api/tasks?state=expired")
    assert [t["id"] for t in expired] == [task["id"]]


@pytest.mark.parametrize("body, field", [
    ({"type": "inspect", "lat": 1, "lon": 1}, "type"),
    ({"type": "verify"}, "lat"),
    ({"lat": 95, "lon": 1}, "lat"),
    ({"report_id": "pv-0001:000000000404"}, "pv-0001:000000000404"),
])
def test_bad_task_requests_are_refused_clearly(wired, body, field):
    api, _, _ = wired
    status, answer = api.post("/api/tasks", body)
    assert status in (400, 404, 422)
    assert field in json.dumps(answer)
    assert api.get("/api/tasks")[1] == []


def test_bad_assignment_is_refused(wired):
    api, _, _ = wired
    status, body = api.call("PUT", "/api/assignments/4101", {"device": "pv-0001"})
    assert status == 422 and body["detail"][0]["loc"] == ["path", "grid"]
    status, body = api.call("PUT", "/api/assignments/410106001001001", {"device": "PV_1"})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "device"]
    status, _ = api.call("DELETE", "/api/assignments/410106001001001")
    assert status == 404


def test_fleet_shows_presence_fix_outbox_and_versions(wired, store):
    api, _, _ = wired
    add_device(store, "pv-0001", lat=34.82, lon=113.28, outbox=7)
    add_device(store, "ft-0001", state="offline", profile="fixed-terminal")
    status, devices = api.get("/api/devices")
    assert status == 200
    by_id = {d["device"]: d for d in devices}
    assert by_id["pv-0001"]["online"] is True
    assert by_id["pv-0001"]["last_fix"] == {"lat": 34.82, "lon": 113.28, "at": iso(T0)}
    assert by_id["pv-0001"]["outbox_reports"] == 7 and by_id["pv-0001"]["outbox_track"] == 3
    assert by_id["pv-0001"]["firmware"] == "0.1.0"
    assert by_id["ft-0001"]["online"] is False and by_id["ft-0001"]["last_fix"] is None
    assert by_id["pv-0001"]["refused"] == 0 and by_id["pv-0001"]["last_refused"] is None
    _, summary = api.get("/api/summary")
    assert summary["devices"]["online"] == 1 and summary["devices"]["total"] == 2


def test_fleet_tells_how_many_of_a_devices_messages_were_refused_and_why(wired, store,
                                                                          tmp_path):
    api, _, _ = wired
    add_device(store, "pv-0001")
    add_device(store, "pv-0002")
    judge = Validator(None, load_books())
    bad = [(topic("pv-0001", "report"), encode(report("pv-0001", s, code="99999")))
           for s in (1, 2)]
    bad.append((topic("pv-0001", "report"), encode(report("pv-0002", 3))))  # another's id
    t = 1_795_000_000.0
    Ingest(store, PhotoDir(tmp_path / "photos")).commit(
        [Item(tp, p, t + i, judge.decode(tp, p, t + i)) for i, (tp, p) in enumerate(bad)])
    status, devices = api.get("/api/devices")
    assert status == 200
    by_id = {d["device"]: d for d in devices}
    assert by_id["pv-0001"]["refused"] == 3
    newest = by_id["pv-0001"]["last_refused"]
    assert newest["at"] == wire_time(t + 2) and "pv-0002" in newest["reason"]
    assert by_id["pv-0002"]["refused"] == 0 and by_id["pv-0002"]["last_refused"] is None


def test_photos_are_served_by_hash_and_nothing_else(wired, store, tmp_path):
    import hashlib

    api, _, _ = wired
    data = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
    sha = hashlib.sha256(data).hexdigest()
    folder = tmp_path / "photos" / sha[:2]
    folder.mkdir(parents=True)
    (folder / f"{sha}.jpg").write_bytes(data)
    with store.connect() as conn:
        conn.execute(store.sql("INSERT INTO photos (sha256, size, complete, path)"
                               " VALUES (?, ?, 1, ?)"),
                     (sha, len(data), str(folder / f"{sha}.jpg")))
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(f"{api.base}/api/photos/{sha}",
                                                       headers=api.auth())) as resp:
        assert resp.headers["Content-Type"] == "image/jpeg"
        assert resp.read() == data
    status, _ = api.get("/api/photos/" + "0" * 64)
    assert status == 404
    status, _body = api.get("/api/photos/..%2F..%2Fetc%2Fpasswd")
    assert status in (400, 404)


# ---------------------------------------------------------------- Open311


def test_open311_services_come_from_the_code_books(wired):
    api, _, _ = wired
    status, services = api.get("/open311/v2/services.json")
    assert status == 200
    by_code = {s["service_code"]: s for s in services}
    assert by_code["06010"]["group"] == "市容环境类"
    # 01001 is both a 部件 and its 异常 事项: one service, the event's names
    assert by_code["01001"]["group"] == "市政公用设施类"
    assert len(by_code) == len(services)


def test_open311_requests_status_follows_the_queue(wired, store, clock):
    api, _, _ = wired
    r1 = add_report(store, 1, code="06010", text="暴露垃圾")
    r2 = add_report(store, 2, code="06010")
    r3 = add_report(store, 3, code="01001", kind="component")
    add_report(store, 4, source="task", task="T-x", result="confirmed")
    api.post(f"/api/reports/{r2}/reject", {"operator": "op-a", "reason": "重复"})
    api.post(f"/api/reports/{r3}/accept", {"operator": "op-a", "case_no": "C-9"})
    clock.advance(3600)
    status, reqs = api.get("/open311/v2/requests.json")
    assert status == 200
    by_id = {r["service_request_id"]: r for r in reqs}
    assert set(by_id) == {r1, r2, r3}  # task results are not service requests
    assert by_id[r1]["status"] == "open" and by_id[r1]["description"] == "暴露垃圾"
    assert by_id[r1]["service_code"] == "06010" and by_id[r1]["long"] == 113.2871
    assert by_id[r2]["status"] == "closed" and "重复" in by_id[r2]["status_notes"]
    assert by_id[r3]["status"] == "open" and "C-9" in by_id[r3]["status_notes"]
    _, closed = api.get("/open311/v2/requests.json?status=closed")
    assert [r["service_request_id"] for r in closed] == [r2]
    _, only = api.get(f"/open311/v2/requests.json?service_request_id={r1},{r3}")
    assert {r["service_request_id"] for r in only} == {r1, r3}
    status, one = api.get(f"/open311/v2/requests/{r1}.json")
    assert status == 200 and one[0]["service_request_id"] == r1
    status, body = api.get("/open311/v2/requests/nope.json")
    assert status == 404 and body[0]["code"] == 404 and "nope" in body[0]["description"]
    status, body = api.get("/open311/v2/requests.json?start_date=2026-01-01T00:00:00Z")
    assert status == 400 and "90 days" in body[0]["description"]


def test_a_check_task_names_the_case_class_for_its_result(wired, store):
    """A 核查 of an abandoned vehicle (06034) asks for a 06034 result, not the device's
    default class: the device codes its result report with the class the task names."""
    api, _, sub = wired
    add_device(store, "pv-0001", lat=34.82, lon=113.28)
    rid = add_report(store, 1, code="06034", grid="410106001001001")
    api.call("PUT", "/api/assignments/410106001001001", {"device": "pv-0001"})
    case_no = api.post(f"/api/reports/{rid}/accept", {"operator": "op-a"})[1]["case_no"]
    api.call("PUT", "/api/departments/sanitation", {"name": "环卫处", "classes": ["06"]})
    tokens = api.tokens
    tokens.roles.update({"disp": ("dispatcher",), "dept": ("department",)})
    api.call("POST", f"/api/cases/{case_no}/dispatch", {"department": "sanitation"},
             user="disp")
    api.call("POST", f"/api/cases/{case_no}/start", {}, user="dept")
    api.call("POST", f"/api/cases/{case_no}/feedback", {"photos": ["ab" * 32]}, user="dept")
    status, sent = api.post(f"/api/cases/{case_no}/check", {})
    assert status == 201, sent
    _, message = sub.next()
    assert message["task"] == sent["task"]["id"] and message["type"] == "check"
    assert (message["kind"], message["code"]) == ("event", "06034")
    # a task about a place has no class to name: the device uses its own
    api.post("/api/tasks", {"type": "check", "lat": 34.82, "lon": 113.28})
    assert "code" not in sub.next()[1]
