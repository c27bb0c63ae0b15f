"""The dead letters' route: the messages the ingest refused, and why."""

from fastapi import APIRouter, Query

from .. import dead_letter_view
from .bodies import BAD, ISO_TIME


def build_router(store):
    """``/api/dead-letters``, paged newest first, over the store's ``dead_letters``."""
    router = APIRouter(tags=["fleet"])

    @router.get("/api/dead-letters", responses=BAD,
                summary="Rejected messages, newest first: why a device's reports are missing")
    def dead_letters(
        device: str | None = None,
        since: str | None = Query(None, pattern=ISO_TIME,
                                  description="received at or after (ISO 8601)"),
        before: int | None = Query(None, ge=1, le=2**63 - 1,
                                   description="rows older than this id: the last page's `next`"),
        limit: int = Query(50, ge=1, le=500),
    ):
        return dead_letter_view.page(store, device=device, since=since, before=before,
                                     limit=limit)

    return router
