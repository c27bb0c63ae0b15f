"""The verification tasks' routes: grid assignments, and 核实/核查 and clip tasks."""

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from ..media_ingest import report_media
from .acting import Acting
from .bodies import BAD, DEVICE, GRID, ISO_TIME, NOT_FOUND


class TaskBody(BaseModel):
    # a report or a point; a deadline or a deadline_s, not both
    model_config = {"json_schema_extra": {
        "anyOf": [{"required": ["report_id"], "properties": {"report_id": {"type": "string"}}},
                  {"required": ["lat", "lon"], "properties": {"lat": {"type": "number"},
                                                              "lon": {"type": "number"}}}],
        "not": {"required": ["deadline", "deadline_s"],
                "properties": {"deadline": {"type": "string"},
                               "deadline_s": {"type": "number"}}}}}

    type: str = Field("verify", pattern="^(verify|check|clip)$",
                      description="verify = 核实 (before 立案), check = 核查 (after handling), "
                                  "clip = the vehicle's last 30 s of video (it comes back "
                                  "as the media of the task's result)")
    report_id: str | None = Field(None, description="the report to verify or check")
    lat: float | None = Field(None, ge=-90, le=90, description="a point, when no report")
    lon: float | None = Field(None, ge=-180, le=180)
    text: str = Field("", max_length=256)
    deadline: str | None = Field(None, pattern=ISO_TIME, description="ISO 8601 time")
    deadline_s: float | None = Field(None, gt=0, le=30 * 86400,
                                     description="deadline as seconds from now (≤ 30 days)")
    device: str | None = Field(None, pattern=DEVICE,
                               description="send to this device instead of routing")
    key: str | None = Field(None, min_length=1, max_length=80,
                            description="idempotency key: the same key returns the same task")


class AssignBody(BaseModel):
    device: str = Field(..., pattern=DEVICE)


GridCode = Path(..., pattern=GRID, description="a 14- or 15-digit unit grid code")


def build_router(desk, trail):
    """``/api/assignments`` and ``/api/tasks`` over a ``TaskDesk``; each change is written
    to the audit ``trail`` in the signed-in operator's name."""
    router = APIRouter(tags=["tasks"])

    @router.get("/api/assignments", summary="Grid → patrol device assignments")
    def assignments():
        return desk.assignments()

    @router.put("/api/assignments/{grid}", responses=BAD, summary="Assign a grid to a device")
    def assign(body: AssignBody, request: Request, grid: str = GridCode):
        before = _assignment(desk, grid)
        done = desk.assign(grid, body.device)
        Acting(trail, request).append("assignment.put", target=f"grid:{done['grid']}",
                                      before=before, after=done)
        return done

    @router.delete("/api/assignments/{grid}", status_code=204, responses={**NOT_FOUND, **BAD},
                   summary="Remove a grid's assignment")
    def unassign(request: Request, grid: str = GridCode):
        before = _assignment(desk, grid)
        desk.unassign(grid)
        Acting(trail, request).append("assignment.delete", target=f"grid:{grid}",
                                      before=before)

    @router.post("/api/tasks", status_code=201, responses={**NOT_FOUND, **BAD},
                 summary="Create a 核实/核查 or clip task, route it and send it")
    def create_task(body: TaskBody, request: Request):
        me = Acting(trail, request)
        task = desk.create(**body.model_dump(), operator=me.name, audit=me.record)
        if body.key is None or not _audited(trail, task["id"]):
            me.append("task.create", target=f"task:{task['id']}", after=task)
        return task

    @router.get("/api/tasks", summary="List tasks")
    def list_tasks(state: str | None = Query(None, pattern="^(open|sent|done|expired)$"),
                   report_id: str | None = None, device: str | None = None,
                   limit: int = Query(100, ge=1, le=500)):
        desk.sync()
        return desk.list(state=state, report_id=report_id, device=device, limit=limit)

    @router.get("/api/tasks/{task_id}", responses=NOT_FOUND,
                summary="One task (with its result's clips and memos)")
    def get_task(task_id: str):
        desk.sync()
        task = desk.get(task_id)
        task["media"] = report_media(desk.store, task["result_report"]) \
            if task["result_report"] else []
        return task

    @router.post("/api/tasks/{task_id}/dispatch", responses=NOT_FOUND,
                 summary="Send an open task again (re-routing it when it has no device)")
    def dispatch(task_id: str, request: Request):
        before = desk.get(task_id)
        after = desk.dispatch(task_id)
        Acting(trail, request).append("task.dispatch", target=f"task:{task_id}",
                                      before=before, after=after)
        return after

    return router


def _assignment(desk, grid):
    return next((a for a in desk.assignments() if a["grid"] == grid), None)


def _audited(trail, task_id):
    """Whether the task's creation is on the trail already (an idempotent repeat)."""
    return any(e["action"] == "task.create" for e in trail.entries(target=f"task:{task_id}"))
