"""``gridlink fleet config``: the centre's configuration key, and desired state over the
gateway's HTTP API (``--api``, an API token of a fleet technician in ``--token`` or
``GRIDLINK_TOKEN``): set a change for a device or a group, show it, diff desired against
reported."""

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from .errors import FleetError
from .keys import _private_key_cls, _write_private


def make_key(path):
    """A new Ed25519 key in ``path`` (0600, never overwritten) and its public half, 64 hex
    digits, in ``path.pub`` (what devices get: ``gridlink device run --config-keys``)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    path = Path(path)
    pub = path.with_name(path.name + ".pub")
    if path.exists() or pub.exists():
        raise FleetError(f"{path} or {pub} exists: keys are never overwritten")
    key = _private_key_cls().generate()
    _write_private(path, key)
    hexkey = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    pub.write_text(hexkey + "\n")
    return hexkey


def parse_button(text):
    """``garbage=event:07001[:暴露垃圾]`` → (name, {kind, code[, text]})."""
    name, sep, rest = text.partition("=")
    parts = rest.split(":", 2)
    if not sep or not name or len(parts) < 2 or not all(parts[:2]):
        raise FleetError(f"--button {text!r}: give NAME=KIND:CODE[:TEXT], e.g. "
                         "garbage=event:07001")
    button = {"kind": parts[0], "code": parts[1]}
    if len(parts) == 3:
        button["text"] = parts[2]
    return name, button


class Client:
    """JSON over HTTP to the gateway's API with a bearer token."""

    def __init__(self, base, token):
        if not base:
            raise FleetError("give the gateway's API: --api https://centre:8443 (or GRIDLINK_API)")
        if not token:
            raise FleetError("give an API token of a fleet technician: --token or "
                             "GRIDLINK_TOKEN (`gridlink users token NAME --label fleet`)")
        self.base, self.token = base.rstrip("/"), token

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                detail = _detail(json.loads(err.read()).get("detail"))
            except (ValueError, AttributeError):
                detail = None
            raise FleetError(f"{method} {path}: {err.code} {detail or err.reason}") from None
        except urllib.error.URLError as exc:
            raise FleetError(f"{self.base}: {exc.reason}") from None


def _detail(detail):
    """An error body's ``detail``: text as it is, a validation list as ``field: message``."""
    if isinstance(detail, list):
        return "; ".join(".".join(str(p) for p in d.get("loc", [])[1:]) + ": " + d.get("msg", "")
                         for d in detail if isinstance(d, dict))
    return detail


def client_of(args):
    return Client(args.api or os.environ.get("GRIDLINK_API"),
                  args.token or os.environ.get("GRIDLINK_TOKEN"))


def change_of(args):
    """The API body of ``config set``'s options."""
    targets = [(s, v) for s, v in (("device", args.device), ("district", args.district),
                                   ("profile", args.profile), ("list", args.devices)) if v]
    if len(targets) != 1:
        raise FleetError("name whom the change reaches: one of --device, --district, "
                         "--profile, --devices")
    scope, target = targets[0]
    settings = {}
    if args.button:
        settings["buttons"] = dict(parse_button(b) for b in args.button)
    for name, value in (("track_interval_s", args.track_interval),
                        ("status_interval_s", args.status_interval),
                        ("photo_max_bytes", args.photo_max_bytes),
                        ("max_fix_age_s", args.max_fix_age)):
        if value is not None:
            settings[name] = value
    return {"scope": scope, "target": target.split(",") if scope == "list" else target,
            "settings": settings, "map": map_sha256(args.map), "codebook": args.codebook,
            "broker": args.broker, "reset": args.reset or []}


def map_sha256(value):
    """``--map``: a sha256 as given, or the sha256 of the map file it names."""
    import hashlib
    from pathlib import Path

    if value is None or not Path(value).is_file():
        return value
    return hashlib.sha256(Path(value).read_bytes()).hexdigest()


def diff_lines(states):
    """One line per device: desired, reported, drift with the fields, last refusal."""
    lines = []
    for s in states:
        mark = "DRIFT" if s["drift"] else "ok"
        line = f"{s['device']:<14} desired {s['desired'] or '-':<5} reported " \
               f"{s['reported'] or '-':<5} {mark}"
        for d in s["differences"]:
            line += f"\n    {d['field']}: desired {d['desired']!r}, reported {d['reported']!r}"
        refused = s.get("last_refused")
        if refused:
            line += (f"\n    refused version {refused['version']}: {refused['reason']}"
                     f"{' ' + refused['field'] if refused['field'] else ''}: "
                     f"{refused['message']}")
        lines.append(line)
    return lines
