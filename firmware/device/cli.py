"""``gridlink device``: check profiles, run a device, talk to a running one."""

import json
import logging
import os
import sys

from ..errors import DeviceError


def register(parser):
    sub = parser.add_subparsers(dest="device_command", metavar="ACTION", required=True)

    p = sub.add_parser("check", help="validate device profiles (names or paths)")
    p.add_argument("profiles", nargs="*", metavar="PROFILE",
                   help="profile names or files (default: every shipped profile)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("list", help="list the shipped profiles")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run a field device (patrol vehicle or fixed terminal)")
    p.add_argument("--profile", required=True, help="profile name or file")
    p.add_argument("--data-dir", required=True, help="durable state: outbox, seq, photos")
    p.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--tls-ca", help="CA certificate of the broker (PEM)")
    p.add_argument("--tls-cert", help="this device's client certificate (PEM)")
    p.add_argument("--tls-key", help="this device's private key (PEM)")
    p.add_argument("--sim", action="store_true",
                   help="simulated hardware: NMEA replay over a pty, mock pins, synthetic camera")
    p.add_argument("--device-id", help="device id (default: the profile's device_id)")
    p.add_argument("--district", help="6-digit district code (default: the profile's)")
    p.add_argument("--gnss-port", help="override the receiver port (path or pyserial URL)")
    p.add_argument("--sim-capture", help="NMEA capture to replay (bundled name or path)")
    p.add_argument("--sim-speed", type=float, help="replay speed factor (2 = twice as fast)")
    p.add_argument("--sim-origin", metavar="LAT,LON",
                   help="move the replayed track so it starts here")
    p.add_argument("--no-sim-loop", action="store_true", help="replay the capture once")
    p.add_argument("--sim-keep-time", action="store_true",
                   help="keep the capture's own dates (default: each round starts now)")
    p.add_argument("--map", help="compiled grid map (.glgm) for the grid lookup")
    p.add_argument("--cancel-grace", type=float,
                   help="seconds a long press may still cancel a report (default: profile)")
    p.add_argument("--status-interval", type=float, help="seconds between status messages")
    p.add_argument("--kiosk-port", type=int, help="kiosk page port (fixed terminal; 0 = any)")
    p.add_argument("--reconnect-max", type=float, default=30.0,
                   help="longest wait between broker reconnects, seconds (backoff cap)")
    p.add_argument("--renew-check", type=float, default=600.0, metavar="SECONDS",
                   help="how often the device looks whether its certificate is due for "
                        "renewal (profile renew_before_days), seconds")
    p.add_argument("--update-repo", metavar="URL",
                   default=os.environ.get("GRIDLINK_UPDATE_REPO") or None,
                   help="the gateway's update repository (https://gateway/ota): offered "
                        "releases are fetched from it (default: $GRIDLINK_UPDATE_REPO; "
                        "docs/ota.md)")
    p.add_argument("--health-deadline", type=float, default=120.0,
                   help="seconds a new version has to pass its health check (default 120)")
    p.add_argument("--update-retry", type=float, default=300.0,
                   help="seconds between attempts at an offered release whose download "
                        "was cut (default 300)")
    p.add_argument("--config-keys", metavar="FILE",
                   default=os.environ.get("GRIDLINK_CONFIG_KEYS") or None,
                   help="the centre's configuration keys (64 hex digits a line; "
                   "`gridlink fleet config key`; default: $GRIDLINK_CONFIG_KEYS, which "
                   "provisioning sets): without them every document is refused")
    p.add_argument("--codebook-overlay", metavar="FILE",
                   default=os.environ.get("GRIDLINK_CODEBOOK_OVERLAY") or None,
                   help="the district's local code book (docs/codes.md), applied to the "
                   "book it extends; default: $GRIDLINK_CODEBOOK_OVERLAY, which "
                   "provisioning sets")
    p.add_argument("--log-level", default="INFO",
                   help="DEBUG, INFO, WARNING or ERROR (INFO)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("press", help="press a button / trip a sensor of a simulated device")
    p.add_argument("--data-dir", required=True,
                   help="the running device's --data-dir (its control socket is there)")
    p.add_argument("input", help="button name, or pir, call, emergency, yes, no")
    p.add_argument("--hold", action="store_true",
                   help="a long press (cancels the last report, or files an urgent one "
                   "when the profile's press.long_press is \"urgent\")")
    p.set_defaults(func=cmd_press)

    p = sub.add_parser("status", help="show a running device's status")
    p.add_argument("--data-dir", required=True,
                   help="the running device's --data-dir (its control socket is there)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("answer", help="answer the open 核实/核查 task of a running device")
    p.add_argument("--data-dir", required=True,
                   help="the running device's --data-dir (its control socket is there)")
    p.add_argument("result", help="yes, no, or confirmed/not_found/resolved/unresolved")
    p.add_argument("--task", help="task id (default: the oldest open task)")
    p.set_defaults(func=cmd_answer)


def cmd_check(args):
    from ..errors import ProfileError
    from .profile import load_profile, shipped_profiles

    names = args.profiles or [str(p) for p in shipped_profiles()]
    bad = 0
    for name in names:
        try:
            prof = load_profile(name)
        except ProfileError as exc:
            bad += 1
            print(str(exc), file=sys.stderr)
            continue
        print(f"{prof['_path']}: ok ({prof['kind']}, {prof['board']}, {prof['standard']})")
    if bad:
        print(f"{bad} of {len(names)} profile(s) have problems", file=sys.stderr)
        return 1
    return 0


def cmd_list(args):
    from .profile import load_profile, shipped_profiles

    for path in shipped_profiles():
        prof = load_profile(path)
        print(f"{path.stem:16} {prof['kind']:15} {prof['board']:7} {prof['description']}")
    return 0


def hardware_of(args, profile):
    """The hardware the command line asks for: ``--sim`` (or the profile's ``sim.enabled``)
    picks the sim backend, the ``--sim-*`` options its replay, ``--gnss-port`` the port."""
    from .hardware import Hardware, Replay, backend_for

    origin = None
    if args.sim_origin:
        try:
            lat, lon = (float(x) for x in args.sim_origin.split(","))
        except ValueError:
            raise DeviceError(f"--sim-origin {args.sim_origin!r}: give LAT,LON") from None
        origin = (lat, lon)
    backend = backend_for(profile, sim=args.sim)
    replay = None
    if backend == "sim":
        replay = Replay.of(profile, capture=args.sim_capture, speed=args.sim_speed,
                           origin=origin, loop=False if args.no_sim_loop else None,
                           retime=not args.sim_keep_time)
    return Hardware(profile, backend, gnss_port=args.gnss_port, replay=replay)


def cmd_run(args):
    from .profile import load_profile
    from .runtime import Device

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.codebook_overlay:
        from . import codebook

        codebook.use_overlays([args.codebook_overlay])
    profile = load_profile(args.profile)
    keys = None
    if args.config_keys:
        from .desired import read_keys

        keys = read_keys(args.config_keys)
    dev = Device(profile, args.data_dir, args.broker, hardware=hardware_of(args, profile),
                 device_id=args.device_id, district=args.district,
                 tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                 map_path=args.map, cancel_grace=args.cancel_grace,
                 status_interval=args.status_interval, kiosk_port=args.kiosk_port,
                 reconnect_max=args.reconnect_max, config_keys=keys,
                 update_repo=args.update_repo, health_deadline=args.health_deadline,
                 update_retry=args.update_retry, renew_check=args.renew_check)
    dev.catch_signals()               # a SIGTERM while starting is a safe stop too
    try:
        dev.start()
    except BaseException:
        dev.stop()                    # whatever came up goes down cleanly
        raise
    return dev.run_forever()


def _ask(data_dir, req):
    from .control import request

    answer = request(data_dir, req)
    if not answer.get("ok"):
        raise DeviceError(answer.get("error", "the device refused"))
    return answer


def cmd_press(args):
    answer = _ask(args.data_dir, {"cmd": "press", "input": args.input, "hold": args.hold})
    print(json.dumps(answer, ensure_ascii=False))
    return 0


def cmd_status(args):
    answer = _ask(args.data_dir, {"cmd": "status"})
    print(json.dumps(answer["status"], ensure_ascii=False, indent=1))
    return 0


def cmd_answer(args):
    req = {"cmd": "answer", "task": args.task}
    if args.result in ("yes", "no"):
        req["yes"] = args.result == "yes"
    else:
        req["result"] = args.result
    print(json.dumps(_ask(args.data_dir, req), ensure_ascii=False))
    return 0
