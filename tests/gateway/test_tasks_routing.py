"""Task routing by the roster (gateway/tasks.py, gateway/roster.py): the supervisor on duty
for the cell's work grid, then the nearest on-duty device, then the grid's assignment, then
the nearest device — on SQLite and PostgreSQL, against the shipped 上街区 map's cells."""

import json

import pytest
from gridlink.firmware.maps import HERE, open_map
from gridlink.gateway.api import MIGRATIONS, create_app
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.queue import IntakeQueue
from gridlink.gateway.roster import Roster
from gridlink.gateway.tasks import TaskDesk

from tests.support.intake_api import T0, Api, Clock, Tokens, add_report, iso

MAP = open_map(HERE / "shangjie.glgm")
HELD = "410106001002001"  # in s01's early work grid
FREE = "410106001001001"  # in no work grid
SPOT = (34.8205, 113.2871)  # where the reports are; T0 is 10:00 Beijing time, early shift


def add_device(store, device, lat, lon, *, state="online", profile="patrol-vehicle"):
    with store.connect() as conn:
        conn.execute(store.sql(
            "INSERT INTO devices (device, district, state, last_seen, status, last_lat,"
            " last_lon, last_fix_at, profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            (device, "410106", state, iso(T0), json.dumps({"v": 1}), lat, lon, iso(T0),
             profile))


def east(metres):
    """A point ``metres`` east of SPOT (one degree of longitude here is about 91.4 km)."""
    return SPOT[0], SPOT[1] + metres / 91_400


def staff(store, clock):
    """s01 (work grid HELD, carries pv-0001 2 km away) and s02 (no work grid, carries
    pv-0002 1 km away) on the early shift today; pv-0003, 100 m away, is nobody's."""
    roster = Roster.over_map(store, MAP, clock=clock)
    roster.put_supervisor("s01", "张三")
    roster.put_supervisor("s02", "李四")
    roster.put_shift("early", "07:00", "15:00")
    roster.put_shift("night", "22:00", "06:00")
    roster.put_work_grid("wg1", supervisor="s01", shift="early", cells=[HELD])
    for sid, device, metres in (("s01", "pv-0001", 2000), ("s02", "pv-0002", 1000)):
        roster.schedule(sid, "early", "2026-11-28", "2026-11-28")
        roster.carry(sid, device, since="2026-11-01T00:00:00Z")
        add_device(store, device, *east(metres))
    add_device(store, "pv-0003", *east(100))
    return roster


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def desk(store, clock):
    store.migrate(extra=MIGRATIONS)
    roster = staff(store, clock)
    return TaskDesk(store, IntakeQueue(store, clock=clock), clock=clock, roster=roster)


def routed(desk, store, seq, grid, **kw):
    task = desk.create(report_id=add_report(store, seq, grid=grid, lat=SPOT[0], lon=SPOT[1]),
                       **kw)
    return task["device"], task["chosen_by"]


def test_the_work_grid_supervisor_on_duty_comes_first(desk, store):
    # pv-0002 and pv-0003 are nearer; the cell is s01's
    assert routed(desk, store, 1, HELD) == ("pv-0001", "work_grid")
    assert routed(desk, store, 2, HELD, type="check") == ("pv-0001", "work_grid")
    # an operator naming the device is not a rule, and the task says so
    task = desk.create(report_id=add_report(store, 3, grid=HELD), device="pv-0003")
    assert (task["device"], task["chosen_by"]) == ("pv-0003", "operator")
    assert "routed_by" not in task


def test_a_cell_in_no_work_grid_goes_to_the_nearest_device_on_duty(desk, store):
    # pv-0003 is nearest but carried by no supervisor; pv-0002's carrier is on duty
    assert routed(desk, store, 1, FREE) == ("pv-0002", "nearest_on_duty")


def test_a_supervisor_off_duty_is_never_chosen_by_the_roster_rules(desk, store):
    roster = desk.roster
    roster.carry("s01", "pv-0004", since="2026-11-01T00:00:00Z")
    add_device(store, "pv-0004", *SPOT)  # s01's second device, right at the spot
    assert routed(desk, store, 1, HELD) == ("pv-0004", "work_grid")
    roster.delete_duty("s01", "2026-11-27T23:00:00Z")
    # s01 is off: not by the work grid, not as the nearest on duty
    assert routed(desk, store, 2, HELD) == ("pv-0002", "nearest_on_duty")
    # a duty period without a shift makes s01 responsible only inside the early window
    roster.put_duty("s01", "2026-11-27T12:00:00Z", "2026-11-28T04:00:00Z")
    assert routed(desk, store, 3, HELD) == ("pv-0004", "work_grid")
    desk.clock.t = T0.replace(hour=3, minute=30)  # 11:30, still early
    roster.delete_duty("s01", "2026-11-27T12:00:00Z")
    roster.put_duty("s01", "2026-11-28T03:00:00Z", "2026-11-28T04:00:00Z", shift="night")
    # on duty, but for the night shift: the early work grid is not his now
    assert routed(desk, store, 4, HELD) == ("pv-0004", "nearest_on_duty")
    desk.clock.t = T0.replace(hour=8, minute=30)  # 16:30, after the early shift
    roster.put_duty("s01", "2026-11-28T08:00:00Z", "2026-11-28T09:00:00Z")
    assert routed(desk, store, 5, HELD) == ("pv-0004", "nearest_on_duty")


def test_after_the_shift_today_rules_apply(desk, store, clock):
    clock.t = T0.replace(hour=8)  # 16:00 Beijing: everybody is off
    assert routed(desk, store, 1, HELD) == ("pv-0003", "nearest")
    desk.assign(HELD, "pv-0002")
    assert routed(desk, store, 2, HELD) == ("pv-0002", "assignment")
    assert routed(desk, store, 3, FREE) == ("pv-0003", "nearest")


def test_a_device_offline_or_fixed_is_passed_over(desk, store):
    with store.connect() as conn:
        conn.execute(store.sql("UPDATE devices SET state = 'offline' WHERE device = ?"),
                     ("pv-0001",))
    # s01 is on duty for the cell but his only device is offline
    assert routed(desk, store, 1, HELD) == ("pv-0002", "nearest_on_duty")
    desk.roster.carry("s01", "ft-0001", since="2026-11-02T00:00:00Z")
    add_device(store, "ft-0001", *SPOT, profile="fixed-terminal")
    assert routed(desk, store, 2, HELD) == ("pv-0002", "nearest_on_duty")


def test_a_tie_goes_to_the_lower_device_id(desk, store):
    for device in ("pv-0009", "pv-0008"):
        desk.roster.carry("s01", device, since="2026-11-01T00:00:00Z")
        add_device(store, device, *east(50))
    assert routed(desk, store, 1, HELD) == ("pv-0008", "work_grid")
    assert routed(desk, store, 2, FREE) == ("pv-0008", "nearest_on_duty")


def test_no_device_on_duty_and_none_online_leaves_the_task_open(desk, store):
    with store.connect() as conn:
        conn.execute(store.sql("UPDATE devices SET state = 'offline'"))
    task = desk.create(report_id=add_report(store, 1, grid=HELD))
    assert (task["device"], task["chosen_by"], task["state"]) == (None, None, "open")


def test_the_api_task_view_shows_the_rule(store, clock, tmp_path):
    store.migrate(extra=MIGRATIONS)
    app = create_app(store, grid_map=MAP, clock=clock, photos_dir=tmp_path / "photos")
    staff(store, clock)  # on the app's store; the app's own roster reads the same tables
    with BackgroundServer(app) as server:
        api = Api(server.url, Tokens(store))
        made = []
        for seq, grid in ((1, HELD), (2, FREE)):
            status, task = api.post("/api/tasks", {"report_id": add_report(store, seq,
                                                                           grid=grid)})
            assert status == 201, task
            made.append(task["id"])
        status, one = api.call("GET", f"/api/tasks/{made[0]}")
        assert status == 200 and (one["device"], one["chosen_by"]) == ("pv-0001", "work_grid")
        status, listed = api.call("GET", "/api/tasks")
        assert status == 200
        assert {t["id"]: t["chosen_by"] for t in listed} == {
            made[0]: "work_grid", made[1]: "nearest_on_duty"}
