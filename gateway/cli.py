"""``gridlink gateway``: run the district gateway, migrate its store, show its state."""

import argparse
import signal
import subprocess
import sys
import threading
import time

from gridlink.firmware.core.messages import ACK_IDS_MAX


def register(parser):
    sub = parser.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="ingest reports from the broker into the intake store")
    run.add_argument("--broker", required=True,
                     help="mqtt://host[:port], mqtts://host[:port], or "
                          "nats://host:port[,host:port…][?mqtt=host:port,…] (a NATS "
                          "JetStream cluster; mqtt: its MQTT listeners, for retained "
                          "messages: docs/scaling.md)")
    run.add_argument("--db", required=True,
                     help="sqlite:///path/intake.sqlite or postgresql://user@host/db[?schema=s]")
    run.add_argument("--grid", help="compiled grid map (.glgm): reports are re-located on it")
    run.add_argument("--district", action="append", metavar="CODE",
                     help="a district this gateway serves (repeat for several; default: the "
                          "districts of --grid, else 410106); others are dead-lettered")
    run.add_argument("--crl", metavar="FILE",
                     help="the district CRL (PEM): revoked devices' messages are refused "
                          "(read again when it changes)")
    run.add_argument("--issued", metavar="FILE",
                     help="issued-ids record mapping certificate serials to devices "
                          "(default: issued.json or issued.csv beside --crl)")
    run.add_argument("--codebook-overlay", action="append", metavar="FILE",
                     help="the district's local code book (docs/codes.md), applied to the "
                          "book it extends: its classes are taken, its retired ones "
                          "refused, and the board names them with its source")
    run.add_argument("--http", metavar="HOST:PORT",
                     help="serve the intake board API and /metrics (worker 0 only)")
    run.add_argument("--http-cert", help="serve HTTPS with this certificate (PEM, e.g. from "
                                         "`gridlink pki`); HSTS is sent over HTTPS")
    run.add_argument("--http-key", help="the key of --http-cert (PEM)")
    run.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                     help="let the board's API be called from this origin "
                          "(https://host[:port]; repeatable; default: CORS closed)")
    run.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                     help="a reverse proxy (address or network) whose X-Forwarded-For / "
                          "X-Forwarded-Proto are believed (repeatable; default: none)")
    run.add_argument("--oidc", metavar="FILE",
                     help="sign people in through the city's identity provider (OpenID "
                          "Connect): a TOML file with issuer, client_id, client_secret and "
                          "[roles] (docs/security.md); chmod 600")
    run.add_argument("--update-repo", metavar="DIR",
                     help="serve this update repository (gridlink fleet release build -o DIR) "
                          "read-only to the devices under /ota/ on --http")
    run.add_argument("--codebook-files", metavar="DIR",
                     help="code book files (*.json, e.g. a slim event-only book) served to "
                          "sensor nodes over MQTT by their sha256 beside the shipped ones "
                          "(docs/fleet.md)")
    run.add_argument("--map-files", metavar="DIR",
                     help="compiled grid maps (*.glgm: a district's new map, a map cut to a "
                          "sensor node's area with `gridlink grid cut`) served to devices "
                          "over MQTT by their sha256 beside the shipped ones (docs/fleet.md)")
    run.add_argument("--city-platform", metavar="ADAPTER=URL",
                     help="copy every 派遣 to the city platform: open311=URL (its GeoReport "
                          "v2 requests.json) or webhook=URL (docs/cases.md, the bridge out)")
    run.add_argument("--duplicate-radius", type=float, metavar="METRES",
                     help="reports of one class this close are likely the same problem "
                          "(default 50)")
    run.add_argument("--duplicate-hours", type=float, metavar="HOURS",
                     help="… and captured within this many hours of each other (default 24)")
    run.add_argument("--base-map", metavar="URL",
                     help="draw the district GIS's tiles under the board's map: an XYZ URL "
                          "with {z}/{x}/{y} or a WMTS one with {TileMatrix}/{TileRow}/"
                          "{TileCol} (docs/evaluation.md)")
    run.add_argument("--base-map-matrix", choices=("webmercator", "geographic"),
                     default="webmercator",
                     help="the tiles' matrix set: web mercator (EPSG:3857) or longitude/"
                          "latitude (EPSG:4326/4490, as 天地图's c sets)")
    run.add_argument("--base-map-max-zoom", type=int, default=18,
                     help="the deepest tile level the server has")
    run.add_argument("--base-map-attribution", default="",
                     help="shown under the map (e.g. the GIS's name and its 审图号)")
    run.add_argument("--workers", type=int, default=1,
                     help="worker processes sharing the load (shared subscription); "
                          "use PostgreSQL for more than one")
    run.add_argument("--photos", help="folder for reassembled photos "
                                      "(default: photos/ next to a SQLite store); clips "
                                      "and memos go to media/ beside it")
    run.add_argument("--media-store", metavar="WHERE",
                     help="where clips and memos are kept: a folder, or an S3-compatible "
                          "bucket as s3://bucket/prefix?endpoint=URL (credentials from "
                          "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; docs/media.md)")
    run.add_argument("--client-id", default="gridlink-gateway",
                     help="MQTT client id prefix; worker N is <prefix>-N (fixed: the broker "
                          "keeps its session)")
    run.add_argument("--tls-ca", help="CA bundle that signed the broker's certificate")
    run.add_argument("--tls-cert", help="this worker's client certificate (mutual TLS), its "
                                        "CN the worker's client id; {worker} in the path "
                                        "is replaced by the worker's index")
    run.add_argument("--tls-key", help="the key of --tls-cert ({worker} likewise)")
    run.add_argument("--tls-insecure", action="store_true",
                     help="do not check the broker's host name (test rigs only)")
    run.add_argument("--batch-max", type=int, default=500, help="messages per commit, at most")
    run.add_argument("--batch-ms", type=float, default=5.0,
                     help="commit a batch at the latest this long after its first message")
    run.add_argument("--pending-max", type=int, default=1000,
                     help="unacknowledged messages the broker may send ahead (Receive Maximum)")
    run.add_argument("--ack-qos", type=int, choices=(0, 1), default=1,
                     help="QoS of the acks to devices")
    run.add_argument("--ack-ids-max", type=int, default=ACK_IDS_MAX,
                     help=f"report ids in one ack to a device (grouped acks, 1 to "
                          f"{ACK_IDS_MAX}; 1 for devices that read only one id an ack)")
    run.add_argument("--config-key", metavar="FILE",
                     help="Ed25519 key (PEM) signing the devices' configuration documents "
                          "(`gridlink fleet config key FILE`); without it changes are refused")
    run.add_argument("--ca-dir", metavar="CADIR",
                     help="the district CA folder (`gridlink flash ca`: ca.pem, ca.key): sign "
                          "the devices' certificate renewal requests (docs/fleet.md)")
    run.add_argument("--renew", choices=("auto", "approve"), default="auto",
                     help="with --ca-dir: sign a valid request at once (auto) or keep it for "
                          "a fleet technician to approve (approve)")
    run.add_argument("--log-level", default="info",
                     help="debug, info, warning or error (info)")
    run.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)

    ret = sub.add_parser("retire", help="take one worker out for good: commit what the broker "
                                        "queued for its session, then end the session")
    for a in ("--broker", "--db"):
        ret.add_argument(a, required=True)
    ret.add_argument("--grid")
    ret.add_argument("--district", action="append")
    ret.add_argument("--crl")
    ret.add_argument("--issued")
    ret.add_argument("--photos")
    ret.add_argument("--client-id", default="gridlink-gateway")
    ret.add_argument("--worker-index", type=int, required=True,
                     help="the worker whose session ends (its --worker-index in gateway run)")
    ret.add_argument("--idle", type=float, default=2.0,
                     help="seconds without a message before the session is ended")
    for a in ("--tls-ca", "--tls-cert", "--tls-key"):
        ret.add_argument(a)
    ret.add_argument("--tls-insecure", action="store_true")
    ret.add_argument("--codebook-overlay", action="append", metavar="FILE")
    described = {a.dest: a.help for a in run._actions
                 if a.help and a.help != argparse.SUPPRESS}
    for a in ret._actions:
        if not a.help and a.dest in described:
            a.help = described[a.dest]      # the same as gateway run's
    ret.set_defaults(func=cmd_retire)

    mig = sub.add_parser("migrate", help="create or upgrade the store's tables")
    mig.add_argument("--db", required=True, help=described["db"])
    mig.set_defaults(func=cmd_migrate)


def cmd_migrate(args):
    from .media_ingest import MIGRATIONS as MEDIA_MIGRATIONS
    from .renewal import MIGRATIONS as RENEW_MIGRATIONS
    from .store import open_store

    store = open_store(args.db)
    try:
        done = store.migrate(extra=MEDIA_MIGRATIONS + RENEW_MIGRATIONS)
        print("applied: " + (", ".join(done) if done else "nothing (up to date)"))
    finally:
        store.close()
    return 0


def cmd_retire(args):
    from . import logs
    from .service import Gateway

    logs.setup("info", worker=args.worker_index)
    gw = Gateway(broker=args.broker, db=args.db, grid=args.grid, photos=args.photos,
                 codebooks=_codebooks(args),
                 worker=args.worker_index, client_id=args.client_id, tls=_tls(args),
                 districts=args.district, crl=args.crl, issued=args.issued)
    gw.start()
    ok = gw.runtime.retire(idle=args.idle)
    gw.stop()
    print(f"worker {args.client_id}-{args.worker_index}: "
          + ("session ended" if ok else "could not drain; session kept"))
    return 0 if ok else 1


def _tls(args):
    if not (args.tls_ca or args.tls_cert):
        return None
    from .tls import TLSFiles

    def mine(path):  # each worker has its own certificate: {worker} names its files
        return path.replace("{worker}", str(args.worker_index)) if path else path

    return TLSFiles(args.tls_ca, mine(args.tls_cert), mine(args.tls_key), args.tls_insecure)


def _child_argv(base, index):
    return [sys.executable, "-m", "gridlink.cli", *base, "--worker-index", str(index)]


def cmd_run(args):
    from . import logs
    from .errors import ConfigError
    from .service import Gateway, WebOptions

    logs.setup(args.log_level, worker=args.worker_index)
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if not 1 <= args.ack_ids_max <= ACK_IDS_MAX:
        raise ConfigError(f"--ack-ids-max must be between 1 and {ACK_IDS_MAX} (the protocol's "
                          f"limit), got {args.ack_ids_max}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    gw = Gateway(broker=args.broker, db=args.db, grid=args.grid, codebooks=_codebooks(args),
                 http=args.http if args.worker_index == 0 else None, photos=args.photos,
                 worker=args.worker_index, client_id=args.client_id, tls=_tls(args),
                 batch_max=args.batch_max, batch_age=args.batch_ms / 1000,
                 pending_max=args.pending_max, ack_qos=args.ack_qos,
                 ack_ids_max=args.ack_ids_max, districts=args.district, crl=args.crl,
                 issued=args.issued, config_key=args.config_key, media=args.media_store,
                 codebook_files=args.codebook_files if args.worker_index == 0 else None,
                 map_files=args.map_files if args.worker_index == 0 else None,
                 ca_dir=args.ca_dir, renew=args.renew,
                 web=WebOptions(args.http_cert, args.http_key, args.cors_origin,
                                args.trusted_proxy, oidc=args.oidc,
                                update_repo=args.update_repo,
                                city_platform=args.city_platform,
                                duplicate_radius_m=args.duplicate_radius,
                                duplicate_window_h=args.duplicate_hours,
                                base_map=_base_map(args)))
    children = {}
    base = _worker_argv(args)
    if args.workers > 1:
        for i in range(1, args.workers):
            children[i] = subprocess.Popen(_child_argv(base, i))
    gw.start()
    try:
        while not stop.wait(0.5):
            for i, proc in list(children.items()):
                if proc.poll() is not None:  # a worker died: its session waits for it
                    children[i] = subprocess.Popen(_child_argv(base, i))
    finally:
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        gw.stop()
        deadline = time.monotonic() + 20
        for proc in children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


def _codebooks(args):
    """The code books with ``--codebook-overlay``'s local books applied (None: the shipped
    books as they are)."""
    from gridlink.firmware.codebooks import load_books
    from gridlink.firmware.core.codebook import CodeError

    from .errors import ConfigError

    if not args.codebook_overlay:
        return None
    try:
        return load_books(overlays=args.codebook_overlay)
    except CodeError as exc:
        raise ConfigError(str(exc)) from None
def _base_map(args):
    if not args.base_map:
        return None
    return {"url": args.base_map, "matrix": args.base_map_matrix,
            "max_zoom": args.base_map_max_zoom, "attribution": args.base_map_attribution}


def _worker_argv(args):
    """The arguments of a further worker: the same options, no --http."""
    out = ["gateway", "run", "--broker", args.broker, "--db", args.db,
           "--client-id", args.client_id, "--batch-max", str(args.batch_max),
           "--batch-ms", str(args.batch_ms), "--pending-max", str(args.pending_max),
           "--ack-qos", str(args.ack_qos), "--ack-ids-max", str(args.ack_ids_max),
           "--log-level", args.log_level]
    for opt, val in (("--grid", args.grid), ("--photos", args.photos),
                     ("--media-store", args.media_store),
                     ("--crl", args.crl), ("--issued", args.issued),
                     ("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert),
                     ("--tls-key", args.tls_key), ("--ca-dir", args.ca_dir)):
        if val:
            out += [opt, val]
    if args.ca_dir:
        out += ["--renew", args.renew]
    for district in args.district or ():
        out += ["--district", district]
    for overlay in args.codebook_overlay or ():
        out += ["--codebook-overlay", overlay]
    if args.tls_insecure:
        out.append("--tls-insecure")
    return out

