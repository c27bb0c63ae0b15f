"""CJ/T 292 evaluation rates, computed in SQL on either store (formulas: docs/evaluation.md).

Per supervisor, device, grid, street or department (any combination) and per day, week
or month (Beijing calendar) or the whole window:

* 有效上报率 = 立案 reports / reports (task results are not reports);
* 按时核实率, 按时核查率 = tasks done by their deadline / tasks due (done, or past their
  deadline); a task without a deadline is due ``limits[type]`` seconds after it was made;
* 结案率, 按期结案率 = cases closed (closed with no stage deadline missed) / cases due to
  close (closed, or open and late already), over the cases 立案 in the window;
* the median and 90th percentile (nearest rank) time of each stage in ``STAGES``;
* reports per duty hour, where the rows are per supervisor.

A report counts in the window and the period of its queue time (capture time, or receive
time when the capture time is flagged); a task in those of its creation; a case in those
of its 立案.  A report or task belongs to the supervisor carrying its device at that time
(``eval_carries``), a case to the one who carried the reporting device when it reported;
one carried by nobody has supervisor None.  A report, task or case belongs to the
department its case is dispatched to (None before 派遣).  Stages are data: each is a
``Stage`` whose start and end are columns of a fact source.
"""

from datetime import timedelta

from .clock import wire_time
from .queue import _QUEUE_TIME_R, Invalid, parse_time, system_clock
from .store.sql import rows, run

PERIODS = ("day", "week", "month", "all")
DIMENSIONS = ("supervisor", "device", "grid", "street", "department")
# local task time limits (运城: 核实 24 h, 核查 2 h; docs/evaluation.md), for tasks made
# without a deadline
DEFAULT_LIMITS = {"verify": 24 * 3600.0, "check": 2 * 3600.0}
MAX_WINDOW_DAYS = 366

MIGRATIONS = (
    (
        # tasks in a window by creation time, for the task rates and stage times
        "eval_002_tasks_created_at",
        "CREATE INDEX IF NOT EXISTS eval_tasks_created_at ON tasks (created_at)",
        "CREATE INDEX IF NOT EXISTS eval_tasks_created_at ON tasks (created_at)",
    ),
)
# after the case book's (``cases.book.MIGRATIONS``): cases in a window by 立案 time, for
# 结案率 and 按期结案率
CASE_INDEX_MIGRATIONS = (
    ("stats_001_cases_created_at",
     "CREATE INDEX IF NOT EXISTS stats_cases_created_at ON cases (created_at)",
     "CREATE INDEX IF NOT EXISTS stats_cases_created_at ON cases (created_at)"),
)


class Source:
    """A fact table: its FROM clause (with the carrier join), its time, its dimensions;
    ``joins`` are the joins only some dimensions need (by dimension)."""

    def __init__(self, name, from_sql, time, dims, where="1 = 1", joins=None):
        self.name, self.from_sql, self.time, self.dims, self.where = (
            name, from_sql, time, dims, where)
        self.joins = joins or {}

    def from_for(self, by):
        return self.from_sql + "".join(self.joins[k] for k in by if k in self.joins)


def _carrier(device, time):
    return (f" LEFT JOIN eval_carries c ON c.device = {device} AND c.since <= {time}"
            f" AND (c.until IS NULL OR c.until > {time})")


REPORTS = Source(
    "reports",
    "reports r LEFT JOIN intake i ON i.report_id = r.id" + _carrier("r.device", _QUEUE_TIME_R),
    _QUEUE_TIME_R,
    {"supervisor": "c.supervisor", "device": "r.device", "grid": "r.grid",
     "street": "r.street", "department": "k.department"},
    where="r.source <> 'task'",
    joins={"department": " LEFT JOIN cases k ON k.report_id = r.id"},
)
TASKS = Source(
    "tasks",
    "tasks t" + _carrier("t.device", "t.created_at"),
    "t.created_at",
    {"supervisor": "c.supervisor", "device": "t.device", "grid": "t.grid",
     "street": "SUBSTR(t.grid, 1, 9)", "department": "k.department"},
    joins={"department": " LEFT JOIN cases k ON k.report_id = t.report_id"},
)
CASES = Source(
    "cases",
    "cases k JOIN reports r ON r.id = k.report_id" + _carrier("r.device", _QUEUE_TIME_R),
    "k.created_at",
    {"supervisor": "c.supervisor", "device": "r.device", "grid": "k.grid",
     "street": "SUBSTR(k.grid, 1, 9)", "department": "k.department"},
)
# a case's stage deadline missed: judged late when it left the stage
_MISSED = ("EXISTS (SELECT 1 FROM case_history h WHERE h.case_no = k.case_no"
           " AND h.on_time = 0)")


class Stage:
    """A stage of the case's way: from ``start`` to ``end`` (time columns of ``source``),
    for the rows where ``where`` holds."""

    def __init__(self, key, label, source, start, end, where):
        self.key, self.label, self.source, self.start, self.end, self.where = (
            key, label, source, start, end, where)


STAGES = (
    Stage("intake", "受理 (上报→立案/不予立案)", REPORTS, "r.received_at", "i.decided_at",
          "i.state IN ('accepted', 'rejected') AND i.decided_at IS NOT NULL"),
    Stage("verify", "核实 (下达→结果)", TASKS, "t.created_at", "t.done_at",
          "t.type = 'verify' AND t.done_at IS NOT NULL"),
    Stage("check", "核查 (下达→结果)", TASKS, "t.created_at", "t.done_at",
          "t.type = 'check' AND t.done_at IS NOT NULL"),
    Stage("send", "任务送达 (下达→发出)", TASKS, "t.created_at", "t.sent_at",
          "t.sent_at IS NOT NULL"),
    # a closed case moves no more, so its last change is its 结案
    Stage("close", "结案 (立案→结案)", CASES, "k.created_at", "k.updated_at",
          "k.state = 'closed'"),
)


def seconds_between(dialect, a, b):
    """SQL for the seconds from ISO text ``a`` to ISO text ``b``."""
    if dialect == "sqlite":
        return f"((julianday({b}) - julianday({a})) * 86400.0)"
    # wire times are UTC: read as timestamps without a zone (no zone look-up per value);
    # date_part's double precision, not EXTRACT's numeric (slower by half the query)
    return (f"(date_part('epoch', CAST({b} AS timestamp))"
            f" - date_part('epoch', CAST({a} AS timestamp)))")


def bucket(dialect, period, t):
    """SQL for the Beijing day (``2026-11-02``), week (its Monday) or month (``2026-11``)
    of ISO text ``t``; ``'all'`` for the whole window."""
    if period == "all":
        return "'all'"
    if dialect == "sqlite":
        return {"day": f"date({t}, '+8 hours')",
                "week": f"date({t}, '+8 hours', '-6 days', 'weekday 1')",
                "month": f"strftime('%Y-%m', {t}, '+8 hours')"}[period]
    local = f"(CAST({t} AS timestamp) + INTERVAL '8 hours')"  # a UTC wire time, in Beijing
    return {"day": f"to_char({local}, 'YYYY-MM-DD')",
            "week": f"to_char(date_trunc('week', {local}), 'YYYY-MM-DD')",
            "month": f"to_char({local}, 'YYYY-MM')"}[period]


def _limit(value, field):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise Invalid(f"{field}: seconds, not {value!r}") from None
    if not 0 < value <= 30 * 86400:
        raise Invalid(f"{field}: more than 0, at most 30 days in seconds")
    return value


class Rates:
    """The evaluation figures over a store (migrated with the roster's and these
    MIGRATIONS); ``clock`` gives the time tasks are judged due by."""

    def __init__(self, store, *, clock=None, limits=None):
        self.store = store
        self.clock = clock or system_clock
        self.limits = {k: _limit(v, f"limit {k}")
                       for k, v in {**DEFAULT_LIMITS, **(limits or {})}.items()}

    def window(self, since=None, until=None):
        """(since, until) as wire times; default the 30 days up to now."""
        end = parse_time(until, "until") if until else self.clock()
        start = parse_time(since, "since") if since else end - timedelta(days=30)
        if start >= end:
            raise Invalid("since must come before until")
        if end - start > timedelta(days=MAX_WINDOW_DAYS):
            raise Invalid(f"the window may span at most {MAX_WINDOW_DAYS} days")
        return wire_time(start), wire_time(end)

    def table(self, by=("supervisor",), period="day", since=None, until=None):
        """Rows of figures, one per ``by`` values and period, sorted by them."""
        by = _dims(by)
        if period not in PERIODS:
            raise Invalid(f"period: one of {', '.join(PERIODS)}, not {period!r}")
        since, until = self.window(since, until)
        as_of = wire_time(self.clock())
        d = self.store.dialect
        out = {}

        def merge(found):
            for r in found:
                key = (*(r.pop(k) for k in by), r.pop("period"))
                out.setdefault(key, {}).update(r)

        with self.store.connect(readonly=True) as conn:
            merge(self._query(conn, REPORTS, by, period, since, until, [
                ("reported", "1 = 1"), ("accepted", "i.state = 'accepted'"),
                ("rejected", "i.state = 'rejected'")]))
            merge(self._query(conn, TASKS, by, period, since, until,
                              self._task_measures(d, as_of)))
            merge(self._query(conn, CASES, by, period, since, until,
                              _case_measures(as_of)))
            if by == ["supervisor"]:
                merge(self._duty(conn, period, since, until))
        table = []
        for key in sorted(out, key=lambda k: tuple("" if v is None else str(v) for v in k)):
            table.append(_row(dict(zip([*by, "period"], key, strict=True)), out[key]))
        return {"since": since, "until": until, "as_of": as_of, "by": by, "period": period,
                "limits": self.limits, "rows": table,
                "columns": list(_row(dict.fromkeys([*by, "period"]), {}))}

    # ------------------------------------------------------------ SQL

    def _query(self, conn, source, by, period, since, until, measures):
        """One pass over ``source`` in the window: the count of rows where each of
        ``measures`` ((name, condition)) holds, and the count, median and 90th percentile
        (nearest rank) of the seconds of each stage of ``STAGES`` on this source."""
        d = self.store.dialect
        keys = ", ".join([*by, "period"])
        stages = [st for st in STAGES if st.source is source]
        cols = [f"{source.dims[k]} AS {k}" for k in by]
        cols.append(f"{bucket(d, period, source.time)} AS period")
        cols += [f"CASE WHEN {cond} THEN 1 ELSE 0 END AS m_{name}" for name, cond in measures]
        cols += [f"CASE WHEN {st.where} THEN {seconds_between(d, st.start, st.end)} END"
                 f" AS s_{st.key}" for st in stages]
        ranks = [f"ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY CASE WHEN s_{st.key} IS NULL"
                 f" THEN 1 ELSE 0 END, s_{st.key}) AS rn_{st.key},"
                 f" COUNT(s_{st.key}) OVER (PARTITION BY {keys}) AS n_{st.key}" for st in stages]
        out = [f"SUM(m_{name}) AS {name}" for name, _ in measures]
        for st in stages:
            k = st.key
            out += [f"MAX(n_{k}) AS {k}_n",
                    f"MIN(CASE WHEN rn_{k} = (n_{k} + 1) / 2 THEN s_{k} END) AS {k}_median_s",
                    f"MIN(CASE WHEN rn_{k} = (9 * n_{k} + 9) / 10 THEN s_{k} END)"
                    f" AS {k}_p90_s"]
        sql = (f"WITH d AS (SELECT {', '.join(cols)} FROM {source.from_for(by)}"
               f" WHERE {source.where} AND {source.time} >= ? AND {source.time} < ?),"
               f" k AS (SELECT d.*{''.join(', ' + r for r in ranks)} FROM d)"
               f" SELECT {keys}, {', '.join(out)} FROM k GROUP BY {keys}")
        return rows(run(self.store, conn, sql, [since, until]))

    def _task_measures(self, d, as_of):
        parts = []
        for kind in ("verify", "check"):
            limit = self.limits[kind]
            on_time = ("t.done_at IS NOT NULL AND ((t.deadline IS NOT NULL AND t.done_at <="
                       f" t.deadline) OR (t.deadline IS NULL AND"
                       f" {seconds_between(d, 't.created_at', 't.done_at')} <= {limit!r}))")
            overdue = (f"t.done_at IS NULL AND ((t.deadline IS NOT NULL AND t.deadline <="
                       f" '{as_of}') OR (t.deadline IS NULL AND"
                       f" {seconds_between(d, 't.created_at', repr(as_of))} > {limit!r}))")
            parts += [(f"{kind}_tasks", f"t.type = '{kind}'"),
                      (f"{kind}_due", f"t.type = '{kind}' AND (t.done_at IS NOT NULL"
                                      f" OR ({overdue}))"),
                      (f"{kind}_on_time", f"t.type = '{kind}' AND {on_time}")]
        return parts

    def _duty(self, conn, period, since, until):
        """Duty hours per supervisor and period (a period of the day it began), clipped to
        the window."""
        d = self.store.dialect
        # both are wire times (digits, '-', ':', 'T', '.', 'Z'): safe as literals
        start = f"CASE WHEN on_at < '{since}' THEN '{since}' ELSE on_at END"
        end = f"CASE WHEN off_at > '{until}' THEN '{until}' ELSE off_at END"
        sql = (f"SELECT supervisor, {bucket(d, period, 'on_at')} AS period,"
               f" SUM({seconds_between(d, start, end)}) / 3600.0 AS duty_hours"
               " FROM eval_duty WHERE on_at < ? AND off_at > ?"
               " GROUP BY 1, 2")
        return rows(run(self.store, conn, sql, [until, since]))


def _case_measures(as_of):
    """立案数 by 立案 time, 结案数, 应结案数 (closed, or open and late: a stage deadline
    missed, or the current one passed at ``as_of``), 按期结案数 (closed, none missed);
    挂账 and 作废 cases are not due."""
    late_open = (f"k.state NOT IN ('closed', 'voided', 'deferred') AND ({_MISSED}"
                 f" OR (k.stage_due IS NOT NULL AND k.stage_due <= '{as_of}'))")
    return [("cases", "1 = 1"),
            ("closed", "k.state = 'closed'"),
            ("close_due", f"k.state = 'closed' OR ({late_open})"),
            ("closed_on_time", f"k.state = 'closed' AND NOT {_MISSED}"),
            ("deferred", "k.state = 'deferred'"),
            ("voided", "k.state = 'voided'")]


def _dims(by):
    if isinstance(by, str):
        by = [b for b in by.replace(" ", "").split(",") if b]
    by = list(by)
    bad = [b for b in by if b not in DIMENSIONS]
    if bad or len(set(by)) != len(by):
        raise Invalid(f"by: distinct names among {', '.join(DIMENSIONS)}, not {by!r}")
    return by


def _ratio(num, den):
    return None if not den else round(num / den, 4)


def _row(keys, f):
    """The figures of one row, rates None where there is nothing to divide by."""
    n = {k: int(f.get(k) or 0) for k in ("reported", "accepted", "rejected", "verify_tasks",
                                         "verify_due", "verify_on_time", "check_tasks",
                                         "check_due", "check_on_time", "cases", "closed",
                                         "close_due", "closed_on_time", "deferred",
                                         "voided")}
    row = {**keys, **n,
           "valid_report_rate": _ratio(n["accepted"], n["reported"]),
           "verify_on_time_rate": _ratio(n["verify_on_time"], n["verify_due"]),
           "check_on_time_rate": _ratio(n["check_on_time"], n["check_due"]),
           "close_rate": _ratio(n["closed"], n["close_due"]),
           "close_on_time_rate": _ratio(n["closed_on_time"], n["close_due"])}
    for stage in STAGES:
        k = stage.key
        row[f"{k}_n"] = int(f.get(f"{k}_n") or 0)
        for q in ("median", "p90"):
            v = f.get(f"{k}_{q}_s")
            row[f"{k}_{q}_s"] = None if v is None else round(float(v), 3)
    if "duty_hours" in f or ("supervisor" in keys and len(keys) == 2):
        hours = float(f.get("duty_hours") or 0)
        row["duty_hours"] = round(hours, 3)
        row["reports_per_duty_hour"] = _ratio(n["reported"], hours)
    return row
