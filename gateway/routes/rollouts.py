"""The rollouts' routes: start a staged rollout of a release, watch it, and pause, resume
or abort it — a 技术员's acts (``fleet``), each on the audit trail in their name."""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from .acting import Acting
from .bodies import BAD, DEVICE, ErrorBody

ROLLOUT_ID = r"^R-[A-Za-z0-9_.:-]{1,40}$"
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such rollout"}}
RolloutId = Path(..., pattern=ROLLOUT_ID)
CONFLICT = {409: {"model": ErrorBody,
                  "description": "a downgrade, or the rollout's state does not allow it"}}


class Target(BaseModel):
    model_config = {"extra": "forbid", "json_schema_extra": {"minProperties": 1,
                                                             "maxProperties": 1}}

    # not nullable: the one given names the group
    district: str = Field(None, pattern=r"^[0-9]{6}$")
    profile: str = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    devices: list[Annotated[str, Field(pattern=DEVICE)]] = Field(None, min_length=1,
                                                                 max_length=10000)

    def as_dict(self):
        return self.model_dump(exclude_none=True)


class RolloutBody(BaseModel):
    kind: Literal["pi", "mcu"]
    version: str = Field(..., pattern=r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$",
                         description="the release's version (dotted numbers)")
    target: Target = Field(..., description="exactly one: a district, a profile or devices")
    stages: list[int] = Field([5, 50, 100], min_length=1, max_length=10,
                              description="cumulative percentages of the group, ending at 100")
    failure_threshold: float = Field(20.0, ge=0, le=100,
                                     description="pause when more of a stage's devices fail "
                                                 "than this percentage")
    stage_timeout_s: float | None = Field(None, ge=1, le=90 * 86400,
                                          description="pause a stage whose devices have not "
                                                      "all reported within this many seconds")


def build_router(rollouts, trail):
    """``/api/rollouts`` over a ``rollouts.Rollouts``; changes audited on ``trail``."""
    router = APIRouter(tags=["updates"])

    @router.post("/api/rollouts", status_code=201, responses={**BAD, **CONFLICT},
                 summary="Start a staged rollout of a release")
    def create(body: RolloutBody, request: Request):
        me = Acting(trail, request)
        done = rollouts.create(kind=body.kind, version=body.version,
                               target=body.target.as_dict(), stages=body.stages,
                               failure_threshold=body.failure_threshold, operator=me.name,
                               stage_timeout_s=body.stage_timeout_s)
        me.append("rollout.create", target=f"rollout:{done['id']}", after=_brief(done))
        return done

    @router.get("/api/rollouts", summary="Rollouts and their progress")
    def list_rollouts(state: str | None = Query(None, pattern="^(running|paused|aborted|done)$")):
        rollouts.sync()
        return rollouts.list(state)

    @router.get("/api/rollouts/{rollout_id}", responses=NOT_FOUND, summary="One rollout")
    def get(rollout_id: str):
        rollouts.sync(rollout_id)
        return rollouts.get(rollout_id)

    def act(name, verb):
        @router.post(f"/api/rollouts/{{rollout_id}}/{name}", responses={**NOT_FOUND, **CONFLICT},
                     summary=f"{name.capitalize()} a rollout", name=f"rollout_{name}")
        def change(request: Request, rollout_id: str = RolloutId):
            me = Acting(trail, request)
            before = rollouts.get(rollout_id)
            after = verb(rollout_id, operator=me.name)
            me.append(f"rollout.{name}", target=f"rollout:{rollout_id}",
                      before=_brief(before), after=_brief(after))
            return after

    act("pause", rollouts.pause)
    act("resume", rollouts.resume)
    act("abort", rollouts.abort)
    return router


def _brief(r):
    """What the audit keeps of a rollout: not its device list."""
    return {k: r[k] for k in ("id", "kind", "version", "target", "stages", "failure_threshold",
                              "stage_timeout_s", "state", "stage", "reason")}
