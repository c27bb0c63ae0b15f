"""``gridlink fleet rollout …`` and ``gridlink fleet devices``: their options as API
bodies and the gateway's answers as text.  The calls go through the gateway's API with a
技术员's token (``config.Client``), so the gateway checks the role and audits each act in
that person's name."""

from .errors import FleetError


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
