"""The evaluation rates (gateway/rates.py) against a hand count of a small fixed data set,
on SQLite and PostgreSQL.

T0 is 2026-11-28 02:00 UTC, 10:00 on a Saturday in Beijing.  s01 carries pv-0001, s02
carries pv-0002, nobody carries pv-0003.  The hand counts are written beside the data.
"""

from datetime import timedelta

import pytest
from gridlink.gateway.cases.book import MIGRATIONS as CASE_MIGRATIONS
from gridlink.gateway.queue import MIGRATIONS as QUEUE_MIGRATIONS
from gridlink.gateway.queue import Invalid
from gridlink.gateway.rates import CASE_INDEX_MIGRATIONS, MIGRATIONS, Rates, bucket
from gridlink.gateway.roster import MIGRATIONS as ROSTER_MIGRATIONS
from gridlink.gateway.roster import Roster
from gridlink.gateway.store.sql import one, run
from gridlink.gateway.tasks import MIGRATIONS as TASK_MIGRATIONS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.intake_api import T0, Clock, add_report, iso

H = 3600
G1, G2 = "410106001001001", "410106002001001"
AS_OF = T0 + timedelta(hours=3)


def decide(store, rid, state, after_s):
    decided = _captured(store, rid) + timedelta(seconds=after_s)
    with store.connect() as conn:
        run(store, conn, "INSERT INTO intake (report_id, state, case_no, decided_by, decided_at,"
            " updated_at) VALUES (?, ?, ?, 'op', ?, ?)",
            [rid, state, f"C-{rid}" if state == "accepted" else None,
             iso(decided), iso(T0)])


def _captured(store, rid):
    from gridlink.gateway.clock import parse_iso
    with store.connect() as conn:
        return parse_iso(one(run(store, conn, "SELECT received_at FROM reports WHERE id = ?",
                                 [rid]))["received_at"])


def task(store, tid, kind, device, created_s, *, deadline_s=None, done_s=None, grid=G1,
         report=None):
    created = T0 + timedelta(seconds=created_s)
    with store.connect() as conn:
        run(store, conn,
            "INSERT INTO tasks (id, type, report_id, lat, lon, grid, district, device, state,"
            " created_at, deadline, sent_at, done_at)"
            " VALUES (?, ?, ?, 34.8, 113.3, ?, '410106', ?, ?, ?, ?, ?, ?)",
            [tid, kind, report, grid, device, "done" if done_s is not None else "sent",
             iso(created),
             None if deadline_s is None else iso(T0 + timedelta(seconds=deadline_s)),
             iso(created + timedelta(seconds=5)),
             None if done_s is None else iso(T0 + timedelta(seconds=done_s))])


def case(store, rid, state, department, *, late=(), closed_after_s=None, due_s=None):
    """The case of accepted report ``rid`` (opened at its 立案), in ``state``; ``late``
    names the stages it left after their deadline."""
    with store.connect() as conn:
        found = one(run(store, conn, "SELECT case_no, decided_at FROM intake"
                                     " WHERE report_id = ?", [rid]))
        opened = found["decided_at"]
        from gridlink.gateway.clock import parse_iso
        updated = (iso(parse_iso(opened) + timedelta(seconds=closed_after_s))
                   if closed_after_s is not None else opened)
        run(store, conn,
            "INSERT INTO cases (case_no, report_id, state, code, grid, department, stage_due,"
            " version, created_at, updated_at) SELECT ?, ?, ?, r.code, r.grid, ?, ?, 5, ?, ?"
            " FROM reports r WHERE r.id = ?",
            [found["case_no"], rid, state, department,
             None if due_s is None else iso(T0 + timedelta(seconds=due_s)), opened, updated,
             rid])
        for n, stage in enumerate(("dispatch", "handle", "check"), start=2):
            run(store, conn,
                "INSERT INTO case_history (case_no, n, at, actor, action, to_state, stage,"
                " on_time) VALUES (?, ?, ?, 'op', 'move', 'x', ?, ?)",
                [found["case_no"], n, opened, stage, int(stage not in late)])


@pytest.fixture
def data(store):
    store.migrate(extra=QUEUE_MIGRATIONS + TASK_MIGRATIONS + ROSTER_MIGRATIONS + MIGRATIONS
                  + CASE_MIGRATIONS + CASE_INDEX_MIGRATIONS)
    roster = Roster(store, clock=Clock(T0))
    roster.put_supervisor("s01", "张三")
    roster.put_supervisor("s02", "李四")
    roster.carry("s01", "pv-0001", since=iso(T0 - timedelta(days=10)))
    roster.carry("s02", "pv-0002", since=iso(T0 - timedelta(days=10)))
    # s01: 8 h on the 28th (from 09:00 Beijing) and 4 h on the 29th
    roster.put_duty("s01", iso(T0 - timedelta(hours=1)), iso(T0 + timedelta(hours=7)))
    roster.put_duty("s01", iso(T0 + timedelta(days=1)), iso(T0 + timedelta(days=1, hours=4)))
    r = {}
    # pv-0001 (s01): 5 reports, 3 立案, 1 不予立案, 1 pending; decisions after 60, 300, 120, 30 s
    r[1] = add_report(store, 1, device="pv-0001", grid=G1, captured=T0)
    r[2] = add_report(store, 2, device="pv-0001", grid=G1, captured=T0 + timedelta(seconds=100))
    r[3] = add_report(store, 3, device="pv-0001", grid=G2, captured=T0 + timedelta(seconds=200))
    r[4] = add_report(store, 4, device="pv-0001", grid=G2, captured=T0 + timedelta(seconds=300))
    r[5] = add_report(store, 5, device="pv-0001", grid=G2, captured=T0 + timedelta(days=1))
    # a task result is no report
    add_report(store, 9, device="pv-0001", grid=G1, source="task", task="v1", result="confirmed",
               captured=T0 + timedelta(seconds=1800))
    decide(store, r[1], "accepted", 60)
    decide(store, r[2], "accepted", 300)
    decide(store, r[3], "rejected", 120)
    decide(store, r[5], "accepted", 30)
    # pv-0002 (s02): 2 reports, 1 立案 after 90 s, 1 不予立案 after 600 s
    r[6] = add_report(store, 6, device="pv-0002", grid=G2, captured=T0 + timedelta(seconds=50))
    r[7] = add_report(store, 7, device="pv-0002", grid=G2, captured=T0 + timedelta(seconds=60))
    decide(store, r[6], "rejected", 600)
    decide(store, r[7], "accepted", 90)
    # pv-0003 (nobody): 1 report, 立案
    r[8] = add_report(store, 8, device="pv-0003", grid=G2, captured=T0 + timedelta(seconds=70))
    decide(store, r[8], "accepted", 45)
    # s01's 核实: v1 on time (1800 s), v2 late (7200 s), v3 no deadline, done in 9000 s < 24 h
    # (on time), v4 overdue undone, v5 not yet due; 核查: c1 no deadline, done in 1 h < 2 h,
    # c2 no deadline, undone after 3 h > 2 h (due, late)
    task(store, "v1", "verify", "pv-0001", 0, deadline_s=H, done_s=1800)
    task(store, "v2", "verify", "pv-0001", 0, deadline_s=H, done_s=2 * H)
    task(store, "v3", "verify", "pv-0001", 0, done_s=9000, grid=G2)
    task(store, "v4", "verify", "pv-0001", 600, deadline_s=H)
    task(store, "v5", "verify", "pv-0001", 2 * H, deadline_s=5 * H)
    task(store, "c1", "check", "pv-0001", 0, done_s=H, report=r[1])
    task(store, "c2", "check", "pv-0001", 0)
    # s02's 核实: v6 on time
    task(store, "v6", "verify", "pv-0002", 60, deadline_s=2 * H, done_s=H + 60)
    # cases (立案 at the report's decision; AS_OF is T0 + 3 h), departments sz and hw:
    # s01: C1 closed after 1 day, every stage on time (sz); C2 closed after 2 days, its
    # 处置 late (hw); C5 open, its 派遣 late, current stage due in 2 days (hw): due
    # s02: C7 open, current stage due T0 + 2 h, passed (sz): due
    # nobody: C8 挂账 (no department): not due
    case(store, r[1], "closed", "sz", closed_after_s=86400)
    case(store, r[2], "closed", "hw", late=("handle",), closed_after_s=2 * 86400)
    case(store, r[5], "handling", "hw", late=("dispatch",), due_s=3 * 86400)
    case(store, r[7], "handling", "sz", due_s=2 * H)
    case(store, r[8], "deferred", None)
    return Rates(store, clock=Clock(AS_OF))


WINDOW = {"since": iso(T0 - timedelta(days=1)), "until": iso(T0 + timedelta(days=3))}


def by_key(table, *keys):
    return {tuple(r[k] for k in keys): r for r in table["rows"]}


def test_rates_per_supervisor_match_the_hand_count(data):
    rows = by_key(data.table(by=["supervisor"], period="all", **WINDOW), "supervisor")
    s01, s02, nobody = rows[("s01",)], rows[("s02",)], rows[(None,)]
    assert (s01["reported"], s01["accepted"], s01["rejected"]) == (5, 3, 1)
    assert s01["valid_report_rate"] == 0.6
    assert (s01["verify_tasks"], s01["verify_due"], s01["verify_on_time"]) == (5, 4, 2)
    assert s01["verify_on_time_rate"] == 0.5
    assert (s01["check_tasks"], s01["check_due"], s01["check_on_time"]) == (2, 2, 1)
    assert s01["check_on_time_rate"] == 0.5
    # intake 30, 60, 120, 300 s: median = 2nd, p90 = 4th (nearest rank)
    assert (s01["intake_n"], s01["intake_median_s"], s01["intake_p90_s"]) == (4, 60, 300)
    assert (s01["verify_n"], s01["verify_median_s"], s01["verify_p90_s"]) == (3, 7200, 9000)
    assert (s01["check_n"], s01["check_median_s"], s01["check_p90_s"]) == (1, 3600, 3600)
    assert (s01["send_n"], s01["send_median_s"]) == (7, 5)
    assert s01["duty_hours"] == 12 and s01["reports_per_duty_hour"] == round(5 / 12, 4)
    assert (s02["reported"], s02["valid_report_rate"], s02["verify_on_time_rate"]) == (2, 0.5, 1)
    assert s02["check_on_time_rate"] is None  # nothing due: no rate, not zero
    assert (s02["intake_median_s"], s02["intake_p90_s"]) == (90, 600)
    assert s02["duty_hours"] == 0 and s02["reports_per_duty_hour"] is None
    assert (nobody["reported"], nobody["valid_report_rate"]) == (1, 1)


def test_case_rates_per_supervisor_match_the_hand_count(data):
    rows = by_key(data.table(by=["supervisor"], period="all", **WINDOW), "supervisor")
    s01, s02, nobody = rows[("s01",)], rows[("s02",)], rows[(None,)]
    # s01: 3 cases, 2 closed (C1 on time, C2 late), C5 open and late: 3 due
    assert (s01["cases"], s01["closed"], s01["close_due"], s01["closed_on_time"]) == (3, 2, 3, 1)
    assert (s01["close_rate"], s01["close_on_time_rate"]) == (0.6667, 0.3333)
    # 立案 → 结案: C1 1 day, C2 2 days
    assert (s01["close_n"], s01["close_median_s"], s01["close_p90_s"]) == (2, 86400, 172800)
    # s02: C7 open past its deadline: due, not closed
    assert (s02["cases"], s02["closed"], s02["close_due"]) == (1, 0, 1)
    assert (s02["close_rate"], s02["close_on_time_rate"]) == (0, 0)
    # nobody: C8 挂账, not due: no rate
    assert (nobody["cases"], nobody["deferred"], nobody["close_due"]) == (1, 1, 0)
    assert nobody["close_rate"] is None and nobody["close_on_time_rate"] is None


def test_rates_per_department_match_the_hand_count(data):
    rows = by_key(data.table(by=["department"], period="all", **WINDOW), "department")
    sz, hw, none = rows[("sz",)], rows[("hw",)], rows[(None,)]
    # sz: C1 closed on time, C7 open and late
    assert (sz["cases"], sz["close_due"], sz["close_rate"], sz["close_on_time_rate"]) == (
        2, 2, 0.5, 0.5)
    # hw: C2 closed late, C5 open and late
    assert (hw["cases"], hw["close_due"], hw["close_rate"], hw["close_on_time_rate"]) == (
        2, 2, 0.5, 0)
    # reports by their case's department: r1, r7 (sz); r2, r5 (hw); the rest have none
    assert (sz["reported"], hw["reported"], none["reported"]) == (2, 2, 4)
    assert (sz["accepted"], none["accepted"], none["valid_report_rate"]) == (2, 1, 0.25)
    # tasks by their report's case: c1 is of r1 (sz); the others name no report
    assert (sz["check_tasks"], sz["check_on_time"]) == (1, 1)
    assert (none["verify_tasks"], none["check_tasks"]) == (6, 1)
    assert (none["cases"], none["close_rate"]) == (1, None)


def test_case_rates_per_day_count_cases_on_their_filing_day(data):
    rows = by_key(data.table(by="supervisor,department", period="day", **WINDOW),
                  "supervisor", "department", "period")
    assert rows[("s01", "hw", "2026-11-28")]["cases"] == 1  # C2
    assert rows[("s01", "hw", "2026-11-29")]["cases"] == 1  # C5
    assert rows[("s01", "sz", "2026-11-28")]["closed_on_time"] == 1  # C1


def test_rates_per_day_split_on_the_beijing_calendar(data):
    rows = by_key(data.table(by="supervisor", period="day", **WINDOW), "supervisor", "period")
    day1, day2 = rows[("s01", "2026-11-28")], rows[("s01", "2026-11-29")]
    assert (day1["reported"], day1["accepted"], day1["duty_hours"]) == (4, 2, 8)
    assert day1["reports_per_duty_hour"] == 0.5
    assert (day2["reported"], day2["accepted"], day2["verify_tasks"]) == (1, 1, 0)
    assert day2["reports_per_duty_hour"] == 0.25
    week = data.table(by="supervisor", period="week", **WINDOW)["rows"]
    assert {r["period"] for r in week} == {"2026-11-23"}


def test_rates_per_grid_and_device(data):
    rows = by_key(data.table(by=["grid", "device"], period="month", **WINDOW), "grid", "device")
    assert rows[(G1, "pv-0001")]["reported"] == 2
    assert rows[(G1, "pv-0001")]["valid_report_rate"] == 1
    assert rows[(G2, "pv-0001")]["reported"] == 3
    assert rows[(G2, "pv-0001")]["verify_tasks"] == 1
    assert rows[(G1, "pv-0001")]["verify_tasks"] == 4
    assert "reports_per_duty_hour" not in rows[(G1, "pv-0001")]
    assert {r["period"] for r in rows.values()} == {"2026-11"}


def test_a_window_with_no_data_has_no_rows(data):
    table = data.table(since="2025-01-01T00:00:00Z", until="2025-02-01T00:00:00Z")
    assert table["rows"] == []


def test_bad_requests_are_named(data):
    with pytest.raises(Invalid, match="by: distinct names among supervisor"):
        data.table(by=["team"])
    with pytest.raises(Invalid, match="by: distinct names"):
        data.table(by=["department", "department"])
    with pytest.raises(Invalid, match="period: one of day, week, month, all"):
        data.table(period="year")
    with pytest.raises(Invalid, match="since must come before until"):
        data.table(since=WINDOW["until"], until=WINDOW["since"])
    with pytest.raises(Invalid, match="at most 366 days"):
        data.table(since="2020-01-01T00:00:00Z", until="2026-01-01T00:00:00Z")


@pytest.mark.parametrize(("t", "day", "week", "month"), [
    ("2026-11-29T15:00:00.000Z", "2026-11-29", "2026-11-23", "2026-11"),  # Sunday 23:00
    ("2026-11-29T17:00:00.000Z", "2026-11-30", "2026-11-30", "2026-11"),  # Monday 01:00
    ("2026-11-30T16:30:00.000Z", "2026-12-01", "2026-11-30", "2026-12"),  # Tuesday 00:30
])
def test_periods_are_beijing_days_weeks_and_months(store, t, day, week, month):
    got = {}
    with store.connect() as conn:
        for period in ("day", "week", "month"):
            got[period] = one(run(store, conn, f"SELECT {bucket(store.dialect, period, '?')}"
                                  " AS p", [t]))["p"]
    assert got == {"day": day, "week": week, "month": month}


def nearest_rank(values, p):
    """The k-th smallest of ``values`` with k = ⌈p·n⌉ (p in tenths, exact)."""
    ordered = sorted(values)
    return ordered[-(-p * len(ordered) // 10) - 1]


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.lists(st.lists(st.integers(0, 10**6), min_size=1, max_size=12),
                       min_size=1, max_size=3))
def test_stage_percentiles_are_the_nearest_rank(store, groups):
    """Any durations, any group sizes: the SQL median and 90th percentile are the
    nearest-rank ones (whole seconds, so the stores' time arithmetic is exact)."""
    store.migrate(extra=QUEUE_MIGRATIONS + TASK_MIGRATIONS + ROSTER_MIGRATIONS + MIGRATIONS
                  + CASE_MIGRATIONS)
    with store.connect() as conn:
        for table in ("reports", "intake"):
            run(store, conn, f"DELETE FROM {table}")
    seq = 0
    for g, durations in enumerate(groups):
        for s in durations:
            seq += 1
            rid = add_report(store, seq, device=f"pv-{g:04d}",
                             captured=T0 + timedelta(seconds=seq))
            decide(store, rid, "accepted", s)
    table = Rates(store, clock=Clock(AS_OF)).table(by="device", period="all", **WINDOW)
    got = {r["device"]: (r["intake_n"], r["intake_median_s"], r["intake_p90_s"])
           for r in table["rows"]}
    assert got == {f"pv-{g:04d}": (len(d), nearest_rank(d, 5), nearest_rank(d, 9))
                   for g, d in enumerate(groups)}
