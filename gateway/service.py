"""Assemble one gateway worker: store, judge, runtime, and the HTTP side.

The HTTP side is the intake board's app (``gridlink.gateway.api.create_app``), whose
``/metrics`` needs a READ token, when that module is installed; otherwise only an open
``/metrics``.
"""

import logging
import threading
from pathlib import Path

from gridlink.firmware.codebooks import load_books
from gridlink.firmware.core.errors import CoreError
from gridlink.firmware.core.messages import ACK_IDS_MAX
from gridlink.firmware.maps import open_map

from .errors import ConfigError
from .httpserver import BackgroundServer
from .jetstream import is_nats_url
from .media import open_media_store
from .media_ingest import MIGRATIONS as MEDIA_MIGRATIONS
from .metrics import Metrics
from .photos import PhotoDir
from .renewal import MIGRATIONS as RENEW_MIGRATIONS
from .runtime import GatewayRuntime
from .store import open_store
from .validate import Validator

log = logging.getLogger("gridlink.gateway")


def default_photos_dir(db_url):
    if db_url.startswith("sqlite:///"):
        return Path(db_url[len("sqlite:///"):]).resolve().parent / "photos"
    return Path("photos").resolve()


def served_districts(districts, grid_map):
    """The districts a gateway takes reports from, sorted: those given (``--district``),
    else those of its grid map's cells, else the default district (``tasks.DISTRICT``).
    Every other district's messages are dead-lettered."""
    if districts:
        chosen = set()
        for d in districts:
            d = str(d).strip()
            if len(d) != 6 or not (d.isascii() and d.isdigit()):
                raise ConfigError(f"--district {d!r}: a 6-digit GB/T 2260 district code")
            chosen.add(d)
        return sorted(chosen)
    if grid_map is not None and grid_map.n_cells:
        return sorted({grid_map.code(i)[:6] for i in range(grid_map.n_cells)})
    from .tasks import DISTRICT

    return [DISTRICT]


def parse_hostport(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--http {text!r}: use HOST:PORT, e.g. 127.0.0.1:8080")
    return host or "127.0.0.1", int(port)


def check_identity(tls, client_id):
    """The shipped broker names every client after its certificate's CN
    (``use_username_as_clientid``): a worker whose certificate names another client would
    take that client's session, and two workers sharing one would close each other's
    connections.  So a worker's certificate must name the worker."""
    cn = tls.common_name() if tls is not None else None
    if cn is not None and cn != client_id:
        raise ConfigError(f"TLS certificate {tls.cert} is for {cn!r}, but this worker is "
                          f"{client_id!r}: the broker names a client after its certificate, "
                          f"so each worker needs its own (CN {client_id}); --tls-cert and "
                          "--tls-key may contain {worker} for the worker's index")


class WebOptions:
    """The HTTP side's settings: a TLS certificate and key (PEM; HTTPS and HSTS when set),
    the origins CORS is opened to (none: closed), the reverse proxies whose forwarded
    headers are believed, the city's identity provider (``oidc``: its TOML file), and the
    update repository served to the devices (``update_repo``: a folder made by ``gridlink
    fleet release build``; none: not served), the city platform every 派遣 is copied
    to (``city_platform``: ``ADAPTER=URL``, ``cases.reach.parse_target``), and the base map
    under the board's map (``base_map``: ``basemap.BaseMap``'s arguments as a dict; none:
    no base map)."""

    def __init__(self, cert=None, key=None, cors_origins=(), trusted_proxies=(), *, oidc=None,
                 update_repo=None, city_platform=None, duplicate_radius_m=None,
                 duplicate_window_h=None, base_map=None):
        if bool(cert) != bool(key):
            raise ConfigError("--http-cert and --http-key go together")
        for path in (cert, key):
            if path and not Path(path).is_file():
                raise ConfigError(f"HTTPS: no file {path}")
        self.cert, self.key = cert, key
        self.cors_origins = tuple(cors_origins)
        try:
            from .auth.web import TrustedProxies

            TrustedProxies(trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"--trusted-proxy: {exc}") from None
        self.trusted_proxies = tuple(trusted_proxies)
        self.oidc = None
        if oidc:
            from .auth.oidc import OidcSettings

            self.oidc = OidcSettings.load(oidc)
        if update_repo is not None:
            from .update_repo import UpdateRepository

            UpdateRepository(update_repo)           # says now when it is not one
        self.update_repo = update_repo
        self.city_platform = None
        if city_platform:
            from .cases.reach import parse_target
            from .queue import Invalid

            try:
                self.city_platform = parse_target(city_platform)
            except Invalid as exc:
                raise ConfigError(f"--city-platform: {exc}") from None
        from .cases.duplicates import DEFAULT_RADIUS_M, DEFAULT_WINDOW_H, DuplicateRule
        from .queue import Invalid

        try:  # likely duplicates: same class within this distance and time
            self.duplicates = DuplicateRule(
                DEFAULT_RADIUS_M if duplicate_radius_m is None else duplicate_radius_m,
                DEFAULT_WINDOW_H if duplicate_window_h is None else duplicate_window_h)
        except Invalid as exc:
            raise ConfigError(f"--duplicate-radius / --duplicate-hours: {exc}") from None
        self.base_map = None
        if base_map is not None:
            from .basemap import BaseMap, BaseMapError

            try:
                self.base_map = BaseMap(**base_map)
            except BaseMapError as exc:
                raise ConfigError(f"--base-map: {exc}") from None

    def tls(self):
        return {"certfile": self.cert, "keyfile": self.key} if self.cert else {}


class Gateway:
    """One worker: ``start()``, ``stop()``; ``runtime`` carries the board's hooks."""

    def __init__(self, *, broker, db, grid=None, http=None, photos=None, worker=0,
                 client_id="gridlink-gateway", tls=None, batch_max=500, batch_age=0.005,
                 pending_max=1000, ack_qos=1, ack_ids_max=ACK_IDS_MAX, shared=True, migrate=True,
                 codebooks=None, districts=None, crl=None, issued=None, web=None,
                 config_key=None, config_sync_s=30.0, media=None, codebook_files=None,
                 ca_dir=None, renew="auto", map_files=None):
        """``web`` (a :class:`WebOptions`) sets the HTTP side's TLS certificate, CORS origins
        and trusted proxies; ``config_key`` is the PEM file of the key that signs the
        devices' configuration documents (desired state), sent again every
        ``config_sync_s`` seconds to devices first seen since a change and after a failed
        publish; ``codebook_files`` a folder of code book files served to sensor nodes by
        their sha256 over MQTT beside the shipped ones (protocol §3.9), ``map_files`` a
        folder of compiled grid maps served the same way.  ``ca_dir`` (a
        ``gridlink flash ca`` folder) lets the gateway sign the devices' certificate
        requests, at once (``renew`` "auto") or once a technician approves ("approve";
        renewal.py)."""
        self.config_key = None
        self.config_sync_s = config_sync_s
        self._config_stop = threading.Event()
        self._config_thread = None
        self._bridge_stop = threading.Event()
        self._bridge_thread = None
        if config_key:
            from .fleet_config import load_key

            self.config_key = load_key(config_key)
        if not is_nats_url(broker):  # a NATS user is the certificate, not a client id
            check_identity(tls, f"{client_id}-{worker}")
        try:
            self.grid_map = open_map(grid) if grid else None
        except CoreError as exc:
            raise ConfigError(str(exc)) from exc
        self.districts = served_districts(districts, self.grid_map)
        self.codebooks = load_books() if codebooks is None else codebooks
        self.store = open_store(db)
        self.photos_dir = Path(photos) if photos else default_photos_dir(db)
        photo_dir = PhotoDir(self.photos_dir)
        # clips and memos: ``media`` (a folder or s3://bucket…), else media/ beside the
        # photos folder (shared by the workers alike)
        self.media_store = open_media_store(media or self.photos_dir.parent / "media")
        self.metrics = Metrics()
        self.web = web or WebOptions()
        self.chunks = None    # pieces of sensor-node releases over MQTT (update_chunks.py)
        if self.web.update_repo is not None or codebook_files is not None \
                or map_files is not None:
            from .update_chunks import (
                ChunkServer,
                CodeBookFiles,
                MapFiles,
                shipped_books,
                shipped_maps,
            )
            from .update_repo import UpdateRepository

            for flag, folder in (("--codebook-files", codebook_files),
                                 ("--map-files", map_files)):
                if folder is not None and not Path(folder).is_dir():
                    raise ConfigError(f"{flag}: no folder {folder}")
            books = CodeBookFiles(shipped_books(), *([codebook_files] if codebook_files else []))
            maps = MapFiles(shipped_maps(), *([map_files] if map_files else []))
            repo = self.web.update_repo
            self.chunks = ChunkServer(UpdateRepository(repo) if repo is not None else None,
                                      lambda *a, **kw: self.runtime.publish(*a, **kw), books,
                                      maps)
        self.renewals = None  # certificate renewal (renewal.py), with --ca-dir
        if ca_dir is not None:
            from .renewal import CertificateAuthority, Renewals

            self.renewals = Renewals(
                self.store, CertificateAuthority(ca_dir), renew,
                publisher=lambda *a, **kw: self.runtime.publish(*a, **kw),
                revoked=lambda device: (self.revocations.revoked(device)
                                        if self.revocations is not None else None))
        self.runtime = GatewayRuntime(
            broker_url=broker, store=self.store, photo_dir=photo_dir,
            validator=Validator(self.grid_map, self.codebooks, districts=self.districts,
                                served_books=(self.chunks.books.of_standard
                                              if self.chunks is not None else None),
                                **self._revocation_hooks(crl, issued)),
            client_id=f"{client_id}-{worker}",
            tls=tls, batch_max=batch_max, batch_age=batch_age, pending_max=pending_max,
            ack_qos=ack_qos, ack_ids_max=ack_ids_max, shared=shared, metrics=self.metrics,
            status="plain" if worker == 0 else "none", media_store=self.media_store,
            update_requests=self.chunks.submit if self.chunks is not None else None,
            cert_requests=self.renewals.submit if self.renewals is not None else None)
        self.http = None
        self.app = None
        if migrate:
            self.store.migrate(extra=MEDIA_MIGRATIONS + RENEW_MIGRATIONS)
        if http:
            self._http(*parse_hostport(http))

    def _revocation_hooks(self, crl, issued):
        """Validator hooks from the district CRL (``--crl``): revoked identities, and when
        each device was provisioned (the issued-ids record)."""
        self.revocations = None
        if crl is None:
            return {}
        from .revocation import Revocations

        self.revocations = Revocations(crl, issued)
        return {"revoked": self.revocations.revoked,
                "provisioned": self.revocations.provisioned}

    def _http(self, host, port):
        try:
            from . import api
        except ImportError:
            api = None
        if api is None:
            from prometheus_client import make_asgi_app

            self.app = make_asgi_app(self.metrics.registry)
            self.http = BackgroundServer(self.app, host, port, **self.web.tls())
            return
        self.app = api.create_app(self.store, grid_map=self.grid_map, codebooks=self.codebooks,
                                  publisher=self.runtime.publish, photos_dir=self.photos_dir,
                                  media_store=self.media_store,
                                  cors_origins=self.web.cors_origins,
                                  trusted_proxies=self.web.trusted_proxies,
                                  gauges=self.metrics, oidc=self.web.oidc,
                                  config_key=self.config_key,
                                  book_files=(self.chunks.books
                                              if self.chunks is not None else None),
                                  map_files=(self.chunks.maps
                                             if self.chunks is not None else None),
                                  update_repo=self.web.update_repo,
                                  identity=(self.revocations.identity
                                            if self.revocations is not None else None),
                                  city_platform=self.web.city_platform,
                                  duplicates=self.web.duplicates,
                                  base_map=self.web.base_map,
                                  renewals=self.renewals)
        on_report = getattr(self.app.state, "on_report", None)
        if on_report is not None:
            self.runtime.on_report.append(on_report)
        on_commit = getattr(self.app.state, "on_commit", None)
        if on_commit is not None:
            self.runtime.on_commit.append(on_commit)
        self.http = BackgroundServer(self.app, host, port, **self.web.tls())

    @property
    def http_url(self):
        return self.http.url if self.http else None

    def start(self):
        log.info("serving districts %s", ", ".join(self.districts))
        if self.chunks is not None:
            self.chunks.start()
        self.runtime.start(wait=False)
        if self.http:
            self.http.start()
            log.info("HTTP on %s", self.http.url)
        fleet = getattr(getattr(self.app, "state", None), "fleet_config", None)
        if fleet is not None and self.config_key is not None:
            self._config_thread = threading.Thread(target=self._sync_config, args=(fleet,),
                                                   name="config-sync", daemon=True)
            self._config_thread.start()
        outbox = getattr(getattr(self.app, "state", None), "bridge", None)
        if outbox is not None:  # cases out to departments' systems (leased: every worker may)
            from .cases.sender import BridgeSender

            sender = BridgeSender(outbox, metrics=self.metrics)
            self._bridge_thread = threading.Thread(target=sender.run, args=(self._bridge_stop,),
                                                   name="bridge-sender", daemon=True)
            self._bridge_thread.start()
        return self

    def _sync_config(self, fleet):
        """Desired state: sign and send what devices first seen since a change, or whose
        document could not be published, still lack."""
        while not self._config_stop.wait(self.config_sync_s):
            try:
                sent = fleet.sync()
            except Exception:  # the store is away for a moment: the next round tries again
                log.exception("configuration sync failed")
                continue
            for version, devices in sent.items():
                log.info("configuration version %s sent to %s", version, ", ".join(devices))

    def stop(self):
        self._config_stop.set()
        self._bridge_stop.set()
        for thread in (self._config_thread, self._bridge_thread):
            if thread is not None:
                thread.join(timeout=10)
        self.runtime.stop()
        if self.chunks is not None:
            self.chunks.stop()
        if self.http:
            self.http.stop()
        self.store.close()
