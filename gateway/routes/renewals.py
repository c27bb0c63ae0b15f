"""Certificate renewal's routes (``--renew approve``): the requests waiting for a
technician, approved (signed and sent) or refused (the device keeps its certificate)."""

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from ..queue import Conflict
from .acting import Acting
from .bodies import DECISION, NOT_BLANK


class RefuseBody(BaseModel):
    model_config = {"extra": "forbid"}

    reason: str = Field(..., min_length=1, max_length=200, pattern=NOT_BLANK,
                        description="why: sent to the device, which keeps its certificate")


def build_router(renewals, trail):
    """``/api/fleet/renewals`` over a ``renewal.Renewals`` (None: a gateway without
    ``--ca-dir``, which signs nothing: every change is a 409)."""
    router = APIRouter(tags=["fleet"])

    def held():
        if renewals is None:
            raise Conflict("this gateway signs no certificates: start it with --ca-dir CADIR "
                           "--renew approve")
        return renewals

    @router.get("/api/fleet/renewals", summary="Certificate requests (pending by default)")
    def listing(state: str = Query("pending", pattern="^(pending|approved|refused|all)$")):
        if renewals is None:
            return []
        return renewals.requests(None if state == "all" else state)

    @router.post("/api/fleet/renewals/{request_id}/approve", responses=DECISION,
                 summary="Sign a device's pending certificate request and send it")
    def approve(request_id: int, request: Request):
        me = Acting(trail, request)
        done = held().approve(request_id, operator=me.name)
        me.append("renewal.approve", target=f"device:{done['device']}", after=done)
        return done

    @router.post("/api/fleet/renewals/{request_id}/refuse", responses=DECISION,
                 summary="Refuse a device's pending certificate request")
    def refuse(request_id: int, body: RefuseBody, request: Request):
        me = Acting(trail, request)
        done = held().refuse(request_id, body.reason, operator=me.name)
        me.append("renewal.refuse", target=f"device:{done['device']}", after=done)
        return done

    return router
