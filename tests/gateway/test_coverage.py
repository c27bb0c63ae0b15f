"""Patrol coverage (gateway/coverage.py) against shapely, on recorded patrols: real NMEA
captures (gpsd's test logs, /work/shared/data/nmea) moved onto the 上街区 sample map as
the demo's vehicles replay them, stretched fivefold so that a patrol crosses several
cells and leaves the work grid; stored as track points on SQLite and PostgreSQL."""

from datetime import timedelta
from functools import reduce

import pytest
from gridlink.firmware.maps import HERE, open_map
from gridlink.firmware.sim.replay import (
    epochs,
    find_capture,
    read_capture,
    sentence_position,
    translate,
)
from gridlink.gateway.clock import parse_iso, wire_time
from gridlink.gateway.coverage import Coverage, week_of
from gridlink.gateway.gridindex import RasterLocator
from gridlink.gateway.queue import Invalid
from gridlink.gateway.roster import MIGRATIONS, Roster
from shapely.geometry import Point, Polygon

from tests.support.intake_api import Clock

MAP = open_map(HERE / "shangjie.glgm")
LOCATE = RasterLocator(MAP).locate
ORIGIN = (34.8063, 113.2914)  # the demo's first vehicle starts here
COMMUNITY = MAP.locate(ORIGIN[1], ORIGIN[0])[:12]
STRETCH = 5.0
ON = parse_iso("2026-11-23T00:00:00Z")  # 08:00 Beijing, Monday


def patrol(name, origin, start):
    """[(t, lat, lon)] of a capture's epochs moved to ``origin``, stretched, from ``start``."""
    lines = translate(read_capture(find_capture(name)), origin)
    out, tod0 = [], None
    for tod, group in epochs(lines):
        pos = next((p for p in map(sentence_position, group) if p is not None), None)
        if tod is None or pos is None:
            continue
        tod0 = tod if tod0 is None else tod0
        lat = origin[0] + STRETCH * (pos[0] - origin[0])
        lon = origin[1] + STRETCH * (pos[1] - origin[1])
        out.append((start + timedelta(seconds=tod - tod0), lat, lon))
    return out


def shapes(prefix):
    """code → shapely geometry of every map cell whose code starts with ``prefix`` (rings
    combined even-odd, as the map's crossing rule reads them)."""
    out = {}
    for i in range(MAP.n_cells):
        code = MAP.code(i)
        if code.startswith(prefix):
            polys = [Polygon([(x / 1e7, y / 1e7) for x, y in ring]) for ring in MAP.rings(i)]
            out[code] = reduce(lambda a, b: a.symmetric_difference(b), polys)
    return out


@pytest.fixture
def patrolled(store):
    store.migrate(extra=MIGRATIONS)
    roster = Roster.over_map(store, MAP, clock=Clock(ON))
    roster.put_supervisor("s01", "张三")
    roster.put_shift("day", "08:00", "16:00")
    roster.put_work_grid("wg1", supervisor="s01", shift="day", cells=[COMMUNITY])
    roster.carry("s01", "pv-0001", since="2026-11-01T00:00:00Z")
    roster.schedule("s01", "day", "2026-11-23", "2026-11-24")
    track = (patrol("quectel-eg25-g.log", ORIGIN, ON + timedelta(minutes=10))
             + patrol("garmin-geko201.log", (ORIGIN[0] - 0.003, ORIGIN[1] + 0.002),
                      ON + timedelta(hours=2)))
    insert = store.sql("INSERT INTO track_points (device, t, lat, lon, speed)"
                       " VALUES (?, ?, ?, ?, 0)")
    with store.connect() as conn:
        conn.cursor().executemany(insert, [("pv-0001", wire_time(t), lat, lon)
                                           for t, lat, lon in track])
        # another device's track, carried by nobody: not s01's
        conn.cursor().executemany(insert, [("pv-0009", wire_time(t), lat, lon)
                                           for t, lat, lon in track])
    return Coverage(store, roster, LOCATE), track


def expected(track, max_gap_s=120.0):
    """Visited work cells and seconds inside / outside the work grid, by shapely."""
    work = shapes(COMMUNITY)
    visited, inside, outside = set(), 0.0, 0.0
    for k, (t, lat, lon) in enumerate(track):
        p = Point(lon, lat)
        hits = [code for code, shape in work.items() if shape.covers(p)]
        visited.update(hits)
        if k + 1 < len(track):
            dt = (track[k + 1][0] - t).total_seconds()
            if dt <= max_gap_s:
                if hits:
                    inside += dt
                else:
                    outside += dt
    return work, visited, inside, outside


def test_shift_coverage_agrees_with_shapely(patrolled):
    coverage, track = patrolled
    work, visited, inside, outside = expected(track)
    assert len(visited) >= 3 and inside > 0 and outside > 0  # the patrols cross and leave
    first, second = coverage.shifts("2026-11-22T16:00:00Z", "2026-11-24T16:00:00Z")
    assert first["devices"] == ["pv-0001"] and first["points"] == len(track)
    assert first["work_cells"] == len(work)
    assert first["visited_work_cells"] == len(visited)
    assert first["share"] == round(len(visited) / len(work), 4)
    assert first["inside_s"] == pytest.approx(inside, abs=1e-3)
    assert first["outside_s"] == pytest.approx(outside, abs=1e-3)
    assert first["untracked_s"] == pytest.approx(8 * 3600 - inside - outside, abs=1e-3)
    # the second day has no track: nothing covered, all untracked
    assert (second["points"], second["share"], second["untracked_s"]) == (0, 0.0, 8 * 3600)


def test_cells_never_visited_in_the_week_agree_with_shapely(patrolled):
    coverage, track = patrolled
    work, visited, _, _ = expected(track)
    since, until = week_of("2026-11-25")
    assert (since, until) == ("2026-11-22T16:00:00.000Z", "2026-11-29T16:00:00.000Z")
    (grid,) = coverage.unvisited(since, until)
    assert grid["duty_periods"] == 2
    assert grid["unvisited_cells"] == sorted(set(work) - visited)


def test_bad_windows_are_named(patrolled):
    coverage, _ = patrolled
    with pytest.raises(Invalid, match="since and until: both required"):
        coverage.shifts(None, "2026-11-24T16:00:00Z")
    with pytest.raises(Invalid, match="at most 31 days"):
        coverage.shifts("2026-01-01T00:00:00Z", "2026-11-24T16:00:00Z")
    with pytest.raises(Invalid, match="week: a date"):
        week_of("next week")
    assert coverage.shifts("2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z") == []
