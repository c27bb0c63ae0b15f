"""Likely duplicates, merges, and a sensor's repeated alerts.

- **Likely the same problem.**  Reports of the same class code within ``radius_m`` of each
  other (50 m) and ``window_h`` hours (24 h) of capture time: each listed report names the
  others (``likely_same``), open or already a case; rejected ones, task results and
  reports merged away are left out.
- **Merge.**  An operator merges a pending report into another report of the same class
  (pending, or accepted: its case).  The merged one leaves the queue (intake state
  ``merged``) and is kept, listed with the report it joined (``merged``) and so with its
  case; the merge is audited (``report.merge``).  The same merge again changes nothing;
  a merge into another report is a conflict naming the first.
- **A sensor's repeated alerts.**  A sensor report (source ``sensor``) whose device already
  has an open item of the same class — a pending report, or one accepted whose case is
  not closed (结案) or voided (作废) — is merged into that item as it is committed
  (``merged_by`` ``repeat``), in the ingest's transaction of the batch that brings it;
  the item counts its ``repeats``.  Once the item is handled, the next alert opens a new
  one.

Both stores: plain SQL through ``store.sql``; the time window and a bounding box go to
the database (an index on class and capture time), the distance is checked here.
"""

import math
from datetime import timedelta

from ..clock import wire_time
from ..queue import Conflict, Invalid, NotFound, intake_state, parse_time
from ..store.sql import one, rows, run

DEFAULT_RADIUS_M = 50.0
DEFAULT_WINDOW_H = 24.0
EARTH_M = 6371008.8  # mean Earth radius (IUGG)
REPEAT = "repeat"    # merged_by of a sensor's repeated alert
CLOSED_CASES = ("closed", "voided")

# a report merged into another (by an operator, or ``repeat``); the class and time index
# finds a report's likely duplicates without walking the day's other classes
_MERGES = """
CREATE TABLE IF NOT EXISTS dup_merges (
    report_id TEXT PRIMARY KEY,
    into_report TEXT NOT NULL,
    merged_by TEXT NOT NULL,
    merged_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dup_merges_into ON dup_merges (into_report);
CREATE INDEX IF NOT EXISTS dup_reports_code_time ON reports (code, captured_at);
"""
MIGRATIONS = (("dup_001_merges", _MERGES, _MERGES),)


def distance_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_M * math.asin(min(1.0, math.sqrt(h)))


class DuplicateRule:
    """Same class within ``radius_m`` metres and ``window_h`` hours."""

    def __init__(self, radius_m=DEFAULT_RADIUS_M, window_h=DEFAULT_WINDOW_H):
        if isinstance(radius_m, bool) or not isinstance(radius_m, int | float) \
                or not 0 < radius_m <= 10000:
            raise Invalid(f"duplicate radius: 0 to 10000 metres, not {radius_m!r}")
        if isinstance(window_h, bool) or not isinstance(window_h, int | float) \
                or not 0 < window_h <= 24 * 30:
            raise Invalid(f"duplicate window: 0 to 720 hours, not {window_h!r}")
        self.radius_m = float(radius_m)
        self.window = timedelta(hours=window_h)

    def box(self, lat, lon):
        """(lat_lo, lat_hi, lon_lo, lon_hi) holding every point within the radius."""
        dlat = math.degrees(self.radius_m / EARTH_M)
        dlon = dlat / max(0.01, math.cos(math.radians(lat)))
        return lat - dlat, lat + dlat, lon - dlon, lon + dlon

    def near(self, a, b):
        """Whether reports ``a`` and ``b`` (dicts with lat, lon) are within the radius."""
        return distance_m(a["lat"], a["lon"], b["lat"], b["lon"]) <= self.radius_m


_OPEN_OR_CASE = ("NOT EXISTS (SELECT 1 FROM intake x WHERE x.report_id = r.id"
                 " AND x.state IN ('rejected', 'attached', 'merged'))")


class Duplicates:
    """Likely duplicates and merges over an ``IntakeQueue``'s store."""

    def __init__(self, queue, rule=None):
        self.queue = queue
        self.store = queue.store
        self.rule = rule or DuplicateRule()

    # ------------------------------------------------------------ reading

    def annotate(self, items):
        """Add ``likely_same`` (ids), ``merged`` (ids merged into it) and ``repeats`` (of
        those, a sensor's repeated alerts) to each listed report item."""
        if not items:
            return items
        ids = [it["id"] for it in items]
        with self.store.connect() as conn:
            merged = rows(run(self.store, conn,
                              "SELECT report_id, into_report, merged_by FROM dup_merges WHERE "
                              "into_report IN (" + ", ".join("?" * len(ids)) + ")"
                              " ORDER BY report_id", ids))
            into = {r["report_id"]: r["into_report"] for r in rows(run(
                self.store, conn, "SELECT report_id, into_report FROM dup_merges WHERE "
                "report_id IN (" + ", ".join("?" * len(ids)) + ")", ids))}
            for it in items:
                it["merged"] = [m["report_id"] for m in merged if m["into_report"] == it["id"]]
                it["repeats"] = sum(1 for m in merged
                                    if m["into_report"] == it["id"] and m["merged_by"] == REPEAT)
                it["merged_into"] = into.get(it["id"])
                it["likely_same"] = self._near(conn, it) if it["merged_into"] is None else []
        return items

    def _near(self, conn, it):
        if it.get("lat") is None or it.get("lon") is None or it.get("source") == "task":
            return []
        t = parse_time(it["captured_at"], "captured_at")
        lat_lo, lat_hi, lon_lo, lon_hi = self.rule.box(it["lat"], it["lon"])
        found = rows(run(
            self.store, conn,
            "SELECT r.id, r.lat, r.lon FROM reports r WHERE r.code = ? AND r.captured_at >= ?"
            " AND r.captured_at <= ? AND r.lat BETWEEN ? AND ? AND r.lon BETWEEN ? AND ?"
            " AND r.id <> ? AND r.source <> 'task' AND " + _OPEN_OR_CASE + " ORDER BY r.id",
            [it["code"], wire_time(t - self.rule.window), wire_time(t + self.rule.window),
             lat_lo, lat_hi, lon_lo, lon_hi, it["id"]]))
        return [r["id"] for r in found if self.rule.near(it, r)]

    # ------------------------------------------------------------ merging

    def merge(self, report_id, into, operator, *, override=False, audit=None):
        """Merge pending ``report_id`` into ``into`` (a pending or accepted report of the
        same class); ``override`` (值班长): although another operator holds it."""
        q = self.queue
        if report_id == into:
            raise Conflict(f"cannot merge {into} into itself")
        now = q.now()
        with self.store.connect() as conn:
            q._ensure_row(conn, report_id, now)
            q._ensure_row(conn, into, now)
            done = one(run(self.store, conn, "SELECT * FROM dup_merges WHERE report_id = ?",
                           [report_id]))
            if done is not None:
                if done["into_report"] == into:
                    return self._answer(report_id, done)
                raise Conflict(f"cannot merge: report {report_id} was merged into "
                               f"{done['into_report']} by {done['merged_by']}",
                               state="merged", reason=f"merged into {done['into_report']}")
            target = q._row(conn, into)
            if target["state"] not in ("pending", "accepted"):
                root = one(run(self.store, conn, "SELECT into_report FROM dup_merges WHERE "
                               "report_id = ?", [into]))
                hint = f"; merge into {root['into_report']}, which it joined" if root else ""
                raise Conflict(f"cannot merge into {into}: it is {target['state']}{hint}",
                               state=target["state"])
            a, b = (one(run(self.store, conn, "SELECT kind, code FROM reports WHERE id = ?",
                            [r])) for r in (report_id, into))
            if (a["kind"], a["code"]) != (b["kind"], b["code"]):
                raise Conflict(f"cannot merge: {into} is of class {b['kind']} {b['code']}, "
                               f"{report_id} of {a['kind']} {a['code']}: only reports of the "
                               "same class are merged")
            before = q._row(conn, report_id)
            q._check_decidable(before, operator, now, "merge", override)
            won, row = q._decide(conn, report_id, operator, now,
                                 "state = 'merged', reason = ?", f"merged into {into}",
                                 override)
            if not won:
                q._refuse(row, operator, now, "merge")
            run(self.store, conn, "INSERT INTO dup_merges (report_id, into_report, merged_by,"
                " merged_at) VALUES (?, ?, ?, ?)", [report_id, into, operator, now])
            if audit is not None:
                after = intake_state(row, now)
                after["into"] = into
                audit(conn, "report.merge", target=f"report:{report_id}",
                      before=intake_state(before, now), after=after)
            return self._answer(report_id, {"into_report": into, "merged_by": operator,
                                            "merged_at": now})

    @staticmethod
    def _answer(report_id, merge):
        return {"report_id": report_id, "state": "merged", "into": merge["into_report"],
                "merged_by": merge["merged_by"], "merged_at": merge["merged_at"]}

    # ------------------------------------------------------------ merges looked up

    def reports_of(self, report_id):
        """``report_id`` and every report merged into it, in merge order."""
        with self.store.connect() as conn:
            found = rows(run(self.store, conn, "SELECT report_id FROM dup_merges WHERE "
                             "into_report = ? ORDER BY merged_at, report_id", [report_id]))
        return [report_id, *(r["report_id"] for r in found)]

    def merged_into(self, report_id):
        """The report ``report_id`` was merged into, or None (NotFound: no such report)."""
        with self.store.connect() as conn:
            if one(run(self.store, conn, "SELECT id FROM reports WHERE id = ?",
                       [report_id])) is None:
                raise NotFound(f"no report {report_id!r}")
            found = one(run(self.store, conn, "SELECT into_report FROM dup_merges WHERE "
                            "report_id = ?", [report_id]))
        return found["into_report"] if found else None


# ---------------------------------------------------------------- a sensor's repeats

def collapse_repeats(store, conn, reports, now):
    """Each sensor report of ``reports`` whose device has an open item of its class joins
    that item, in ``conn``'s transaction: the ingest calls it in every batch's transaction
    (every gateway worker), holding the batch's devices' locks (``Store.lock_keys``), so
    a device's alerts are judged one batch after another whichever worker commits them.
    Reports later in ``reports`` are not items yet for the earlier ones.  Returns
    {report id: item id}."""
    sensors = [r for r in reports if r.get("source") == "sensor"]
    later = {r["id"] for r in sensors}
    out = {}
    for r in sensors:
        later.discard(r["id"])
        item = _open_item(store, conn, r, later)
        if item is not None and _join(store, conn, r["id"], item, now):
            out[r["id"]] = item
    return out


def _open_item(store, conn, r, later):
    """The oldest open sensor item of ``r``'s device and class but ``r`` and ``later``."""
    found = rows(run(
        store, conn,
        "SELECT r.id FROM reports r LEFT JOIN intake i ON i.report_id = r.id"
        " LEFT JOIN cases c ON c.report_id = r.id"
        " WHERE r.device = ? AND r.code = ? AND r.kind = ? AND r.source = 'sensor'"
        " AND r.id <> ? AND (i.state IS NULL OR i.state = 'pending'"
        " OR (i.state = 'accepted' AND (c.state IS NULL OR c.state NOT IN (?, ?))))"
        " ORDER BY r.captured_at, r.id LIMIT ?",
        [r["device"], r["code"], r["kind"], r["id"], *CLOSED_CASES, len(later) + 1]))
    return next((f["id"] for f in found if f["id"] not in later), None)


def _join(store, conn, report_id, item, now):
    run(store, conn,
        "INSERT INTO intake (report_id, state, updated_at) VALUES (?, 'pending', ?)"
        " ON CONFLICT (report_id) DO NOTHING", [report_id, now])
    cur = run(store, conn,
              "UPDATE intake SET state = 'merged', reason = ?, decided_by = ?,"
              " decided_at = ?, updated_at = ? WHERE report_id = ?"
              " AND state = 'pending' AND holder IS NULL",
              [f"repeated alert of {item}", REPEAT, now, now, report_id])
    if cur.rowcount != 1:
        return False
    run(store, conn, "INSERT INTO dup_merges (report_id, into_report, merged_by,"
        " merged_at) VALUES (?, ?, ?, ?) ON CONFLICT (report_id) DO NOTHING",
        [report_id, item, REPEAT, now])
    return True
