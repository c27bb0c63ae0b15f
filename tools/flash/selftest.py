"""``gridlink flash selftest``: check a provisioned target before it goes on the street.

Checks, each reported as one line: on a MicroPython board, the firmware files match the
image manifest ``flash`` left on it (``gridlink/image.json``; its version is printed);
the files match what provisioning wrote (sha256 in the marker), the profile is valid and
names this device, the certificate chain is valid and not expired and the key matches,
the grid map loads and puts the device's fixed position in its grid, the code book loads
and is the version the marker names, and the broker accepts an MQTT connection made with
the device's certificate.
"""

import json
import ssl
import tempfile
import threading
from pathlib import Path

from . import pki, targets
from .errors import FlashError
from .provision import IMAGE_MANIFEST, MARKERS, MCU_DIR, PI_DIR, TLS_FILES, _sha, parse_broker


class Check:
    def __init__(self, name, ok, detail):
        self.name, self.ok, self.detail = name, ok, detail

    def __str__(self):
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name:<9} {self.detail}"


def _marker(target):
    found = target.read_many([rel for rel, _ in MARKERS])
    for rel, kind in MARKERS:
        data = found[rel]
        if data is not None:
            try:
                return rel, kind, json.loads(data)
            except ValueError as exc:
                raise FlashError(f"{target.name}: {rel} is not valid JSON ({exc})") from None
    raise FlashError(f"{target.name}: not provisioned (no {' or '.join(r for r, _ in MARKERS)})")


def selftest(target, broker=True, timeout=5.0, now=None):
    """Run every check on ``target`` (path or serial URL); returns a list of Check.

    ``now`` (aware datetime) checks the certificates as of another time.
    """
    t = targets.open_target(target)
    rel, kind, marker = _marker(t)
    prefix = MCU_DIR if kind == "micropython" else PI_DIR
    checks = [_firmware_check(t)] if kind == "micropython" else []
    files = {}
    bad = []
    listed = sorted(marker.get("provision", {}).get("files", {}).items())
    got = t.read_many([name for name, _ in listed])
    for name, sha in listed:
        data = got[name]
        files[name] = data
        if data is None:
            bad.append(f"{name} missing")
        elif _sha(data) != sha:
            bad.append(f"{name} changed")
    checks.append(Check("files", not bad and bool(files),
                        "; ".join(bad) if bad else f"{len(files)} files match {rel}"))
    device = marker.get("device")
    prof = _json(files.get(prefix + "profile.json"))
    checks.append(_profile_check(prof, device))
    tls = _tls_check(files, prefix, now)
    checks.append(tls[0])
    checks.append(_grid_check(files.get(prefix + "gridmap.glgm"), prof))
    checks.append(_book_check(files.get(prefix + "codebook.json"), marker.get("codebook")))
    if broker:
        checks.append(_broker_check(marker, device, tls[1], timeout))
    return checks


def _firmware_check(t):
    """The board's firmware files against the manifest of the image flashed onto it."""
    manifest = _json(t.read(IMAGE_MANIFEST))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        return Check("firmware", False, f"never flashed: no readable {IMAGE_MANIFEST} "
                     "(run gridlink flash flash IMAGE TARGET)")
    listed = [(f.get("path"), f.get("sha256")) for f in manifest["files"]
              if isinstance(f, dict)]
    got = t.read_many([p for p, _ in listed])
    bad = [f"{p} missing" if got[p] is None else f"{p} changed"
           for p, sha in listed if got[p] is None or _sha(got[p]) != sha]
    version = manifest.get("firmware", "?")
    if bad or not listed:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        return Check("firmware", False, f"firmware {version}: "
                     + ("; ".join(bad[:3]) + more if bad else "the manifest lists no files"))
    return Check("firmware", True, f"firmware {version}, {len(listed)} files match the image "
                 f"({manifest.get('board') or 'any board'})")


def _json(data):
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def _profile_check(prof, device):
    from gridlink.firmware.device import profile as profiles

    if prof is None:
        return Check("profile", False, "profile.json missing or not JSON")
    problems = profiles.validate(prof, "profile.json")
    if problems:
        return Check("profile", False, str(problems[0]).splitlines()[0])
    if prof.get("device_id") != device:
        return Check("profile", False, f"names device {prof.get('device_id')!r}, not {device!r}")
    return Check("profile", True, f"{prof['profile']} valid for {device}")


def _tls_check(files, d, now):
    ca, cert, key = (files.get(d + TLS_FILES[n]) for n in ("ca", "cert", "key"))
    if ca is None and cert is None and key is None:
        return Check("cert", True, "no TLS material (plain mqtt://)"), None
    if None in (ca, cert, key):
        return Check("cert", False, "ca.pem, device.pem and device.key must all be present"), None
    try:
        ci = pki.verify_chain(cert, ca, key, now=now)
    except pki.CertError as exc:
        return Check("cert", False, str(exc)), None
    return Check("cert", True, f"CN={ci.cn}, signed by the CA, valid until "
                 f"{ci.not_after:%Y-%m-%d}"), (ca, cert, key)


def _grid_check(data, prof):
    pos = (prof or {}).get("position")
    if data is None:
        return Check("grid", True, "no grid map provisioned" +
                     (f"; fixed grid {prof.get('grid')}" if prof and prof.get("grid") else ""))
    from gridlink.firmware.core.errors import CoreError
    from gridlink.firmware.core.gridmap import GridMap

    try:
        gm = GridMap(data)
    except CoreError as exc:
        return Check("grid", False, f"grid map does not load: {exc}")
    if not pos:
        return Check("grid", True, f"grid map loads ({gm.n_cells} cells); no fixed position")
    code = gm.locate(pos["lon"], pos["lat"])
    if code is None:
        return Check("grid", False, f"position {pos['lat']}, {pos['lon']} is outside the map")
    if prof.get("grid") and prof["grid"] != code:
        return Check("grid", False, f"map puts the position in {code}, profile says "
                     f"{prof['grid']}")
    return Check("grid", True, f"position {pos['lat']}, {pos['lon']} → {code}")


def _book_check(data, want):
    from gridlink.firmware.core.codebook import CodeBook
    from gridlink.firmware.core.errors import CoreError

    if data is None:
        return Check("codebook", False, "codebook.json missing")
    try:
        book = CodeBook(json.loads(data))
    except (ValueError, CoreError) as exc:
        return Check("codebook", False, f"does not load: {exc}")
    if want and book.id != want:
        return Check("codebook", False, f"is {book.id}, the marker names {want}")
    return Check("codebook", True, book.id)


def _broker_check(marker, device, pem, timeout):
    import paho.mqtt.client as mqtt

    b = marker.get("broker") or {}
    try:
        host, port, tls = parse_broker(b.get("url") or
                                       f"{'mqtts' if b.get('tls') else 'mqtt'}://{b.get('host')}:"
                                       f"{b.get('port')}")
    except FlashError as exc:
        return Check("broker", False, str(exc))
    done = threading.Event()
    result = {}

    def on_connect(client, userdata, flags, reason, props):
        result["rc"] = reason
        done.set()

    def on_disconnect(client, userdata, flags, reason, props):
        result.setdefault("rc", reason)
        done.set()

    # The broker names the connection after the certificate (use_username_as_clientid):
    # this takes the device's own session.  Resume it (no clean session) and acknowledge
    # nothing, so whatever the broker had queued for the device stays queued for it.
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, clean_session=False,
                    manual_ack=True)
    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    with tempfile.TemporaryDirectory() as d:
        if tls:
            if pem is None:
                return Check("broker", False, f"{host}:{port} needs TLS but no certificate")
            paths = []
            for name, data in zip(("ca.pem", "device.pem", "device.key"), pem, strict=True):
                p = Path(d, name)
                p.write_bytes(data)
                paths.append(str(p))
            c.tls_set(ca_certs=paths[0], certfile=paths[1], keyfile=paths[2],
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        try:
            c.connect(host, port, keepalive=10)
        except (OSError, ssl.SSLError) as exc:
            return Check("broker", False, f"{host}:{port} unreachable: {exc}")
        c.loop_start()
        try:
            if not done.wait(timeout):
                return Check("broker", False, f"{host}:{port}: no CONNACK in {timeout}s")
        finally:
            c.disconnect()
            c.loop_stop()
    rc = result["rc"]
    if rc.is_failure:
        return Check("broker", False, f"{host}:{port} refused the connection: {rc}")
    how = "with the device certificate" if tls else "without TLS"
    return Check("broker", True, f"{host}:{port} accepted {device} {how}")
