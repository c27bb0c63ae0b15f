"""The supervision centre's intake queue: list, claim with a lease, accept (立案), reject.

The ingest path writes ``reports``; this module keeps the operators' side in a table of its
own, ``intake``, one row per report once anyone has touched it (no row = pending, unclaimed).
Every change is one conditional UPDATE, so two operators racing for the same report cannot
both win, on SQLite or PostgreSQL alike.  Every decision is idempotent: the same request
twice gives the same answer and changes nothing the second time; a conflicting one raises
:class:`Conflict` naming what is in the way.
"""

from datetime import UTC, datetime, timedelta

from .clock import centre_day, parse_iso, wire_time
from .errors import GatewayError
from .store.sql import Filters, decode_json, one, one_of, page_limit, rows, run

DEFAULT_LEASE_S = 300
MAX_LEASE_S = 3600
STATES = ("pending", "accepted", "rejected", "attached", "merged")
REPORT_FLAGS = ("no_fix", "stale_fix", "clock_fallback", "fixed_position", "photo_dropped")
# what the list filters by: the gateway's own judgements and the device's flags
FILTER_FLAGS = ("grid_mismatch", "capture_time", *REPORT_FLAGS)
_LIVE = "(i.holder IS NOT NULL AND i.lease_until > ?)"  # a claim whose lease still runs

# the time a report is queued by: its capture time, unless that is flagged (time_flag)
QUEUE_TIME = "CASE WHEN time_flag IS NULL THEN captured_at ELSE received_at END"
_QUEUE_TIME_R = "CASE WHEN r.time_flag IS NULL THEN r.captured_at ELSE r.received_at END"
SORTS = {"queue": _QUEUE_TIME_R, "received": "r.received_at"}  # page orders, by name

MIGRATIONS = (
    (
        "intake_001_intake",
        "CREATE TABLE IF NOT EXISTS intake ("
        " report_id TEXT PRIMARY KEY, state TEXT NOT NULL DEFAULT 'pending',"
        " holder TEXT, lease_until TEXT, case_no TEXT UNIQUE, reason TEXT,"
        " decided_by TEXT, decided_at TEXT, updated_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS intake ("
        " report_id TEXT PRIMARY KEY, state TEXT NOT NULL DEFAULT 'pending',"
        " holder TEXT, lease_until TEXT, case_no TEXT UNIQUE, reason TEXT,"
        " decided_by TEXT, decided_at TEXT, updated_at TEXT NOT NULL)",
    ),
    (
        "intake_002_state_index",
        "CREATE INDEX IF NOT EXISTS intake_state_idx ON intake (state)",
        "CREATE INDEX IF NOT EXISTS intake_state_idx ON intake (state)",
    ),
    (
        # The queue's page order (newest first, id as tie-break) straight from an index:
        # without it PostgreSQL sorts every pending report for each page.
        "intake_003_reports_page_order",
        "CREATE INDEX IF NOT EXISTS intake_reports_page_order ON reports (captured_at, id)",
        "CREATE INDEX IF NOT EXISTS intake_reports_page_order ON reports (captured_at, id)",
    ),
    (
        # the page order's index begins with captured_at: the single-column one is a
        # B-tree more for every report ingested, and answers nothing the other cannot
        "intake_004_drop_captured_at_index",
        "DROP INDEX IF EXISTS reports_captured_at",
        "DROP INDEX IF EXISTS reports_captured_at",
    ),
    (
        # The page order: by capture time, but by receive time where the capture time is
        # flagged (a clock in 2099 must not sit at the top of the newest-first queue).
        "intake_005_reports_queue_order",
        "CREATE INDEX IF NOT EXISTS intake_reports_queue_order ON reports (" + QUEUE_TIME
        + ", id)",
        "CREATE INDEX IF NOT EXISTS intake_reports_queue_order ON reports ((" + QUEUE_TIME
        + "), id)",
    ),
)


class QueueError(GatewayError):
    """A queue request that cannot be carried out as asked."""


class NotFound(QueueError, LookupError):
    """No report (or task) with that id."""


class Invalid(QueueError, ValueError):
    """A malformed request: a missing operator, an empty reason, a bad filter."""


class Conflict(QueueError):
    """The request clashes with the report's state: held by another operator, decided otherwise."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


# ---------------------------------------------------------------- times


def parse_time(text, field="time"):
    """An ISO 8601 time from a request (``clock.parse_iso``) → aware datetime, or Invalid."""
    try:
        return parse_iso(text)
    except ValueError:
        raise Invalid(f"{field}: not an ISO 8601 time: {text!r}") from None


def system_clock():
    return datetime.now(UTC)


# ---------------------------------------------------------------- the queue


def _operator(operator):
    if not isinstance(operator, str) or not operator.strip():
        raise Invalid("operator: required (who is acting)")
    operator = operator.strip()
    if len(operator) > 64:
        raise Invalid("operator: at most 64 characters")
    return operator


class IntakeQueue:
    """Queue operations over a store (``open_store``); ``clock`` returns an aware datetime."""

    def __init__(self, store, *, clock=None, codebooks=None, on_accept=None):
        self.store = store
        self.clock = clock or system_clock
        self.codebooks = codebooks
        # on_accept(conn, report_id, case_no, operator, now): opens the case in 立案's
        # transaction (``cases.book.CaseBook.register``)
        self.on_accept = on_accept
        # annotate(items): adds to listed report items (``cases.duplicates``: likely
        # duplicates, merged reports, a sensor's repeats)
        self.annotate = None

    def now(self):
        return wire_time(self.clock())

    # ------------------------------------------------------------ reading

    def list(self, *, status="pending", grid=None, street=None, code=None, kind=None,
             device=None, since=None, until=None, flags=(), source=None, held=None,
             limit=50, offset=0, order="desc", sort="queue"):
        """One page of reports with their intake state, and the total matching count.

        ``grid`` and ``code`` match as prefixes (a community's grids, a major class;
        ``code`` may be a list of prefixes, any of which matches); ``sort`` is ``queue``
        (capture time, receive time where the capture time is flagged) or ``received``;
        ``flags`` lists report flags or ``grid_mismatch``, all of which must be present;
        ``held`` true/false keeps only reports under / not under a live claim.
        Urgent reports (突发事件) stand above all others (each part in ``order``); the
        page runs over urgent-then-routine.
        """
        one_of("status", status, (*STATES, "all"), Invalid)
        one_of("order", order, ("asc", "desc"), Invalid, said="asc or desc")
        one_of("sort", sort, SORTS, Invalid)
        limit, offset = _count(limit, "limit"), _count(offset, "offset")
        limit = page_limit(limit, Invalid)
        now = self.now()
        f = Filters(Invalid)  # conditions on the report alone
        if grid:
            # a local 12-digit grid code (6 + 2 + 2 + 2) the local book maps stands for
            # its standard code; stored codes are always the standard ones
            alias = self.codebooks.grid_alias(grid) if self.codebooks is not None else None
            f.add("r.grid LIKE ?", _digits(alias or grid, "grid") + "%")
        if street:
            f.add("r.street = ?", _digits(street, "street"))
        if code:
            prefixes = [code] if isinstance(code, str) else list(code)
            f.add("(" + " OR ".join(["r.code LIKE ?"] * len(prefixes)) + ")",
                  *(_digits(c, "code") + "%" for c in prefixes))
        f.choice("kind", kind or None, ("event", "component"), "r.kind", "event or component")
        f.equal("r.device", device or None)
        f.equal("r.source", source or None)
        if since:
            f.add("r.captured_at >= ?", wire_time(parse_time(since, "since")))
        if until:
            f.add("r.captured_at < ?", wire_time(parse_time(until, "until")))
        for flag in flags:
            if flag == "grid_mismatch":
                f.add("r.grid_mismatch = 1")
            elif flag == "capture_time":
                f.add("r.time_flag IS NOT NULL")
            elif flag in REPORT_FLAGS:
                f.add("r.flags LIKE ?", f'%"{flag}"%')
            else:
                known = ", ".join(FILTER_FLAGS)
                raise Invalid(f"flag: one of {known}; not {flag!r}")
        where, params = f.where, f.params
        # The page walks the reports in index order and tests each against ``intake``
        # with an (anti-)semi-join: both planners stop after one page instead of joining
        # and sorting every pending report.
        page_where, page_params = list(where), list(params)
        if status == "pending":
            page_where.append("NOT EXISTS (SELECT 1 FROM intake x WHERE x.report_id = r.id"
                              " AND x.state <> 'pending')")
        elif status != "all":
            page_where.append("EXISTS (SELECT 1 FROM intake x WHERE x.report_id = r.id"
                              " AND x.state = ?)")
            page_params.append(status)
        if held is not None:
            page_where.append(("EXISTS" if held else "NOT EXISTS")
                              + " (SELECT 1 FROM intake x WHERE x.report_id = r.id"
                              " AND x.holder IS NOT NULL AND x.lease_until > ?)")
            page_params.append(now)
        direction = "DESC" if order == "desc" else "ASC"

        def page(urgent, lim, off):
            clause = " WHERE " + " AND ".join([*page_where, f"r.urgent = {urgent}"])
            return rows(run(
                self.store, conn,
                "SELECT r.* FROM reports r" + clause
                + f" ORDER BY {SORTS[sort]} {direction}, r.id {direction} LIMIT ? OFFSET ?",
                [*page_params, lim, off],
            ))

        with self.store.connect() as conn:
            total = self._total(conn, where, params, status, held, now)
            # the urgent ones are few (a partial index holds them): counted, then paged
            # ahead of the routine ones, which keep walking the queue-order index
            clause = " WHERE " + " AND ".join([*page_where, "r.urgent = 1"])
            n_urgent = one(run(self.store, conn,
                               "SELECT COUNT(*) AS n FROM reports r" + clause,
                               page_params))["n"]
            found = page(1, limit, offset) if offset < n_urgent else []
            if len(found) < limit:
                found += page(0, limit - len(found), max(0, offset - n_urgent))
            touched = {}
            if found:
                ids = [r["id"] for r in found]
                touched = {i["report_id"]: i for i in rows(run(
                    self.store, conn,
                    "SELECT * FROM intake WHERE report_id IN (" + ", ".join("?" * len(ids)) + ")",
                    ids))}
        for r in found:
            i = touched.get(r["id"], {})
            r.update(intake_state=i.get("state"), holder=i.get("holder"),
                     lease_until=i.get("lease_until"), case_no=i.get("case_no"),
                     reason=i.get("reason"), decided_by=i.get("decided_by"),
                     decided_at=i.get("decided_at"))
        items = [self._present(r, now) for r in found]
        if self.annotate is not None:
            self.annotate(items)
        return {"total": total, "limit": limit, "offset": offset, "items": items}

    def _total(self, conn, where, params, status, held, now):
        """The matching count, from index-only counts of ``reports`` and of ``intake``.

        Joining every report to ``intake`` to count the pending ones costs a lookup per
        report; most reports are pending or decided long ago, so count the reports and
        subtract the touched ones that do not match (both counts walk an index).
        """
        def count(intake_cond=None, extra=()):
            if intake_cond is None:
                sql = "SELECT COUNT(*) AS n FROM reports r"
                conds, values = list(where), list(params)
            else:
                sql = "SELECT COUNT(*) AS n FROM intake i"
                if where:
                    sql += " JOIN reports r ON r.id = i.report_id"
                conds, values = [intake_cond, *where], [*extra, *params]
            if conds:
                sql += " WHERE " + " AND ".join(conds)
            return one(run(self.store, conn, sql, values))["n"]

        if status == "all":
            if held is None:
                return count()
            return count(_LIVE, [now]) if held else count() - count(_LIVE, [now])
        if status == "pending":
            if held is None:
                return count() - count("i.state <> 'pending'")
            if held:
                return count(f"i.state = 'pending' AND {_LIVE}", [now])
            return count() - count(f"(i.state <> 'pending' OR {_LIVE})", [now])
        if held is None:
            return count("i.state = ?", [status])
        return count(f"i.state = ? AND {'' if held else 'NOT '}{_LIVE}", [status, now])

    def get(self, report_id):
        now = self.now()
        with self.store.connect() as conn:
            found = one(run(
                self.store, conn,
                "SELECT r.*, i.state AS intake_state, i.holder, i.lease_until, i.case_no,"
                " i.reason, i.decided_by, i.decided_at"
                " FROM reports r LEFT JOIN intake i ON i.report_id = r.id WHERE r.id = ?",
                [report_id],
            ))
        if found is None:
            raise NotFound(f"no report {report_id!r}")
        item = self._present(found, now)
        if self.annotate is not None:
            self.annotate([item])
        return item

    def counts(self):
        """Reports per intake state, for the summary line and the board's header."""
        with self.store.connect() as conn:
            total = one(run(self.store, conn, "SELECT COUNT(*) AS n FROM reports"))["n"]
            found = rows(run(self.store, conn,
                             "SELECT state, COUNT(*) AS n FROM intake GROUP BY state"))
        out = dict.fromkeys(STATES, 0)
        out.update({r["state"]: r["n"] for r in found if r["state"] != "pending"})
        out["pending"] = total - sum(out.values())
        out["total"] = total
        out["urgent_pending"] = self._urgent_pending()
        return out

    def _urgent_pending(self):
        """Urgent reports nobody has decided yet: the board's alert."""
        with self.store.connect() as conn:
            return one(run(self.store, conn,
                           "SELECT COUNT(*) AS n FROM reports r WHERE r.urgent = 1 AND NOT "
                           "EXISTS (SELECT 1 FROM intake x WHERE x.report_id = r.id AND "
                           "x.state <> 'pending')"))["n"]

    def _present(self, r, now):
        live = bool(r.get("holder")) and (r.get("lease_until") or "") > now
        item = {
            "id": r["id"],
            "device": r.get("device"),
            "district": r.get("district"),
            "seq": r.get("seq"),
            "captured_at": r.get("captured_at"),
            "received_at": r.get("received_at"),
            "time_source": r.get("time_source"),
            "lat": r.get("lat"),
            "lon": r.get("lon"),
            "fix_mode": r.get("fix_mode"),
            "fix_status": r.get("fix_status"),
            "flags": decode_json(r.get("flags"), []),
            "time_flag": r.get("time_flag"),
            "grid": r.get("grid"),
            "grid_device": r.get("grid_device"),
            "grid_mismatch": bool(r.get("grid_mismatch")),
            "street": r.get("street"),
            "kind": r.get("kind"),
            "standard": r.get("standard"),
            "code": r.get("code"),
            "class_name": None,
            "major_name": None,
            "class_local": None,
            "object": r.get("object"),
            "source": r.get("source"),
            "task": r.get("task"),
            "result": r.get("result"),
            "text": r.get("text"),
            "photos": decode_json(r.get("photos"), []),
            "state": r.get("intake_state") or "pending",
            "holder": r.get("holder") if live else None,
            "lease_until": r.get("lease_until") if live else None,
            "case_no": r.get("case_no"),
            "reason": r.get("reason"),
            "decided_by": r.get("decided_by"),
            "decided_at": r.get("decided_at"),
            "urgent": bool(r.get("urgent")),
        }
        if self.codebooks is not None and item["code"]:
            names = self.codebooks.names(item["kind"], item["code"], item["standard"])
            item["major_name"], item["class_name"] = names
            item["class_local"] = self.codebooks.local(item["kind"], item["code"],
                                                       item["standard"])
        return item

    # ------------------------------------------------------------ writing

    def _ensure_row(self, conn, report_id, now):
        exists = one(run(self.store, conn, "SELECT id FROM reports WHERE id = ?", [report_id]))
        if exists is None:
            raise NotFound(f"no report {report_id!r}")
        run(self.store, conn,
            "INSERT INTO intake (report_id, state, updated_at) VALUES (?, 'pending', ?)"
            " ON CONFLICT (report_id) DO NOTHING", [report_id, now])

    def _row(self, conn, report_id):
        return one(run(self.store, conn, "SELECT * FROM intake WHERE report_id = ?", [report_id]))

    def claim(self, report_id, operator, *, lease_s=DEFAULT_LEASE_S, override=False,
              audit=None):
        """Hold a pending report for ``lease_s`` seconds; the holder may renew at will.
        ``override`` (值班长) takes over another operator's live claim.  ``audit(conn,
        action, target=, before=, after=)`` records the change in its transaction."""
        operator = _operator(operator)
        if not 1 <= int(lease_s) <= MAX_LEASE_S:
            raise Invalid(f"lease_s: 1 to {MAX_LEASE_S} seconds")
        now_t = self.clock()
        now = wire_time(now_t)
        until = wire_time(now_t + timedelta(seconds=int(lease_s)))
        with self.store.connect() as conn:
            self._ensure_row(conn, report_id, now)
            before = self._row(conn, report_id)
            cur = run(self.store, conn,
                      "UPDATE intake SET holder = ?, lease_until = ?, updated_at = ?"
                      " WHERE report_id = ? AND state = 'pending'" + _mine(override),
                      [operator, until, now, report_id, *_mine_args(override, operator, now)])
            row = self._row(conn, report_id)
            if cur.rowcount == 1:
                _audited(audit, conn, "report.claim", report_id, before, row, now)
        if cur.rowcount != 1:
            self._refuse(row, operator, now, "claim")
        return {"report_id": report_id, "holder": operator, "lease_until": until}

    def release(self, report_id, operator, *, override=False, audit=None):
        """Give a claim back; releasing an unclaimed report changes nothing.  Another
        operator's live claim is refused (:class:`Conflict`) unless ``override`` (值班长)."""
        operator = _operator(operator)
        now = self.now()
        with self.store.connect() as conn:
            self._ensure_row(conn, report_id, now)
            before = self._row(conn, report_id)
            if (not override and before["holder"] and before["holder"] != operator
                    and (before["lease_until"] or "") > now):
                refused = before
            else:
                refused = None
            cur = run(self.store, conn,
                      "UPDATE intake SET holder = NULL, lease_until = NULL, updated_at = ?"
                      " WHERE report_id = ? AND holder IS NOT NULL"
                      + ("" if override else " AND holder = ?"),
                      [now, report_id, *([] if override else [operator])])
            if cur.rowcount == 1:
                _audited(audit, conn, "report.release", report_id, before,
                         self._row(conn, report_id), now)
        if refused is not None:
            self._refuse(refused, operator, now, "release")
        return {"report_id": report_id, "holder": None, "lease_until": None}

    def accept(self, report_id, operator, *, case_no=None, override=False, audit=None):
        """立案: accept a report as a case, numbered ``case_no`` or the next district number
        (``override``: although another operator holds it)."""
        operator = _operator(operator)
        if case_no is not None:
            case_no = case_no.strip()
            if not case_no or len(case_no) > 40:
                raise Invalid("case_no: 1 to 40 characters")
        attempts = 0
        while True:
            try:
                return self._accept(report_id, operator, case_no, override, audit)
            except Exception as exc:
                # Two accepts numbering cases at once on PostgreSQL: the unique index
                # refuses the second number; a new transaction sees the first and goes on.
                attempts += 1
                if attempts == 10 or not _is_integrity_error(exc):
                    raise

    def _accept(self, report_id, operator, requested, override, audit):
        case_no = requested
        now_t = self.clock()
        now = wire_time(now_t)
        with self.store.connect() as conn:
            self._ensure_row(conn, report_id, now)
            row = self._row(conn, report_id)
            if row["state"] == "accepted" and case_no in (None, row["case_no"]):
                return self._decision(row)
            self._check_decidable(row, operator, now, "accept", override)
            before = row
            if case_no is None:
                case_no = self._next_case_no(conn, report_id, now_t)
            else:
                other = one(run(self.store, conn,
                                "SELECT report_id FROM intake WHERE case_no = ?", [case_no]))
                if other is not None:
                    raise Conflict(f"case number {case_no} already belongs to report "
                                   f"{other['report_id']}", case_no=case_no,
                                   report_id=other["report_id"])
            won, row = self._decide(conn, report_id, operator, now,
                                    "state = 'accepted', case_no = ?", case_no, override)
            if won:
                if self.on_accept is not None:
                    self.on_accept(conn, report_id, row["case_no"], operator, now)
                _audited(audit, conn, "report.accept", report_id, before, row, now)
        if not won:
            # lost a race (PostgreSQL, READ COMMITTED): the same decision is no conflict
            if row["state"] == "accepted" and requested in (None, row["case_no"]):
                return self._decision(row)
            self._refuse(row, operator, now, "accept")
        return self._decision(row)

    def reject(self, report_id, operator, *, reason, override=False, audit=None):
        """不予立案: reject a report, saying why (``override``: although another holds it)."""
        operator = _operator(operator)
        reason = (reason or "").strip()
        if not reason:
            raise Invalid("reason: required when rejecting (不予立案)")
        if len(reason) > 500:
            raise Invalid("reason: at most 500 characters")
        now = self.now()
        with self.store.connect() as conn:
            self._ensure_row(conn, report_id, now)
            row = self._row(conn, report_id)
            if row["state"] == "rejected" and row["reason"] == reason:
                return self._decision(row)
            self._check_decidable(row, operator, now, "reject", override)
            before = row
            won, row = self._decide(conn, report_id, operator, now,
                                    "state = 'rejected', reason = ?", reason, override)
            if won:
                _audited(audit, conn, "report.reject", report_id, before, row, now)
        if not won:
            if row["state"] == "rejected" and row["reason"] == reason:
                return self._decision(row)  # the same decision won a race: no conflict
            self._refuse(row, operator, now, "reject")
        return self._decision(row)

    def _decide(self, conn, report_id, operator, now, decision, value, override=False):
        """Write a decision (``decision``: the SET clause with one ``?`` for ``value``)
        if the report is still pending and not held by another operator's live lease.
        Returns (whether this UPDATE made it, the row as it now is)."""
        cur = run(self.store, conn,
                  f"UPDATE intake SET {decision}, decided_by = ?, decided_at = ?,"
                  " holder = NULL, lease_until = NULL, updated_at = ?"
                  " WHERE report_id = ? AND state = 'pending'" + _mine(override),
                  [value, operator, now, now, report_id, *_mine_args(override, operator, now)])
        return cur.rowcount == 1, self._row(conn, report_id)

    def mark_attached(self, conn, report_id, now):
        """Take a task's result report out of the pending list: it belongs to its task."""
        run(self.store, conn,
            "INSERT INTO intake (report_id, state, updated_at) VALUES (?, 'attached', ?)"
            " ON CONFLICT (report_id) DO UPDATE SET state = 'attached', updated_at = ?"
            " WHERE intake.state = 'pending'", [report_id, now, now])

    # ------------------------------------------------------------ helpers

    def _decision(self, row):
        return {"report_id": row["report_id"], "state": row["state"], "case_no": row["case_no"],
                "reason": row["reason"], "decided_by": row["decided_by"],
                "decided_at": row["decided_at"]}

    def _check_decidable(self, row, operator, now, verb, override=False):
        if row["state"] != "pending":
            self._refuse(row, operator, now, verb)
        if (not override and row["holder"] and row["holder"] != operator
                and (row["lease_until"] or "") > now):
            self._refuse(row, operator, now, verb)

    def _refuse(self, row, operator, now, verb):
        if row["state"] == "accepted":
            raise Conflict(f"cannot {verb}: report {row['report_id']} was accepted as case "
                           f"{row['case_no']} by {row['decided_by']}", state="accepted",
                           case_no=row["case_no"], decided_by=row["decided_by"])
        if row["state"] == "rejected":
            raise Conflict(f"cannot {verb}: report {row['report_id']} was rejected by "
                           f"{row['decided_by']}: {row['reason']}", state="rejected",
                           reason=row["reason"], decided_by=row["decided_by"])
        if row["state"] == "attached":
            raise Conflict(f"cannot {verb}: report {row['report_id']} is a task result",
                           state="attached")
        if row["state"] == "merged":
            raise Conflict(f"cannot {verb}: report {row['report_id']} was {row['reason']} "
                           f"by {row['decided_by']}", state="merged", reason=row["reason"],
                           decided_by=row["decided_by"])
        raise Conflict(f"cannot {verb}: report {row['report_id']} is held by {row['holder']} "
                       f"until {row['lease_until']}", state=row["state"], holder=row["holder"],
                       lease_until=row["lease_until"])

    def _next_case_no(self, conn, report_id, now_t):
        report = one(run(self.store, conn, "SELECT district FROM reports WHERE id = ?",
                         [report_id]))
        prefix = f"{report['district'] or '000000'}{centre_day(now_t)}"
        # a range on the unique index (LIKE would scan every case ever accepted)
        last = one(run(self.store, conn,
                       "SELECT MAX(case_no) AS m FROM intake WHERE case_no >= ? AND case_no <= ?",
                       [prefix + "0000", prefix + "9999"]))["m"]
        tail = last[len(prefix):len(prefix) + 4] if last else ""
        n = int(tail) + 1 if tail.isascii() and tail.isdigit() else 1
        while one(run(self.store, conn, "SELECT 1 AS x FROM intake WHERE case_no = ?",
                      [f"{prefix}{n:04d}"])):
            n += 1  # an operator-given number took this one
        return f"{prefix}{n:04d}"


def _mine(override):
    """The claim condition of a change: free, one's own, or lapsed (none with override)."""
    return "" if override else " AND (holder IS NULL OR holder = ? OR lease_until <= ?)"


def _mine_args(override, operator, now):
    return [] if override else [operator, now]


INTAKE_FIELDS = ("state", "holder", "lease_until", "case_no", "reason", "decided_by",
                 "decided_at")


def intake_state(row, now):
    """The audited view of an intake row: its state and a claim only while it runs."""
    out = {k: row[k] for k in INTAKE_FIELDS} if row else dict.fromkeys(INTAKE_FIELDS)
    out["state"] = out["state"] or "pending"
    if not out["holder"] or (out["lease_until"] or "") <= now:
        out["holder"] = out["lease_until"] = None
    return out


def _audited(audit, conn, action, report_id, before, after, now):
    if audit is not None:
        audit(conn, action, target=f"report:{report_id}", before=intake_state(before, now),
              after=intake_state(after, now))


def _is_integrity_error(exc):
    """A unique-constraint refusal from either driver (sqlite3 or psycopg)."""
    return any(c.__name__ == "IntegrityError" for c in type(exc).__mro__)


def _count(value, field):
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not (value.isascii() and value.isdigit())) or int(value) < 0:
        raise Invalid(f"{field}: a whole number, 0 or more, not {value!r}")
    return int(value)


def _digits(value, field):
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 17:
        raise Invalid(f"{field}: digits only (a code or its prefix), not {value!r}")
    return value
