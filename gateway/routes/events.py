"""Server-Sent Events for the board: a ``change`` whenever what it shows changes.

The store is polled (another process may be writing it); :class:`ChangeFeed` keeps the
latest fingerprint and wakes every waiting stream when it moves.
"""

import asyncio
import json
import logging
import weakref
from contextlib import asynccontextmanager, suppress

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..auth.errors import LockedOut
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


MAX_STREAMS = 4  # per session or token: a board in a few tabs, not a flood of connections


def build_router(feed, max_streams=MAX_STREAMS):
    """``/api/events`` over a :class:`ChangeFeed`; at most ``max_streams`` open at once per
    session (or per token's owner): one more is 429."""
    router = APIRouter(tags=["queue"])
    open_streams = {}

    @router.get("/api/events", summary="Server-Sent Events: a `change` per update",
                response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}}},
                           429: {"description": f"{max_streams} streams open already"}})
    async def events(request: Request):
        principal = request.state.principal
        key = principal.session or f"{principal.via}:{principal.name}"
        live = open_streams.setdefault(key, weakref.WeakSet())  # a stream leaves when freed
        if len(live) >= max_streams:
            raise LockedOut(f"{max_streams} event streams are open for this session already: "
                            "close a board tab", retry_after=5)

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

        body = stream()
        live.add(body)
        return StreamingResponse(body, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    return router

