"""The fleet commands that act through the gateway's HTTP API: rollouts and the fleet's
versions.  They sign in with an API token (``gridlink users token``) of a 技术员, so the
gateway checks the role and writes the audit trail in that person's name.

``Centre(url, token)``: ``call(method, path, body)`` answers the JSON body or raises
FleetError with the gateway's own explanation (its ``detail``) and the HTTP status.
"""

import json
import os
import ssl
import urllib.error
import urllib.request

from .errors import FleetError


class Centre:
    """JSON over HTTP(S) to one gateway, with ``Authorization: Bearer <token>``."""

    def __init__(self, url, token, ca=None, timeout=30.0):
        url = url or os.environ.get("GRIDLINK_GATEWAY")
        token = token or os.environ.get("GRIDLINK_TOKEN")
        if not url:
            raise FleetError("no gateway: give --gateway https://host:port or set "
                             "GRIDLINK_GATEWAY")
        if not url.startswith(("http://", "https://")):
            raise FleetError(f"--gateway {url!r}: an http:// or https:// URL")
        if not token:
            raise FleetError("no API token: give --token or set GRIDLINK_TOKEN "
                             "(a 技术员's token: gridlink users token NAME)")
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout
        self.context = ssl.create_default_context(cafile=ca) if ca else None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
            "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,
                                        context=self.context) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raise FleetError(f"{method} {path}: {err.code}: {_detail(err)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FleetError(f"gateway {self.url} not reachable: {reason}") from None


def _detail(err):
    try:
        body = json.loads(err.read() or b"null")
    except ValueError:
        return err.reason
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):        # a request the API's schema refused
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
                         for d in detail if isinstance(d, dict))
    return detail or err.reason


def parse_stages(text):
    """"5,50,100" → [5, 50, 100]; FleetError otherwise (the gateway checks the rest)."""
    try:
        return [int(p.strip().rstrip("%")) for p in text.split(",")]
    except ValueError:
        raise FleetError(f"--stages {text!r}: percentages separated by commas, e.g. "
                         "5,50,100") from None


def target_of(district=None, profile=None, devices=None):
    given = [(k, v) for k, v in (("district", district), ("profile", profile),
                                 ("devices", devices)) if v]
    if len(given) != 1:
        raise FleetError("give one target: --district CODE, --profile NAME or "
                         "--devices ID,ID…")
    key, value = given[0]
    if key == "devices":
        value = [d.strip() for d in value.split(",") if d.strip()]
    return {key: value}


def rollout_lines(r, full=False):
    """A rollout as text: one summary line, then (``full``) its stages and devices."""
    (key, value), = r["target"].items()
    target = ",".join(value) if isinstance(value, list) else value
    stages = "→".join(f"{p}%" for p in r["stages"])
    done = sum(s.get("installed", 0) + s.get("skipped", 0) for s in r["progress"])
    total = sum(s["devices"] for s in r["progress"])
    lines = [f"{r['id']}  {r['kind']} {r['version']}  {key} {target}  {r['state']}  "
             f"stage {r['stage']}/{len(r['stages'])} ({stages})  {done}/{total} installed"
             + (f"  — {r['reason']}" if r["reason"] else "")]
    if full:
        for s in r["progress"]:
            counts = ", ".join(f"{k} {s[k]}" for k in ("waiting", "offered", "installed",
                                                       "failed", "skipped", "withdrawn")
                               if s.get(k))
            lines.append(f"  stage {s['stage']} ({s['percent']}%): {s['devices']} devices"
                         + (f": {counts}" if counts else ""))
        for d in r["devices"]:
            lines.append(f"    {d['device']:<16} stage {d['stage'] + 1}  {d['outcome']}"
                         + (f" ({d['reason']})" if d["reason"] else ""))
    return lines


def device_lines(devices):
    """The fleet's versions: one line per device."""
    head = (f"{'device':<16} {'district':<8} {'state':<9} {'runs':<8} {'slot':<4} "
            f"{'a':<8} {'b':<8} {'trial':<8} last failure")
    lines = [head]
    for d in devices:
        ota = d.get("ota") or {}
        slots = ota.get("slots") or {}
        failed = ota.get("failed")
        lines.append(
            f"{d['device']:<16} {d.get('district') or '-':<8} {d.get('state') or '-':<9} "
            f"{ota.get('installed') or '-':<8} {ota.get('slot') or '-':<4} "
            f"{slots.get('a') or '-':<8} {slots.get('b') or '-':<8} "
            f"{ota.get('pending') or '-':<8} "
            + (f"{failed['version']}: {failed['reason']}" if failed else "-"))
    return lines
