"""The case book: cases after 立案, their history, departments and per-class deadlines.

A case is opened in the intake queue's transaction when a report is accepted (立案, see
``IntakeQueue(on_accept=...)``) and then moves only through :mod:`.lifecycle`'s table.
Every move is one conditional UPDATE on the case's ``version``, so two people acting on
one case at once cannot both win; the loser is told what the case has become.  Each move
writes a history row (who, when, from, to, why, and whether the stage it ended was on
time) and, given ``audit``, an audit entry, in the same transaction.

Deadlines are durations per class code (longest prefix wins) and stage, counted on the
wall clock or in the centre's working time (``workcal``: working hours on working days,
with the calendar's holidays and 调休 workdays).
"""

import json
import re
from datetime import timedelta

from ..clock import wire_time
from ..queue import Conflict, Invalid, NotFound, parse_time, system_clock
from ..store.sql import Filters, decode_json, locked, one, page_limit, rows, run
from . import lifecycle as lc
from .reach import parse_reach, shown
from .sources import require_verified
from .workcal import DEFAULT_HOURS, CalendarError, WorkCalendar, parse_day

MAX_DEADLINE_S = 366 * 86400
DEPARTMENT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{1,31}")
PHOTO_REF = re.compile(r"[0-9a-f]{64}|https?://[!-~]{1,490}")
CLASS_PREFIX = re.compile(r"[0-9]{2,17}")
ACCOUNT = re.compile(r"[a-z0-9._-]{2,64}")  # a user name (``auth.accounts``)
DEFAULT_CODE = "default"  # the deadline of every class that has none of its own

_CASES = """
CREATE TABLE cases (
    case_no TEXT PRIMARY KEY,
    report_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    kind TEXT,
    standard TEXT,
    code TEXT,
    grid TEXT,
    district TEXT,
    department TEXT,
    check_task TEXT,
    stage TEXT,
    stage_since TEXT,
    stage_due TEXT,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX cases_state ON cases (state);
CREATE INDEX cases_check_task ON cases (check_task);
CREATE TABLE case_history (
    case_no TEXT NOT NULL,
    n INTEGER NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    stage TEXT,
    due TEXT,
    on_time INTEGER,
    PRIMARY KEY (case_no, n)
);
CREATE TABLE case_departments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    classes TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE case_deadlines (
    stage TEXT NOT NULL,
    code TEXT NOT NULL,
    seconds INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (stage, code)
);
INSERT INTO cases (case_no, report_id, state, kind, standard, code, grid, district, stage,
                   stage_since, version, created_at, created_by, updated_at)
SELECT i.case_no, i.report_id, 'registered', r.kind, r.standard, r.code, r.grid, r.district,
       'dispatch', i.decided_at, 1, i.decided_at, i.decided_by, i.decided_at
FROM intake i JOIN reports r ON r.id = i.report_id
WHERE i.state = 'accepted' AND i.case_no IS NOT NULL;
INSERT INTO case_history (case_no, n, at, actor, action, from_state, to_state)
SELECT case_no, 1, created_at, COALESCE(created_by, '?'), 'register', NULL, 'registered'
FROM cases;
"""

# A deadline counts wall-clock time or the centre's working time (``workcal``); the
# calendar holds the days that differ from Monday-to-Friday: holidays and 调休 workdays.
_WORKING_TIME = """
ALTER TABLE case_deadlines ADD COLUMN clock TEXT NOT NULL DEFAULT 'wall';
CREATE TABLE case_calendar (
    day TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    note TEXT,
    updated_at TEXT NOT NULL
);
"""

# the cases of reports accepted before this table existed are opened at 立案
# the accounts that act for a department (开始处置, 处置反馈 on its cases); none: any
# department account may
_DEPARTMENT_ACCOUNTS = "ALTER TABLE case_departments ADD COLUMN accounts TEXT NOT NULL DEFAULT '[]'"

MIGRATIONS = (("case_001_cases", _CASES, _CASES),
              ("case_003_working_time", _WORKING_TIME, _WORKING_TIME),
              ("case_004_department_accounts", _DEPARTMENT_ACCOUNTS, _DEPARTMENT_ACCOUNTS))
CLOCKS = ("wall", "working")
DAY_KINDS = ("holiday", "workday")

CASE_FIELDS = ("case_no", "report_id", "state", "kind", "standard", "code", "grid", "district",
               "department", "check_task", "stage", "stage_since", "stage_due", "version",
               "created_at", "created_by", "updated_at")


class CaseBook:
    """Cases over a store; ``desk`` (a ``TaskDesk``) sends 核查 tasks, ``trail`` (an
    ``AuditTrail``) records the moves a task result makes, ``outbox`` (an ``Outbox``)
    takes the messages a 派遣 and the later moves send out, in the move's transaction."""

    def __init__(self, store, *, clock=None, trail=None, hours=DEFAULT_HOURS, outbox=None):
        self.store = store
        self.outbox = outbox  # a ``cases.outbox.Outbox``: moves leave for departments' systems
        self.clock = clock or system_clock
        self.trail = trail
        self.hours = hours  # the working hours of a working day (``workcal``)

    # ------------------------------------------------------------ opening (立案)

    def register(self, conn, report_id, case_no, actor, now):
        """Open the case of an accepted report, inside the intake queue's transaction
        (an operator's report only once a 核实 confirmed it: else Conflict, and no 立案)."""
        require_verified(self.store, conn, report_id)
        report = one(run(self.store, conn,
                         "SELECT kind, standard, code, grid, district FROM reports WHERE id = ?",
                         [report_id]))
        due = self._due(conn, "dispatch", report["code"], now)
        run(self.store, conn,
            "INSERT INTO cases (case_no, report_id, state, kind, standard, code, grid, district,"
            " stage, stage_since, stage_due, version, created_at, created_by, updated_at)"
            " VALUES (?, ?, 'registered', ?, ?, ?, ?, ?, 'dispatch', ?, ?, 1, ?, ?, ?)"
            " ON CONFLICT (case_no) DO NOTHING",
            [case_no, report_id, report["kind"], report["standard"], report["code"],
             report["grid"], report["district"], now, due, now, actor, now])
        run(self.store, conn,
            "INSERT INTO case_history (case_no, n, at, actor, action, from_state, to_state)"
            " VALUES (?, 1, ?, ?, 'register', NULL, 'registered') ON CONFLICT DO NOTHING",
            [case_no, now, actor])

    # ------------------------------------------------------------ reading

    def get(self, case_no, *, history=True):
        with self.store.connect() as conn:
            case = self._row(conn, case_no)
            if case is None:
                raise NotFound(f"no case {case_no!r}")
            entries = self._history(conn, case_no) if history else None
        return _present(case, entries, wire_time(self.clock()))

    def by_report(self, report_id):
        """The case of a report, or None when it was never 立案."""
        with self.store.connect() as conn:
            found = one(run(self.store, conn, "SELECT case_no FROM cases WHERE report_id = ?",
                            [report_id]))
        return self.get(found["case_no"], history=False) if found else None

    def list(self, *, state=None, department=None, overdue=None, limit=50, offset=0):
        """A page of cases, newest first; ``overdue`` true keeps the cases whose current
        stage is past its deadline (督办), false those that are not."""
        now = wire_time(self.clock())
        f = Filters(Invalid)
        if overdue is not None:
            f.add("stage_due IS NOT NULL AND stage_due < ?" if overdue
                  else "(stage_due IS NULL OR stage_due >= ?)", now)
        f.choice("state", state, lc.STATES)
        f.equal("department", department)
        limit = page_limit(limit, Invalid)
        with self.store.connect() as conn:
            total = one(run(self.store, conn, "SELECT COUNT(*) AS n FROM cases" + f.clause,
                            f.params))["n"]
            found = rows(run(self.store, conn,
                             "SELECT * FROM cases" + f.clause + " ORDER BY created_at DESC,"
                             " case_no LIMIT ? OFFSET ?", [*f.params, limit, int(offset)]))
        return {"total": total, "limit": limit, "offset": int(offset),
                "items": [_present(c, None, now) for c in found]}

    def _row(self, conn, case_no):
        return one(run(self.store, conn, "SELECT * FROM cases WHERE case_no = ?", [case_no]))

    def _history(self, conn, case_no):
        found = rows(run(self.store, conn,
                         "SELECT * FROM case_history WHERE case_no = ? ORDER BY n", [case_no]))
        return [_entry(h) for h in found]

    # ------------------------------------------------------------ moving

    def act(self, case_no, action, actor, *, audit=None, department=None, deadline=None,
            deadline_s=None, reason=None, note=None, photos=None, state=None):
        """Move a case by ``action`` (a :data:`lifecycle.ACTIONS` name) in ``actor``'s name.

        ``audit(conn, action, target=, before=, after=)`` records the move in its
        transaction.  Refused moves raise :class:`Conflict` (409) saying why, a move asked
        twice too (the second finds the case moved already).
        """
        if action == "check" or action in lc.CHECK_RESULTS:
            raise Invalid(f"{action}: made by a 核查 task (send one with the check route)")
        reason = _text(reason, "reason", required=action in ("defer", "void", lc.OVERRIDE))
        note = _text(note, "note")
        if action == "feedback":
            photos = _photos(photos)
        detail = {k: v for k, v in (("note", note), ("photos", photos)) if v}
        with self.store.connect() as conn:
            case = self._locked(conn, case_no)
            goal = self._goal(case, action, state)
            now_t = self.clock()
            now = wire_time(now_t)
            changes = {}
            if action == "dispatch":
                dept = self._department(conn, department, case["code"])
                changes["department"] = dept["id"]
                detail.update(department=dept["id"], department_name=dept["name"])
                due = _explicit_due(deadline, deadline_s, now_t)
                detail["deadline"] = due or self._due(conn, "handle", case["code"], now)
                changes.update(stage="handle", stage_since=now, stage_due=detail["deadline"])
            self._move(conn, case, action, goal, actor, now, reason=reason, detail=detail,
                       changes=changes, audit=audit)
            if action == "dispatch" and self.outbox is not None:
                self.outbox.dispatched(conn, case_no, now)
            elif self.outbox is not None:
                self.outbox.moved(conn, case_no, action, now)
        return self.get(case_no)

    def checked(self, conn, report_id, task_id, actor, now, audit=None):
        """A 核查 of report ``report_id`` is created (task ``task_id``): its case moves to
        核查, in the task's transaction."""
        found = one(run(self.store, conn, "SELECT case_no FROM cases WHERE report_id = ?",
                        [report_id]))
        case = self._locked(conn, found["case_no"])
        goal = self._goal(case, "check", None)
        self._move(conn, case, "check", goal, actor, now, detail={"task": task_id},
                   changes={"check_task": task_id}, audit=audit)

    def check_result(self, conn, task_id, result, actor, now):
        """A 核查 task came back: 结案 when resolved, 返工 when not — only for the case the
        task is the current 核查 of, and only while it is in 核查."""
        action = lc.CHECK_RESULTS.get(result)
        found = one(run(self.store, conn,
                        "SELECT case_no FROM cases WHERE check_task = ? AND state = ?",
                        [task_id, lc.CHECKING]))
        if action is None or found is None:
            return None
        case = self._locked(conn, found["case_no"])
        audit = None
        if self.trail is not None:
            def audit(conn, name, **kw):
                return self.trail.record(conn, actor, name, **kw)
        goal = self._goal(case, action, None)
        self._move(conn, case, action, goal, actor, now, detail={"task": task_id},
                   audit=audit)
        if self.outbox is not None:  # 返工 or 结案, with the 核查 result
            self.outbox.moved(conn, case["case_no"], action, now)
        return goal

    def task_fits(self, conn, task_type, report_id):
        """Refuse a task whose type does not fit the report's case: 核实 only before 立案,
        核查 only once the department has reported back (处置反馈); a clip task (the
        vehicle's last 30 s of video) fits any report, at any stage."""
        if report_id is None or task_type == "clip":
            return
        case = one(run(self.store, conn, "SELECT case_no, state FROM cases WHERE report_id = ?",
                       [report_id]))
        if task_type == "verify":
            if case is not None:
                raise Conflict(f"a 核实 (verify) task is only before 立案: report {report_id} "
                               f"is case {case['case_no']}, {lc.label(case['state'])}",
                               state=case["state"], case_no=case["case_no"])
            decided = one(run(self.store, conn,
                              "SELECT state FROM intake WHERE report_id = ?", [report_id]))
            if decided is not None and decided["state"] in ("rejected", "attached"):
                raise Conflict(f"a 核实 (verify) task is only for a report still to be "
                               f"decided: report {report_id} is {decided['state']}",
                               state=decided["state"])
        elif case is None:
            raise Conflict(f"a 核查 (check) task is only after 处置反馈: report {report_id} "
                           "is not a case (not 立案)", state=None)
        else:
            self._goal(case, "check", None)

    def _goal(self, case, action, state):
        try:
            return lc.check(action, case["state"], state)
        except lc.Refused as refused:
            raise Conflict(f"case {case['case_no']}: {refused}", state=case["state"],
                           case_no=case["case_no"], allowed=list(refused.allowed)) from None

    def _locked(self, conn, case_no):
        return locked(self.store, conn, "SELECT * FROM cases WHERE case_no = ?", [case_no],
                      lambda: NotFound(f"no case {case_no!r}"))

    def _move(self, conn, case, action, goal, actor, now, *, reason=None, detail=None,
              changes=None, audit=None):
        changes = dict(changes or {})
        left, entered = lc.stage_change(case["state"], goal)
        judged_stage = judged_due = judged = None
        if left is not None:
            judged_stage, judged_due = left, case["stage_due"]
            judged = lc.on_time(judged_due, now)
        if entered is not None and "stage" not in changes:
            changes.update(stage=entered, stage_since=now,
                           stage_due=self._due(conn, entered, case["code"], now))
        if goal in lc.TERMINAL or lc.STAGE_OF.get(goal) is None:
            changes.update(stage=None, stage_since=None, stage_due=None)
        sets = ", ".join(f"{k} = ?" for k in changes)
        cur = run(self.store, conn,
                  "UPDATE cases SET state = ?, version = version + 1, updated_at = ?"
                  + (", " + sets if sets else "") + " WHERE case_no = ? AND version = ?",
                  [goal, now, *changes.values(), case["case_no"], case["version"]])
        if cur.rowcount != 1:
            now_case = self._row(conn, case["case_no"])
            raise Conflict(f"case {case['case_no']} changed meanwhile: it is "
                           f"{lc.label(now_case['state'])} now", state=now_case["state"],
                           case_no=case["case_no"])
        n = case["version"] + 1
        run(self.store, conn,
            "INSERT INTO case_history (case_no, n, at, actor, action, from_state, to_state,"
            " reason, detail, stage, due, on_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [case["case_no"], n, now, actor, action, case["state"], goal, reason,
             json.dumps(detail, ensure_ascii=False) if detail else None, judged_stage,
             judged_due, None if judged is None else int(judged)])
        if audit is not None:
            after = self._row(conn, case["case_no"])
            audit(conn, f"case.{action}", target=f"case:{case['case_no']}",
                  before=_audited(case), after={**_audited(after), "reason": reason,
                                                 **(detail or {})})

    # ------------------------------------------------------------ departments

    def departments(self):
        with self.store.connect() as conn:
            found = rows(run(self.store, conn, "SELECT * FROM case_departments ORDER BY id"))
        return [_department(d) for d in found]

    def department(self, dept_id):
        with self.store.connect() as conn:
            found = one(run(self.store, conn, "SELECT * FROM case_departments WHERE id = ?",
                            [dept_id]))
        if found is None:
            raise NotFound(f"no department {dept_id!r}")
        return _department(found)

    def put_department(self, dept_id, name, classes, accounts=(), system=None):
        """Add or change a department: its name, the class codes (or prefixes) it handles,
        the accounts that act for it (none: any department account) and how to reach its
        system (``cases.reach.parse_reach``; none: 派遣 sends nothing out)."""
        system = parse_reach(system)
        if not isinstance(accounts, (list, tuple)) or len(accounts) > 100 or not all(
                isinstance(a, str) and ACCOUNT.fullmatch(a) for a in accounts):
            raise Invalid(f"accounts: at most 100 user names ([a-z0-9._-], 2 to 64), not "
                          f"{accounts!r}")
        accounts = sorted(set(accounts))
        if not isinstance(dept_id, str) or not DEPARTMENT_ID.fullmatch(dept_id):
            raise Invalid(f"department id: [a-z0-9][a-z0-9_-]{{1,31}}, not {dept_id!r}")
        name = _text(name, "name", required=True, most=64)
        if not isinstance(classes, list) or not 1 <= len(classes) <= 200:
            raise Invalid("classes: a list of 1 to 200 class codes or prefixes")
        for code in classes:
            if not isinstance(code, str) or not CLASS_PREFIX.fullmatch(code):
                raise Invalid(f"classes: a class code or prefix is 2 to 17 digits, not {code!r}")
        classes = sorted(set(classes))
        stored = None if system is None else json.dumps(system)
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            run(self.store, conn,
                "INSERT INTO case_departments (id, name, classes, accounts, system, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = ?,"
                " classes = ?, accounts = ?, system = ?, updated_at = ?",
                [dept_id, name, json.dumps(classes), json.dumps(accounts), stored, now, name,
                 json.dumps(classes), json.dumps(accounts), stored, now])
        return {"id": dept_id, "name": name, "classes": classes, "accounts": accounts,
                "system": shown(system), "updated_at": now}

    def acts_for(self, case_no, account):
        """Whether ``account`` may act for the department a case is dispatched to: it is
        listed, or the department lists no accounts (or the case has none yet)."""
        with self.store.connect() as conn:
            found = one(run(self.store, conn,
                            "SELECT d.id, d.accounts FROM cases c JOIN case_departments d"
                            " ON d.id = c.department WHERE c.case_no = ?", [case_no]))
        if found is None:
            return True
        listed = decode_json(found["accounts"], [])
        return not listed or account in listed

    def _department(self, conn, dept_id, code):
        if not dept_id:
            raise Invalid("department: required when dispatching (派遣)")
        found = one(run(self.store, conn, "SELECT * FROM case_departments WHERE id = ?",
                        [dept_id]))
        if found is None:
            raise Invalid(f"department: no department {dept_id!r} (add it first)")
        dept = _department(found)
        if not any(code.startswith(p) for p in dept["classes"]):
            raise Conflict(f"department {dept_id} ({dept['name']}) does not handle class "
                           f"{code}: it handles {', '.join(dept['classes'])}", state=None)
        return dept

    # ------------------------------------------------------------ deadlines

    def deadlines(self):
        with self.store.connect() as conn:
            found = rows(run(self.store, conn,
                             "SELECT stage, code, seconds, clock, updated_at FROM case_deadlines"
                             " ORDER BY stage, code"))
        return [{**d, "code": d["code"] or DEFAULT_CODE} for d in found]

    def put_deadline(self, stage, code, seconds, clock="wall"):
        """The time a stage may take for a class (code or prefix, or ``default``), counted
        on the wall clock or in the centre's working time (``clock`` ``working``)."""
        if clock not in CLOCKS:
            raise Invalid(f"clock: wall or working, not {clock!r}")
        if stage not in lc.STAGES:
            raise Invalid(f"stage: one of {', '.join(lc.STAGES)}, not {stage!r}")
        if code != DEFAULT_CODE and not CLASS_PREFIX.fullmatch(code or ""):
            raise Invalid(f"code: a class code or prefix (2 to 17 digits) or {DEFAULT_CODE}, "
                          f"not {code!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not (
                60 <= seconds <= MAX_DEADLINE_S):
            raise Invalid(f"seconds: a whole number from 60 to {MAX_DEADLINE_S}")
        stored = "" if code == DEFAULT_CODE else code
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            run(self.store, conn,
                "INSERT INTO case_deadlines (stage, code, seconds, clock, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (stage, code) DO UPDATE SET seconds = ?,"
                " clock = ?, updated_at = ?",
                [stage, stored, seconds, clock, now, seconds, clock, now])
        return {"stage": stage, "code": code, "seconds": seconds, "clock": clock,
                "updated_at": now}

    # ------------------------------------------------------------ the working calendar

    def calendar(self):
        """The days that differ from Monday-to-Friday, in order."""
        with self.store.connect() as conn:
            return rows(run(self.store, conn,
                            "SELECT day, kind, note, updated_at FROM case_calendar ORDER BY day"))

    def put_day(self, day, kind, note=None):
        """Mark a day a ``holiday`` (a weekday off) or a ``workday`` (a weekend day worked)."""
        try:
            day = parse_day(day).isoformat()
        except CalendarError as exc:
            raise Invalid(str(exc)) from None
        if kind not in DAY_KINDS:
            raise Invalid(f"kind: holiday or workday, not {kind!r}")
        note = _text(note, "note", most=100)
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            run(self.store, conn,
                "INSERT INTO case_calendar (day, kind, note, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (day) DO UPDATE SET kind = ?, note = ?, updated_at = ?",
                [day, kind, note, now, kind, note, now])
        return {"day": day, "kind": kind, "note": note, "updated_at": now}

    def delete_day(self, day):
        with self.store.connect() as conn:
            cur = run(self.store, conn, "DELETE FROM case_calendar WHERE day = ?", [day])
        if cur.rowcount == 0:
            raise NotFound(f"no calendar entry for {day!r}")

    def _work_calendar(self, conn):
        found = rows(run(self.store, conn, "SELECT day, kind FROM case_calendar"))
        days = {kind: {parse_day(d["day"]) for d in found if d["kind"] == kind}
                for kind in DAY_KINDS}
        return WorkCalendar(days["holiday"], days["workday"], self.hours)

    def _due(self, conn, stage, code, now):
        """The deadline of ``stage`` for class ``code`` starting ``now``, or None."""
        found = rows(run(self.store, conn,
                         "SELECT code, seconds, clock FROM case_deadlines WHERE stage = ?",
                         [stage]))
        fitting = [d for d in found if (code or "").startswith(d["code"])]
        if not fitting:
            return None
        best = max(fitting, key=lambda d: len(d["code"]))
        if best["clock"] == "working":
            try:
                due = self._work_calendar(conn).add(parse_time(now), best["seconds"])
            except CalendarError as exc:
                raise Conflict(f"the {stage} deadline cannot be placed: {exc}",
                               state=None) from None
            return wire_time(due)
        return wire_time(parse_time(now) + timedelta(seconds=best["seconds"]))


# ---------------------------------------------------------------- helpers


def _explicit_due(deadline, deadline_s, now_t):
    if deadline is not None and deadline_s is not None:
        raise Invalid("give deadline or deadline_s, not both")
    if deadline_s is not None:
        if isinstance(deadline_s, bool) or not 0 < float(deadline_s) <= MAX_DEADLINE_S:
            raise Invalid(f"deadline_s: more than 0, at most {MAX_DEADLINE_S}")
        return wire_time(now_t + timedelta(seconds=float(deadline_s)))
    if deadline is not None:
        due = parse_time(deadline, "deadline")
        if due <= now_t:
            raise Invalid(f"deadline: {deadline} has passed already")
        return wire_time(due)
    return None


def _text(value, field, *, required=False, most=500):
    if value is None:
        if required:
            raise Invalid(f"{field}: required")
        return None
    if not isinstance(value, str):
        raise Invalid(f"{field}: text, not {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise Invalid(f"{field}: required (not blank)")
    if len(value) > most:
        raise Invalid(f"{field}: at most {most} characters")
    return value or None


def _photos(photos):
    if not isinstance(photos, list) or not 1 <= len(photos) <= 8:
        raise Invalid("photos: 处置反馈 needs 1 to 8 photos (a photo's sha256, or its URL)")
    for p in photos:
        if not isinstance(p, str) or not PHOTO_REF.fullmatch(p):
            raise Invalid(f"photos: a photo's sha256 (64 hex digits) or an http(s) URL, "
                          f"not {p!r}")
    return list(photos)


def _audited(case):
    return {k: case[k] for k in ("state", "department", "check_task", "stage_due")}


def _department(row):
    return {"id": row["id"], "name": row["name"], "classes": decode_json(row["classes"], []),
            "accounts": decode_json(row.get("accounts"), []),
            "system": shown(decode_json(row.get("system"), None)), "updated_at": row["updated_at"]}


def _entry(h):
    return {"n": h["n"], "at": h["at"], "actor": h["actor"], "action": h["action"],
            "from_state": h["from_state"], "to_state": h["to_state"],
            "label": lc.LABELS.get(h["to_state"]), "reason": h["reason"],
            "detail": decode_json(h["detail"], {}) or {}, "stage": h["stage"], "due": h["due"],
            "on_time": None if h["on_time"] is None else bool(h["on_time"])}


def _present(case, history, now):
    out = {k: case[k] for k in CASE_FIELDS}
    out["label"] = lc.LABELS.get(case["state"])
    out["overdue"] = case["stage_due"] is not None and case["stage_due"] < now
    out["actions"] = list(lc.allowed_actions(case["state"]))
    if history is not None:
        out["history"] = history
    return out
