"""The wall view's figures (gateway/wall.py) against a hand count, on SQLite and PostgreSQL.

NOW is 2026-11-28 04:00 UTC, 12:00 in Beijing: "today" is 2026-11-27 16:00 to 2026-11-28
16:00 UTC.
"""

from datetime import UTC, datetime, timedelta

from gridlink.gateway.api import MIGRATIONS
from gridlink.gateway.store.sql import run
from gridlink.gateway.wall import Wall, beijing_day

from tests.support.intake_api import Clock, add_report, iso

NOW = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
H = timedelta(hours=1)


def decide(store, rid, state, at):
    with store.connect() as conn:
        run(store, conn, "INSERT INTO intake (report_id, state, case_no, decided_by, decided_at,"
            " updated_at) VALUES (?, ?, ?, 'op', ?, ?)",
            [rid, state, f"C-{rid}" if state == "accepted" else None, iso(at), iso(at)])


def case(store, rid, state, *, stage=None, due=None, updated=None):
    with store.connect() as conn:
        run(store, conn, "INSERT INTO cases (case_no, report_id, state, grid, stage, stage_due,"
            " version, created_at, updated_at) VALUES (?, ?, ?, '410106001001001', ?, ?, 2, ?,"
            " ?)", [f"C-{rid}", rid, state, stage, None if due is None else iso(due),
                    iso(NOW - 30 * H), iso(updated or NOW - 30 * H)])


def task(store, tid, kind, state, *, created, deadline=None, done=None):
    with store.connect() as conn:
        run(store, conn, "INSERT INTO tasks (id, type, district, device, state, created_at,"
            " deadline, done_at) VALUES (?, ?, '410106', 'pv-0001', ?, ?, ?, ?)",
            [tid, kind, state, iso(created), None if deadline is None else iso(deadline),
             None if done is None else iso(done)])


def test_beijing_day_starts_at_beijing_midnight():
    assert beijing_day(NOW) == ("2026-11-27T16:00:00.000Z", "2026-11-28T16:00:00.000Z")
    # 23:30 UTC is already the next Beijing day
    late = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)
    assert beijing_day(late)[0] == "2026-11-28T16:00:00.000Z"


def test_the_wall_summary_matches_the_hand_count(store):
    store.migrate(extra=MIGRATIONS)
    # today: r1, r2, r3 (r3 a task result: no report); yesterday: r4, r5
    r1 = add_report(store, 1, captured=NOW - 2 * H)
    r2 = add_report(store, 2, captured=NOW - 11 * H)           # 01:00 Beijing: today
    add_report(store, 3, captured=NOW - H, source="task", task="t1", result="confirmed")
    r4 = add_report(store, 4, captured=NOW - 13 * H)           # 23:00 yesterday
    r5 = add_report(store, 5, captured=NOW - 30 * H)
    decide(store, r1, "accepted", NOW - H)                     # 立案 today
    decide(store, r2, "rejected", NOW - H)                     # 不予立案 today
    decide(store, r4, "accepted", NOW - 13 * H)                # 立案 yesterday
    decide(store, r5, "accepted", NOW - 29 * H)
    # every report decided: none pending (until r6 below)
    case(store, r1, "dispatched", stage="handle", due=NOW + H)         # open, not late
    case(store, r4, "handling", stage="handle", due=NOW - 2 * H)       # open, late
    case(store, r5, "closed", updated=NOW - 3 * H)                     # 结案 today
    task(store, "t1", "verify", "done", created=NOW - 2 * H, done=NOW - H)
    task(store, "t2", "check", "sent", created=NOW - 5 * H, deadline=NOW - 3 * H)  # late
    task(store, "t3", "verify", "sent", created=NOW - 26 * H, deadline=NOW + H)
    task(store, "t4", "check", "expired", created=NOW - 26 * H, deadline=NOW - 20 * H)
    s = Wall(store, clock=Clock(NOW)).summary()
    assert s["today"] == {"reported": 2, "accepted": 1, "rejected": 1, "closed": 1,
                          "tasks_sent": 2, "tasks_done": 1}
    assert s["pending"] == 0
    open_cases = {c["state"]: c["n"] for c in s["open_cases"]}
    assert open_cases["dispatched"] == 1 and open_cases["handling"] == 1
    assert sum(open_cases.values()) == 2 and "closed" not in open_cases
    assert [c["label"] for c in s["open_cases"]][:2] == ["立案", "派遣"]
    assert (s["late"]["cases"], s["late"]["tasks"]) == (1, 1)
    assert [c["case_no"] for c in s["late"]["case_items"]] == [f"C-{r4}"]
    assert s["late"]["case_items"][0]["stage_label"] == "处置时限"
    assert [t["id"] for t in s["late"]["task_items"]] == ["t2"]
    add_report(store, 6, captured=NOW - H / 2)
    assert Wall(store, clock=Clock(NOW)).summary()["pending"] == 1


def test_an_empty_store_has_zero_counts_and_no_late_items(store):
    store.migrate(extra=MIGRATIONS)
    s = Wall(store, clock=Clock(NOW)).summary()
    assert set(s["today"].values()) == {0} and s["pending"] == 0
    assert s["late"] == {"cases": 0, "tasks": 0, "case_items": [], "task_items": []}
    assert {c["n"] for c in s["open_cases"]} == {0}
