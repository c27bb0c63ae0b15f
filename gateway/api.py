"""The supervision centre's HTTP API and intake board (FastAPI): the app's assembly.

``create_app(store, ...)`` builds the app the gateway serves with uvicorn from one router
per area (``gridlink.gateway.routes``): the intake queue (list, claim, accept 立案,
reject 不予立案), fleet presence, dead letters, verification tasks with grid
assignments, the grid map as GeoJSON, report photos, a Server-Sent Events stream of
changes, the Open311 GeoReport v2 read endpoints, the update repository the devices
fetch releases from and the staged rollouts that offer them, and the intake board page.
Everything is local: the board loads no CDN script and no map tile.

Every route is behind the sign-in (``gridlink.gateway.auth``): an app-wide dependency
(``auth.web.Guard``) checks each request against the one policy table
(``auth.policy.POLICY``); sessions, the audit trail and the sign-in routes live in the
same store.
"""

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from . import open311
from .auth.accounts import Accounts
from .auth.audit import AuditTrail
from .auth.errors import AccountError, Forbidden, LockedOut, Unauthenticated
from .auth.migrations import MIGRATIONS as AUTH_MIGRATIONS
from .auth.oidc import MIGRATIONS as OIDC_MIGRATIONS
from .auth.oidc import OidcClient, OidcLinks, OidcRefused
from .auth.web import CSRF_HEADER, WWW_AUTHENTICATE, Guard, RateLimit, TrustedProxies, document
from .cases.book import MIGRATIONS as CASE_MIGRATIONS
from .cases.book import CaseBook
from .cases.duplicates import MIGRATIONS as DUPLICATE_MIGRATIONS
from .cases.duplicates import DuplicateRule, Duplicates
from .cases.outbox import MIGRATIONS as BRIDGE_MIGRATIONS
from .cases.outbox import Outbox
from .cases.sources import MIGRATIONS as SOURCE_MIGRATIONS
from .cases.sources import OperatorReports
from .coverage import Coverage
from .fleet_config import MIGRATIONS as FLEETCFG_MIGRATIONS
from .fleet_config import FleetConfig
from .gridindex import RasterLocator
from .media_ingest import MIGRATIONS as MEDIA_MIGRATIONS
from .metrics import Metrics
from .queue import MIGRATIONS as QUEUE_MIGRATIONS
from .queue import Conflict, IntakeQueue, Invalid, NotFound
from .rates import CASE_INDEX_MIGRATIONS as RATE_CASE_INDEX_MIGRATIONS
from .rates import MIGRATIONS as RATE_MIGRATIONS
from .rates import Rates
from .renewal import MIGRATIONS as RENEW_MIGRATIONS
from .rollouts import MIGRATIONS as OTA_MIGRATIONS
from .rollouts import Rollouts
from .roster import MIGRATIONS as ROSTER_MIGRATIONS
from .roster import Roster
from .routes import (
    audit,
    bridge,
    cases,
    dead_letters,
    evaluation,
    events,
    fleet,
    fleet_config,
    grid,
    intake,
    media,
    metrics,
    photos,
    rollouts,
    session,
    tasks,
    updates,
    wall,
)
from .routes import oidc as oidc_routes
from .routes import renewals as renewal_routes
from .tasks import MIGRATIONS as TASK_MIGRATIONS
from .tasks import TaskDesk
from .update_repo import UpdateRepository
from .wall import Wall
from .webguard import DEFAULT_BODY_LIMIT, BodyLimit, SecurityHeaders

BOARD_DIR = Path(__file__).with_name("board")
MIGRATIONS = (
    *QUEUE_MIGRATIONS,
    *TASK_MIGRATIONS,
    *AUTH_MIGRATIONS,
    *OIDC_MIGRATIONS,
    *ROSTER_MIGRATIONS,
    *RATE_MIGRATIONS,
    *FLEETCFG_MIGRATIONS,
    *CASE_MIGRATIONS,
    *SOURCE_MIGRATIONS,
    *MEDIA_MIGRATIONS,
    *OTA_MIGRATIONS,
    *BRIDGE_MIGRATIONS,
    *DUPLICATE_MIGRATIONS,
    *RATE_CASE_INDEX_MIGRATIONS,
    *RENEW_MIGRATIONS,
)


def create_app(store, grid_map=None, codebooks=None, publisher=None, photos_dir=None,
               media_store=None, *,
               clock=None, district="410106", poll_interval=1.0, migrate=True,
               accounts=None, trusted_proxies=(), cors_origins=(),
               body_limit=DEFAULT_BODY_LIMIT, sign_in_limit=10, gauges=None, oidc=None,
               config_key=None, update_repo=None, identity=None, city_platform=None,
               duplicates=None, base_map=None, book_files=None, map_files=None,
               renewals=None):
    """The gateway's HTTP app over ``store`` (see ``gridlink.gateway.store.open_store``).

    ``grid_map`` draws the board's map and locates task points; ``codebooks`` names the
    class codes (default: the project's code books); ``publisher(topic, payload, qos=1)``
    sends tasks and update offers to devices; ``photos_dir`` holds the reassembled photos,
    ``media_store`` (a ``media.MediaStore``) the clips and memos.  The app's
    ``state.on_report`` and ``state.on_commit`` are the after-commit hooks to add to the
    runtime's ``on_report`` and ``on_commit`` (tasks closed, rollouts moved on).

    ``accounts`` (default: ``Accounts(store)``) signs people in; forwarded headers are
    believed only from ``trusted_proxies``; CORS is closed unless ``cors_origins`` names
    origins; request bodies over ``body_limit`` bytes get 413; a client address may try
    ``sign_in_limit`` sign-ins a minute.  ``gauges`` (a ``gateway.metrics.Metrics``; default
    an empty one) is served on ``/metrics`` to READ callers.  ``oidc`` (an
    ``auth.oidc.OidcSettings``) lets people sign in through the city's identity provider.
    ``config_key`` (an Ed25519 private key) signs the devices' configuration documents
    (desired state, ``fleet_config``); ``book_files`` (an ``update_chunks.CodeBookFiles``)
    names the code book file a device fetches (its sha256 goes in the documents);
    ``map_files`` (an ``update_chunks.MapFiles``) the maps a change may name.
    ``update_repo`` (a folder made by ``gridlink fleet release build``) is served read-only
    under ``/ota/`` to the devices.  ``identity(device)`` (``Revocations.identity``) adds
    each device's certificate state (revoked, expiry) to the fleet view.
    ``city_platform`` (a ``cases.reach`` setting) is where every 派遣 is copied to; the
    app's ``state.bridge`` is the outbox the gateway's sender (``cases.sender``) empties.
    ``duplicates`` (a ``cases.duplicates.DuplicateRule``; default 50 m, 24 h) says which
    reports are likely the same problem.  ``base_map`` (a ``basemap.BaseMap``) is drawn
    under the board's and the wall's map.  ``renewals`` (a ``renewal.Renewals``) lets
    fleet technicians approve or refuse certificate requests.
    """
    if migrate:
        store.migrate(extra=MIGRATIONS)
    accounts = accounts or Accounts(store)
    trail = AuditTrail(store)
    proxies = TrustedProxies(trusted_proxies)
    names = open311.ClassNames.load(codebooks)
    outbox = Outbox(store, clock=clock, city=city_platform, names=names.names)
    book = CaseBook(store, clock=clock, trail=trail, outbox=outbox)
    queue = IntakeQueue(store, clock=clock, codebooks=names, on_accept=book.register)
    dups = Duplicates(queue, duplicates or DuplicateRule())
    queue.annotate = dups.annotate
    roster = Roster.over_map(store, grid_map, clock=clock)
    desk = TaskDesk(store, queue, publisher=publisher, locate=_locator(grid_map), clock=clock,
                    district=district, cases=book, roster=roster)
    sources = OperatorReports(store, names, locate=_locator(grid_map), clock=clock,
                              district=district)
    feed = events.ChangeFeed(store, desk, poll_interval)
    coverage = Coverage(store, roster, _cell_locator(grid_map))
    fleet_cfg = FleetConfig(store, key=config_key, publisher=publisher, clock=clock,
                            check_code=_class_check(names), book_files=book_files,
                            map_files=map_files)
    repository = None if update_repo is None else UpdateRepository(update_repo)
    director = Rollouts(store, publisher=publisher, repository=repository, clock=clock)

    app = FastAPI(
        title="gridlink intake API",
        version="1",
        summary="Supervision centre intake queue, fleet, verification tasks and Open311 reads.",
        docs_url=None, redoc_url=None,  # both load scripts from a CDN; the board is local
        lifespan=lambda app: feed.running(),
        dependencies=[Depends(Guard(accounts, proxies))],
    )
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_credentials=True, allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", CSRF_HEADER])
    app.add_middleware(BodyLimit, max_bytes=body_limit,
                       wider=[(bridge.PHOTO_PATH, bridge.PHOTO_MAX_BYTES)])
    app.add_middleware(SecurityHeaders)
    app.state.queue = queue
    app.state.tasks = desk
    app.state.fleet_config = fleet_cfg
    app.state.cases = book
    app.state.bridge = outbox
    app.state.accounts = accounts
    app.state.audit = trail
    app.state.duplicates = dups

    app.state.on_report = desk.on_report  # after each commit: task results
    app.state.roster = roster
    app.state.rollouts = director
    app.state.on_commit = director.on_commit
    _add_error_handlers(app)

    limiter = RateLimit(sign_in_limit, 60.0)
    app.include_router(session.build_router(accounts, trail, limiter, proxies))
    app.include_router(oidc_routes.build_router(OidcClient(oidc) if oidc else None,
                                                OidcLinks(store, accounts, trail), accounts, trail,
                                                limiter, proxies))
    app.include_router(intake.build_router(queue, desk, trail, callers=sources.caller,
                                           duplicates=dups))
    app.include_router(media.build_router(media_store))
    app.include_router(audit.build_router(trail, queue, desk))
    app.include_router(fleet.build_router(store, fleet_cfg, identity))
    app.include_router(fleet_config.build_router(fleet_cfg, trail))
    app.include_router(dead_letters.build_router(store))
    app.include_router(tasks.build_router(desk, trail))
    app.include_router(cases.build_router(book, desk, trail, sources, queue,
                                          duplicates=dups))
    app.include_router(bridge.build_router(
        outbox, book, trail, store, Path(photos_dir) if photos_dir is not None else None))
    app.include_router(grid.build_router(grid_map, base_map))
    app.include_router(photos.build_router(
        store, Path(photos_dir) if photos_dir is not None else None))
    app.include_router(events.build_router(feed))
    app.include_router(evaluation.build_router(roster, Rates(store, clock=clock), coverage, trail))
    app.include_router(wall.build_router(Wall(store, clock=clock)))
    app.include_router(open311.build_router(queue, names))
    app.include_router(metrics.build_router(gauges if gauges is not None else Metrics()))
    app.include_router(updates.build_router(repository))
    app.include_router(rollouts.build_router(director, trail))
    app.include_router(renewal_routes.build_router(renewals, trail))

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse("/board/")

    app.mount("/board", StaticFiles(directory=BOARD_DIR, html=True), name="board")
    plain_openapi = app.openapi

    def openapi():
        if app.openapi_schema is None:
            app.openapi_schema = document(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi
    return app


def _class_check(names):
    """``check(kind, code)``: None for a class of the default code book, else why not."""

    def check(kind, code):
        if names.names(kind, code)[1] is not None:
            return None
        return f"{kind} {code} is not a class of {names.default_standard}"

    return check


def _add_error_handlers(app):
    """The queue's and the task desk's errors as 404, 400 and 409 (409 names what is in
    the way), sign-in errors as 401 (with WWW-Authenticate), 403 and 429 (with
    Retry-After); under ``/open311/`` in the GeoReport v2 error format."""

    def error(request, status, body):
        if request.url.path.startswith("/open311/"):  # GeoReport v2 error format
            body = [{"code": status, "description": body["detail"]}]
        return JSONResponse(body, status_code=status)

    @app.exception_handler(NotFound)
    async def _not_found(request, exc):
        return error(request, 404, {"detail": str(exc)})

    @app.exception_handler(Invalid)
    async def _invalid(request, exc):
        return error(request, 400, {"detail": str(exc)})

    @app.exception_handler(Conflict)
    async def _conflict(request, exc):
        return error(request, 409, {"detail": str(exc), **exc.details})

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(request, exc):
        response = error(request, 401, {"detail": str(exc)})
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        return response

    @app.exception_handler(Forbidden)
    async def _forbidden(request, exc):
        return error(request, 403, {"detail": str(exc)})

    @app.exception_handler(LockedOut)
    async def _locked_out(request, exc):
        response = error(request, 429, {"detail": str(exc)})
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(OidcRefused)
    async def _oidc_refused(request, exc):
        return error(request, exc.status, {"detail": str(exc)})

    @app.exception_handler(AccountError)
    async def _account(request, exc):
        return error(request, 400, {"detail": str(exc)})


def _locator(grid_map):
    """(lat, lon) → grid code or None, over a core ``GridMap`` (whose ``locate`` is lon, lat)."""
    if grid_map is None:
        return None

    def locate(lat, lon):
        return grid_map.locate(lon, lat)

    return locate


def _cell_locator(grid_map):
    """(lon, lat) → grid code or None for the track's points: a raster over the map, built
    on first use (coverage reads thousands of points; most apps never ask)."""
    built = []

    def locate(lon, lat):
        if grid_map is None:
            return None
        if not built:
            built.append(RasterLocator(grid_map).locate if hasattr(grid_map, "rings")
                         else grid_map.locate)
        return built[0](lon, lat)

    return locate
