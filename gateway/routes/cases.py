"""The case routes after 立案: read a case with its history, move it (派遣, 处置, 处置反馈,
核查, 挂账, 恢复, 作废, 值班长 override), and the departments and deadlines behind 派遣.

A move the case's state does not allow is answered 409 with the reason, the case's state
and the moves it does allow (``cases.lifecycle``)."""

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from ..auth import roles
from ..auth.errors import Forbidden
from ..cases import lifecycle as lc
from ..cases.book import DEFAULT_CODE
from ..cases.sources import SOURCES
from .acting import Acting
from .bodies import BAD, DEVICE, ISO_TIME, NOT_BLANK, ErrorBody

STATE = "^(" + "|".join(lc.STATES) + ")$"
# a photo: its sha256, or an http(s) URL of printable ASCII (as the book checks)
PHOTO = r"^([0-9a-f]{64}|https?://[!-~]{1,490})$"
REASON = Field(..., max_length=500, pattern=NOT_BLANK, description="why (required)")


class CaseConflict(ErrorBody):
    state: str | None = Field(None, description="the case's state now")
    case_no: str | None = None
    allowed: list[str] | None = Field(None, description="the moves its state allows")


NOT_FOUND = {404: {"model": ErrorBody, "description": "no such case"}}
MOVE = {**NOT_FOUND, **BAD, 409: {"model": CaseConflict,
                                  "description": "the case's state does not allow this move"}}


class Note(BaseModel):
    note: str | None = Field(None, max_length=500)


class DispatchBody(BaseModel):
    model_config = {"json_schema_extra": {
        "not": {"required": ["deadline", "deadline_s"],
                "properties": {"deadline": {"type": "string"},
                               "deadline_s": {"type": "number"}}}}}

    department: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_-]{1,31}$",
                            description="the department's id (/api/departments)")
    deadline: str | None = Field(None, pattern=ISO_TIME,
                                 description="处置时限 (ISO 8601, in the future); default: "
                                             "the class's handle deadline")
    deadline_s: float | None = Field(None, gt=0, le=366 * 86400,
                                     description="处置时限 as seconds from now")
    note: str | None = Field(None, max_length=500)


class FeedbackBody(BaseModel):
    note: str | None = Field(None, max_length=500, description="what was done")
    photos: list[str] = Field(..., min_length=1, max_length=8,
                              description="photos of the result: sha256 or http(s) URL each",
                              json_schema_extra={"items": {"type": "string", "pattern": PHOTO}})


class CheckBody(BaseModel):
    text: str = Field("", max_length=256)
    deadline_s: float | None = Field(None, gt=0, le=30 * 86400,
                                     description="核查时限 as seconds from now")
    device: str | None = Field(None, pattern=DEVICE,
                               description="send to this device instead of the grid's")
    key: str | None = Field(None, min_length=1, max_length=80,
                            description="idempotency key: the same key returns the same task")


class ReasonBody(BaseModel):
    reason: str = REASON


class OverrideBody(BaseModel):
    state: str = Field(..., pattern=STATE, description="the state to set")
    reason: str = REASON


class SystemBody(BaseModel):
    """How to reach a department's system (``cases.reach``)."""
    model_config = {"extra": "forbid"}

    adapter: str = Field(..., pattern="^(webhook|open311)$",
                         description="webhook: POST the case as JSON; open311: GeoReport v2 "
                                     "POST requests.json")
    url: str = Field(..., pattern=r"^https?://[!-~]{1,490}$")
    api_key: str | None = Field(None, pattern=r"^[!-~]{1,200}$",
                                description="webhook: sent as a Bearer token; open311: "
                                            "api_key (never shown back)")
    timeout_s: float | None = Field(None, ge=1, le=120, description="seconds to wait for "
                                    "an answer (default 10)")


class DepartmentBody(BaseModel):
    name: str = Field(..., max_length=64, pattern=NOT_BLANK)
    accounts: list[str] = Field([], max_length=100,
                                description="the accounts that act for it (开始处置, 处置反馈); "
                                            "none: any 专业部门 account",
                                json_schema_extra={"items": {
                                    "type": "string", "pattern": r"^[a-z0-9._-]{2,64}$"}})
    system: SystemBody | None = Field(
        None, description="how to reach its system; none: 派遣 sends nothing out")
    classes: list[str] = Field(..., min_length=1, max_length=200,
                               description="class codes or prefixes it handles",
                               json_schema_extra={"items": {"type": "string",
                                                            "pattern": "^[0-9]{2,17}$"}})


class DeadlineBody(BaseModel):
    seconds: int = Field(..., ge=60, le=366 * 86400, description="how long the stage may take")
    clock: str = Field("wall", pattern="^(wall|working)$",
                       description="wall: plain elapsed time; working: the centre's working "
                                   "hours on working days (/api/calendar)")


class DayBody(BaseModel):
    kind: str = Field(..., pattern="^(holiday|workday)$",
                      description="holiday: a weekday off; workday: a weekend day worked (调休)")
    note: str | None = Field(None, max_length=100, description="e.g. 国庆节")


# a day the pattern admits but the calendar has not (02-30) is a 400
DAY = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


def file_body(codes):
    """The body of ``POST /api/reports``: ``code`` is one of the code book's ``codes``."""

    class FileBody(BaseModel):
        source: str = Field(..., pattern="^(" + "|".join(SOURCES) + ")$",
                            description="12319 / 12345 hotline, 领导交办, 视频, 其他")
        code: str = Field(..., max_length=17, json_schema_extra={"enum": codes},
                          description="the class code (GB/T 47678.5-2026; Open311 service)")
        lat: float = Field(..., ge=-90, le=90)
        lon: float = Field(..., ge=-180, le=180)
        text: str = Field("", max_length=256, description="what the caller said")
        caller_name: str | None = Field(None, max_length=200)
        caller_phone: str | None = Field(None, pattern=r"^\+?[0-9][0-9 -]{2,23}$")
        address: str | None = Field(None, max_length=200, description="where, in words")
        key: str | None = Field(None, min_length=1, max_length=80,
                                description="idempotency key (e.g. the hotline ticket number)")

    return FileBody


CaseNo = Path(..., max_length=40, description="the case number (案卷号)")


def build_router(book, desk, trail, sources, queue, duplicates=None):
    """``/api/cases``, ``/api/departments`` and ``/api/deadlines`` over a ``CaseBook``
    (and the ``TaskDesk`` that sends 核查 tasks), and ``POST /api/reports`` (an operator
    files a report, ``cases.sources``); each change is audited in its transaction in the
    signed-in operator's name.  A case lists its ``reports``: its own and those merged
    into it (``cases.duplicates``)."""
    router = APIRouter(tags=["cases"])
    FileBody = file_body(sources.codes())  # a model class made per app: its code book

    @router.post("/api/reports", status_code=201, responses=BAD, tags=["queue"],
                 summary="File a report from the centre (hotline, 领导交办, 视频, 其他); it "
                         "is 立案 once a 核实 task confirmed it")
    def file_report(body: FileBody, request: Request):
        me = Acting(trail, request)
        rid = sources.file(**body.model_dump(), operator=me.name, audit=me.record)
        report = queue.get(rid)
        report["caller"] = sources.caller(rid)
        return report

    @router.get("/api/cases", responses=BAD, summary="List cases (newest first)")
    def list_cases(state: str | None = Query(None, pattern=STATE),
                   department: str | None = Query(None, max_length=32),
                   overdue: bool | None = Query(None, description="only cases past (true) / "
                                                "within (false) their stage's deadline"),
                   limit: int = Query(50, ge=1, le=500),
                   offset: int = Query(0, ge=0, le=2**31 - 1)):
        return book.list(state=state, department=department, overdue=overdue, limit=limit,
                         offset=offset)

    @router.get("/api/cases/{case_no}", responses=NOT_FOUND,
                summary="One case with its history (who moved it, when, on time or late)")
    def get_case(case_no: str = CaseNo):
        case = book.get(case_no)
        if duplicates is not None:
            case["reports"] = duplicates.reports_of(case["report_id"])
        return case

    def move(action, request, case_no, **kw):
        me = Acting(trail, request)
        return book.act(case_no, action, me.name, audit=me.record, **kw)

    def handle(action, request, case_no, **kw):
        """A department's move: only an account of the case's department (or a 值班长)."""
        me = Acting(trail, request)
        book.get(case_no, history=False)  # 404 first
        if not me.principal.can(roles.CASE_LEAD) and not book.acts_for(case_no, me.name):
            raise Forbidden(f"{me.name} does not act for the department case {case_no} is "
                            "dispatched to")
        return book.act(case_no, action, me.name, audit=me.record, **kw)

    @router.post("/api/cases/{case_no}/dispatch", responses=MOVE,
                 summary="派遣: send the case to a department, with a deadline")
    def dispatch(body: DispatchBody, request: Request, case_no: str = CaseNo):
        return move("dispatch", request, case_no, department=body.department,
                    deadline=body.deadline, deadline_s=body.deadline_s, note=body.note)

    @router.post("/api/cases/{case_no}/start", responses=MOVE,
                 summary="处置中: the department starts handling")
    def start(body: Note, request: Request, case_no: str = CaseNo):
        return handle("start", request, case_no, note=body.note)

    @router.post("/api/cases/{case_no}/feedback", responses=MOVE,
                 summary="处置反馈: the department reports it done, with photos")
    def feedback(body: FeedbackBody, request: Request, case_no: str = CaseNo):
        return handle("feedback", request, case_no, note=body.note, photos=body.photos)

    @router.post("/api/cases/{case_no}/check", status_code=201, responses=MOVE,
                 summary="核查: send a check task to the grid's device; its result closes "
                         "the case (结案) or sends it back (返工)")
    def check(body: CheckBody, request: Request, case_no: str = CaseNo):
        me = Acting(trail, request)
        case = book.get(case_no, history=False)
        task = desk.create(type="check", report_id=case["report_id"], text=body.text,
                           deadline_s=body.deadline_s, device=body.device, operator=me.name,
                           key=body.key, audit=me.record)
        if body.key is None or not trail.entries(target=f"task:{task['id']}"):
            me.append("task.create", target=f"task:{task['id']}", after=task)
        return {"case": book.get(case_no), "task": task}

    @router.post("/api/cases/{case_no}/defer", responses=MOVE, summary="挂账: park the case")
    def defer(body: ReasonBody, request: Request, case_no: str = CaseNo):
        return move("defer", request, case_no, reason=body.reason)

    @router.post("/api/cases/{case_no}/resume", responses=MOVE,
                 summary="恢复: a parked case back to 立案")
    def resume(body: Note, request: Request, case_no: str = CaseNo):
        return move("resume", request, case_no, note=body.note)

    @router.post("/api/cases/{case_no}/void", responses=MOVE, summary="作废: void the case")
    def void(body: ReasonBody, request: Request, case_no: str = CaseNo):
        return move("void", request, case_no, reason=body.reason)

    @router.post("/api/cases/{case_no}/override", responses=MOVE,
                 summary="值班长: set the case's state by hand, with a reason")
    def override(body: OverrideBody, request: Request, case_no: str = CaseNo):
        return move(lc.OVERRIDE, request, case_no, state=body.state, reason=body.reason)

    @router.get("/api/departments", summary="Departments and the classes they handle")
    def departments():
        return book.departments()

    @router.put("/api/departments/{dept_id}", responses=BAD,
                summary="Add or change a department")
    def put_department(body: DepartmentBody, request: Request,
                       dept_id: str = Path(..., pattern=r"^[a-z0-9][a-z0-9_-]{1,31}$")):
        system = body.system.model_dump(exclude_none=True) if body.system else None
        return Acting(trail, request).changed(
            "department.put", f"department:{dept_id}", book.departments,
            lambda d: d["id"] == dept_id,
            lambda: book.put_department(dept_id, body.name, body.classes, body.accounts,
                                        system))

    @router.get("/api/deadlines", summary="Deadlines per stage and class")
    def deadlines():
        return book.deadlines()

    @router.put("/api/deadlines/{stage}/{code}", responses=BAD,
                summary="Set a stage's deadline for a class (code, prefix or 'default')")
    def put_deadline(body: DeadlineBody, request: Request,
                     stage: str = Path(..., pattern="^(" + "|".join(lc.STAGES) + ")$"),
                     code: str = Path(..., pattern=f"^([0-9]{{2,17}}|{DEFAULT_CODE})$")):
        return Acting(trail, request).changed(
            "deadline.put", f"deadline:{stage}:{code}", book.deadlines,
            lambda d: d["stage"] == stage and d["code"] == code,
            lambda: book.put_deadline(stage, code, body.seconds, body.clock))

    @router.get("/api/calendar", summary="Holidays and 调休 workdays of the working calendar")
    def calendar():
        return book.calendar()

    @router.put("/api/calendar/{day}", responses=BAD,
                summary="Mark a day a holiday or a workday (a day that does not exist, "
                        "such as 02-30, is a 400)")
    def put_day(body: DayBody, request: Request,
                day: str = Path(..., pattern=DAY, description="YYYY-MM-DD")):
        return Acting(trail, request).changed(
            "calendar.put", f"day:{day}", book.calendar, lambda d: d["day"] == day,
            lambda: book.put_day(day, body.kind, body.note))

    @router.delete("/api/calendar/{day}", status_code=204,
                   responses={404: {"model": ErrorBody, "description": "no entry that day"}},
                   summary="Let a day follow Monday-to-Friday again")
    def delete_day(request: Request, day: str = Path(..., max_length=10)):
        Acting(trail, request).changed("calendar.delete", f"day:{day}", book.calendar,
                                       lambda d: d["day"] == day,
                                       lambda: book.delete_day(day))

    return router
