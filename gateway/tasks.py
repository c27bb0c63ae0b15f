"""Verification tasks: 核实 (verify, before 立案) and 核查 (check, after handling).

A task names a report or a point.  Unless the operator names a device, the desk chooses
one by the first rule that finds one (recorded as the task's ``chosen_by``; ``operator``
when the operator named it):

1. ``work_grid``: an online device carried by a supervisor on duty now whose work grid
   (gateway/roster.py) holds the point's cell — the nearest by last fix;
2. ``nearest_on_duty``: the nearest online patrol device whose carrier is on duty now;
3. ``assignment``: the device assigned to the point's grid (table ``assignments``);
4. ``nearest``: the nearest online patrol device by its last fix.

Rules 1–2 apply only with a roster; a supervisor off duty is never chosen by them.  Ties
in distance go to the lower device id.  The task is published on
``gridlink/v1/{district}/{device}/task``, and is done when the device's result report
(source "task", same task id) is committed.  States: open (not yet sent: no device or no
link) → sent → done, or expired once its deadline passes undone.
"""

import json
import math
import re
import secrets
from datetime import timedelta

from .clock import centre_day, wire_time
from .queue import Invalid, NotFound, parse_time, system_clock
from .store.sql import Filters, one, rows, run
from .topics import task_topic

TASK_TYPES = ("verify", "check", "clip")  # clip: the vehicle sends its last 30 s of video
TASK_STATES = ("open", "sent", "done", "expired")
ONLINE_STATES = ("online", "buffering")
# Device profiles that can drive to a point; fixed terminals and sensor nodes cannot.
MOBILE_PROFILE_PREFIXES = ("patrol", "handheld")
# how a task's device was chosen, in the order tried; "operator": named when it was created
CHOSEN_BY = ("work_grid", "nearest_on_duty", "assignment", "nearest")
DISTRICT = "410106"
_DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9-]{2,31}")

MIGRATIONS = (
    (
        "tasks_001_tasks",
        "CREATE TABLE IF NOT EXISTS tasks ("
        " id TEXT PRIMARY KEY, type TEXT NOT NULL, report_id TEXT, lat REAL, lon REAL,"
        " grid TEXT, district TEXT NOT NULL, text TEXT NOT NULL DEFAULT '', device TEXT,"
        " routed_by TEXT, state TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT,"
        " deadline TEXT, sent_at TEXT, done_at TEXT, result TEXT, result_report TEXT,"
        " error TEXT, request_key TEXT UNIQUE)",
        "CREATE TABLE IF NOT EXISTS tasks ("
        " id TEXT PRIMARY KEY, type TEXT NOT NULL, report_id TEXT, lat DOUBLE PRECISION,"
        " lon DOUBLE PRECISION, grid TEXT, district TEXT NOT NULL, text TEXT NOT NULL DEFAULT '',"
        " device TEXT, routed_by TEXT, state TEXT NOT NULL, created_at TEXT NOT NULL,"
        " created_by TEXT, deadline TEXT, sent_at TEXT, done_at TEXT, result TEXT,"
        " result_report TEXT, error TEXT, request_key TEXT UNIQUE)",
    ),
    (
        "tasks_002_assignments",
        "CREATE TABLE IF NOT EXISTS assignments ("
        " grid TEXT PRIMARY KEY, device TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS assignments ("
        " grid TEXT PRIMARY KEY, device TEXT NOT NULL, updated_at TEXT NOT NULL)",
    ),
    (
        "tasks_003_indexes",
        "CREATE INDEX IF NOT EXISTS tasks_state_idx ON tasks (state);\n"
        "CREATE INDEX IF NOT EXISTS tasks_report_idx ON tasks (report_id)",
        "CREATE INDEX IF NOT EXISTS tasks_state_idx ON tasks (state);\n"
        "CREATE INDEX IF NOT EXISTS tasks_report_idx ON tasks (report_id)",
    ),
)


def distance_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres (haversine; plenty for picking the nearest car)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(min(1.0, math.sqrt(a)))


def is_mobile(profile):
    return profile is None or str(profile).startswith(MOBILE_PROFILE_PREFIXES)


class TaskDesk:
    """Create, route, publish and close verification tasks over a store.

    ``publisher(topic, payload, qos=1)`` is the running gateway's publish; without one
    tasks stay open until :meth:`dispatch` is called with a link.  ``locate(lat, lon)``
    returns the grid code of a point (or None) when a grid map is loaded.  ``roster`` (a
    ``roster.Roster`` over the same store) routes by work grids and duty first.
    """

    def __init__(self, store, queue, *, publisher=None, locate=None, clock=None,
                 district=DISTRICT, cases=None, roster=None):
        self.store = store
        self.roster = roster
        # ``cases`` (a ``cases.book.CaseBook``): a task's type must fit its report's case,
        # a 核查 moves the case to 核查 and its result to 结案 or 返工
        self.cases = cases
        self.queue = queue
        self.publisher = publisher
        self.locate = locate
        self.clock = clock or system_clock
        self.district = district

    # ------------------------------------------------------------ assignments

    def assignments(self):
        with self.store.connect() as conn:
            return rows(run(self.store, conn,
                            "SELECT grid, device, updated_at FROM assignments ORDER BY grid"))

    def assign(self, grid, device):
        grid, device = _grid(grid), _device(device)
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            run(self.store, conn,
                "INSERT INTO assignments (grid, device, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (grid) DO UPDATE SET device = ?, updated_at = ?",
                [grid, device, now, device, now])
        return {"grid": grid, "device": device, "updated_at": now}

    def unassign(self, grid):
        with self.store.connect() as conn:
            cur = run(self.store, conn, "DELETE FROM assignments WHERE grid = ?", [_grid(grid)])
        if cur.rowcount == 0:
            raise NotFound(f"no assignment for grid {grid!r}")

    # ------------------------------------------------------------ creating

    def create(self, *, type="verify", report_id=None, lat=None, lon=None, text="",
               deadline=None, deadline_s=None, device=None, operator=None, key=None,
               audit=None):
        """A new task (or, with a ``key`` seen before, the task that key made).

        A 核实 only before 立案 and a 核查 only after 处置反馈 (``cases``); a 核查 of a case
        moves it to 核查 in the task's transaction, recorded by ``audit`` (as the queue's)."""
        if type not in TASK_TYPES:
            raise Invalid(f"type: verify (核实), check (核查) or clip (the last 30 s of "
                          f"video), not {type!r}")
        if len(text or "") > 256:
            raise Invalid("text: at most 256 characters")
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= 80):
            raise Invalid("key: 1 to 80 characters")
        now_t = self.clock()
        if deadline is not None and deadline_s is not None:
            raise Invalid("give deadline or deadline_s, not both")
        if deadline_s is not None:
            if not 0 < float(deadline_s) <= 30 * 86400:
                raise Invalid("deadline_s: more than 0, at most 30 days")
            deadline = wire_time(now_t + timedelta(seconds=float(deadline_s)))
        elif deadline is not None:
            deadline = wire_time(parse_time(deadline, "deadline"))
        if device is not None:
            device = _device(device)
        grid, district = None, self.district
        if key is not None:
            existing = self._by_key(key)
            if existing is not None:
                return existing
        if report_id is not None:
            report = self.queue.get(report_id)
            lat, lon, grid = report["lat"], report["lon"], report["grid"]
            district = report["district"] or district
            if lat is None or lon is None:
                raise Invalid(f"report {report_id} has no position (no fix): give lat and lon")
        elif lat is None or lon is None:
            raise Invalid("give a report id or a point (lat and lon)")
        lat, lon = _coordinate(lat, -90, 90, "lat"), _coordinate(lon, -180, 180, "lon")
        if grid is None and self.locate is not None:
            grid = self.locate(lat, lon)
        if grid:
            district = grid[:6]
        task_id = "T-" + centre_day(now_t) + "-" + secrets.token_hex(4)
        with self.store.connect() as conn:
            if self.cases is not None:
                self.cases.task_fits(conn, type, report_id)
            routed_by = "operator" if device else None
            if device is None:
                device, routed_by = self._route(conn, grid, lat, lon)
            if device is not None:
                known = one(run(self.store, conn, "SELECT district FROM devices WHERE device = ?",
                                [device]))
                if known and known["district"]:
                    district = known["district"]
            run(self.store, conn,
                "INSERT INTO tasks (id, type, report_id, lat, lon, grid, district, text, device,"
                " routed_by, state, created_at, created_by, deadline, request_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?)",
                [task_id, type, report_id, lat, lon, grid, district, text or "", device,
                 routed_by, wire_time(now_t), operator, deadline, key])
            if self.cases is not None and type == "check" and report_id is not None:
                self.cases.checked(conn, report_id, task_id, operator or "?",
                                   wire_time(now_t), audit)
        return self.dispatch(task_id)

    def _by_key(self, key):
        with self.store.connect() as conn:
            found = one(run(self.store, conn, "SELECT id FROM tasks WHERE request_key = ?", [key]))
        return self.get(found["id"]) if found else None

    def _route(self, conn, grid, lat, lon):
        """(device, rule): the first of :data:`CHOSEN_BY` that finds a device, else
        (None, None)."""
        online = {c["device"]: c for c in rows(run(
            self.store, conn,
            "SELECT device, profile, last_lat, last_lon FROM devices WHERE state IN (?, ?)",
            list(ONLINE_STATES))) if is_mobile(c["profile"])}

        def nearest(devices):
            return min(((_far(lat, lon, online[d]), d) for d in devices), default=(None, None))[1]

        if self.roster is not None:
            now = self.clock()
            on_duty = self.roster.carried_on_duty(conn, now)
            if grid:
                chosen = self.roster.responsible(conn, grid, now)
                device = nearest(d for d, s in on_duty.items() if s in chosen and d in online)
                if device:
                    return device, "work_grid"
            device = nearest(d for d in on_duty if d in online
                             and online[d]["last_lat"] is not None)
            if device:
                return device, "nearest_on_duty"
        if grid:
            assigned = one(run(self.store, conn, "SELECT device FROM assignments WHERE grid = ?",
                               [grid]))
            if assigned:
                return assigned["device"], "assignment"
        device = nearest(d for d, c in online.items() if c["last_lat"] is not None)
        return (device, "nearest") if device else (None, None)

    # ------------------------------------------------------------ sending

    def dispatch(self, task_id):
        """Publish an open task to its device; re-route it first if it has none."""
        task = self.get(task_id)
        if task["state"] != "open" or self.publisher is None:
            return task
        if task["device"] is None:
            with self.store.connect() as conn:
                device, how = self._route(conn, task["grid"], task["lat"], task["lon"])
                if device is None:
                    return task
                run(self.store, conn, "UPDATE tasks SET device = ?, routed_by = ? WHERE id = ?",
                    [device, how, task_id])
            task = self.get(task_id)
        message = {"v": 1, "task": task["id"], "type": task["type"], "report": task["report_id"],
                   "lat": task["lat"], "lon": task["lon"], "grid": task["grid"],
                   "text": task["text"], "deadline": task["deadline"]}
        if task["report_id"] is not None:
            message.update(self._class_of(task["report_id"]))
        topic = task_topic(task["district"], task["device"])
        payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            self.publisher(topic, payload, qos=1)
        except Exception as exc:  # the link is down: the task stays open, with the reason
            with self.store.connect() as conn:
                run(self.store, conn, "UPDATE tasks SET error = ? WHERE id = ?",
                    [f"publish failed: {exc}", task_id])
            return self.get(task_id)
        with self.store.connect() as conn:
            run(self.store, conn,
                "UPDATE tasks SET state = 'sent', sent_at = ?, error = NULL"
                " WHERE id = ? AND state = 'open'", [wire_time(self.clock()), task_id])
        return self.get(task_id)

    def _class_of(self, report_id):
        """{kind, code} of the case a task's report is (else of the report): the device
        codes its result with it, not with its own default class."""
        sql = ("SELECT r.kind, r.code FROM reports r WHERE r.id = ?" if self.cases is None
               else "SELECT COALESCE(c.kind, r.kind) AS kind, COALESCE(c.code, r.code) AS code"
                    " FROM reports r LEFT JOIN cases c ON c.report_id = r.id WHERE r.id = ?")
        with self.store.connect() as conn:
            found = one(run(self.store, conn, sql, [report_id]))
        return {"kind": found["kind"], "code": found["code"]} if found else {}

    # ------------------------------------------------------------ closing

    def on_report(self, reports):
        """The runtime's after-commit hook: attach task results to their tasks."""
        results = [r for r in reports if r.get("source") == "task" and r.get("task")]
        if results:
            self._attach([(r["id"], r["task"], r.get("result"), r["device"]) for r in results])

    def sync(self):
        """Attach any committed results not yet attached, and expire overdue tasks.

        The after-commit hook does this at once when the API runs inside the gateway;
        this sweep covers results committed by another gateway process.
        """
        with self.store.connect() as conn:
            found = rows(run(
                self.store, conn,
                "SELECT r.id, r.task, r.result, r.device FROM reports r"
                " JOIN tasks t ON t.id = r.task AND t.device = r.device"
                " WHERE r.source = 'task' AND t.state <> 'done'"))
        if found:
            self._attach([(r["id"], r["task"], r["result"], r["device"]) for r in found])
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            run(self.store, conn,
                "UPDATE tasks SET state = 'expired' WHERE state IN ('open', 'sent')"
                " AND deadline IS NOT NULL AND deadline < ?", [now])

    def _attach(self, results):
        """Close each task by its result; only the device the task went to closes it (the
        ingest already dead-letters anyone else's result)."""
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            for report_id, task_id, result, device in results:
                cur = run(self.store, conn,
                          "UPDATE tasks SET state = 'done', done_at = ?, result = ?,"
                          " result_report = ? WHERE id = ? AND device = ? AND state <> 'done'",
                          [now, result, report_id, task_id, device])
                if cur.rowcount == 1:
                    self.queue.mark_attached(conn, report_id, now)
                    if self.cases is not None:
                        self.cases.check_result(conn, task_id, result, f"device:{device}",
                                                now)

    # ------------------------------------------------------------ reading

    def get(self, task_id):
        with self.store.connect() as conn:
            task = one(run(self.store, conn, "SELECT * FROM tasks WHERE id = ?", [task_id]))
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return _present(task)

    def list(self, *, state=None, report_id=None, device=None, limit=100):
        f = Filters(Invalid)
        f.choice("state", state, TASK_STATES)
        f.equal("report_id", report_id)
        f.equal("device", device)
        with self.store.connect() as conn:
            found = rows(run(self.store, conn,
                             "SELECT * FROM tasks" + f.clause + " ORDER BY created_at DESC, id"
                             " LIMIT ?", [*f.params, int(limit)]))
        return [_present(t) for t in found]


def _present(task):
    keys = ("id", "type", "report_id", "lat", "lon", "grid", "district", "text", "device",
            "state", "created_at", "created_by", "deadline", "sent_at", "done_at",
            "result", "result_report", "error")
    shown = {k: task.get(k) for k in keys}
    # who chose the device: a rule of CHOSEN_BY, "operator" (named in the request), or
    # None while none is chosen (the column keeps its first name, routed_by)
    shown["chosen_by"] = task.get("routed_by")
    return shown


def _far(lat, lon, device):
    """Distance in metres from a point to a device's last fix (infinite without one)."""
    if device["last_lat"] is None or device["last_lon"] is None:
        return math.inf
    return distance_m(lat, lon, device["last_lat"], device["last_lon"])


def _grid(grid):
    grid = str(grid).strip()
    if not (grid.isascii() and grid.isdigit()) or len(grid) not in (14, 15):
        raise Invalid(f"grid: a 14- or 15-digit unit grid code, not {grid!r}")
    return grid


def _device(device):
    device = str(device).strip()
    if not _DEVICE_ID.fullmatch(device):
        raise Invalid(f"device: [a-z0-9][a-z0-9-]{{2,31}}, not {device!r}")
    return device


def _coordinate(value, low, high, field):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise Invalid(f"{field}: a number, not {value!r}") from None
    if not (low <= value <= high) or math.isnan(value):
        raise Invalid(f"{field}: between {low} and {high}")
    return value
