"""The audit trail's routes: one report's history, and the trail for a period as CSV/JSON."""

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ..auth.audit import export
from ..clock import wire_time
from ..queue import parse_time
from .bodies import BAD, ISO_TIME, NOT_FOUND


def build_router(trail, queue, desk):
    """``/api/reports/{id}/history`` and ``/api/audit`` over an ``AuditTrail``."""
    router = APIRouter(tags=["audit"])

    @router.get("/api/reports/{report_id}/history", responses=NOT_FOUND,
                summary="Who claimed and decided a report, its tasks and its case's moves, "
                        "oldest first")
    def history(report_id: str):
        queue.get(report_id)  # 404 for an unknown report
        entries = trail.entries(target=f"report:{report_id}")
        for task in desk.list(report_id=report_id, limit=500):
            entries += trail.entries(target=f"task:{task['id']}")
        case = desk.cases.by_report(report_id) if desk.cases is not None else None
        if case is not None:  # the case's moves after 立案
            entries += trail.entries(target=f"case:{case['case_no']}")
        entries.sort(key=lambda e: e["n"])
        return {"report_id": report_id, "entries": entries}

    @router.get("/api/audit", responses={**BAD, 200: {"content": {
                    "application/json": {}, "text/csv": {}}}},
                response_class=Response,
                summary="The audit trail for a period (CSV or JSON)")
    def audit(since: str | None = Query(None, pattern=ISO_TIME,
                                        description="from (ISO 8601), inclusive"),
              until: str | None = Query(None, pattern=ISO_TIME,
                                        description="to (ISO 8601), exclusive"),
              target: str | None = Query(None, max_length=200,
                                         description="report:ID, task:ID, grid:CODE, user:NAME"),
              format: str = Query("json", pattern="^(csv|json)$")):
        found = trail.entries(target=target,
                              since=wire_time(parse_time(since, "since")) if since else None,
                              until=wire_time(parse_time(until, "until")) if until else None)
        media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
        return Response(export(found, format), media_type=media, headers={
            "Content-Disposition": f'attachment; filename="gridlink-audit.{format}"'})

    return router
