"""People and work grids: 监督员 (supervisors), the devices they carry, their 监督员工作网格
(work grids) and their duty periods.

A work grid is a set of unit-grid cells of the loaded grid map, given as codes or code
prefixes (a community's 12 digits take all its cells), assigned to one supervisor for one
shift; within a shift no cell belongs to two work grids.  A shift is a daily window in
Beijing time (``07:00``–``15:00``; an end at or before the start runs past midnight); a
duty period is one supervisor on duty from one instant to another (UTC), usually one day of
a shift (:meth:`Roster.schedule`).  A device is carried by one supervisor at a time: a new
carrier ends the previous one's period, so figures stay with whoever carried it then.
"""

import re
from datetime import datetime, timedelta

from .clock import CENTRE_TIME, wire_time
from .queue import Conflict, Invalid, NotFound, parse_time, system_clock
from .store.sql import one, rows, run

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_DEVICE = re.compile(r"[a-z0-9][a-z0-9-]{2,31}")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
MAX_SCHEDULE_DAYS = 366

_TABLES = """
CREATE TABLE eval_supervisors (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE eval_carries (
    device TEXT NOT NULL,
    supervisor TEXT NOT NULL,
    since TEXT NOT NULL,
    until TEXT,
    PRIMARY KEY (device, since)
);
CREATE INDEX eval_carries_supervisor ON eval_carries (supervisor, since);
CREATE TABLE eval_shifts (
    name TEXT PRIMARY KEY,
    starts TEXT NOT NULL,
    ends TEXT NOT NULL
);
CREATE TABLE eval_work_grids (
    id TEXT PRIMARY KEY,
    supervisor TEXT NOT NULL,
    shift TEXT NOT NULL,
    name TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE eval_work_cells (
    work_grid TEXT NOT NULL,
    shift TEXT NOT NULL,
    cell TEXT NOT NULL,
    PRIMARY KEY (work_grid, cell),
    UNIQUE (shift, cell)
);
CREATE TABLE eval_duty (
    supervisor TEXT NOT NULL,
    on_at TEXT NOT NULL,
    off_at TEXT NOT NULL,
    shift TEXT,
    PRIMARY KEY (supervisor, on_at)
);
CREATE INDEX eval_duty_on_at ON eval_duty (on_at);
"""

MIGRATIONS = (("eval_001_roster", _TABLES, _TABLES),)


def _ident(value, field):
    value = str(value or "").strip()
    if not _ID.fullmatch(value):
        raise Invalid(f"{field}: 1 to 32 letters, digits, _ or -, starting with a letter or "
                      f"digit, not {value!r}")
    return value


def _name(value, field="name"):
    value = str(value or "").strip()
    if not value or len(value) > 64:
        raise Invalid(f"{field}: 1 to 64 characters")
    return value


def _device(value):
    value = str(value or "").strip()
    if not _DEVICE.fullmatch(value):
        raise Invalid(f"device: [a-z0-9][a-z0-9-]{{2,31}}, not {value!r}")
    return value


def _hhmm(value, field):
    value = str(value or "").strip()
    if not _HHMM.fullmatch(value):
        raise Invalid(f"{field}: a time of day HH:MM (Beijing time), not {value!r}")
    return value


def shift_window(day, starts, ends):
    """(on, off) aware datetimes of a shift ``starts``–``ends`` (HH:MM, Beijing time) on
    ``day`` (a date); an end at or before the start is on the next day."""
    h0, m0 = map(int, starts.split(":"))
    h1, m1 = map(int, ends.split(":"))
    on = datetime(day.year, day.month, day.day, h0, m0, tzinfo=CENTRE_TIME)
    off = datetime(day.year, day.month, day.day, h1, m1, tzinfo=CENTRE_TIME)
    if off <= on:
        off += timedelta(days=1)
    return on, off


class Roster:
    """Supervisors, carried devices, shifts, work grids and duty over a store.

    ``cells`` is the set of unit-grid codes of the loaded map (None: no map, so no work
    grid can be checked and none is accepted).
    """

    def __init__(self, store, *, cells=None, clock=None):
        self.store = store
        self.cells = frozenset(cells) if cells is not None else None
        self.clock = clock or system_clock

    @classmethod
    def over_map(cls, store, grid_map, **kw):
        """A roster checking work grids against a core ``GridMap`` (or None)."""
        cells = None if grid_map is None else (grid_map.code(i)
                                                for i in range(grid_map.n_cells))
        return cls(store, cells=cells, **kw)

    def _now(self):
        return wire_time(self.clock())

    # ------------------------------------------------------------ supervisors

    def put_supervisor(self, supervisor_id, name):
        sid, name = _ident(supervisor_id, "supervisor"), _name(name)
        now = self._now()
        with self.store.connect() as conn:
            run(self.store, conn,
                "INSERT INTO eval_supervisors (id, name, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET name = ?, updated_at = ?",
                [sid, name, now, name, now])
        return {"id": sid, "name": name, "updated_at": now}

    def supervisors(self):
        """Every supervisor with the devices they carry now."""
        now = self._now()
        with self.store.connect(readonly=True) as conn:
            people = rows(run(self.store, conn,
                              "SELECT id, name, updated_at FROM eval_supervisors ORDER BY id"))
            carried = rows(run(self.store, conn,
                               "SELECT device, supervisor, since FROM eval_carries"
                               " WHERE since <= ? AND (until IS NULL OR until > ?)"
                               " ORDER BY device", [now, now]))
        for p in people:
            p["devices"] = [c["device"] for c in carried if c["supervisor"] == p["id"]]
        return people

    def _known(self, conn, sid):
        if one(run(self.store, conn, "SELECT id FROM eval_supervisors WHERE id = ?",
                   [sid])) is None:
            raise NotFound(f"no supervisor {sid!r}: add them first")

    # ------------------------------------------------------------ devices

    def carry(self, supervisor_id, device, since=None):
        """``device`` is carried by the supervisor from ``since`` (default now); its
        previous carrier's period ends there.  A later period already recorded is refused."""
        sid, device = _ident(supervisor_id, "supervisor"), _device(device)
        since = wire_time(parse_time(since, "since")) if since else self._now()
        with self.store.connect() as conn:
            self._known(conn, sid)
            # a period starting at or after ``since``, or a closed one still running then
            later = one(run(self.store, conn,
                            "SELECT supervisor, since, until FROM eval_carries WHERE device = ?"
                            " AND (since >= ? OR (until IS NOT NULL AND until > ?))"
                            " ORDER BY since DESC LIMIT 1", [device, since, since]))
            if later is not None:
                raise Conflict(f"device {device} is recorded as carried by "
                               f"{later['supervisor']} from {later['since']} to "
                               f"{later['until'] or 'now'} (UTC), not before {since}: a "
                               "hand-over is recorded in time order",
                               supervisor=later["supervisor"], since=later["since"])
            run(self.store, conn,
                "UPDATE eval_carries SET until = ? WHERE device = ? AND until IS NULL",
                [since, device])
            run(self.store, conn,
                "INSERT INTO eval_carries (device, supervisor, since) VALUES (?, ?, ?)",
                [device, sid, since])
        return {"device": device, "supervisor": sid, "since": since, "until": None}

    def put_down(self, device, until=None):
        """``device`` is carried by nobody from ``until`` (default now)."""
        device = _device(device)
        until = wire_time(parse_time(until, "until")) if until else self._now()
        with self.store.connect() as conn:
            cur = run(self.store, conn,
                      "UPDATE eval_carries SET until = ? WHERE device = ? AND until IS NULL"
                      " AND since < ?", [until, device, until])
        if cur.rowcount == 0:
            raise NotFound(f"device {device} is carried by no supervisor (before {until})")
        return {"device": device, "until": until}

    def carrier(self, device, at=None):
        """The supervisor carrying ``device`` at ``at`` (default now); a device carried by
        nobody then is refused with :class:`NotFound` saying so."""
        device = _device(device)
        at = wire_time(parse_time(at, "at")) if at else self._now()
        with self.store.connect(readonly=True) as conn:
            found = one(run(self.store, conn,
                            "SELECT supervisor FROM eval_carries WHERE device = ?"
                            " AND since <= ? AND (until IS NULL OR until > ?)",
                            [device, at, at]))
        if found is None:
            raise NotFound(f"device {device} is carried by no supervisor at {at} (UTC)")
        return found["supervisor"]

    def carries(self, supervisor_id=None):
        where, params = "", []
        if supervisor_id is not None:
            where, params = " WHERE supervisor = ?", [_ident(supervisor_id, "supervisor")]
        with self.store.connect(readonly=True) as conn:
            return rows(run(self.store, conn,
                            "SELECT device, supervisor, since, until FROM eval_carries" + where
                            + " ORDER BY device, since", params))

    # ------------------------------------------------------------ shifts

    def put_shift(self, name, starts, ends):
        name = _ident(name, "shift")
        starts, ends = _hhmm(starts, "starts"), _hhmm(ends, "ends")
        if starts == ends:
            raise Invalid("a shift cannot start and end at the same time")
        with self.store.connect() as conn:
            run(self.store, conn,
                "INSERT INTO eval_shifts (name, starts, ends) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET starts = ?, ends = ?",
                [name, starts, ends, starts, ends])
        return {"name": name, "starts": starts, "ends": ends}

    def shifts(self):
        with self.store.connect(readonly=True) as conn:
            return rows(run(self.store, conn,
                            "SELECT name, starts, ends FROM eval_shifts ORDER BY starts, name"))

    def _shift(self, conn, name):
        found = one(run(self.store, conn, "SELECT name, starts, ends FROM eval_shifts"
                        " WHERE name = ?", [name]))
        if found is None:
            raise NotFound(f"no shift {name!r}: add it first")
        return found

    # ------------------------------------------------------------ work grids

    def expand(self, items):
        """The sorted cell codes that ``items`` (codes and code prefixes) name in the map;
        an item naming no cell of the map is refused, all of them named at once."""
        if self.cells is None:
            raise Invalid("no grid map is loaded: work grid cells cannot be checked")
        if isinstance(items, str):
            items = items.replace(",", " ").split()
        items = [str(i).strip() for i in items if str(i).strip()]
        if not items:
            raise Invalid("cells: give at least one cell code or code prefix")
        chosen, unknown = set(), []
        for item in items:
            if not (item.isascii() and item.isdigit()) or len(item) > 15:
                raise Invalid(f"cells: digits only (a cell code or its prefix), not {item!r}")
            if len(item) >= 14:
                (chosen.add if item in self.cells else unknown.append)(item)
                continue
            found = {c for c in self.cells if c.startswith(item)}
            if found:
                chosen |= found
            else:
                unknown.append(item + "…")
        if unknown:
            raise Invalid(f"cells not in the grid map: {', '.join(unknown)}")
        return sorted(chosen)

    def put_work_grid(self, work_grid_id, *, supervisor, shift, cells, name=None):
        """Create or replace a work grid: ``cells`` (codes or prefixes) for ``supervisor``
        in ``shift``.  A cell that another work grid of the same shift holds is refused,
        naming it; a refused change leaves the old work grid as it was."""
        wid = _ident(work_grid_id, "work grid")
        sid = _ident(supervisor, "supervisor")
        shift = _ident(shift, "shift")
        name = _name(name or wid)
        chosen = self.expand(cells)
        now = self._now()
        with self.store.connect() as conn:
            self._known(conn, sid)
            self._shift(conn, shift)
            clash = rows(run(self.store, conn,
                             "SELECT work_grid, cell FROM eval_work_cells WHERE shift = ?"
                             " AND work_grid <> ? ORDER BY cell", [shift, wid]))
            taken = [c for c in clash if c["cell"] in set(chosen)]
            if taken:
                shown = ", ".join(f"{c['cell']} ({c['work_grid']})" for c in taken[:5])
                more = f" and {len(taken) - 5} more" if len(taken) > 5 else ""
                raise Conflict(f"work grids of shift {shift} may not overlap: {shown}{more} "
                               f"already belong to another work grid",
                               work_grid=taken[0]["work_grid"], cells=len(taken))
            run(self.store, conn, "DELETE FROM eval_work_cells WHERE work_grid = ?", [wid])
            run(self.store, conn, "DELETE FROM eval_work_grids WHERE id = ?", [wid])
            run(self.store, conn,
                "INSERT INTO eval_work_grids (id, supervisor, shift, name, updated_at)"
                " VALUES (?, ?, ?, ?, ?)", [wid, sid, shift, name, now])
            for cell in chosen:
                run(self.store, conn,
                    "INSERT INTO eval_work_cells (work_grid, shift, cell) VALUES (?, ?, ?)",
                    [wid, shift, cell])
        return {"id": wid, "supervisor": sid, "shift": shift, "name": name, "cells": chosen,
                "updated_at": now}

    def delete_work_grid(self, work_grid_id):
        wid = _ident(work_grid_id, "work grid")
        with self.store.connect() as conn:
            run(self.store, conn, "DELETE FROM eval_work_cells WHERE work_grid = ?", [wid])
            cur = run(self.store, conn, "DELETE FROM eval_work_grids WHERE id = ?", [wid])
        if cur.rowcount == 0:
            raise NotFound(f"no work grid {wid!r}")

    def work_grids(self, supervisor=None, shift=None):
        """Work grids with their cells (of one supervisor and/or shift)."""
        where, params = [], []
        if supervisor is not None:
            where.append("g.supervisor = ?")
            params.append(_ident(supervisor, "supervisor"))
        if shift is not None:
            where.append("g.shift = ?")
            params.append(_ident(shift, "shift"))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self.store.connect(readonly=True) as conn:
            grids = rows(run(self.store, conn,
                             "SELECT g.id, g.supervisor, g.shift, g.name, g.updated_at"
                             " FROM eval_work_grids g" + clause + " ORDER BY g.id", params))
            cells = rows(run(self.store, conn,
                             "SELECT c.work_grid, c.cell FROM eval_work_cells c"
                             " JOIN eval_work_grids g ON g.id = c.work_grid" + clause
                             + " ORDER BY c.cell", params))
        for g in grids:
            g["cells"] = [c["cell"] for c in cells if c["work_grid"] == g["id"]]
        return grids

    # ------------------------------------------------------------ duty

    def put_duty(self, supervisor, on_at, off_at, shift=None):
        """One duty period (ISO times); one overlapping another of the same supervisor is
        refused, naming it."""
        sid = _ident(supervisor, "supervisor")
        on = wire_time(parse_time(on_at, "on_at"))
        off = wire_time(parse_time(off_at, "off_at"))
        if off <= on:
            raise Invalid(f"off_at ({off}) must come after on_at ({on})")
        with self.store.connect() as conn:
            self._known(conn, sid)
            if shift is not None:
                shift = self._shift(conn, _ident(shift, "shift"))["name"]
            self._insert_duty(conn, sid, on, off, shift)
        return {"supervisor": sid, "on_at": on, "off_at": off, "shift": shift}

    def _insert_duty(self, conn, sid, on, off, shift):
        other = one(run(self.store, conn,
                        "SELECT on_at, off_at FROM eval_duty WHERE supervisor = ?"
                        " AND on_at < ? AND off_at > ? ORDER BY on_at LIMIT 1",
                        [sid, off, on]))
        if other is not None:
            raise Conflict(f"{sid} is already on duty from {other['on_at']} to "
                           f"{other['off_at']} (UTC), overlapping {on}–{off}",
                           on_at=other["on_at"], off_at=other["off_at"])
        run(self.store, conn,
            "INSERT INTO eval_duty (supervisor, on_at, off_at, shift) VALUES (?, ?, ?, ?)",
            [sid, on, off, shift])

    def schedule(self, supervisor, shift, first_day, last_day):
        """Duty periods for ``shift`` on every day from ``first_day`` to ``last_day``
        (``2026-11-02``; Beijing dates), all or none."""
        sid, shift = _ident(supervisor, "supervisor"), _ident(shift, "shift")
        try:
            first = datetime.strptime(str(first_day), "%Y-%m-%d").date()
            last = datetime.strptime(str(last_day), "%Y-%m-%d").date()
        except ValueError:
            raise Invalid("first_day, last_day: dates YYYY-MM-DD") from None
        days = (last - first).days + 1
        if not 1 <= days <= MAX_SCHEDULE_DAYS:
            raise Invalid(f"last_day must be on or after first_day, at most "
                          f"{MAX_SCHEDULE_DAYS} days")
        made = []
        with self.store.connect() as conn:
            self._known(conn, sid)
            s = self._shift(conn, shift)
            for k in range(days):
                on, off = shift_window(first + timedelta(days=k), s["starts"], s["ends"])
                on, off = wire_time(on), wire_time(off)
                self._insert_duty(conn, sid, on, off, shift)
                made.append({"supervisor": sid, "on_at": on, "off_at": off, "shift": shift})
        return made

    def duty(self, supervisor=None, since=None, until=None):
        """Duty periods overlapping [since, until) (ISO times), oldest first."""
        where, params = [], []
        if supervisor is not None:
            where.append("supervisor = ?")
            params.append(_ident(supervisor, "supervisor"))
        if since:
            where.append("off_at > ?")
            params.append(wire_time(parse_time(since, "since")))
        if until:
            where.append("on_at < ?")
            params.append(wire_time(parse_time(until, "until")))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self.store.connect(readonly=True) as conn:
            return rows(run(self.store, conn,
                            "SELECT supervisor, on_at, off_at, shift FROM eval_duty" + clause
                            + " ORDER BY on_at, supervisor", params))

    def delete_duty(self, supervisor, on_at):
        sid = _ident(supervisor, "supervisor")
        on = wire_time(parse_time(on_at, "on_at"))
        with self.store.connect() as conn:
            cur = run(self.store, conn,
                      "DELETE FROM eval_duty WHERE supervisor = ? AND on_at = ?", [sid, on])
        if cur.rowcount == 0:
            raise NotFound(f"no duty period of {sid} starting {on}")

    # ------------------------------------------------------------ who is on duty

    def carried_on_duty(self, conn, at):
        """device → supervisor, for every device carried at ``at`` (an aware datetime) by a
        supervisor on duty then; read inside the caller's transaction ``conn``."""
        now = wire_time(at)
        found = rows(run(self.store, conn,
                         "SELECT c.device, c.supervisor FROM eval_carries c"
                         " JOIN eval_duty d ON d.supervisor = c.supervisor"
                         " WHERE c.since <= ? AND (c.until IS NULL OR c.until > ?)"
                         " AND d.on_at <= ? AND d.off_at > ?", [now, now, now, now]))
        return {r["device"]: r["supervisor"] for r in found}

    def responsible(self, conn, cell, at):
        """The supervisors on duty at ``at`` whose work grid holds ``cell`` in the shift they
        are on: the duty period's shift, or (a period without one) the work grid's shift
        window containing ``at``."""
        now = wire_time(at)
        found = rows(run(self.store, conn,
                         "SELECT g.supervisor, g.shift, s.starts, s.ends, d.shift AS duty_shift"
                         " FROM eval_work_cells w JOIN eval_work_grids g ON g.id = w.work_grid"
                         " JOIN eval_shifts s ON s.name = g.shift"
                         " JOIN eval_duty d ON d.supervisor = g.supervisor"
                         " WHERE w.cell = ? AND d.on_at <= ? AND d.off_at > ?",
                         [cell, now, now]))
        return {r["supervisor"] for r in found
                if r["duty_shift"] == r["shift"]
                or (r["duty_shift"] is None and in_shift(at, r["starts"], r["ends"]))}


def in_shift(at, starts, ends):
    """Whether the aware datetime ``at`` falls in the shift ``starts``–``ends`` (Beijing
    time) of its own day or of the day before (a shift running past midnight)."""
    day = at.astimezone(CENTRE_TIME).date()
    return any(on <= at < off for on, off in
               (shift_window(day - timedelta(days=k), starts, ends) for k in (0, 1)))
