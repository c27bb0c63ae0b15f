"""Server-Sent Events for the board: a ``change`` whenever what it shows changes.

The store is polled (another process may be writing it); :class:`ChangeFeed` keeps the
latest fingerprint and wakes every waiting stream when it moves.
"""

import asyncio
import json
import logging
from contextlib import asynccontextmanager, suppress

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..board_view import fingerprint

log = logging.getLogger("gridlink.gateway.api")


class ChangeFeed:
    """The board's change fingerprint, polled every ``interval`` seconds while
    :meth:`running`; ``desk.sync()`` runs each round so that tasks expire on time."""

    def __init__(self, store, desk, interval=1.0):
        self.store = store
        self.desk = desk
        self.interval = interval
        self.version = None
        self.changed = asyncio.Event()  # replaced by a fresh one each time it is set

    @asynccontextmanager
    async def running(self):
        """Poll in a background task for the block's duration (the app's lifespan)."""
        watcher = asyncio.create_task(self._watch())
        try:
            yield
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self):
        problem = None
        while True:
            try:
                await asyncio.to_thread(self.desk.sync)
                version = await asyncio.to_thread(fingerprint, self.store)
                problem = None
            except Exception as exc:  # a locked or restarting database: try again next round
                if str(exc) != problem:  # say it once, not every round
                    problem = str(exc)
                    log.warning("intake board cannot read the store (retrying): %s", exc)
                version = self.version
            if version != self.version:
                self.version = version
                event, self.changed = self.changed, asyncio.Event()
                event.set()
            await asyncio.sleep(self.interval)


def build_router(feed):
    """``/api/events`` over a :class:`ChangeFeed`."""
    router = APIRouter(tags=["queue"])

    @router.get("/api/events", summary="Server-Sent Events: a `change` per update")
    async def events(request: Request):
        async def stream():
            seen = None
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                version = feed.version
                if version is not None and version != seen:
                    seen = version
                    yield f"event: change\ndata: {json.dumps(version)}\n\n"
                try:
                    await asyncio.wait_for(feed.changed.wait(), timeout=15)
                except TimeoutError:
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    return router

