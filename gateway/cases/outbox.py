"""The bridge's outbox: case messages waiting to leave for a department's system or the
city platform (tables ``bridge_outbox``, migrations ``bridge_001_outbox`` and
``bridge_002_move_order``).

A message is written in the transaction of the move that causes it, so a move that
commits is never without its message and a refused one never has one: a 派遣, and the
later moves the systems the 派遣 went to must know (返工 with the 核查 result, 结案,
作废, 挂账, 恢复, a 值班长 override) — these only to a webhook, since Open311 (GeoReport
v2) takes new requests and has no status update.  Its id is ``destination:key`` — a
派遣's key is the case number (``-2``, ``-3`` … for a case's later 派遣 after 返工), a
later move's ``case_no:n`` (``n`` its number in the case's history) — so one move writes
it once however it is retried.  ``seq`` (the move's history number) orders a case's
messages to one destination: one is sent only once every earlier one is.  The sender
(``cases.sender``) claims due messages with a lease (several gateway workers may run
senders), sends them, and marks each sent or due again after a backoff; a message that
failed ``stuck_after`` times is *stuck*: listed, counted on ``/metrics`` and on the
board, and retried on (an operator may ask for a try now).
"""

import json
from datetime import timedelta

from ..clock import wire_time
from ..queue import Invalid, NotFound, system_clock
from ..store.sql import Filters, decode_json, one, page_limit, rows, run
from . import lifecycle as lc
from . import reach as rc

CITY = "city"  # the destination name of the city platform (a department id is [a-z0-9…]{2,})
STATES = ("pending", "sent")
STUCK_AFTER = 5

_OUTBOX = """
ALTER TABLE case_departments ADD COLUMN system TEXT;
CREATE TABLE bridge_outbox (
    id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    case_no TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at TEXT NOT NULL,
    lease_until TEXT,
    last_status INTEGER,
    last_error TEXT,
    remote_id TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX bridge_outbox_due ON bridge_outbox (state, next_at);
CREATE INDEX bridge_outbox_case ON bridge_outbox (case_no);
"""

# a case's messages to one destination leave in the order of its moves (history ``n``)
_MOVE_ORDER = """
ALTER TABLE bridge_outbox ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX bridge_outbox_order ON bridge_outbox (case_no, destination, seq);
"""

MIGRATIONS = (("bridge_001_outbox", _OUTBOX, _OUTBOX),
              ("bridge_002_move_order", _MOVE_ORDER, _MOVE_ORDER))

# the later moves that leave (the action → the message's event)
MOVE_EVENTS = {"unresolved": "rework", "resolved": "close", "void": "void", "defer": "defer",
               "resume": "resume", lc.OVERRIDE: "override"}


class Outbox:
    """Case messages over a store.  ``city`` (a reach setting, ``reach.parse_reach``) is
    the city platform every 派遣 (and, by webhook, every later move) is copied to (None:
    no copy); ``names(kind, code)`` gives a class's name (``open311.ClassNames.names``)."""

    def __init__(self, store, *, clock=None, city=None, names=None, stuck_after=STUCK_AFTER):
        self.store = store
        self.clock = clock or system_clock
        self.city = city
        self.names = names
        self.stuck_after = stuck_after

    # ------------------------------------------------------------ writing (in a move)

    def dispatched(self, conn, case_no, now):
        """A case was 派遣 (inside the move's transaction): a message to its department's
        system, if the department has one, and a copy to the city platform, if set."""
        case = one(run(self.store, conn, "SELECT * FROM cases WHERE case_no = ?", [case_no]))
        dept = one(run(self.store, conn, "SELECT * FROM case_departments WHERE id = ?",
                       [case["department"]]))
        system = rc.parse_reach(decode_json(dept.get("system"), None)) if dept else None
        targets = ([case["department"]] if system else []) + ([CITY] if self.city else [])
        if not targets:
            return []
        n = one(run(self.store, conn, "SELECT COUNT(*) AS n FROM case_history WHERE case_no = ?"
                    " AND action = 'dispatch'", [case_no]))["n"]
        key = case_no if n <= 1 else f"{case_no}-{n}"
        report = one(run(self.store, conn,
                         "SELECT lat, lon, text, photos, captured_at FROM reports WHERE id = ?",
                         [case["report_id"]]))
        message = _message(case, dept, report or {}, key, now, self._class_name(case))
        body = json.dumps(message, ensure_ascii=False, sort_keys=True)
        return self._write(conn, targets, key, case, "dispatch", body, now)

    def moved(self, conn, case_no, action, now):
        """A later move (``MOVE_EVENTS``) of a case (inside the move's transaction): a
        message to each destination its 派遣 went to — the department it is dispatched
        to and the city platform — that is reached by webhook now (Open311 takes only
        new requests)."""
        event = MOVE_EVENTS.get(action)
        if event is None:
            return []
        case = one(run(self.store, conn, "SELECT * FROM cases WHERE case_no = ?", [case_no]))
        told = {r["destination"] for r in rows(run(
            self.store, conn, "SELECT DISTINCT destination FROM bridge_outbox WHERE"
            " case_no = ? AND event = 'dispatch'", [case_no]))}
        dept = one(run(self.store, conn, "SELECT * FROM case_departments WHERE id = ?",
                       [case["department"]])) if case["department"] in told else None
        system = rc.parse_reach(decode_json(dept.get("system"), None)) if dept else None
        targets = [dest for dest, reach in ((case["department"], system), (CITY, self.city))
                   if dest in told and reach is not None and reach["adapter"] == "webhook"]
        if not targets:
            return []
        entry = one(run(self.store, conn, "SELECT * FROM case_history WHERE case_no = ?"
                        " AND n = ?", [case_no, case["version"]]))
        detail = decode_json(entry["detail"], {}) or {}
        key = f"{case_no}:{entry['n']}"
        message = {"key": key, "event": event, "action": action, "seq": entry["n"],
                   "case_no": case_no, "report_id": case["report_id"], "kind": case["kind"],
                   "code": case["code"], "class_name": self._class_name(case),
                   "department": case["department"],
                   "department_name": dept["name"] if dept else None,
                   "from_state": entry["from_state"], "state": entry["to_state"],
                   "label": lc.LABELS.get(entry["to_state"]), "reason": entry["reason"],
                   "note": detail.get("note"), "by": entry["actor"], "at": entry["at"],
                   "check": self._check(conn, detail.get("task"))
                   if action in lc.CHECK_RESULTS else None}
        body = json.dumps(message, ensure_ascii=False, sort_keys=True)
        return self._write(conn, targets, key, case, event, body, now)

    def _check(self, conn, task_id):
        """The 核查 result a 返工 or 结案 carries: the task, its result, the device and
        the result report's words and photo hashes."""
        task = one(run(self.store, conn, "SELECT id, device, result, result_report, done_at"
                       " FROM tasks WHERE id = ?", [task_id])) if task_id else None
        if task is None:
            return None
        report = one(run(self.store, conn, "SELECT text, photos, captured_at FROM reports"
                         " WHERE id = ?", [task["result_report"]])) or {}
        photos = [p.get("sha256") if isinstance(p, dict) else p
                  for p in decode_json(report.get("photos"), [])]
        return {"task": task["id"], "result": task["result"], "device": task["device"],
                "report_id": task["result_report"], "text": report.get("text") or None,
                "photos": [p for p in photos if p], "captured_at": report.get("captured_at"),
                "done_at": task["done_at"]}

    def _write(self, conn, targets, key, case, event, body, now):
        made = []
        for dest in targets:
            cur = run(self.store, conn,
                      "INSERT INTO bridge_outbox (id, destination, key, case_no, event, body,"
                      " state, attempts, next_at, created_at, seq) VALUES (?, ?, ?, ?, ?, ?,"
                      " 'pending', 0, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                      [f"{dest}:{key}", dest, key, case["case_no"], event, body, now, now,
                       case["version"]])
            if cur.rowcount == 1:
                made.append(f"{dest}:{key}")
        return made

    def _class_name(self, case):
        if self.names is None or not case["code"]:
            return None
        try:
            return self.names(case["kind"], case["code"])[1]
        except (KeyError, ValueError):
            return None

    # ------------------------------------------------------------ the sender's side

    def reach(self, destination):
        """How to reach ``destination`` now (its setting may have changed since the
        message was written); None when it has no system."""
        if destination == CITY:
            return self.city
        with self.store.connect() as conn:
            dept = one(run(self.store, conn, "SELECT system FROM case_departments WHERE id = ?",
                           [destination]))
        return rc.parse_reach(decode_json(dept["system"], None)) if dept else None

    def claim(self, lease_s, limit=20):
        """Up to ``limit`` due messages, each leased to the caller for ``lease_s`` seconds
        (another sender skips it meanwhile), none while an earlier message of its case to
        its destination is still pending: [(id, destination, message)]."""
        now_t = self.clock()
        now, until = wire_time(now_t), wire_time(now_t + timedelta(seconds=lease_s))
        claimed = []
        with self.store.connect() as conn:
            due = rows(run(self.store, conn,
                           "SELECT b.id, b.destination, b.body FROM bridge_outbox b WHERE"
                           " b.state = 'pending' AND b.next_at <= ? AND (b.lease_until IS"
                           " NULL OR b.lease_until < ?) AND NOT EXISTS (SELECT 1 FROM"
                           " bridge_outbox e WHERE e.case_no = b.case_no AND e.destination ="
                           " b.destination AND e.state = 'pending' AND e.seq < b.seq)"
                           " ORDER BY b.next_at, b.id LIMIT ?",
                           [now, now, int(limit)]))
        for m in due:
            with self.store.connect() as conn:
                cur = run(self.store, conn,
                          "UPDATE bridge_outbox SET lease_until = ? WHERE id = ? AND state ="
                          " 'pending' AND (lease_until IS NULL OR lease_until < ?)",
                          [until, m["id"], now])
            if cur.rowcount == 1:
                claimed.append((m["id"], m["destination"], decode_json(m["body"], {})))
        return claimed

    def sent(self, msg_id, remote_id=None, status=None):
        with self.store.connect() as conn:
            run(self.store, conn,
                "UPDATE bridge_outbox SET state = 'sent', sent_at = ?, remote_id = ?,"
                " last_status = ?, last_error = NULL, attempts = attempts + 1,"
                " lease_until = NULL WHERE id = ? AND state = 'pending'",
                [wire_time(self.clock()), remote_id, status, msg_id])

    def failed(self, msg_id, error, status=None, *, base_s=2.0, cap_s=600.0):
        """A try failed: due again after the backoff of its tries so far."""
        with self.store.connect() as conn:
            found = one(run(self.store, conn,
                            "SELECT attempts FROM bridge_outbox WHERE id = ?", [msg_id]))
            if found is None:
                return None
            attempts = found["attempts"] + 1
            due = self.clock() + timedelta(seconds=rc.backoff(attempts, base_s=base_s,
                                                              cap_s=cap_s))
            run(self.store, conn,
                "UPDATE bridge_outbox SET attempts = ?, next_at = ?, last_error = ?,"
                " last_status = ?, lease_until = NULL WHERE id = ? AND state = 'pending'",
                [attempts, wire_time(due), str(error)[:500], status, msg_id])
        return attempts

    # ------------------------------------------------------------ reading

    def list(self, *, state=None, case_no=None, limit=50, offset=0):
        """Messages, oldest first; ``state`` pending, sent or ``stuck`` (pending, failed
        ``stuck_after`` times or more)."""
        f = Filters(Invalid)
        if state == "stuck":
            f.add("state = 'pending' AND attempts >= ?", self.stuck_after)
        else:
            f.choice("state", state, STATES, said="pending, sent or stuck")
        f.equal("case_no", case_no)
        limit = page_limit(limit, Invalid)
        with self.store.connect() as conn:
            total = one(run(self.store, conn, "SELECT COUNT(*) AS n FROM bridge_outbox"
                            + f.clause, f.params))["n"]
            found = rows(run(self.store, conn, "SELECT * FROM bridge_outbox" + f.clause
                             + " ORDER BY created_at, id LIMIT ? OFFSET ?",
                             [*f.params, limit, int(offset)]))
        return {"total": total, "limit": limit, "offset": int(offset),
                "items": [self._present(m) for m in found]}

    def get(self, msg_id):
        with self.store.connect() as conn:
            found = one(run(self.store, conn, "SELECT * FROM bridge_outbox WHERE id = ?",
                            [msg_id]))
        if found is None:
            raise NotFound(f"no outbox message {msg_id!r}")
        return self._present(found)

    def counts(self):
        """{"pending": n, "stuck": n}: what the gauges and the board show."""
        with self.store.connect() as conn:
            found = one(run(self.store, conn,
                            "SELECT COUNT(*) AS pending, COALESCE(SUM(CASE WHEN attempts >= ?"
                            " THEN 1 ELSE 0 END), 0) AS stuck FROM bridge_outbox"
                            " WHERE state = 'pending'", [self.stuck_after]))
        return {"pending": int(found["pending"]), "stuck": int(found["stuck"])}

    def retry_now(self, msg_id):
        """Make a pending message due now (after its system was mended, say)."""
        before = self.get(msg_id)
        if before["state"] != "pending":
            raise Invalid(f"outbox message {msg_id} was sent already ({before['sent_at']})")
        with self.store.connect() as conn:
            run(self.store, conn, "UPDATE bridge_outbox SET next_at = ? WHERE id = ?",
                [wire_time(self.clock()), msg_id])
        return before, self.get(msg_id)

    def _present(self, m):
        out = {k: m[k] for k in ("id", "destination", "key", "case_no", "event", "seq", "state",
                                 "attempts", "next_at", "last_status", "last_error",
                                 "remote_id", "created_at", "sent_at")}
        out["stuck"] = m["state"] == "pending" and m["attempts"] >= self.stuck_after
        out["message"] = decode_json(m["body"], {})
        return out


def _message(case, dept, report, key, now, class_name):
    photos = [p.get("sha256") if isinstance(p, dict) else p
              for p in decode_json(report.get("photos"), [])]
    return {"key": key, "event": "dispatch", "case_no": case["case_no"],
            "report_id": case["report_id"], "state": case["state"], "kind": case["kind"],
            "standard": case["standard"], "code": case["code"], "class_name": class_name,
            "grid": case["grid"], "district": case["district"],
            "department": case["department"], "department_name": dept["name"] if dept else None,
            "deadline": case["stage_due"], "lat": report.get("lat"), "lon": report.get("lon"),
            "text": report.get("text") or None, "photos": [p for p in photos if p],
            "captured_at": report.get("captured_at"), "dispatched_at": now}
