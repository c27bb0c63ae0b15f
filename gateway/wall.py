"""The 大屏 wall view's figures: today's counts (the Beijing day), open cases by stage, and
the late items (cases past their stage deadline, tasks past theirs), in SQL on either
store.  Read-only; the wall page (``board/wall.html``) asks for them every few seconds."""

from datetime import datetime, time, timedelta

from .cases import lifecycle as lc
from .clock import CENTRE_TIME, wire_time
from .queue import _QUEUE_TIME_R, system_clock
from .store.sql import one, rows, run

LATE_LISTED = 20  # the late items listed (all are counted)
_OPEN = ", ".join(f"'{s}'" for s in lc.OPEN)


def beijing_day(now):
    """(start, end) of the Beijing day holding aware ``now``, as wire times."""
    start = datetime.combine(now.astimezone(CENTRE_TIME).date(), time(0), tzinfo=CENTRE_TIME)
    return wire_time(start), wire_time(start + timedelta(days=1))


class Wall:
    def __init__(self, store, *, clock=None):
        self.store = store
        self.clock = clock or system_clock

    def summary(self):
        """Today's counts, open cases per state (in the lifecycle's order) and the late
        cases and tasks, the most overdue first."""
        now_t = self.clock()
        now = wire_time(now_t)
        start, end = beijing_day(now_t)
        day = [start, end]

        def count(conn, sql, params):
            return int(one(run(self.store, conn, sql, params))["n"] or 0)

        with self.store.connect(readonly=True) as conn:
            today = {
                "reported": count(conn, "SELECT COUNT(*) AS n FROM reports r WHERE"
                                  f" r.source <> 'task' AND {_QUEUE_TIME_R} >= ?"
                                  f" AND {_QUEUE_TIME_R} < ?", day),
                "accepted": count(conn, "SELECT COUNT(*) AS n FROM intake WHERE state ="
                                  " 'accepted' AND decided_at >= ? AND decided_at < ?", day),
                "rejected": count(conn, "SELECT COUNT(*) AS n FROM intake WHERE state ="
                                  " 'rejected' AND decided_at >= ? AND decided_at < ?", day),
                "closed": count(conn, "SELECT COUNT(*) AS n FROM cases WHERE state = 'closed'"
                                " AND updated_at >= ? AND updated_at < ?", day),
                "tasks_sent": count(conn, "SELECT COUNT(*) AS n FROM tasks WHERE"
                                    " created_at >= ? AND created_at < ?", day),
                "tasks_done": count(conn, "SELECT COUNT(*) AS n FROM tasks WHERE"
                                    " done_at >= ? AND done_at < ?", day),
            }
            total = count(conn, "SELECT COUNT(*) AS n FROM reports WHERE source <> 'task'", [])
            decided = count(conn, "SELECT COUNT(*) AS n FROM intake i JOIN reports r"
                            " ON r.id = i.report_id WHERE r.source <> 'task'"
                            " AND i.state <> 'pending'", [])
            by_state = {r["state"]: int(r["n"]) for r in rows(run(
                self.store, conn, f"SELECT state, COUNT(*) AS n FROM cases WHERE state IN"
                f" ({_OPEN}) GROUP BY state", []))}
            late_where = f"state IN ({_OPEN}) AND stage_due IS NOT NULL AND stage_due < ?"
            late_cases = count(conn, f"SELECT COUNT(*) AS n FROM cases WHERE {late_where}",
                               [now])
            cases = rows(run(self.store, conn,
                             "SELECT case_no, state, grid, department, stage, stage_due"
                             f" FROM cases WHERE {late_where} ORDER BY stage_due, case_no"
                             " LIMIT ?", [now, LATE_LISTED]))
            task_where = ("state IN ('open', 'sent') AND deadline IS NOT NULL"
                          " AND deadline < ?")
            late_tasks = count(conn, f"SELECT COUNT(*) AS n FROM tasks WHERE {task_where}",
                               [now])
            tasks = rows(run(self.store, conn,
                             "SELECT id, type, grid, device, deadline FROM tasks"
                             f" WHERE {task_where} ORDER BY deadline, id LIMIT ?",
                             [now, LATE_LISTED]))
        return {
            "as_of": now, "day": start, "today": today, "pending": total - decided,
            "open_cases": [{"state": s, "label": lc.LABELS[s], "n": by_state.get(s, 0)}
                           for s in lc.OPEN],
            "late": {
                "cases": late_cases, "tasks": late_tasks,
                "case_items": [{**c, "label": lc.LABELS[c["state"]],
                                "stage_label": lc.STAGE_LABELS.get(c["stage"])}
                               for c in cases],
                "task_items": tasks,
            },
        }
