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


# What the server accepts, as JSON Schema patterns (the document says it, the server checks it).
# A time's day runs to the 31st; a day its month lacks (30 February) is the server's 400.
ISO_TIME = (r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
            r"(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
            r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?$")
DIGITS = r"^[0-9]{1,17}$"          # a grid, street or class code, or its prefix
GRID = r"^[0-9]{14,15}$"           # a unit grid code
DEVICE = r"^[a-z0-9][a-z0-9-]{2,31}$"
# has something besides white space (as Python's str.strip() sees it: also \x1c-\x1f)
NOT_BLANK = r"[^\s\x1c-\x1f]"

NOT_FOUND = {404: {"model": ErrorBody, "description": "no such report"}}
BAD = {400: {"model": ErrorBody, "description": "a malformed request, named"}}
CONFLICT = {409: {"model": ConflictBody,
                  "description": "held by another operator, or decided otherwise"}}
DECISION = {**NOT_FOUND, **BAD, **CONFLICT}
