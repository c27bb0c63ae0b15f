"""The verification tasks' routes: grid assignments, and 核实/核查 tasks."""

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from .bodies import BAD, NOT_FOUND


class TaskBody(BaseModel):
    type: str = Field("verify", pattern="^(verify|check)$",
                      description="verify = 核实 (before 立案), check = 核查 (after handling)")
    report_id: str | None = Field(None, description="the report to verify or check")
    lat: float | None = Field(None, ge=-90, le=90, description="a point, when no report")
    lon: float | None = Field(None, ge=-180, le=180)
    text: str = Field("", max_length=256)
    deadline: str | None = Field(None, description="ISO 8601 time")
    deadline_s: float | None = Field(None, gt=0, description="deadline as seconds from now")
    device: str | None = Field(None, description="send to this device instead of routing")
    operator: str | None = None
    key: str | None = Field(None, max_length=80,
                            description="idempotency key: the same key returns the same task")


class AssignBody(BaseModel):
    device: str


def build_router(desk):
    """``/api/assignments`` and ``/api/tasks`` over a ``TaskDesk``."""
    router = APIRouter(tags=["tasks"])

    @router.get("/api/assignments", summary="Grid → patrol device assignments")
    def assignments():
        return desk.assignments()

    @router.put("/api/assignments/{grid}", summary="Assign a grid to a device")
    def assign(grid: str, body: AssignBody):
        return desk.assign(grid, body.device)

    @router.delete("/api/assignments/{grid}", status_code=204,
                   summary="Remove a grid's assignment")
    def unassign(grid: str):
        desk.unassign(grid)

    @router.post("/api/tasks", status_code=201, responses={**NOT_FOUND, **BAD},
                 summary="Create a 核实/核查 task, route it and send it")
    def create_task(body: TaskBody):
        return desk.create(**body.model_dump())

    @router.get("/api/tasks", summary="List tasks")
    def list_tasks(state: str | None = Query(None, pattern="^(open|sent|done|expired)$"),
                   report_id: str | None = None, device: str | None = None,
                   limit: int = Query(100, ge=1, le=500)):
        desk.sync()
        return desk.list(state=state, report_id=report_id, device=device, limit=limit)

    @router.get("/api/tasks/{task_id}", summary="One task")
    def get_task(task_id: str):
        desk.sync()
        return desk.get(task_id)

    @router.post("/api/tasks/{task_id}/dispatch",
                 summary="Send an open task again (re-routing it when it has no device)")
    def dispatch(task_id: str):
        return desk.dispatch(task_id)

    return router
