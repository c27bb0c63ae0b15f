"""The supervision centre's HTTP API and intake board (FastAPI).

``create_app(store, ...)`` builds the app the gateway serves with uvicorn: the intake queue
(list, claim, accept 立案, reject 不予立案), fleet presence, verification tasks with grid
assignments, the grid map as GeoJSON, report photos, a Server-Sent Events stream of
changes, the Open311 GeoReport v2 read endpoints and the intake board page itself.
Everything is local: the board loads no CDN script and no map tile.
"""

import asyncio
import json
import logging
import re
import threading
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from . import open311
from .queue import (
    DEFAULT_LEASE_S,
    MAX_LEASE_S,
    Conflict,
    IntakeQueue,
    Invalid,
    NotFound,
    decode_json,
    one,
    parse_time,
    rows,
    run,
    utc_iso,
)
from .queue import MIGRATIONS as QUEUE_MIGRATIONS
from .tasks import MIGRATIONS as TASK_MIGRATIONS
from .tasks import ONLINE_STATES, TaskDesk

log = logging.getLogger("gridlink.gateway.api")
BOARD_DIR = Path(__file__).with_name("board")
MIGRATIONS = QUEUE_MIGRATIONS + TASK_MIGRATIONS
_SHA256 = re.compile(r"[0-9a-f]{64}")
_IMAGE_TYPES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
                (b"GIF8", "image/gif"), (b"RIFF", "image/webp"))


# ---------------------------------------------------------------- request bodies


class OperatorBody(BaseModel):
    operator: str = Field(..., description="who acts (受理员 login)", examples=["slw-01"])


class ClaimBody(OperatorBody):
    lease_s: int = Field(DEFAULT_LEASE_S, ge=1, le=MAX_LEASE_S,
                         description="lease length; the claim lapses after it unless renewed")


class AcceptBody(OperatorBody):
    case_no: str | None = Field(None, max_length=40,
                                description="case number (案卷号); the next one when omitted")


class RejectBody(OperatorBody):
    reason: str = Field(..., max_length=500, description="why not accepted (不予立案原因)")


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


class ErrorBody(BaseModel):
    detail: str = Field(..., description="what is wrong, in one sentence")


class ConflictBody(ErrorBody):
    state: str | None = Field(None, description="the report's intake state")
    holder: str | None = Field(None, description="who holds the claim")
    lease_until: str | None = Field(None, description="when that claim lapses (ISO 8601 UTC)")
    case_no: str | None = None
    reason: str | None = None
    decided_by: str | None = None
    report_id: str | None = Field(None, description="the report a clashing case number has")


NOT_FOUND = {404: {"model": ErrorBody, "description": "no such report"}}
BAD = {400: {"model": ErrorBody, "description": "a malformed request, named"}}
CONFLICT = {409: {"model": ConflictBody,
                  "description": "held by another operator, or decided otherwise"}}
DECISION = {**NOT_FOUND, **BAD, **CONFLICT}


# ---------------------------------------------------------------- the app


def create_app(store, grid_map=None, codebooks=None, publisher=None, photos_dir=None, *,
               clock=None, district="410106", poll_interval=1.0, migrate=True):
    """The gateway's HTTP app over ``store`` (see ``gridlink.gateway.store.open_store``).

    ``grid_map`` draws the board's map and locates task points; ``codebooks`` names the
    class codes (default: the project's code books); ``publisher(topic, payload, qos=1)``
    sends tasks to devices; ``photos_dir`` holds the reassembled photos.  The app's
    ``state.on_report`` is the after-commit hook to add to the runtime's ``on_report``.
    """
    if migrate:
        store.migrate(extra=MIGRATIONS)
    names = open311.ClassNames.load(codebooks)
    queue = IntakeQueue(store, clock=clock, codebooks=names)
    locate = _locator(grid_map)
    desk = TaskDesk(store, queue, publisher=publisher, locate=locate, clock=clock,
                    district=district)
    photos_root = Path(photos_dir) if photos_dir is not None else None
    grid_doc, grid_lock = [], threading.Lock()

    @asynccontextmanager
    async def lifespan(app):
        watcher = asyncio.create_task(_watch(app, store, desk, poll_interval))
        try:
            yield
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(
        title="gridlink intake API",
        version="1",
        summary="Supervision centre intake queue, fleet, verification tasks and Open311 reads.",
        docs_url=None, redoc_url=None,  # both load scripts from a CDN; the board is local
        lifespan=lifespan,
    )
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.state.queue = queue
    app.state.tasks = desk
    app.state.on_report = desk.on_report
    app.state.version = None
    app.state.changed = asyncio.Event()

    def _error(request, status, body):
        if request.url.path.startswith("/open311/"):  # GeoReport v2 error format
            body = [{"code": status, "description": body["detail"]}]
        return JSONResponse(body, status_code=status)

    @app.exception_handler(NotFound)
    async def _not_found(request, exc):
        return _error(request, 404, {"detail": str(exc)})

    @app.exception_handler(Invalid)
    async def _invalid(request, exc):
        return _error(request, 400, {"detail": str(exc)})

    @app.exception_handler(Conflict)
    async def _conflict(request, exc):
        return _error(request, 409, {"detail": str(exc), **exc.details})

    # ------------------------------------------------------------ intake queue

    @app.get("/api/reports", tags=["queue"], responses=BAD,
             summary="List reports (default: pending)")
    def list_reports(
        status: str = Query("pending", description="pending, accepted, rejected, attached, all"),
        grid: str | None = Query(None, description="grid code or prefix"),
        street: str | None = Query(None, description="9-digit street (街道) code"),
        code: str | None = Query(None, description="class code or prefix (major class)"),
        kind: str | None = Query(None, pattern="^(event|component)$"),
        device: str | None = None,
        source: str | None = None,
        since: str | None = Query(None, description="captured at or after (ISO 8601)"),
        until: str | None = Query(None, description="captured before (ISO 8601)"),
        flag: Annotated[list[str] | None,
                        Query(description="grid_mismatch, no_fix, …; all must hold")] = None,
        held: bool | None = Query(None, description="only claimed (true) / unclaimed (false)"),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0),
        order: str = Query("desc", pattern="^(asc|desc)$"),
    ):
        page = queue.list(status=status, grid=grid, street=street, code=code, kind=kind,
                          device=device, source=source, since=since, until=until,
                          flags=flag or (), held=held, limit=limit, offset=offset, order=order)
        return JSONResponse(page)  # plain JSON types already: skip the generic encoder

    @app.get("/api/reports/{report_id}", tags=["queue"], responses=NOT_FOUND,
             summary="One report with its state")
    def get_report(report_id: str):
        report = queue.get(report_id)
        report["tasks"] = desk.list(report_id=report_id)
        return report

    @app.post("/api/reports/{report_id}/claim", tags=["queue"], responses=DECISION,
              summary="Claim a report with a lease (409 names the holder)")
    def claim(report_id: str, body: ClaimBody):
        return queue.claim(report_id, body.operator, lease_s=body.lease_s)

    @app.post("/api/reports/{report_id}/release", tags=["queue"], responses={**NOT_FOUND, **BAD},
              summary="Give a claim back")
    def release(report_id: str, body: OperatorBody):
        return queue.release(report_id, body.operator)

    @app.post("/api/reports/{report_id}/accept", tags=["queue"], responses=DECISION,
              summary="Accept (立案)")
    def accept(report_id: str, body: AcceptBody):
        return queue.accept(report_id, body.operator, case_no=body.case_no)

    @app.post("/api/reports/{report_id}/reject", tags=["queue"], responses=DECISION,
              summary="Reject (不予立案)")
    def reject(report_id: str, body: RejectBody):
        return queue.reject(report_id, body.operator, reason=body.reason)

    @app.get("/api/summary", tags=["queue"], summary="Counts for the board and the demo")
    def summary():
        return _summary(store, queue, desk)

    # ------------------------------------------------------------ fleet and tasks

    @app.get("/api/devices", tags=["fleet"], summary="Devices: presence, last fix, outbox")
    def devices():
        return _devices(store)

    @app.get("/api/dead-letters", tags=["fleet"], responses=BAD,
             summary="Rejected messages, newest first: why a device's reports are missing")
    def dead_letters(
        device: str | None = None,
        since: str | None = Query(None, description="received at or after (ISO 8601)"),
        before: int | None = Query(None, ge=1,
                                   description="rows older than this id: the last page's `next`"),
        limit: int = Query(50, ge=1, le=500),
    ):
        return _dead_letters(store, device=device, since=since, before=before, limit=limit)

    @app.get("/api/assignments", tags=["tasks"], summary="Grid → patrol device assignments")
    def assignments():
        return desk.assignments()

    @app.put("/api/assignments/{grid}", tags=["tasks"], summary="Assign a grid to a device")
    def assign(grid: str, body: AssignBody):
        return desk.assign(grid, body.device)

    @app.delete("/api/assignments/{grid}", tags=["tasks"], status_code=204,
                summary="Remove a grid's assignment")
    def unassign(grid: str):
        desk.unassign(grid)

    @app.post("/api/tasks", tags=["tasks"], status_code=201, responses={**NOT_FOUND, **BAD},
              summary="Create a 核实/核查 task, route it and send it")
    def create_task(body: TaskBody):
        return desk.create(**body.model_dump())

    @app.get("/api/tasks", tags=["tasks"], summary="List tasks")
    def list_tasks(state: str | None = Query(None, pattern="^(open|sent|done|expired)$"),
                   report_id: str | None = None, device: str | None = None,
                   limit: int = Query(100, ge=1, le=500)):
        desk.sync()
        return desk.list(state=state, report_id=report_id, device=device, limit=limit)

    @app.get("/api/tasks/{task_id}", tags=["tasks"], summary="One task")
    def get_task(task_id: str):
        desk.sync()
        return desk.get(task_id)

    @app.post("/api/tasks/{task_id}/dispatch", tags=["tasks"],
              summary="Send an open task again (re-routing it when it has no device)")
    def dispatch(task_id: str):
        return desk.dispatch(task_id)

    # ------------------------------------------------------------ map, photos, events

    @app.get("/api/grid", tags=["map"], summary="The grid map's cells as GeoJSON",
             response_class=Response, responses={200: {"content": {"application/geo+json": {}}}})
    def grid():
        with grid_lock:  # built once, on first use: a district map is thousands of cells
            if not grid_doc:
                grid_doc.append(json.dumps(_grid_geojson(grid_map), ensure_ascii=False,
                                           separators=(",", ":")).encode())
        return Response(grid_doc[0], media_type="application/geo+json",
                        headers={"Cache-Control": "max-age=300"})

    @app.get("/api/photos/{sha256}", tags=["map"], name="photo", summary="A report photo")
    def photo(sha256: str):
        path = _photo_path(store, photos_root, sha256)
        with path.open("rb") as f:
            head = f.read(12)
        media = next((t for magic, t in _IMAGE_TYPES if head.startswith(magic)),
                     "application/octet-stream")
        return FileResponse(path, media_type=media,
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @app.get("/api/events", tags=["queue"], summary="Server-Sent Events: a `change` per update")
    async def events(request: Request):
        async def stream():
            seen = None
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                version = app.state.version
                if version is not None and version != seen:
                    seen = version
                    yield f"event: change\ndata: {json.dumps(version)}\n\n"
                event = app.state.changed
                try:
                    await asyncio.wait_for(event.wait(), timeout=15)
                except TimeoutError:
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------ Open311 and the board

    app.include_router(open311.build_router(queue, names))

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse("/board/")

    app.mount("/board", StaticFiles(directory=BOARD_DIR, html=True), name="board")
    return app


# ---------------------------------------------------------------- helpers


async def _watch(app, store, desk, interval):
    """Poll the store for changes (another process may be writing) and wake SSE clients."""
    problem = None
    while True:
        try:
            await asyncio.to_thread(desk.sync)
            version = await asyncio.to_thread(_version, store)
            problem = None
        except Exception as exc:  # a locked or restarting database: try again next round
            if str(exc) != problem:  # say it once, not every round
                problem = str(exc)
                log.warning("intake board cannot read the store (retrying): %s", exc)
            version = app.state.version
        if version != app.state.version:
            app.state.version = version
            event, app.state.changed = app.state.changed, asyncio.Event()
            event.set()
        await asyncio.sleep(interval)


def _version(store):
    """A fingerprint of everything the board shows; it changes whenever any of it does."""
    with store.connect() as conn:
        row = one(run(
            store, conn,
            "SELECT (SELECT COUNT(*) FROM reports) AS reports,"
            " (SELECT MAX(committed_at) FROM reports) AS committed,"
            " (SELECT COUNT(*) FROM intake) AS intake,"
            " (SELECT MAX(updated_at) FROM intake) AS intake_at,"
            " (SELECT COUNT(*) FROM tasks) AS tasks,"
            " (SELECT MAX(COALESCE(done_at, sent_at, created_at)) FROM tasks) AS tasks_at,"
            " (SELECT COUNT(*) FROM devices) AS devices,"
            " (SELECT MAX(last_seen) FROM devices) AS devices_at"))
    return row


def _summary(store, queue, desk):
    counts = queue.counts()
    with store.connect() as conn:
        dev = rows(run(store, conn, "SELECT state, COUNT(*) AS n FROM devices GROUP BY state"))
        tasks = rows(run(store, conn, "SELECT state, COUNT(*) AS n FROM tasks GROUP BY state"))
        dead = one(run(store, conn, "SELECT COUNT(*) AS n FROM dead_letters"))["n"]
    by_state = {r["state"] or "unknown": r["n"] for r in dev}
    return {
        "reports": counts,
        "devices": {"total": sum(by_state.values()),
                    "online": sum(by_state.get(s, 0) for s in ONLINE_STATES),
                    "by_state": by_state},
        "tasks": {r["state"]: r["n"] for r in tasks},
        "dead_letters": dead,
    }


def _devices(store):
    with store.connect() as conn:
        found = rows(run(store, conn, "SELECT * FROM devices ORDER BY device"))
        # each device's refused messages (kept by the ingest): how many, the newest one
        refused = {r["device"]: r for r in rows(run(store, conn, (
            "SELECT t.device, t.refused AS n, t.id_reused, d.received_at, d.reason"
            " FROM dead_letter_devices t JOIN dead_letters d ON d.id = t.newest_id")))}
    out = []
    for d in found:
        status = decode_json(d.get("status"), {}) or {}
        dead = refused.get(d["device"])
        out.append({
            "device": d["device"], "district": d.get("district"), "state": d.get("state"),
            "online": d.get("state") in ONLINE_STATES, "last_seen": d.get("last_seen"),
            "last_fix": (None if d.get("last_lat") is None else
                         {"lat": d["last_lat"], "lon": d["last_lon"], "at": d.get("last_fix_at")}),
            "outbox_reports": d.get("outbox_reports"),
            "outbox_track": (status.get("outbox") or {}).get("track"),
            "firmware": d.get("firmware"), "codebook": d.get("codebook"),
            "profile": d.get("profile"),
            "disk_free": status.get("disk_free"), "cpu_temp": status.get("cpu_temp"),
            "uptime": status.get("uptime"),
            "refused": dead["n"] if dead else 0,
            "id_reused": dead["id_reused"] if dead else 0,
            "last_refused": ({"at": dead["received_at"], "reason": dead["reason"]} if dead
                             else None),
        })
    return out


def _dead_letters(store, *, device=None, since=None, before=None, limit=50):
    """A page of dead letters, newest first, and ``next``: the ``before`` of the page
    after it (None on the last page)."""
    given = [(cond, value) for cond, value in (
        ("device = ?", device),
        ("received_at >= ?", utc_iso(parse_time(since, "since")) if since else None),
        ("id < ?", before)) if value not in (None, "")]
    sql = ("SELECT id, received_at, topic, device, reason, payload, payload_encoding "
           "FROM dead_letters"
           + (" WHERE " + " AND ".join(cond for cond, _ in given) if given else "")
           + " ORDER BY id DESC LIMIT ?")
    params = [value for _, value in given]
    with store.connect(readonly=True) as conn:
        found = rows(run(store, conn, sql, [*params, limit + 1]))
    items = found[:limit]
    return {"items": items, "next": items[-1]["id"] if len(found) > limit else None}


def _photo_path(store, root, sha256):
    if not _SHA256.fullmatch(sha256):
        raise Invalid("sha256: 64 lowercase hex digits")
    with store.connect() as conn:
        found = one(run(store, conn, "SELECT path, complete FROM photos WHERE sha256 = ?",
                        [sha256]))
    candidates = []
    if found and found["complete"] and found["path"]:
        path = Path(found["path"])
        candidates.append(path if path.is_absolute() or root is None else root / path)
    if root is not None:
        candidates += [root / sha256[:2] / f"{sha256}{ext}" for ext in (".jpg", ".bin", "")]
    for path in candidates:
        if path.is_file():
            return path
    raise NotFound(f"no complete photo {sha256}")


def _locator(grid_map):
    """(lat, lon) → grid code or None, over a core ``GridMap`` (whose ``locate`` is lon, lat)."""
    if grid_map is None:
        return None

    def locate(lat, lon):
        return grid_map.locate(lon, lat)

    return locate


def _grid_geojson(grid_map):
    """The map's cells as a GeoJSON FeatureCollection (no features without a map)."""
    features = []
    if grid_map is not None:
        for cell in range(grid_map.n_cells):
            code = grid_map.code(cell)
            features.append({
                "type": "Feature", "id": code,
                "properties": {"code": code, "street": code[:9], "community": code[:12]},
                "geometry": _cell_geometry(grid_map.rings(cell)),
            })
    return {"type": "FeatureCollection", "features": features}


def _inside(point, ring):
    x, y = point
    odd = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            odd = not odd
    return odd


def _cell_geometry(rings):
    """Polygon or MultiPolygon from a cell's rings (1e-7 degree): holes sit in an outer ring.

    The map stores rings without saying which are holes; a ring inside an odd number of
    the cell's other rings is a hole of the innermost outer ring containing it.
    """
    depth = [sum(_inside(r[0], o) for j, o in enumerate(rings) if j != i)
             for i, r in enumerate(rings)]
    outers = [i for i, d in enumerate(depth) if d % 2 == 0]
    polygons = {i: [rings[i]] for i in outers}
    for i, d in enumerate(depth):
        if d % 2:
            hosts = [o for o in outers if depth[o] == d - 1 and _inside(rings[i][0], rings[o])]
            if hosts:
                polygons[hosts[0]].append(rings[i])
    coords = [[[[round(x / 1e7, 7), round(y / 1e7, 7)] for x, y in (*ring, ring[0])]
               for ring in poly]
              for poly in polygons.values()]
    if len(coords) == 1:
        return {"type": "Polygon", "coordinates": coords[0]}
    return {"type": "MultiPolygon", "coordinates": coords}


class BackgroundServer:
    """uvicorn serving an app from a background thread, on a port bound at construction.

    ``port=0`` picks a free one; ``url`` is known before ``start()``.  Used by the demo
    (the board next to an in-process gateway) and by tests that drive a real browser.
    """

    def __init__(self, app, host="127.0.0.1", port=0, log_level="warning"):
        import socket

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level,
                                                    timeout_graceful_shutdown=2))
        self.thread = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self, timeout=10.0):
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="gridlink-http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self):
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
