"""Error bodies shared by the routers, and the ``responses=`` entries that name them."""

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    detail: str = Field(..., description="what is wrong, in one sentence")


class ConflictBody(ErrorBody):
    state: str | None = Field(None, description="the report's intake state")
    holder: str | None = Field(None, description="who holds the claim")
    lease_until: str | None = Field(None, description="when that claim lapses (ISO 8601 UTC)")
    case_no: str | None = None
    reason: str | None = None
    decided_by: str | None = None
    report_id: str | None = Field(None, description="the report a clashing case number has")


NOT_FOUND = {404: {"model": ErrorBody, "description": "no such report"}}
BAD = {400: {"model": ErrorBody, "description": "a malformed request, named"}}
CONFLICT = {409: {"model": ConflictBody,
                  "description": "held by another operator, or decided otherwise"}}
DECISION = {**NOT_FOUND, **BAD, **CONFLICT}
