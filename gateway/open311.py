"""Open311 GeoReport v2, read side: services from the code books, requests from the queue.

``service_code`` is the class code (事件/部件 小类), ``group`` its major class name.  In
GB/T 47678.5 the 事项 01xxx–05xxx are the "<部件>异常" of the 部件 with the same code, so
one service per code serves both kinds; the event name is used when both exist.  Status
follows the case: ``closed`` once the report is rejected (不予立案) or its case is closed
(结案, after a passed 核查) or voided (作废); ``open`` otherwise — a 核查 result alone
closes nothing, the case does.  A report merged into another (a duplicate) follows the
case of the one it joined.  ``agency_responsible`` is the department the case is
dispatched to, ``expected_datetime`` the current stage's deadline.
"""

import json
from datetime import timedelta

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from .cases import lifecycle
from .clock import wire_time
from .queue import Invalid, NotFound, parse_time
from .routes.bodies import ISO_TIME
from .store.sql import rows, run

DEFAULT_STANDARD = "GB/T 47678.5-2026"


class ClassNames:
    """Names of class codes per standard: ``names(kind, code, standard)`` → (major, class)."""

    def __init__(self, books, default_standard=DEFAULT_STANDARD):
        self.books = books  # {standard: core CodeBook}
        self.default_standard = default_standard if default_standard in books else (
            next(iter(books), default_standard))

    @classmethod
    def load(cls, codebooks=None, default_standard=DEFAULT_STANDARD):
        """From the project's code book files, or from ``codebooks``.

        ``codebooks`` is a core ``CodeBook``, a list of them, or a mapping standard → book.
        """
        from gridlink.firmware.codebooks import load_books
        from gridlink.firmware.core.codebook import CodeBook

        if isinstance(codebooks, ClassNames):
            return codebooks
        if codebooks is None:
            codebooks = load_books()
        if isinstance(codebooks, CodeBook):
            codebooks = [codebooks]
        elif isinstance(codebooks, dict):
            codebooks = list(codebooks.values())
        return cls({b.standard: b for b in codebooks}, default_standard)

    def _book(self, standard):
        return self.books.get(standard) or self.books.get(self.default_standard)

    def names(self, kind, code, standard=None):
        """(major class name, class name), either None when unknown."""
        book = self._book(standard)
        if book is None or kind not in ("event", "component") or not isinstance(code, str):
            return None, None
        entry = book.entry(kind, code)
        if entry is not None:
            return entry.major_name, entry.name
        return book.major_name(kind, code[:book.major_digits]), None

    def prefixes_named(self, name, standard=None):
        """The class codes named ``name`` (a class such as 暴露垃圾), or a major class's
        prefix when a major class has that name; sorted, empty when nothing has it."""
        book = self._book(standard)
        name = name.strip()
        if book is None or not name:
            return []
        found = set()
        for kind in ("component", "event"):
            if book.has(kind):
                found.update(major for major, major_name in book.majors(kind)
                             if major_name == name)
                found.update(e.code for e in book.entries(kind) if e.name == name)
        return sorted(found)

    def local(self, kind, code, standard=None):
        """The local book's word on a class (``{"change", "book", "title", "source"}``,
        plus ``standard_name`` when renamed), or None for a standard class."""
        book = self._book(standard)
        if book is None or book.local is None or kind not in ("event", "component"):
            return None
        entry = book.entry(kind, code) if isinstance(code, str) else None
        if entry is None or entry.local is None:
            return None
        return {**entry.local, "source": book.local["source"]}

    def grid_alias(self, code):
        """The standard grid code a local 12-digit grid code stands for (a local book's
        alias), or None."""
        for book in self.books.values():
            found = book.grid_alias(code)
            if found is not None:
                return found
        return None

    def services(self, standard=None):
        """The Open311 service list of one standard, one service per class code."""
        book = self._book(standard)
        if book is None:
            return []
        merged = {}
        for kind in ("component", "event"):  # events last: their names win
            if book.has(kind):
                for entry in book.entries(kind):
                    merged[entry.code] = entry
        return [
            {"service_code": code, "service_name": e.name,
             "description": f"{e.name} ({book.standard} {e.kind}, {e.major} {e.major_name}"
                            + (f"; 本地 {e.local['title']})" if e.local else ")"),
             "metadata": False, "type": "realtime", "keywords": e.kind,
             "group": e.major_name or ""}
            for code, e in sorted(merged.items())
        ]


def request_status(report):
    return "closed" if report["closed"] else "open"


class Open311Error(BaseModel):
    code: int
    description: str


def _errors(status, text):
    return {status: {"model": list[Open311Error], "description": text}}


def build_router(queue, names):
    """The ``/open311/v2`` routes over an :class:`~gridlink.gateway.queue.IntakeQueue`."""
    router = APIRouter(prefix="/open311/v2", tags=["open311"])

    @router.get("/services.json", summary="Open311 service list (class codes)")
    def services():
        return names.services()

    @router.get("/requests.json", summary="Open311 service requests (reports)",
                responses=_errors(400, "a bad date, or start_date..end_date over 90 days"))
    def requests_(
        request: Request,
        service_request_id: str | None = Query(None, description="comma list; overrides others"),
        service_code: str | None = None,
        start_date: str | None = Query(None, pattern=ISO_TIME),
        end_date: str | None = Query(None, pattern=ISO_TIME,
                                     description="at most 90 days after start_date"),
        status: str | None = Query(None, pattern="^(open|closed)$"),
    ):
        if service_request_id:
            ids = [i.strip() for i in service_request_id.split(",") if i.strip()]
            found = _requests(queue, ids=ids)
        else:
            end = parse_time(end_date, "end_date") if end_date else queue.clock()
            start = parse_time(start_date, "start_date") if start_date else end - timedelta(90)
            if end - start > timedelta(90):
                raise Invalid("start_date..end_date: at most 90 days")
            found = _requests(queue, code=service_code, start=wire_time(start), end=wire_time(end))
            if status:
                found = [r for r in found if request_status(r) == status]
        return [_as_open311(r, names, request) for r in found]

    @router.get("/requests/{request_id}.json", summary="One Open311 service request",
                responses=_errors(404, "no such service request"))
    def request_one(request_id: str, request: Request):
        found = _requests(queue, ids=[request_id])
        if not found:
            raise NotFound(f"no service request {request_id!r}")
        return [_as_open311(found[0], names, request)]

    return router


def _requests(queue, *, ids=None, code=None, start=None, end=None, limit=1000):
    store = queue.store
    where, params = ["r.source <> 'task'"], []
    if ids is not None:
        where.append("r.id IN (" + ", ".join("?" * len(ids)) + ")")
        params.extend(ids)
    if code:
        where.append("r.code = ?")
        params.append(code)
    if start:
        where.append("r.captured_at >= ?")
        params.append(start)
    if end:
        where.append("r.captured_at <= ?")
        params.append(end)
    sql = (
        "SELECT r.id, r.kind, r.standard, r.code, r.text, r.lat, r.lon, r.grid, r.street,"
        " r.captured_at, r.committed_at, r.photos, i.state, COALESCE(c.case_no, i.case_no) AS"
        " case_no, i.reason, i.updated_at,"
        " c.state AS case_state, c.updated_at AS case_updated_at, c.stage_due, d.name AS agency,"
        " (SELECT h.reason FROM case_history h WHERE h.case_no = c.case_no"
        "  AND h.n = c.version) AS case_reason, m.into_report AS merged_into"
        " FROM reports r LEFT JOIN intake i ON i.report_id = r.id"
        # a report merged into another follows that one's case (cases.duplicates)
        " LEFT JOIN dup_merges m ON m.report_id = r.id"
        " LEFT JOIN cases c ON c.report_id = COALESCE(m.into_report, r.id)"
        " LEFT JOIN case_departments d ON d.id = c.department WHERE " + " AND ".join(where)
        + " ORDER BY r.captured_at DESC, r.id LIMIT ?"
    )
    with store.connect() as conn:
        found = rows(run(store, conn, sql, [*params, limit]))
    for r in found:
        r["closed"] = r["state"] == "rejected" or r["case_state"] in lifecycle.TERMINAL
    return found


def _as_open311(r, names, request):
    major, name = names.names(r["kind"], r["code"], r["standard"])
    if r["case_state"]:
        notes = f"{lifecycle.LABELS[r['case_state']]} {r['case_no']}"
        if r["case_state"] in (lifecycle.VOIDED, lifecycle.DEFERRED) and r["case_reason"]:
            notes += f": {r['case_reason']}"
    elif r["state"] == "rejected":
        notes = f"不予立案: {r['reason']}"
    elif r["merged_into"]:
        notes = f"已合并至 {r['merged_into']}"
    else:
        notes = "待受理"
    photos = json.loads(r["photos"] or "[]") if isinstance(r["photos"], str) else r["photos"]
    media = str(request.url_for("photo", sha256=photos[0]["sha256"])) if photos else None
    updated = max(x for x in (r["committed_at"], r["updated_at"], r["case_updated_at"]) if x)
    return {
        "service_request_id": r["id"],
        "status": request_status(r),
        "status_notes": notes,
        "service_name": name or r["code"],
        "service_code": r["code"],
        "description": r["text"] or "",
        "agency_responsible": r["agency"],
        "service_notice": None,
        "requested_datetime": r["captured_at"],
        "updated_datetime": updated,
        "expected_datetime": None if r["closed"] else r["stage_due"],
        "address": None,
        "address_id": r["grid"],
        "zipcode": None,
        "lat": r["lat"],
        "long": r["lon"],
        "media_url": media,
        "group": major,
    }
