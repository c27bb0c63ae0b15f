"""``gridlink flash``: build a board image, flash it, provision devices, self-test them."""

import sys


def register(parser):
    sub = parser.add_subparsers(dest="flash_command", metavar="STEP", required=True)

    p = sub.add_parser("build", help="compile core + sensor-node firmware into a board image")
    p.add_argument("out", help="image directory to create (replaced whole)")
    p.add_argument("--board", choices=["pico-w", "esp32"], help="target board (sets -march)")
    p.add_argument("--source", action="store_true", help="copy .py sources, do not compile")
    p.add_argument("-O", dest="optimize", type=int, default=0, choices=range(4),
                   help="mpy-cross optimisation level")
    p.set_defaults(func=_build)

    p = sub.add_parser("flash", help="copy a built image onto a MicroPython board (mpremote) "
                       "or into a directory mirroring its flash")
    p.add_argument("image", help="image directory made by 'gridlink flash build'")
    p.add_argument("target", help="serial port or pyserial URL (socket://, rfc2217://), or a dir")
    p.set_defaults(func=_flash)

    p = sub.add_parser("provision", help="write identity, certificates, profile, code book "
                       "and grid map to a device (or --batch a CSV of devices)")
    p.add_argument("--target", help="a Pi's data directory, or a board's serial port / URL")
    p.add_argument("--device", help="device id, e.g. sn-0001")
    p.add_argument("--district", help="6-digit GB/T 2260 district code, e.g. 410106")
    p.add_argument("--profile", help="shipped profile name or profile file")
    p.add_argument("--broker", help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--ca-cert", help="district CA certificate (PEM)")
    p.add_argument("--ca-key", help="district CA key: sign a new device key with it")
    p.add_argument("--cert", help="the device's certificate (instead of signing one)")
    p.add_argument("--key", help="the device's key (with --cert)")
    p.add_argument("--grid-map", help="compiled grid map (.glgm) to install")
    p.add_argument("--object", help="component id the tilt sensor is bound to (sensor nodes)")
    p.add_argument("--lat", type=float, help="fixed position latitude")
    p.add_argument("--lon", type=float, help="fixed position longitude")
    p.add_argument("--grid", help="grid code of the fixed position")
    p.add_argument("--wifi-ssid", help="Wi-Fi network a board joins (sensor nodes)")
    p.add_argument("--wifi-psk", help="its passphrase (stored on the board's flash)")
    p.add_argument("--batch", metavar="CSV", help="provision every row of a CSV "
                   "(columns device,district,profile,target[,broker,object,lat,lon,grid,cert,key])")
    p.add_argument("--config-keys", metavar="FILE",
                   help="the centre's configuration keys (`gridlink fleet config key`'s "
                        "FILE.pub): the device then takes signed configuration documents")
    p.add_argument("--release", metavar="V", help="a Pi's first release, installed in update "
                   "slot a (so a later update has a version to roll back to)")
    p.add_argument("--update-repo", metavar="REPO",
                   help="the update repository (folder or URL) to take --release from")
    p.add_argument("--update-root", metavar="FILE", help="the repository's first root "
                   "metadata the Pi trusts (default: REPO/metadata/1.root.json)")
    p.add_argument("--update-url", metavar="URL", help="where the Pi fetches updates, e.g. "
                   "https://gateway:8443/ota (GRIDLINK_UPDATE_REPO in device.env)")
    p.add_argument("--update-keys", metavar="FILE", help="a sensor node's: the keys that "
                   "sign its updates (`gridlink fleet keys node-keys`'s file)")
    p.add_argument("--jobs", type=int, default=4, help="devices provisioned at once (batch)")
    p.add_argument("--replace", action="store_true",
                   help="overwrite a target holding another device, or issue an id the "
                        "district's record (issued.csv) already has on another board")
    p.set_defaults(func=_provision)

    p = sub.add_parser("ca", help="make a district CA (bench, demo) and optionally a broker "
                       "certificate signed by it")
    p.add_argument("dir", help="directory for ca.pem and ca.key (must not hold them already)")
    p.add_argument("--cn", default="gridlink district CA", help="the CA's common name")
    p.add_argument("--broker-host", action="append", default=[], metavar="HOST",
                   help="also make broker.pem/broker.key for this name or IP (repeatable)")
    p.add_argument("--gateway-workers", type=int, default=0, metavar="N",
                   help="also make gridlink-gateway-0 … N-1 .pem/.key, one per gateway worker")
    p.set_defaults(func=_ca)

    p = sub.add_parser("gateway-certs", help="issue a certificate per gateway worker (CN "
                       "gridlink-gateway-<index>, the worker's client id) with a CA made by "
                       "'gridlink flash ca'")
    p.add_argument("dir", help="the CA's directory (ca.pem, ca.key); the files go there")
    p.add_argument("--workers", type=int, required=True, metavar="N",
                   help="workers 0 … N-1 (existing certificates are kept)")
    p.set_defaults(func=_gateway_certs)

    p = sub.add_parser("selftest", help="check a provisioned device: files, profile, "
                       "certificates, grid map, code book, broker")
    p.add_argument("target", help="a Pi's data directory, or a board's serial port / URL")
    p.add_argument("--offline", action="store_true", help="skip the broker check")
    p.add_argument("--timeout", type=float, default=5.0, help="broker wait, seconds")
    p.set_defaults(func=_selftest)

    p = sub.add_parser("crl-check", help="warn when the district CRL is near its next "
                       "update (an expired CRL locks every device out of the broker)")
    p.add_argument("crl", help="the CRL (PEM) the broker and the gateway read")
    p.add_argument("--warn-days", type=int, default=None,
                   help="warn this many days before the next update (default 14)")
    p.set_defaults(func=_crl_check)


def _crl_check(args):
    """0: the CRL is good for longer than the warning; 1: it expires soon or has."""
    from gridlink.gateway.crl import CRL_WARN_DAYS, crl_warning, read_crl

    info = read_crl(args.crl)
    days = CRL_WARN_DAYS if args.warn_days is None else args.warn_days
    warning = crl_warning(info, warn_days=days, what=f"CRL {args.crl}")
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
        return 1
    nxt = info.next_update.strftime("%Y-%m-%d %H:%M UTC") if info.next_update else "none"
    print(f"CRL {args.crl}: {len(info.serials)} revoked, next update {nxt}: ok")
    return 0


def _build(args):
    from .build import build

    m = build(args.out, board=args.board, compile=not args.source, optimize=args.optimize)
    total = sum(f["bytes"] for f in m["files"])
    for f in m["files"]:
        print(f"{f['bytes']:>7}  {f['sha256'][:12]}  {f['path']}")
    print(f"{len(m['files'])} files, {total} bytes → {args.out}")
    return 0


def _flash(args):
    from .flashing import flash_image

    n = flash_image(args.image, args.target)
    print(f"{n} files → {args.target}")
    return 0


def _provision(args):
    from .errors import FlashError
    from .provision import Spec, new_folder_note, provision, provision_batch

    if args.batch:
        defaults = {"broker": args.broker, "ca_cert": args.ca_cert, "ca_key": args.ca_key,
                    "grid_map": args.grid_map, "wifi": _wifi(args), "replace": args.replace,
                    "config_keys": args.config_keys}
        failed = provision_batch(args.batch, defaults, jobs=args.jobs)[2]
        return 1 if failed else 0
    missing = [o for o in ("target", "device", "district", "profile") if not getattr(args, o)]
    if missing:
        raise FlashError("provision needs " + ", ".join("--" + m for m in missing)
                         + " (or --batch devices.csv)")
    info = provision(Spec(args.device, args.district, args.profile, args.target, args.broker,
                          ca_cert=args.ca_cert, ca_key=args.ca_key, cert=args.cert,
                          key=args.key, grid_map=args.grid_map, object_id=args.object,
                          lat=args.lat, lon=args.lon, grid=args.grid, wifi=_wifi(args),
                          replace=args.replace, config_keys=args.config_keys,
                          release=args.release, update_repo=args.update_repo,
                          update_root=args.update_root, update_url=args.update_url,
                          update_keys=args.update_keys))
    cert = f", cert until {info['cert_until']}" if info["cert_until"] else ""
    release = f", release {info['release']} in slot a" if info.get("release") else ""
    print(f"{info['device']}: ok → {info['target']}{new_folder_note(info)} "
          f"({info['files']} files{cert}, "
          f"grid {info['grid']}, code book {info['codebook']}{release})")
    return 0


def _ca(args):
    from pathlib import Path

    from . import pki
    from .errors import FlashError

    d = Path(args.dir)
    for name in ("ca.pem", "ca.key"):
        if (d / name).exists():
            raise FlashError(f"{d / name} exists: a CA is never overwritten (devices trust it)")
    d.mkdir(parents=True, exist_ok=True)
    key, crt = pki.make_ca(args.cn)
    _write(d / "ca.key", key, 0o600)
    _write(d / "ca.pem", crt, 0o644)
    print(f"CA {args.cn!r} → {d / 'ca.pem'} (key {d / 'ca.key'}, keep it offline)")
    if pki.backend() == "cryptography":
        from gridlink.fleet.revoke import CRL_DAYS, CRL_NAME, publish

        publish(d)
        print(f"CRL, none revoked → {d / CRL_NAME} (re-sign it within {CRL_DAYS} d: "
              "'gridlink fleet crl')")
    if args.broker_host:
        bkey, bcrt = pki.sign_device("broker", d / "ca.pem", d / "ca.key",
                                     hosts=args.broker_host)
        _write(d / "broker.key", bkey, 0o600)
        _write(d / "broker.pem", bcrt, 0o644)
        print(f"broker certificate for {', '.join(args.broker_host)} → {d / 'broker.pem'}")
    if args.gateway_workers:
        _issue_gateway_certs(d, args.gateway_workers)
    return 0


def _gateway_certs(args):
    from pathlib import Path

    from .errors import FlashError

    d = Path(args.dir)
    if not ((d / "ca.pem").is_file() and (d / "ca.key").is_file()):
        raise FlashError(f"{d}: no ca.pem and ca.key (make them with 'gridlink flash ca')")
    if args.workers < 1:
        raise FlashError("--workers must be at least 1")
    _issue_gateway_certs(d, args.workers)
    return 0


def _issue_gateway_certs(d, n):
    """gridlink-gateway-<i>.pem/.key for workers 0 … n-1 (kept if there), recorded in the
    district's issued.csv: the broker names a client after its certificate, so each worker
    needs its own."""
    from . import pki
    from .issued import IssuedRecord

    for i in range(n):
        cn = f"gridlink-gateway-{i}"
        if (d / f"{cn}.pem").exists():
            print(f"{cn}: kept {d / f'{cn}.pem'}")
            continue
        key, crt = pki.sign_device(cn, d / "ca.pem", d / "ca.key")
        _write(d / f"{cn}.key", key, 0o600)
        _write(d / f"{cn}.pem", crt, 0o644)
        ci = pki.info(crt)
        IssuedRecord.beside(d / "ca.pem").append(cn, ci.serial, f"{ci.not_after:%Y-%m-%d}")
        print(f"{cn}: certificate {ci.serial} → {d / f'{cn}.pem'}")


def _write(path, data, mode):
    import os

    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _wifi(args):
    from .errors import FlashError

    if bool(args.wifi_ssid) != bool(args.wifi_psk):
        raise FlashError("give both --wifi-ssid and --wifi-psk, or neither")
    return (args.wifi_ssid, args.wifi_psk) if args.wifi_ssid else None


def _selftest(args):
    from .selftest import selftest

    checks = selftest(args.target, broker=not args.offline, timeout=args.timeout)
    for c in checks:
        print(c)
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)}/{len(checks)} checks passed", file=sys.stderr)
    return 1 if failed else 0
