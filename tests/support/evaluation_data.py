"""A week of a small district for the statistics page and the wall view: three 监督员 on
duty over work grids on the 上街区 sample map, their reports, intake decisions, cases in
every stage (some late), 核实/核查 tasks (some late) and track points through part of each
work grid.  Times are relative to ``now`` so that "today" on the wall has figures."""

from datetime import timedelta

from gridlink.gateway.clock import CENTRE_TIME, parse_iso
from gridlink.gateway.geojson import grid_geojson
from gridlink.gateway.store.sql import run

from tests.support.intake_api import add_report, iso

SUPERVISORS = (("s01", "张三", "pv-0001", "410106001001"),
               ("s02", "李四", "pv-0002", "410106001002"),
               ("s03", "王五", "pv-0003", "410106002001"))
DEPARTMENTS = ("hw", "sz", "yl")  # 环卫, 市政, 园林
CASE_STATES = ("closed", "closed", "handling", "dispatched", "checking", "registered",
               "closed", "rework", "closed", "handling", "reported", "closed", "dispatched",
               "deferred")


def _centre(feature):
    ring = feature["geometry"]["coordinates"][0][:-1]
    return (sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring))


def fill_week(store, roster, grid_map, now, days=7):
    """Roster, reports, cases, tasks and track for the ``days`` Beijing days up to ``now``'s;
    returns the number of reports."""
    cells = {}
    for f in grid_geojson(grid_map)["features"]:
        cells.setdefault(f["properties"]["community"], []).append(f)
    roster.put_shift("day", "08:00", "16:00")
    today = now.astimezone(CENTRE_TIME).date()
    first = (today - timedelta(days=days - 1)).isoformat()
    yesterday = (today - timedelta(days=1)).isoformat()
    n = 0
    for s, (sid, name, device, community) in enumerate(SUPERVISORS):
        roster.put_supervisor(sid, name)
        roster.put_work_grid(f"wg-{sid}", supervisor=sid, shift="day", cells=[community])
        roster.carry(sid, device, since=iso(now - timedelta(days=days + 3)))
        periods = roster.schedule(sid, "day", first, yesterday)
        feats = cells[community]
        for d, duty in enumerate(periods):
            on = parse_iso(duty["on_at"])
            # the patrol passes through a share of the work grid that grows with s and d
            with store.connect() as conn:
                for k, f in enumerate(feats[: len(feats) * (3 + s + d) // 12]):
                    lon, lat = _centre(f)
                    run(store, conn, "INSERT INTO track_points (device, t, lat, lon, speed)"
                        " VALUES (?, ?, ?, ?, 5)", [device, iso(on + timedelta(seconds=30 * k)),
                                                    lat, lon])
            for r in range(3 + (s + d) % 4):
                n += 1
                at = on + timedelta(minutes=20 + 35 * r)
                _report(store, n, device, feats[(r * 7 + d) % len(feats)], at, now)
        # today: a few reports in the last half hour, one still to be decided
        for r in range(2 + s):
            n += 1
            _report(store, n, device, feats[r], now - timedelta(minutes=5 + 7 * r + s),
                    now, decide=r > 0)
    return n


def _report(store, n, device, feature, at, now, decide=True):
    lon, lat = _centre(feature)
    rid = add_report(store, n, device=device, grid=feature["properties"]["code"], lat=lat,
                     lon=lon, captured=at)
    if not decide:
        return
    decided = at + timedelta(minutes=2 + n % 9)
    accepted = n % 5 != 0
    with store.connect() as conn:
        run(store, conn, "INSERT INTO intake (report_id, state, case_no, decided_by, decided_at,"
            " updated_at) VALUES (?, ?, ?, 'op', ?, ?)",
            [rid, "accepted" if accepted else "rejected", f"C{n:05d}" if accepted else None,
             iso(decided), iso(decided)])
        if n % 3 == 0:  # a 核实 task before the decision: late every fourth time
            done = at + timedelta(minutes=50 if n % 4 else 150)
            run(store, conn, "INSERT INTO tasks (id, type, report_id, grid, district, device,"
                " state, created_at, deadline, sent_at, done_at) VALUES (?, 'verify', ?, ?,"
                " '410106', ?, 'done', ?, ?, ?, ?)",
                [f"v{n}", rid, feature["properties"]["code"], device, iso(at),
                 iso(at + timedelta(hours=1)), iso(at), iso(done)])
        if not accepted:
            return
        state = CASE_STATES[n % len(CASE_STATES)]
        closed = state == "closed"
        stage = {"registered": "dispatch", "dispatched": "handle", "handling": "handle",
                 "rework": "handle", "reported": "check", "checking": "check"}.get(state)
        due = decided + timedelta(hours=4 if n % 2 else 30)  # some past by now: late
        updated = decided + timedelta(hours=3 + n % 20) if closed else decided
        run(store, conn, "INSERT INTO cases (case_no, report_id, state, kind, code, grid,"
            " district, department, stage, stage_since, stage_due, version, created_at,"
            " updated_at) VALUES (?, ?, ?, 'event', '06010', ?, '410106', ?, ?, ?, ?, 3, ?, ?)",
            [f"C{n:05d}", rid, state, feature["properties"]["code"],
             None if state == "registered" else DEPARTMENTS[n % 3], stage,
             None if stage is None else iso(decided), None if stage is None else iso(due),
             iso(decided), iso(min(updated, now))])
        run(store, conn, "INSERT INTO case_history (case_no, n, at, actor, action, to_state,"
            " stage, on_time) VALUES (?, 2, ?, 'op', 'dispatch', 'dispatched', 'dispatch', ?)",
            [f"C{n:05d}", iso(decided), int(n % 7 != 0)])
        if closed:  # the 核查 that closed it: late every fourth time
            sent = decided + timedelta(hours=2)
            run(store, conn, "INSERT INTO tasks (id, type, report_id, grid, district, device,"
                " state, created_at, deadline, sent_at, done_at) VALUES (?, 'check', ?, ?,"
                " '410106', ?, 'done', ?, ?, ?, ?)",
                [f"c{n}", rid, feature["properties"]["code"], device, iso(sent),
                 iso(sent + timedelta(hours=2)), iso(sent),
                 iso(min(sent + timedelta(minutes=150 if n % 4 == 0 else 40), now))])
        if state == "checking":  # its 核查 task, sent and not yet answered
            run(store, conn, "INSERT INTO tasks (id, type, report_id, grid, district, device,"
                " state, created_at, deadline, sent_at) VALUES (?, 'check', ?, ?, '410106', ?,"
                " 'sent', ?, ?, ?)",
                [f"c{n}", rid, feature["properties"]["code"], device, iso(decided),
                 iso(decided + timedelta(hours=2)), iso(decided)])
