"""Patrol coverage from the stored track (``track_points``): how much of a work grid its
supervisor passed through in a shift, the cells nobody visited in a week, and the time on
duty spent outside the work grid.

A cell is visited when a track point of a device its supervisor carried then lies in it
(located on the grid map as every report is: ``GridMap``'s rule, via the raster).  Time
between two consecutive points of a device counts where the first of them lies — in the
work grid, or outside it — unless the points are more than ``max_gap_s`` apart: then it,
and the time before a duty period's first point and after its last, is untracked.
A duty period without a shift has no work grid: its share is None.
"""

from datetime import timedelta

from .clock import CENTRE_TIME, epoch_from_iso, parse_iso, wire_time
from .queue import Invalid, parse_time
from .store.sql import rows, run

MAX_GAP_S = 120.0
MAX_WINDOW_DAYS = 31


class Coverage:
    """Coverage over a store, a ``Roster`` and ``locate(lon, lat)`` → cell code or None."""

    def __init__(self, store, roster, locate, *, max_gap_s=MAX_GAP_S):
        self.store = store
        self.roster = roster
        self.locate = locate
        self.max_gap_s = float(max_gap_s)

    def _window(self, since, until):
        if not since or not until:
            raise Invalid("since and until: both required (ISO 8601 times)")
        start, end = parse_time(since, "since"), parse_time(until, "until")
        if start >= end:
            raise Invalid("since must come before until")
        if (end - start).total_seconds() > MAX_WINDOW_DAYS * 86400:
            raise Invalid(f"the window may span at most {MAX_WINDOW_DAYS} days")
        return wire_time(start), wire_time(end)

    def _cells(self, supervisor, shift):
        """The cells of the supervisor's work grids in ``shift`` (a set)."""
        if shift is None:
            return None
        found = set()
        for g in self.roster.work_grids(supervisor=supervisor, shift=shift):
            found.update(g["cells"])
        return found

    def _tracks(self, conn, supervisor, on_at, off_at):
        """[(device, [(epoch, cell)])] of the devices the supervisor carried in
        [on_at, off_at), each clipped to the time they carried it."""
        held = rows(run(self.store, conn,
                        "SELECT device, since, until FROM eval_carries WHERE supervisor = ?"
                        " AND since < ? AND (until IS NULL OR until > ?) ORDER BY device, since",
                        [supervisor, off_at, on_at]))
        out = []
        for h in held:
            start = max(h["since"], on_at)
            end = min(h["until"] or off_at, off_at)
            points = rows(run(self.store, conn,
                              "SELECT t, lat, lon FROM track_points WHERE device = ?"
                              " AND t >= ? AND t < ? ORDER BY t", [h["device"], start, end]))
            out.append((h["device"], [(epoch_from_iso(p["t"]), self.locate(p["lon"], p["lat"]))
                                      for p in points]))
        return out

    def period(self, duty, conn=None):
        """The coverage figures of one duty period (a row of ``Roster.duty``)."""
        if conn is None:
            with self.store.connect(readonly=True) as conn:
                return self.period(duty, conn)
        sid, on_at, off_at = duty["supervisor"], duty["on_at"], duty["off_at"]
        cells = self._cells(sid, duty.get("shift"))
        tracks = self._tracks(conn, sid, on_at, off_at)
        on, off = epoch_from_iso(on_at), epoch_from_iso(off_at)
        visited, inside, outside, tracked, points = set(), 0.0, 0.0, 0.0, 0
        for _device, track in tracks:
            points += len(track)
            for k, (t, cell) in enumerate(track):
                if cell is not None:
                    visited.add(cell)
                nxt = track[k + 1][0] if k + 1 < len(track) else None
                if nxt is None or nxt - t > self.max_gap_s:
                    continue
                tracked += nxt - t
                if cells is not None and cell in cells:
                    inside += nxt - t
                else:
                    outside += nxt - t
        covered = sorted(visited & cells) if cells is not None else []
        return {
            "supervisor": sid, "shift": duty.get("shift"), "on_at": on_at, "off_at": off_at,
            "devices": [d for d, _ in tracks], "points": points,
            "work_cells": None if cells is None else len(cells),
            "visited_work_cells": len(covered),
            "share": (None if not cells else round(len(covered) / len(cells), 4)),
            "visited_cells": len(visited),
            "inside_s": round(inside, 3),
            "outside_s": round(outside, 3) if cells is not None else None,
            "untracked_s": round(max(0.0, (off - on) - tracked), 3),
        }

    def shifts(self, since, until, supervisor=None):
        """The coverage of every duty period starting in [since, until), oldest first."""
        since, until = self._window(since, until)
        periods = [d for d in self.roster.duty(supervisor, since, until)
                   if since <= d["on_at"] < until]
        with self.store.connect(readonly=True) as conn:
            return [self.period(d, conn) for d in periods]

    def unvisited(self, since, until, supervisor=None):
        """Per work grid, the cells no track point of its supervisor lay in during that
        supervisor's duty periods of its shift starting in [since, until) (a week, say)."""
        since, until = self._window(since, until)
        out = []
        grids = self.roster.work_grids(supervisor=supervisor)
        duty = [d for d in self.roster.duty(supervisor, since, until)
                if since <= d["on_at"] < until]
        with self.store.connect(readonly=True) as conn:
            for g in grids:
                visited, periods = set(), 0
                for d in duty:
                    if d["supervisor"] != g["supervisor"] or d["shift"] != g["shift"]:
                        continue
                    periods += 1
                    for _device, track in self._tracks(conn, d["supervisor"], d["on_at"],
                                                       d["off_at"]):
                        visited.update(cell for _, cell in track)
                never = [c for c in g["cells"] if c not in visited]
                out.append({"work_grid": g["id"], "supervisor": g["supervisor"],
                            "shift": g["shift"], "duty_periods": periods,
                            "cells": len(g["cells"]), "unvisited": len(never),
                            "unvisited_cells": never})
        return out


def week_of(day):
    """(since, until) wire times of the Beijing week (Monday 00:00) holding ``day``
    (``2026-11-25``)."""
    try:
        d = parse_iso(str(day) + "T00:00:00+08:00").astimezone(CENTRE_TIME)
    except ValueError:
        raise Invalid(f"week: a date YYYY-MM-DD, not {day!r}") from None
    monday = d - timedelta(days=d.weekday())
    return wire_time(monday), wire_time(monday + timedelta(days=7))
