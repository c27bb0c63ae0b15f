"""Reports the centre's operators file: hotline complaints (12319, 12345), 领导交办, 视频
(the operator saw it on a camera) and 其他, with the caller's details.

Each becomes a row of ``reports`` like a device's (device ``centre``, so its id fits the
protocol's ``device:seq`` form and a 核实 task can name it) and waits in the intake queue;
the caller's details stay in ``case_callers``, out of the report's payload.  Such a report
is 立案 only once a 核实 task about it came back ``confirmed`` (``require_verified``).
"""

import json
import re

from ..clock import wire_time
from ..queue import Conflict, Invalid, system_clock
from ..store.sql import one, run

SOURCES = ("12319", "12345", "领导交办", "视频", "其他")
CITIZEN = "citizen"  # a device report's source when a citizen filed it on a kiosk
CENTRE_DEVICE = "centre"
STANDARD = "GB/T 47678.5-2026"
PHONE = re.compile(r"\+?[0-9][0-9 -]{2,23}")

_CALLERS = """
CREATE TABLE case_callers (
    report_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    name TEXT,
    phone TEXT,
    address TEXT,
    request_key TEXT UNIQUE,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

MIGRATIONS = (("case_002_callers", _CALLERS, _CALLERS),)


class _NumberTaken(Exception):
    """The centre's next report id is claimed already (PostgreSQL's ``report_ids``: by a
    report filed at the same moment, or one whose month was archived)."""

    def __init__(self, seq):
        super().__init__(seq)
        self.seq = seq


class OperatorReports:
    """File reports from the centre over a store; ``names`` (``open311.ClassNames``) checks
    the class, ``locate(lat, lon)`` finds the grid when a grid map is loaded."""

    def __init__(self, store, names, *, locate=None, clock=None, district="410106"):
        self.store = store
        self.names = names
        self.locate = locate
        self.clock = clock or system_clock
        self.district = district

    def codes(self):
        """The class codes a report may be filed under (the Open311 service codes)."""
        return [s["service_code"] for s in self.names.services(STANDARD)]

    def file(self, *, source, code, lat, lon, operator, text="", caller_name=None,
             caller_phone=None, address=None, key=None, audit=None):
        """A new pending report (or, with a ``key`` seen before, the report that key made);
        returns its id.  The class ``code`` is an event's when the code book has both (as
        the Open311 services).  ``audit(conn, action, target=, after=)`` records it."""
        if source not in SOURCES:
            raise Invalid(f"source: one of {', '.join(SOURCES)}, not {source!r}")
        kind = next((k for k in ("event", "component") if isinstance(code, str)
                     and self.names.names(k, code, STANDARD)[1] is not None), None)
        if kind is None:
            raise Invalid(f"code: {code!r} is not a class of {STANDARD}")
        for value, low, high, field in ((lat, -90, 90, "lat"), (lon, -180, 180, "lon")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    low <= value <= high):
                raise Invalid(f"{field}: a number from {low} to {high}")
        if len(text or "") > 256:
            raise Invalid("text: at most 256 characters")
        if caller_phone is not None and not PHONE.fullmatch(caller_phone):
            raise Invalid(f"caller_phone: digits (with +, spaces or -), not {caller_phone!r}")
        for value, field in ((caller_name, "caller_name"), (address, "address")):
            if value is not None and len(value) > 200:
                raise Invalid(f"{field}: at most 200 characters")
        if key is not None:
            found = self._by_key(key)
            if found is not None:
                return found
        grid = self.locate(lat, lon) if self.locate is not None else None
        district = grid[:6] if grid else self.district
        now = wire_time(self.clock())
        after = 0  # a number found taken: count on past it
        for _ in range(10):
            try:
                return self._insert(source, kind, code, lat, lon, grid, district, text or "",
                                    operator, caller_name, caller_phone, address, key, now,
                                    audit, after)
            except _NumberTaken as taken:
                after = taken.seq
                continue
            except Exception as exc:
                # two operators filing at once took the same number: count again
                if not any(c.__name__ == "IntegrityError" for c in type(exc).__mro__):
                    raise
                if key is not None and self._by_key(key) is not None:
                    return self._by_key(key)
        raise Conflict("could not number the report: too many filed at once; try again")

    def _insert(self, source, kind, code, lat, lon, grid, district, text, operator,
                caller_name, caller_phone, address, key, now, audit, after=0):
        with self.store.connect() as conn:
            last = one(run(self.store, conn,
                           "SELECT MAX(seq) AS m FROM reports WHERE device = ?",
                           [CENTRE_DEVICE]))["m"]
            seq = max(last or 0, after) + 1
            rid = f"{CENTRE_DEVICE}:{seq:012d}"
            content = {"id": rid, "source": source, "kind": kind, "standard": STANDARD,
                       "code": code, "lat": lat, "lon": lon, "grid": grid, "text": text,
                       "time": now, "by": operator}
            cur = run(self.store, conn,
                "INSERT INTO reports (id, device, district, seq, captured_at, received_at,"
                " committed_at, time_source, lat, lon, flags, grid, grid_mismatch, street,"
                " kind, standard, code, source, text, photos, payload)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'operator', ?, ?, '[]', ?, 0, ?, ?, ?, ?, ?, ?,"
                " '[]', ?)",
                [rid, CENTRE_DEVICE, district, seq, now, now, now, lat, lon, grid,
                 grid[:9] if grid else None, kind, STANDARD, code, source, text,
                 json.dumps(content, ensure_ascii=False)])
            if cur.rowcount == 0:  # PostgreSQL: the id was claimed (report_ids), not inserted
                raise _NumberTaken(seq)
            run(self.store, conn,
                "INSERT INTO case_callers (report_id, source, name, phone, address,"
                " request_key, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [rid, source, caller_name, caller_phone, address, key, operator, now])
            if audit is not None:
                audit(conn, "report.file", target=f"report:{rid}",
                      after={**content, "caller": caller_name is not None or
                             caller_phone is not None})
        return rid

    def _by_key(self, key):
        with self.store.connect() as conn:
            found = one(run(self.store, conn,
                            "SELECT report_id FROM case_callers WHERE request_key = ?", [key]))
        return found["report_id"] if found else None

    def caller(self, report_id):
        """The caller's details of an operator's report, or None."""
        with self.store.connect() as conn:
            found = one(run(self.store, conn,
                            "SELECT source, name, phone, address, created_by, created_at"
                            " FROM case_callers WHERE report_id = ?", [report_id]))
        return found


def require_verified(store, conn, report_id):
    """Refuse 立案 of an operator's report, or of a citizen's (filed on a fixed terminal's
    kiosk), until a 核实 of it came back confirmed."""
    found = one(run(store, conn, "SELECT source FROM case_callers WHERE report_id = ?",
                    [report_id]))
    if found is None:
        found = one(run(store, conn, "SELECT source FROM reports WHERE id = ? AND source = ?",
                        [report_id, CITIZEN]))
    if found is None:
        return
    confirmed = one(run(store, conn,
                        "SELECT id FROM tasks WHERE report_id = ? AND type = 'verify'"
                        " AND state = 'done' AND result = 'confirmed'", [report_id]))
    if confirmed is None:
        raise Conflict(f"cannot accept: report {report_id} ({found['source']}) is 立案 only "
                       "once a 核实 (verify) task about it came back confirmed",
                       state="pending")
