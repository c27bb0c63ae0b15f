"""The intake queue's routes: list and read reports, claim, release, accept (立案),
reject (不予立案), and the summary counts."""

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .. import fleet_view
from ..media_ingest import report_media
from ..queue import DEFAULT_LEASE_S, FILTER_FLAGS, MAX_LEASE_S, Invalid
from .acting import Acting
from .bodies import BAD, DECISION, DIGITS, ISO_TIME, NOT_BLANK, NOT_FOUND

Flag = Literal[FILTER_FLAGS]

# The actor is the signed-in operator (session or token), never a name in the body.


class ClaimBody(BaseModel):
    lease_s: int = Field(DEFAULT_LEASE_S, ge=1, le=MAX_LEASE_S,
                         description="lease length; the claim lapses after it unless renewed")


class AcceptBody(BaseModel):
    case_no: str | None = Field(None, max_length=40,
                                pattern=f"^{NOT_BLANK}(.*{NOT_BLANK})?$",
                                description="case number (案卷号); the next one when omitted")


class MergeBody(BaseModel):
    into: str = Field(..., min_length=3, max_length=64,
                      description="the report (pending, or accepted: its case) this one joins")


class RejectBody(BaseModel):
    reason: str = Field(..., max_length=500, pattern=NOT_BLANK,
                        description="why not accepted (不予立案原因)")


def build_router(queue, desk, trail, callers=None, duplicates=None):
    """The ``/api/reports`` and ``/api/summary`` routes over an ``IntakeQueue`` (and the
    ``TaskDesk`` whose tasks a report lists); every decision is written to ``trail`` in
    its transaction.  Acting on another operator's claim takes the OVERRIDE permission
    (值班长); without it the answer is 409 naming the holder.  ``callers(report_id)`` gives
    the caller's details of a report an operator filed (``cases.sources``)."""
    router = APIRouter(tags=["queue"])

    def class_codes(code):
        """A code filter as given (digits), or the codes a class name stands for."""
        if code is None or re.fullmatch(DIGITS, code.strip()):
            return code
        prefixes = queue.codebooks.prefixes_named(code) if queue.codebooks else []
        if not prefixes:
            raise Invalid(f"code: no class or major class is named {code.strip()!r}; "
                          "give a class code (06010), its prefix (06) or a class name (暴露垃圾)")
        return prefixes

    @router.get("/api/reports", responses=BAD, summary="List reports (default: pending)")
    def list_reports(
        status: str = Query("pending",
                            pattern="^(pending|accepted|rejected|attached|merged|all)$",
                            description="pending, accepted, rejected, attached, merged, all"),
        grid: str | None = Query(None, pattern=DIGITS, description="grid code or prefix"),
        street: str | None = Query(None, pattern=DIGITS,
                                   description="9-digit street (街道) code"),
        code: str | None = Query(None, min_length=1, max_length=40,
                                 description="class code or prefix (major class), or a "
                                             "class or major class name (暴露垃圾)"),
        kind: str | None = Query(None, pattern="^(event|component)$"),
        device: str | None = None,
        source: str | None = None,
        since: str | None = Query(None, pattern=ISO_TIME,
                                  description="captured at or after (ISO 8601)"),
        until: str | None = Query(None, pattern=ISO_TIME,
                                  description="captured before (ISO 8601)"),
        flag: Annotated[list[Flag] | None,
                        Query(description="grid_mismatch, no_fix, …; all must hold")] = None,
        held: bool | None = Query(None, description="only claimed (true) / unclaimed (false)"),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=2**31 - 1),
        order: str = Query("desc", pattern="^(asc|desc)$"),
        sort: str = Query("queue", pattern="^(queue|received)$",
                          description="queue: capture time (receive time where the capture "
                                      "time is flagged); received: receive time"),
    ):
        page = queue.list(status=status, grid=grid, street=street, code=class_codes(code),
                          kind=kind, device=device, source=source, since=since, until=until,
                          flags=flag or (), held=held, limit=limit, offset=offset, order=order,
                          sort=sort)
        return JSONResponse(page)  # plain JSON types already: skip the generic encoder

    @router.get("/api/reports/{report_id}", responses=NOT_FOUND,
                summary="One report with its state")
    def get_report(report_id: str):
        report = queue.get(report_id)
        report["tasks"] = desk.list(report_id=report_id)
        report["case"] = desk.cases.by_report(report_id) if desk.cases is not None else None
        report["caller"] = callers(report_id) if callers is not None else None
        for task in report["tasks"]:       # what a clip task brought back
            task["media"] = report_media(queue.store, task["result_report"]) \
                if task["result_report"] else []
        report["media"] = report_media(queue.store, report_id)
        return report

    @router.post("/api/reports/{report_id}/claim", responses=DECISION,
                 summary="Claim a report with a lease (409 names the holder)")
    def claim(report_id: str, body: ClaimBody, request: Request):
        me = Acting(trail, request)
        return queue.claim(report_id, me.name, lease_s=body.lease_s,
                           override=me.may_override, audit=me.record)

    @router.post("/api/reports/{report_id}/release", responses=DECISION,
                 summary="Give a claim back (another's: 值班长 only)")
    def release(report_id: str, request: Request):
        me = Acting(trail, request)
        return queue.release(report_id, me.name, override=me.may_override, audit=me.record)

    @router.post("/api/reports/{report_id}/accept", responses=DECISION, summary="Accept (立案)")
    def accept(report_id: str, body: AcceptBody, request: Request):
        me = Acting(trail, request)
        return queue.accept(report_id, me.name, case_no=body.case_no,
                            override=me.may_override, audit=me.record)

    @router.post("/api/reports/{report_id}/reject", responses=DECISION,
                 summary="Reject (不予立案)")
    def reject(report_id: str, body: RejectBody, request: Request):
        me = Acting(trail, request)
        return queue.reject(report_id, me.name, reason=body.reason,
                            override=me.may_override, audit=me.record)

    @router.post("/api/reports/{report_id}/merge", responses=DECISION,
                 summary="Merge into another report of the same class (its case keeps both)")
    def merge(report_id: str, body: MergeBody, request: Request):
        me = Acting(trail, request)
        return duplicates.merge(report_id, body.into, me.name, override=me.may_override,
                                audit=me.record)

    @router.get("/api/summary", summary="Counts for the board and the demo")
    def summary():
        return fleet_view.summary(queue.store, queue)

    return router
