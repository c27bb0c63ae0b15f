"""The 大屏 wall view's route: today's counts, open cases by stage and the late items."""

from fastapi import APIRouter


def build_router(wall):
    """``/api/wall`` over a ``wall.Wall``."""
    router = APIRouter(tags=["evaluation"])

    @router.get("/api/wall", summary="大屏: today's counts (Beijing day), open cases by "
                                     "stage, late cases and tasks")
    def summary():
        return wall.summary()

    return router
