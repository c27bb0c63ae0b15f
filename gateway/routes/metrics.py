"""``/metrics``: the gateway's Prometheus metrics, behind sign-in like every other read.

Prometheus scrapes it with a read-only API token (a 只读 user's ``gridlink users token``)
sent as ``Authorization: Bearer`` (``authorization: {credentials: …}`` in its scrape
configuration).
"""

from fastapi import APIRouter
from fastapi.responses import Response

TEXT = {200: {"description": "the Prometheus text exposition format",
              "content": {"text/plain": {"schema": {"type": "string"}}}}}


def build_router(metrics):
    """``/metrics`` over a ``gateway.metrics.Metrics`` (its ``render()``)."""
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", response_class=Response, responses=TEXT,
                summary="Prometheus metrics (a read-only token will do)")
    def scrape():
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    return router
