"""``gridlink fleet``: update keys, signed releases, checking a repository as a device,
desired state (``config``), and (through the gateway's API) rollouts and the fleet's
versions."""

import json
import tempfile
import urllib.parse
from pathlib import Path


def register(parser):
    sub = parser.add_subparsers(dest="fleet_command", metavar="AREA", required=True)

    keys_p = sub.add_parser("keys", help="the update signing keys")
    keys_sub = keys_p.add_subparsers(dest="keys_command", metavar="STEP", required=True)
    p = keys_sub.add_parser("init", help="make root (offline), targets, snapshot and "
                            "timestamp keys (Ed25519) in a new folder")
    p.add_argument("keydir", help="new or empty folder for the keys")
    p.add_argument("--root-keys", type=int, default=3, help="number of root keys (3)")
    p.add_argument("--threshold", type=int, default=2,
                   help="root keys that must sign root metadata (2)")
    p.set_defaults(func=_keys_init)

    p = keys_sub.add_parser("rotate", help="replace a role's key: a new key file, a new "
                            "root version signed by a threshold of root keys, re-signed "
                            "metadata")
    p.add_argument("keydir", help="the key folder ('gridlink fleet keys init')")
    p.add_argument("--role", required=True, choices=["root", "targets", "snapshot",
                                                     "timestamp"], help="the role whose key goes")
    p.add_argument("--replace", help="root: the key file to replace, e.g. root-1.pem")
    p.add_argument("-o", "--repo", required=True, help="the update repository folder")
    p.set_defaults(func=_keys_rotate)

    p = keys_sub.add_parser("node-keys", help="the sensor nodes' update-keys file: the "
                            "targets public keys that sign their manifests, 64 hex digits "
                            "a line (gridlink flash provision --update-keys)")
    p.add_argument("keydir", help="the key folder ('gridlink fleet keys init')")
    p.add_argument("-o", "--out", required=True, help="the file to write")
    p.set_defaults(func=_keys_node)

    rel = sub.add_parser("release", help="build and verify signed releases")
    rel_sub = rel.add_subparsers(dest="release_command", metavar="STEP", required=True)
    p = rel_sub.add_parser("build", help="build a release and publish it in a TUF repository "
                           "(made on first use: needs a threshold of root keys then)")
    p.add_argument("--kind", required=True, choices=["pi", "mcu"], help="device kind")
    p.add_argument("--version", required=True, help="release version, e.g. 1.4")
    p.add_argument("--keys", required=True, help="key folder ('gridlink fleet keys init')")
    p.add_argument("-o", "--repo", required=True, help="the update repository folder")
    p.add_argument("--with-deps", action="store_true",
                   help="pi: also the wheels gridlink needs (pip wheel, from the index)")
    p.add_argument("--board", choices=["pico-w", "esp32"], help="mcu: target board")
    p.set_defaults(func=_release_build)

    p = rel_sub.add_parser("verify", help="check a release as a device would (tuf.ngclient "
                           "from the device's root); exit 2 naming the file and reason")
    p.add_argument("repo", help="the update repository: a folder or an http(s) URL")
    p.add_argument("--kind", required=True, choices=["pi", "mcu"], help="device kind")
    p.add_argument("--version", required=True, help="the release version to check")
    p.add_argument("--root", help="the device's trusted root.json (default: the "
                   "repository's 1.root.json, as on a newly provisioned device)")
    p.add_argument("--installed", help="version the device runs (newer ones only)")
    p.set_defaults(func=_release_verify)

    p = sub.add_parser("timestamp", help="re-sign the timestamp (online key; do it more "
                       "often than it expires, 1 day)")
    p.add_argument("repo", help="the update repository folder")
    p.add_argument("--keys", required=True, help="key folder ('gridlink fleet keys init')")
    p.set_defaults(func=_timestamp)

    ro = sub.add_parser("rollout", help="staged rollouts of a release, through the gateway")
    ro_sub = ro.add_subparsers(dest="rollout_command", metavar="STEP", required=True)
    p = ro_sub.add_parser("start", help="offer a release to a group in stages (canary first)")
    p.add_argument("--kind", required=True, choices=["pi", "mcu"], help="device kind")
    p.add_argument("--version", required=True, help="a release in the served repository")
    p.add_argument("--district", help="every device of this district (6 digits)")
    p.add_argument("--profile", help="every device with this profile")
    p.add_argument("--devices", help="these devices, comma-separated")
    p.add_argument("--stages", default="5,50,100",
                   help="cumulative percentages of the group, ending at 100 (5,50,100)")
    p.add_argument("--failure-threshold", type=float, default=20.0,
                   help="pause when more of a stage's devices fail than this %% (20)")
    p.add_argument("--stage-timeout", type=float, default=None, metavar="SECONDS",
                   help="pause a stage whose devices have not all reported by then (none)")
    _api_args(p)
    p.set_defaults(func=_rollout_start)
    p = ro_sub.add_parser("show", help="one rollout in full, or every rollout in a line")
    p.add_argument("rollout", nargs="?", help="rollout id (R-…); none: list them")
    p.add_argument("--state", choices=["running", "paused", "aborted", "done"],
                   help="list only the rollouts in this state")
    p.add_argument("--json", action="store_true", help="the API's JSON")
    _api_args(p)
    p.set_defaults(func=_rollout_show)
    for step, what in (("pause", "stop offering until resumed"),
                       ("resume", "go on (the current stage's failures are accepted)"),
                       ("abort", "stop for good and withdraw open offers")):
        p = ro_sub.add_parser(step, help=what)
        p.add_argument("rollout", help="rollout id (R-…)")
        _api_args(p)
        p.set_defaults(func=_rollout_act, step=step)

    p = sub.add_parser("devices", help="each device's versions: running, slots, on trial, "
                       "last failure")
    p.add_argument("--json", action="store_true", help="the API's JSON")
    _api_args(p)
    p.set_defaults(func=_devices)
    _register_config(sub)
    _register_revoke(sub)


def _register_revoke(sub):
    from .revoke import CRL_DAYS, REASONS

    p = sub.add_parser("revoke", help="cut a device off: every certificate issued to it onto "
                       "the district CRL (CADIR/crl.pem), which the broker and gateway read")
    p.add_argument("device", help="the device id (its certificate's CN)")
    p.add_argument("--reason", required=True, choices=list(REASONS),
                   help="why (the CRL's reason code follows it)")
    p.add_argument("--ca", required=True, metavar="CADIR",
                   help="the CA folder: ca.pem, ca.key, issued.csv, crl.pem")
    p.add_argument("--note", default="", help="free text for revocations.csv")
    p.add_argument("--days", type=int, default=CRL_DAYS,
                   help=f"the new CRL's next update, days ahead ({CRL_DAYS})")
    p.set_defaults(func=_revoke)

    p = sub.add_parser("crl", help="re-sign the district CRL with the same entries and a new "
                       "next update (do it before crl-check warns)")
    p.add_argument("--ca", required=True, metavar="CADIR",
                   help="the CA folder: ca.pem, ca.key, crl.pem")
    p.add_argument("--days", type=int, default=CRL_DAYS,
                   help=f"the CRL's next update, days ahead ({CRL_DAYS})")
    p.set_defaults(func=_crl)


def _revoke(args):
    from .revoke import CRL_NAME, revoke

    serials, new = revoke(args.ca, args.device, args.reason, note=args.note, days=args.days)
    if not new:
        print(f"{args.device}: already revoked, all {len(serials)} certificate(s) "
              f"({', '.join(format(s, 'X') for s in serials)}); the CRL is signed again "
              f"→ {Path(args.ca) / CRL_NAME}")
        return 0
    print(f"{args.device}: {len(new)} certificate(s) revoked "
          f"({', '.join(format(s, 'X') for s in new)}) → {Path(args.ca) / CRL_NAME}")
    print("reload the broker (systemctl reload mosquitto, or SIGHUP) so new connections "
          "check it; the gateway rereads it by itself")
    return 0


def _crl(args):
    from .revoke import CRL_NAME, publish

    serials = publish(args.ca, days=args.days)
    print(f"{Path(args.ca) / CRL_NAME}: {len(serials)} revoked, next update in "
          f"{args.days} d")
    return 0


def _register_config(sub):
    cfg = sub.add_parser("config", help="desired state: the configuration the centre sets "
                         "for a device or a group (docs/fleet.md)")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="STEP", required=True)
    p = cfg_sub.add_parser("key", help="make the Ed25519 key that signs configuration "
                           "documents (FILE) and its public half for devices (FILE.pub)")
    p.add_argument("file", help="where to write the private key (PEM, mode 0600)")
    p.set_defaults(func=_config_key)

    def api(p):
        p.add_argument("--api", help="the gateway's API base URL (default: GRIDLINK_API)")
        p.add_argument("--token", help="API token (default: GRIDLINK_TOKEN)")

    p = cfg_sub.add_parser("set", help="change the configuration of a device or a group")
    api(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--device", help="one device id")
    who.add_argument("--district", help="every device of a 6-digit district")
    who.add_argument("--profile", help="every device of a profile, e.g. patrol-vehicle")
    who.add_argument("--devices", help="a comma-separated list of device ids")
    p.add_argument("--button", action="append", metavar="NAME=KIND:CODE[:TEXT]",
                   help="the class a button reports, e.g. garbage=event:07001 (repeatable)")
    p.add_argument("--track-interval", type=float, help="seconds between track points")
    p.add_argument("--status-interval", type=float, help="seconds between status messages")
    p.add_argument("--photo-max-bytes", type=int, help="size budget of one photo")
    p.add_argument("--max-fix-age", type=float, help="seconds after which a fix is stale")
    p.add_argument("--reset", action="append", metavar="SETTING",
                   help="set a setting back to each device's profile, withdrawing what "
                   "earlier changes set: status_interval_s, track_interval_s, "
                   "photo_max_bytes, max_fix_age_s or buttons.NAME (repeatable)")
    p.add_argument("--map", metavar="SHA256|FILE",
                   help="the grid map the devices must hold: its sha256, or the map file "
                   "(the gateway serves it from --map-files)")
    p.add_argument("--codebook", help="code book id STANDARD@hash the devices must hold")
    p.add_argument("--broker", help="a new broker mqtt[s]://host[:port]: each device tries "
                   "it first and keeps its broker when it cannot connect")
    p.set_defaults(func=_config_set)

    p = cfg_sub.add_parser("show", help="the changes, or one device's desired configuration")
    api(p)
    p.add_argument("device", nargs="?", help="one device id (none: the changes)")
    p.set_defaults(func=_config_show)

    p = cfg_sub.add_parser("diff", help="desired against reported, per device (exit 3 when "
                           "any device drifts)")
    api(p)
    p.add_argument("device", nargs="?", help="one device id (none: every device)")
    p.set_defaults(func=_config_diff)


def _config_key(args):
    from .config import make_key

    public = make_key(args.file)
    print(f"{args.file}: configuration key (keep it with the gateway: --config-key)")
    print(f"{args.file}.pub: {public} (give devices this: gridlink device run --config-keys)")


def _config_set(args):
    from .config import change_of, client_of

    done = client_of(args).call("POST", "/api/fleet/config", change_of(args))
    devices = done["devices"]
    print(f"version {done['version']} ({done['scope']} {done['target']}): signed for "
          f"{len(devices)} device(s)" + (": " + ", ".join(devices) if devices else "")
          + f"; {len(done['sent'])} sent")


def _config_show(args):
    from .config import client_of

    client = client_of(args)
    if args.device:
        shown = client.call("GET", f"/api/fleet/config/devices/{args.device}")
    else:
        shown = client.call("GET", "/api/fleet/config")
    print(json.dumps(shown, ensure_ascii=False, indent=1))


def _config_diff(args):
    from .config import client_of, diff_lines

    path = "/api/fleet/config/devices" + (f"?device={args.device}" if args.device else "")
    states = client_of(args).call("GET", path)
    for line in diff_lines(states):
        print(line)
    return 3 if any(s["drift"] for s in states) else 0


def _keys_init(args):
    from .keys import init_keys

    roles = init_keys(args.keydir, args.root_keys, args.threshold)
    print(f"{args.keydir}: {len(roles['files']['root'])} root keys (threshold "
          f"{roles['root_threshold']}), targets, snapshot, timestamp")
    print("move the root-*.pem files offline once the repository is made")


def _keys_node(args):
    from .keys import load_private, load_roles
    from .mcu_manifest import public_bytes

    _, files = load_roles(args.keydir)
    keys = [public_bytes(load_private(Path(args.keydir) / name)) for name in files["targets"]]
    Path(args.out).write_text("".join(k.hex() + "\n" for k in keys), encoding="ascii")
    print(f"{args.out}: {len(keys)} targets key{'s' if len(keys) > 1 else ''} "
          "(copy it to the sensor nodes: gridlink flash provision --update-keys)")


def _keys_rotate(args):
    from .repo import rotate_key

    old, new, version = rotate_key(args.repo, args.keydir, args.role, args.replace)
    print(f"{args.role}: {old} replaced by {new}; root version {version} published")
    print(f"destroy {old} once every device has updated (it signs nothing any more)")


def _release_build(args):
    from .keys import load_roles
    from .release import build_mcu, build_pi
    from .repo import Repository, target_name

    target_name(args.kind, args.version)
    load_roles(args.keys)                        # the keys first: no build for nothing
    with tempfile.TemporaryDirectory(prefix="gridlink-release-") as tmp:
        tar = Path(tmp) / "release.tar"
        if args.kind == "pi":
            release = build_pi(tar, args.version, with_deps=args.with_deps)
        else:
            from .keys import load_private

            _, files = load_roles(args.keys)
            key = load_private(Path(args.keys) / files["targets"][0])
            release = build_mcu(tar, args.version, board=args.board, signing_key=key)
        name = Repository(args.repo).add_release(args.keys, args.kind, args.version, tar)
        size = tar.stat().st_size
    print(f"{name}: {len(release['files'])} files, {size} bytes, published in {args.repo}")


def _release_verify(args):
    from .verify import verify

    result = verify(args.repo, args.kind, args.version, root=args.root,
                    installed=args.installed)
    print(f"ok: {result['target']} {result['bytes']} bytes sha256 {result['sha256'][:16]}… "
          f"({len(result['files'])} files) verified")


def _timestamp(args):
    from .repo import Repository

    ts = Repository(args.repo).timestamp(args.keys)
    print(f"timestamp version {ts.signed.version}, expires {ts.signed.expires:%Y-%m-%dT%H:%MZ}")



def _api_args(p):
    p.add_argument("--api", help="the gateway's API base URL (default: GRIDLINK_API)")
    p.add_argument("--token", help="a 技术员's API token (default: GRIDLINK_TOKEN)")


def _client(args):
    from .config import client_of

    return client_of(args)


def _rollout_start(args):
    from .rollouts import parse_stages, rollout_lines, target_of

    body = {"kind": args.kind, "version": args.version,
            "target": target_of(args.district, args.profile, args.devices),
            "stages": parse_stages(args.stages), "failure_threshold": args.failure_threshold}
    if args.stage_timeout is not None:
        body["stage_timeout_s"] = args.stage_timeout
    client = _client(args)
    print("\n".join(rollout_lines(client.call("POST", "/api/rollouts", body))))


def _rollout_show(args):
    from .rollouts import rollout_lines

    client = _client(args)
    if args.rollout:
        found = client.call("GET", f"/api/rollouts/{_quoted(args.rollout)}")
        text = json.dumps(found, ensure_ascii=False, indent=1) if args.json else \
            "\n".join(rollout_lines(found, full=True))
    else:
        found = client.call("GET", "/api/rollouts" + (f"?state={args.state}" if args.state
                                                       else ""))
        text = json.dumps(found, ensure_ascii=False, indent=1) if args.json else \
            "\n".join(line for r in found for line in rollout_lines(r)) or "no rollouts"
    print(text)


def _rollout_act(args):
    from .rollouts import rollout_lines

    done = _client(args).call("POST", f"/api/rollouts/{_quoted(args.rollout)}/{args.step}")
    print("\n".join(rollout_lines(done)))


def _devices(args):
    from .rollouts import device_lines

    found = _client(args).call("GET", "/api/devices")
    print(json.dumps(found, ensure_ascii=False, indent=1) if args.json
          else "\n".join(device_lines(found)))


def _quoted(rollout_id):
    return urllib.parse.quote(rollout_id, safe="")
