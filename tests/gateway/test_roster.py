"""Supervisors, carried devices, shifts, work grids and duty (gateway/roster.py), on SQLite
and PostgreSQL, against the shipped 上街区 map's cells."""

from datetime import UTC, datetime

import pytest
from gridlink.firmware.maps import HERE, open_map
from gridlink.gateway.queue import Conflict, Invalid, NotFound
from gridlink.gateway.roster import MIGRATIONS, Roster, shift_window

from tests.support.intake_api import Clock

MAP = open_map(HERE / "shangjie.glgm")
COMMUNITY = "410106001002"  # 92 cells in the sample map


@pytest.fixture
def roster(store):
    store.migrate(extra=MIGRATIONS)
    r = Roster.over_map(store, MAP, clock=Clock())
    r.put_supervisor("s01", "张三")
    r.put_supervisor("s02", "李四")
    r.put_shift("early", "07:00", "15:00")
    r.put_shift("night", "22:00", "06:00")
    return r


def test_a_work_grid_by_prefix_takes_the_community_cells(roster):
    g = roster.put_work_grid("wg1", supervisor="s01", shift="early", cells=[COMMUNITY])
    assert len(g["cells"]) == 92 and all(c.startswith(COMMUNITY) for c in g["cells"])
    assert roster.work_grids(supervisor="s01")[0]["cells"] == g["cells"]


def test_cells_not_in_the_map_are_named_and_nothing_changes(roster):
    roster.put_work_grid("wg1", supervisor="s01", shift="early", cells=["410106001001001"])
    with pytest.raises(Invalid, match=r"not in the grid map: 410106999001001, 41010699…"):
        roster.put_work_grid("wg1", supervisor="s01", shift="early",
                             cells=["410106001001002", "410106999001001", "41010699"])
    assert roster.work_grids()[0]["cells"] == ["410106001001001"]


def test_overlapping_work_grids_of_one_shift_are_refused(roster):
    roster.put_work_grid("wg1", supervisor="s01", shift="early", cells=[COMMUNITY])
    with pytest.raises(Conflict, match=r"shift early may not overlap: 410106001002001 \(wg1\)"):
        roster.put_work_grid("wg2", supervisor="s02", shift="early",
                             cells=["410106001002001", "410106001001001"])
    # another shift may hold the same cells; the refused grid left nothing behind
    roster.put_work_grid("wg3", supervisor="s02", shift="night", cells=[COMMUNITY])
    assert [g["id"] for g in roster.work_grids()] == ["wg1", "wg3"]
    # replacing a work grid by itself is no overlap
    assert len(roster.put_work_grid("wg1", supervisor="s01", shift="early",
                                    cells=["410106001002001"])["cells"]) == 1


def test_a_device_with_no_supervisor_is_said_so(roster):
    with pytest.raises(NotFound, match="pv-0001 is carried by no supervisor"):
        roster.carrier("pv-0001")
    with pytest.raises(NotFound, match="no supervisor 'nobody'"):
        roster.carry("nobody", "pv-0001")
    roster.carry("s01", "pv-0001", since="2026-11-01T00:00:00Z")
    roster.carry("s02", "pv-0001", since="2026-11-20T00:00:00Z")
    assert roster.carrier("pv-0001", at="2026-11-10T00:00:00Z") == "s01"
    assert roster.carrier("pv-0001") == "s02"
    with pytest.raises(Conflict, match="carried by s02 from 2026-11-20"):
        roster.carry("s01", "pv-0001", since="2026-11-15T00:00:00Z")
    assert [p["devices"] for p in roster.supervisors()] == [[], ["pv-0001"]]
    roster.put_down("pv-0001", until="2026-11-27T00:00:00Z")
    with pytest.raises(NotFound):
        roster.carrier("pv-0001")
    # a new carrier may not start inside a period already recorded, closed or not
    with pytest.raises(Conflict, match=r"carried by s02 from 2026-11-20.* to 2026-11-27"):
        roster.carry("s01", "pv-0001", since="2026-11-26T00:00:00Z")
    roster.carry("s01", "pv-0001", since="2026-11-27T00:00:00Z")
    assert [(c["supervisor"], c["until"]) for c in roster.carries()] == [
        ("s01", "2026-11-20T00:00:00.000Z"), ("s02", "2026-11-27T00:00:00.000Z"),
        ("s01", None)]


def test_duty_periods_from_a_shift_schedule(roster):
    made = roster.schedule("s01", "night", "2026-11-02", "2026-11-03")
    # 22:00–06:00 Beijing time is 14:00–22:00 UTC
    assert [(d["on_at"], d["off_at"]) for d in made] == [
        ("2026-11-02T14:00:00.000Z", "2026-11-02T22:00:00.000Z"),
        ("2026-11-03T14:00:00.000Z", "2026-11-03T22:00:00.000Z")]
    with pytest.raises(Invalid, match="last_day must be on or after first_day"):
        roster.schedule("s01", "night", "2026-11-04", "2026-11-03")
    with pytest.raises(Conflict, match=r"already on duty from 2026-11-03T14:00:00\.000Z"):
        roster.schedule("s01", "night", "2026-11-03", "2026-11-04")
    assert len(roster.duty("s01")) == 2  # all or none: the 4th was not kept either
    # the early shift of the 4th (23:00 UTC on the 3rd) follows the night on: no overlap
    assert roster.schedule("s01", "early", "2026-11-04", "2026-11-04")[0]["on_at"] == (
        "2026-11-03T23:00:00.000Z")
    with pytest.raises(Invalid, match=r"off_at .* must come after on_at"):
        roster.put_duty("s01", "2026-11-05T10:00:00Z", "2026-11-05T09:00:00Z")
    with pytest.raises(NotFound, match="no shift 'late'"):
        roster.schedule("s01", "late", "2026-11-04", "2026-11-04")


def test_shift_window_past_midnight():
    on, off = shift_window(datetime(2026, 11, 2).date(), "22:00", "06:00")
    assert on.astimezone(UTC).hour == 14 and (off - on).total_seconds() == 8 * 3600


def test_no_map_no_work_grids(store):
    store.migrate(extra=MIGRATIONS)
    with pytest.raises(Invalid, match="no grid map is loaded"):
        Roster(store).expand(["410106001"])
