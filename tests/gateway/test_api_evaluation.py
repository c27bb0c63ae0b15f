"""The evaluation routes over HTTP: the roster's changes (值班长, audited), the figures for
a read-only viewer, CSV export, and bad input answered clearly with nothing lost."""

import urllib.request
from datetime import timedelta

import pytest
from gridlink.firmware.maps import HERE, open_map
from gridlink.gateway.api import create_app
from gridlink.gateway.httpserver import BackgroundServer

from tests.support.intake_api import T0, Api, Clock, Tokens, add_report, iso

MAP = open_map(HERE / "shangjie.glgm")
CELL = "410106001001001"


@pytest.fixture
def api(store):
    app = create_app(store, grid_map=MAP, clock=Clock(T0 + timedelta(days=1)))
    with BackgroundServer(app) as server:
        yield Api(server.url, Tokens(store, roles={"screen": ("viewer",)}))


def setup_roster(api):
    assert api.call("PUT", "/api/supervisors/s01", {"name": "张三"})[0] == 200
    assert api.call("PUT", "/api/shifts/day", {"starts": "08:00", "ends": "16:00"})[0] == 200
    status, grid = api.call("PUT", "/api/work-grids/wg1",
                            {"supervisor": "s01", "shift": "day", "cells": ["410106001001"]})
    assert status == 200 and CELL in grid["cells"]
    status, _ = api.post("/api/supervisors/s01/devices",
                         {"device": "pv-0001", "since": iso(T0 - timedelta(days=5))})
    assert status == 200
    status, made = api.post("/api/duty/schedule", {"supervisor": "s01", "shift": "day",
                                                   "first_day": "2026-11-28",
                                                   "last_day": "2026-11-28"})
    assert status == 201 and len(made) == 1


def raw(api, path, user="screen"):
    req = urllib.request.Request(api.base + path, headers=api.auth(user))
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read().decode("utf-8")


def test_a_viewer_reads_the_rates_as_json_and_csv(api, store):
    setup_roster(api)
    add_report(store, 1, device="pv-0001", captured=T0)
    add_report(store, 2, device="pv-0001", captured=T0 + timedelta(minutes=5))
    window = "since=2026-11-27T16:00:00Z&until=2026-11-28T16:00:00Z"
    status, table = api.call("GET", f"/api/evaluation/rates?by=supervisor&period=day&{window}",
                             user="screen")
    assert status == 200
    (row,) = table["rows"]
    assert (row["supervisor"], row["period"], row["reported"]) == ("s01", "2026-11-28", 2)
    assert row["valid_report_rate"] == 0 and row["duty_hours"] == 8
    assert row["reports_per_duty_hour"] == 0.25
    status, kind, text = raw(api, f"/api/evaluation/rates?by=supervisor&{window}&format=csv")
    assert status == 200 and kind.startswith("text/csv")
    lines = text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("supervisor,period,reported,accepted")
    assert lines[1].startswith("s01,2026-11-28,2,0")
    assert "close_rate,close_on_time_rate" in lines[0]
    # per department: no case yet, so both reports have none
    status, table = api.call("GET", f"/api/evaluation/rates?by=department&period=all&{window}",
                             user="screen")
    assert status == 200
    assert [(r["department"], r["reported"], r["close_rate"]) for r in table["rows"]] == [
        (None, 2, None)]


def test_coverage_and_unvisited_cells_for_a_viewer(api, store):
    setup_roster(api)
    lat, lon = 34.8205, 113.2871  # in the work grid (410106001001…)
    with store.connect() as conn:
        conn.execute(store.sql("INSERT INTO track_points (device, t, lat, lon, speed)"
                               " VALUES (?, ?, ?, ?, 0)"), ("pv-0001", iso(T0), lat, lon))
    status, found = api.call("GET", "/api/evaluation/coverage?since=2026-11-27T16:00:00Z"
                             "&until=2026-11-28T16:00:00Z&device=pv-0001", user="screen")
    assert status == 200 and found[0]["supervisor"] == "s01" and found[0]["points"] == 1
    assert found[0]["visited_work_cells"] == (1 if MAP.locate(lon, lat).startswith(
        "410106001001") else 0)
    status, weeks = api.call("GET", "/api/evaluation/unvisited?week=2026-11-28", user="screen")
    assert status == 200 and weeks[0]["work_grid"] == "wg1"
    assert weeks[0]["unvisited"] == weeks[0]["cells"] - found[0]["visited_work_cells"]
    status, kind, text = raw(api, "/api/evaluation/unvisited?week=2026-11-28&format=csv")
    assert kind.startswith("text/csv") and "wg1,s01,day,1," in text
    # or over any window (the wall view asks for the last 7 days)
    status, window = api.call("GET", "/api/evaluation/unvisited?since=2026-11-25T16:00:00Z"
                              "&until=2026-11-28T16:00:00Z", user="screen")
    assert status == 200 and window[0]["unvisited"] == weeks[0]["unvisited"]


def test_bad_input_is_answered_clearly_and_nothing_is_lost(api):
    setup_roster(api)
    status, body = api.call("PUT", "/api/work-grids/wg1",
                            {"supervisor": "s01", "shift": "day", "cells": ["410106999999999"]})
    assert status == 400 and "not in the grid map: 410106999999999" in body["detail"]
    api.call("PUT", "/api/supervisors/s02", {"name": "李四"})
    status, body = api.call("PUT", "/api/work-grids/wg2",
                            {"supervisor": "s02", "shift": "day", "cells": [CELL]})
    assert status == 409 and f"{CELL} (wg1)" in body["detail"]
    status, grids = api.get("/api/work-grids")
    assert [g["id"] for g in grids] == ["wg1"] and CELL in grids[0]["cells"]
    status, body = api.call("GET", "/api/evaluation/coverage?since=2026-11-27T16:00:00Z"
                            "&until=2026-11-28T16:00:00Z&device=pv-0404", user="screen")
    assert status == 404 and "pv-0404 is carried by no supervisor" in body["detail"]
    status, table = api.call("GET", "/api/evaluation/rates?since=2025-01-01T00:00:00Z"
                             "&until=2025-01-02T00:00:00Z", user="screen")
    assert status == 200 and table["rows"] == []
    status, body = api.call("GET", "/api/evaluation/rates?by=grid,grid", user="screen")
    assert status == 400 and "by: distinct names among" in body["detail"]
    status, weeks = api.call("GET", "/api/evaluation/unvisited?week=2026-11-30", user="screen")
    assert status == 200 and weeks[0]["duty_periods"] == 0  # the 30th and 31st are dates too
    status, body = api.call("GET", "/api/evaluation/unvisited?week=2026-02-30", user="screen")
    assert status == 400 and "week: a date YYYY-MM-DD, not '2026-02-30'" in body["detail"]
    for both in ("week=2026-11-30&since=2026-11-25T16:00:00Z", "since=2026-11-25T16:00:00Z",
                 ""):
        status, body = api.call("GET", f"/api/evaluation/unvisited?{both}", user="screen")
        assert status == 400 and body["detail"] in (
            "give week, or since and until (not both)",
            "since and until: both required (ISO 8601 times)"), body
    status, body = api.call("GET", "/api/evaluation/rates?by=team", user="screen")
    assert status == 422 and body["detail"][0]["loc"] == ["query", "by"]


def test_roster_changes_are_audited(api):
    setup_roster(api)
    status, entries = api.get("/api/audit?target=work_grid:wg1")
    assert status == 200
    assert [e["action"] for e in entries] == ["work_grid.put"]


def test_more_bad_input_and_empty_periods_are_answered_clearly(api, store):
    """The rest of issue 16's bad input: a device nobody carries, a period or a gateway with
    no data, a work grid for a supervisor or shift not there, a prefix reaching into
    another work grid of the shift, overlapping duty — each a clear answer, none a 500."""
    # reports of a device no supervisor carries are counted, under no supervisor
    add_report(store, 1, device="pv-0009", captured=T0)
    window = "since=2026-11-27T16:00:00Z&until=2026-11-28T16:00:00Z"
    status, table = api.call("GET", f"/api/evaluation/rates?by=supervisor&{window}",
                             user="screen")
    assert status == 200 and [(r["supervisor"], r["reported"]) for r in table["rows"]] == [
        (None, 1)]
    # no work grids, no duty, an empty window: empty answers, a CSV with its header only
    assert api.call("GET", f"/api/evaluation/coverage?{window}", user="screen") == (200, [])
    assert api.call("GET", "/api/evaluation/unvisited?week=2026-11-28", user="screen") == (
        200, [])
    status, _, text = raw(api, "/api/evaluation/rates?since=2025-01-01T00:00:00Z"
                                  "&until=2025-01-02T00:00:00Z&format=csv")
    lines = text.lstrip("\ufeff").splitlines()
    assert status == 200 and len(lines) == 1 and lines[0].startswith("supervisor,period")
    status, body = api.call("GET", "/api/evaluation/rates?since=2026-11-28T00:00:00Z"
                            "&until=2026-11-28T00:00:00Z", user="screen")
    assert status == 400 and body["detail"] == "since must come before until"
    # work grids naming what is not there
    status, body = api.call("PUT", "/api/work-grids/wg1",
                            {"supervisor": "s09", "shift": "day", "cells": [CELL]})
    assert status == 404 and "no supervisor 's09'" in body["detail"]
    setup_roster(api)
    status, body = api.call("PUT", "/api/work-grids/wg2",
                            {"supervisor": "s01", "shift": "night", "cells": [CELL]})
    assert status == 404 and "no shift 'night'" in body["detail"]
    status, body = api.call("PUT", "/api/work-grids/wg2",
                            {"supervisor": "s01", "shift": "day", "cells": ["410106001"]})
    assert status == 409 and "may not overlap" in body["detail"] and body["work_grid"] == "wg1"
    status, body = api.call("PUT", "/api/work-grids/wg2",
                            {"supervisor": "s01", "shift": "day", "cells": []})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "cells"]
    # duty overlapping duty already recorded for the supervisor
    status, body = api.post("/api/duty", {"supervisor": "s01", "on_at": "2026-11-28T03:00:00Z",
                                          "off_at": "2026-11-28T10:00:00Z"})
    assert status == 409 and "s01 is already on duty" in body["detail"]
    status, grids = api.get("/api/work-grids")
    assert [g["id"] for g in grids] == ["wg1"]
