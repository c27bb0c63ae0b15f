"""Problem reports: build, encode, decode and validate (wire protocol v1, I/O-free).

One validator, :func:`validate_report`, is used by the device before a report enters the
outbox and by the gateway on every message it receives.  ``docs/protocol.md`` explains
the fields; ``docs/schemas/report.json`` is the same rules as a JSON Schema.
"""

from . import canonjson
from .checks import (
    DIGITS,
    TASK_CHARS,
    UPPER_DIGITS,
    MessageError,
    check_device,
    check_enum,
    check_int,
    check_num,
    check_obj,
    check_report_id,
    check_sha256,
    check_str,
    check_time,
    is_num,
    only,
)
from .errors import CoreError
from .timefmt import TimeFormatError, iso_utc, parse_iso_utc

VERSION = 1
MAX_BYTES = 1024          # encoded size of one report, UTF-8 JSON
TEXT_MAX = 256            # characters (code points)
PHOTOS_MAX = 8
PHOTO_MAX_BYTES = 16 * 1024 * 1024
SEQ_MAX = 999999999999    # 12 digits
DEFAULT_MAX_FIX_AGE = 10.0

KINDS = ("event", "component")
SOURCES = ("button", "sensor", "operator", "task", "citizen")  # citizen: a kiosk's form
RESULTS = ("confirmed", "not_found", "resolved", "unresolved", "recorded", "no_clip")
TIME_SOURCES = ("gnss", "system")
FLAGS = ("clock_fallback", "fixed_position", "no_fix", "photo_dropped", "stale_fix")

# Code lengths of the standards whose layout is known (docs/domain-standards.md §2).
CODE_DIGITS = {"CJ/T 214-2007": 4, "GB/T 30428.2-2013": 4, "GB/T 47678.5-2026": 5}
OBJECT_DIGITS = {"CJ/T 214-2007": 16, "GB/T 47678.5-2026": 17}
STANDARD_CHARS = UPPER_DIGITS + "abcdefghijklmnopqrstuvwxyz /.:-"

_REQUIRED = ("v", "id", "device", "seq", "time", "time_source", "fix", "flags", "grid",
             "kind", "standard", "code", "source", "photos", "text")
_OPTIONAL = ("object", "task", "result", "urgent")
_FIX_KEYS = ("lat", "lon", "alt", "mode", "status", "sats", "hdop", "age")


class ReportError(MessageError):
    """A report that breaks protocol v1 (``field`` names the field, ``why`` the rule)."""


def report_id(device, seq):
    """``pv-0001:000000000042``: the device-made id that makes delivery idempotent."""
    check_device(ReportError, device)
    check_int(ReportError, seq, "seq", 1, SEQ_MAX)
    return f"{device}:{seq:012d}"


# -- validation ---------------------------------------------------------------------------

def validate_fix(fix, field="fix", err=ReportError):
    """The fix object of reports and status messages (null is checked by the caller)."""
    check_obj(err, fix, field, _FIX_KEYS)
    check_num(err, fix["lat"], field + ".lat", -90, 90)
    check_num(err, fix["lon"], field + ".lon", -180, 180)
    if fix["alt"] is not None:
        check_num(err, fix["alt"], field + ".alt", -1000, 100000)
    check_int(err, fix["mode"], field + ".mode", 1, 3)
    check_int(err, fix["status"], field + ".status", 0, 8)
    if fix["sats"] is not None:
        check_int(err, fix["sats"], field + ".sats", 0, 255)
    if fix["hdop"] is not None:
        check_num(err, fix["hdop"], field + ".hdop", 0, 100)
    check_num(err, fix["age"], field + ".age", 0, 1e9)


def _check_code(obj):
    std = obj["standard"]
    check_str(ReportError, std, "standard", 3, 40, STANDARD_CHARS,
              "a standard name such as 'GB/T 47678.5-2026'")
    if std[0] not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        raise ReportError("standard", "must start with a letter")
    n = CODE_DIGITS.get(std)
    if n is None:
        check_str(ReportError, obj["code"], "code", 2, 12, UPPER_DIGITS,
                  "2-12 digits or upper-case letters")
    else:
        _digits(obj["code"], "code", n, n, f"{n} digits for {std}")
    if "object" in obj:
        n = OBJECT_DIGITS.get(std)
        if n is None:
            check_str(ReportError, obj["object"], "object", 6, 32, UPPER_DIGITS,
                      "6-32 digits or upper-case letters")
        else:
            _digits(obj["object"], "object", n, n, f"a {n}-digit component id for {std}")


def _digits(x, field, lo, hi, what):
    if not isinstance(x, str) or not lo <= len(x) <= hi or not only(x, DIGITS):
        shown = x if not isinstance(x, str) or len(x) <= 40 else x[:37] + "..."
        raise ReportError(field, f"must be {what} (got {shown!r})")


def _check_photos(photos):
    if not isinstance(photos, list):
        raise ReportError("photos", "must be a list")
    if len(photos) > PHOTOS_MAX:
        raise ReportError("photos", f"at most {PHOTOS_MAX} photos (got {len(photos)})")
    seen = []
    for i, p in enumerate(photos):
        f = f"photos[{i}]"
        check_obj(ReportError, p, f, ("sha256", "bytes"))
        check_sha256(ReportError, p["sha256"], f + ".sha256")
        check_int(ReportError, p["bytes"], f + ".bytes", 1, PHOTO_MAX_BYTES)
        key = (p["sha256"], p["bytes"])
        if key in seen:
            raise ReportError(f, "duplicate photo")
        seen.append(key)


def _check_flags(obj):
    flags = obj["flags"]
    if not isinstance(flags, list):
        raise ReportError("flags", "must be a list")
    for i, fl in enumerate(flags):
        check_enum(ReportError, fl, f"flags[{i}]", FLAGS)
        if fl in flags[:i]:
            raise ReportError("flags", f"{fl!r} appears twice")
    fix = obj["fix"]
    system = obj["time_source"] == "system"
    if system != ("clock_fallback" in flags):
        raise ReportError("flags", "'clock_fallback' is set exactly when time_source is 'system'")
    if fix is None:
        if "no_fix" not in flags:
            raise ReportError("flags", "a report without a fix must carry 'no_fix'")
        for fl in ("stale_fix", "fixed_position"):
            if fl in flags:
                raise ReportError("flags", f"{fl!r} needs a fix")
    else:
        if "no_fix" in flags and "fixed_position" not in flags:
            raise ReportError("flags", "'no_fix' with a fix is only allowed with 'fixed_position'")
        if "stale_fix" in flags and "fixed_position" in flags:
            raise ReportError("flags", "'stale_fix' and 'fixed_position' exclude each other")


def validate_report(obj, encoded_size=None):
    """Check a decoded report against protocol v1; returns it, raises ReportError.

    Besides the JSON Schema's rules it checks what a schema cannot: the id is
    ``device:seq``, the date exists, and the canonical encoding is at most 1024 bytes.
    ``encoded_size``: a caller holding the report's wire bytes (the gateway) passes their
    length, which is then checked against the limit instead of re-encoding the report;
    the text is still checked to be encodable (no lone surrogates from ``\\u`` escapes).
    """
    if not isinstance(obj, dict):
        raise ReportError("report", "must be a JSON object")
    check_obj(ReportError, obj, "", _REQUIRED, _OPTIONAL)
    if obj["v"] != VERSION or not isinstance(obj["v"], int) or isinstance(obj["v"], bool):
        raise ReportError("v", f"must be {VERSION} (got {obj['v']!r})")
    check_device(ReportError, obj["device"])
    check_int(ReportError, obj["seq"], "seq", 1, SEQ_MAX)
    device, seq = check_report_id(ReportError, obj["id"])
    if device != obj["device"] or seq != obj["seq"]:
        raise ReportError("id", "must be device + ':' + the 12-digit seq")
    check_time(ReportError, obj["time"], "time")
    check_enum(ReportError, obj["time_source"], "time_source", TIME_SOURCES)
    if obj["fix"] is not None:
        validate_fix(obj["fix"])
    _check_flags(obj)
    if obj["grid"] is not None:
        _digits(obj["grid"], "grid", 14, 15, "a 14- or 15-digit grid code")
    check_enum(ReportError, obj["kind"], "kind", KINDS)
    _check_code(obj)
    check_enum(ReportError, obj["source"], "source", SOURCES)
    if obj["source"] == "task":
        if "task" not in obj or "result" not in obj:
            raise ReportError("task", "a report with source 'task' needs 'task' and 'result'")
    elif "task" in obj or "result" in obj:
        raise ReportError("source", "'task' and 'result' need source 'task'")
    if "task" in obj:
        check_task_id(obj["task"], "task")
        check_enum(ReportError, obj["result"], "result", RESULTS)
    if "urgent" in obj and obj["urgent"] is not True:
        raise ReportError("urgent", "must be true when present (an urgent report, 突发事件; "
                          f"leave it out for a routine one), not {obj['urgent']!r}")
    _check_photos(obj["photos"])
    check_str(ReportError, obj["text"], "text", 0, TEXT_MAX)
    if encoded_size is None:
        size = len(_dumps(obj))
    else:
        _check_encodable(obj["text"])
        size = encoded_size
    if size > MAX_BYTES:
        raise ReportError("report", f"encodes to {size} bytes, more than {MAX_BYTES}; "
                          "shorten the text or attach fewer photos")
    return obj


def _check_encodable(text):
    try:
        text.encode("utf-8")
    except UnicodeError:
        raise ReportError("report", "string is not valid Unicode (lone surrogate)")  # noqa: B904


def check_task_id(x, field="task", err=ReportError):
    """Task ids are made by the gateway: ``T-`` plus 1-62 of [A-Za-z0-9_.:-]."""
    check_str(err, x, field, 3, 64, TASK_CHARS, "'T-' followed by letters, digits, '_.:-'")
    if not x.startswith("T-"):
        raise err(field, "must start with 'T-'")


def _dumps(obj):
    try:
        return canonjson.dumps(obj)
    except canonjson.EncodeError as exc:
        raise ReportError("report", str(exc))  # noqa: B904


# -- encoding -----------------------------------------------------------------------------

def encode_report(obj):
    """Validate and encode: canonical compact UTF-8 JSON bytes (≤ 1024)."""
    validate_report(obj)
    return _dumps(obj)


def decode_report(data):
    """Bytes from the wire → validated report dict; raises ReportError."""
    if len(data) > MAX_BYTES:
        raise ReportError("report", f"{len(data)} bytes, more than {MAX_BYTES}")
    try:
        obj = canonjson.loads(data)
    except canonjson.EncodeError as exc:
        raise ReportError("report", str(exc))  # noqa: B904
    return validate_report(obj)


# -- building -----------------------------------------------------------------------------

def _get(src, name, default=None):
    if isinstance(src, dict):
        return src.get(name, default)
    return getattr(src, name, default)


def _round(x, n):
    return None if x is None else round(float(x), n)


def _fix_time(t):
    """A fix's time as unix seconds: accepts unix seconds or a wire/NMEA ISO string."""
    if t is None or is_num(t):
        return t
    if isinstance(t, str):
        if len(t) == 20 and t.endswith("Z"):      # no fraction: 2026-11-28T02:15:07Z
            t = t[:19] + ".000Z"
        try:
            return parse_iso_utc(t)
        except TimeFormatError as exc:
            raise ReportError("fix.time", str(exc))  # noqa: B904
    raise ReportError("fix.time", f"must be unix seconds or an ISO time (got {t!r})")


def _gnss_fix(fix, fix_age):
    """(report fix dict or None, unix time or None, age) of a decoder fix object/dict."""
    if fix is None:
        return None, None, None
    age = fix_age if fix_age is not None else _get(fix, "age")
    if age is not None and (not is_num(age) or age < 0):
        raise ReportError("fix.age", f"must be seconds >= 0 (got {age!r})")
    t = _get(fix, "epoch")
    if t is None:
        t = _fix_time(_get(fix, "time"))
    lat, lon = _get(fix, "lat"), _get(fix, "lon")
    mode = _get(fix, "mode") or 0
    if lat is None or lon is None or mode < 2:
        return None, t, age
    out = {
        "lat": _round(lat, 7), "lon": _round(lon, 7), "alt": _round(_get(fix, "alt"), 2),
        "mode": int(mode), "status": int(_get(fix, "status", 1) or 0),
        "sats": _get(fix, "sats"), "hdop": _round(_get(fix, "hdop"), 2),
        "age": _round(age if age is not None else 0, 3),
    }
    return out, t, age


def _fixed(pos):
    if isinstance(pos, (tuple, list)):
        lat, lon = pos[0], pos[1]
        alt = pos[2] if len(pos) > 2 else None
    else:
        lat, lon, alt = _get(pos, "lat"), _get(pos, "lon"), _get(pos, "alt")
    return {"lat": _round(lat, 7), "lon": _round(lon, 7), "alt": _round(alt, 2),
            "mode": 3 if alt is not None else 2, "status": 0, "sats": None, "hdop": None,
            "age": 0}


def _photos(photos):
    out = []
    for p in photos or ():
        if isinstance(p, dict):
            out.append({"sha256": p.get("sha256"), "bytes": p.get("bytes")})
        else:
            out.append({"sha256": p[0], "bytes": p[1]})
    return out


def renumber(obj, seq):
    """The same report under sequence ``seq`` (and so a new id): what a device sends again
    when the gateway refused the old id as used by another report.  Raises ReportError."""
    new = dict(obj)
    new["seq"] = seq
    new["id"] = report_id(obj["device"], seq)
    validate_report(new)
    return new


def make_report(device, seq, fix, clock, kind, standard, code, grid=None, object_id=None,
                source="button", photos=(), text="", task=None, result=None,
                max_fix_age=DEFAULT_MAX_FIX_AGE, fixed_position=None, check_code=None,
                fix_age=None, photo_dropped=False, urgent=False):
    """Build a validated report dict; never drops a report for want of a fix or a clock.

    fix: the latest GNSS fix (dict or object with lat, lon, alt, mode, status, sats, hdop,
      and its time as ``epoch`` (unix seconds) or ``time`` (unix seconds or ISO)) or None.
    fix_age: seconds since that fix was taken, from a monotonic clock (else ``fix.age``).
    clock: the device clock, a callable returning unix seconds (or the seconds themselves);
      used only when the fix has no time, and then the report is flagged "clock_fallback".
      Unix means the 1970 epoch: a MicroPython port whose ``time.time()`` counts from 2000
      must add 946684800.
    fixed_position: (lat, lon[, alt]) of a fixed terminal; used instead of the GNSS
      position and flagged "fixed_position".
    check_code: optional ``check_code(standard, kind, code)`` from a code book; a false
      result or a raised CoreError rejects the code.
    A fix older than ``max_fix_age`` seconds is kept and flagged "stale_fix"; no fix gives
    ``"fix": null`` and "no_fix".  Text is never truncated: too long → ReportError.
    photo_dropped: the device took (or tried) a photo it could not keep; the report goes
      without it, flagged "photo_dropped".
    urgent: an urgent report (突发事件): ``"urgent": true``, which leaves the device and is
      committed and listed before any backlog.
    """
    flags = ["photo_dropped"] if photo_dropped else []
    gfix, t, age = _gnss_fix(fix, fix_age)
    if gfix is None:
        flags.append("no_fix")
    elif age is None or age > max_fix_age:
        flags.append("stale_fix")
    if fixed_position is not None:
        if "stale_fix" in flags:
            flags.remove("stale_fix")
        rfix = _fixed(fixed_position)
        flags.append("fixed_position")
    else:
        rfix = gfix
    if t is not None and age is not None:
        capture, time_source = t + age, "gnss"
    else:
        now = clock() if callable(clock) else clock
        if not is_num(now):
            raise ReportError("time", "no GNSS time and the device clock gave no time")
        capture, time_source = now, "system"
        flags.append("clock_fallback")
    try:
        when = iso_utc(capture)
    except TimeFormatError as exc:
        raise ReportError("time", str(exc))  # noqa: B904
    rep = {
        "v": VERSION, "id": report_id(device, seq), "device": device, "seq": seq,
        "time": when, "time_source": time_source, "fix": rfix, "flags": sorted(flags),
        "grid": grid, "kind": kind, "standard": standard, "code": code, "source": source,
        "photos": _photos(photos), "text": text,
    }
    if object_id is not None:
        rep["object"] = object_id
    if task is not None or result is not None:
        rep["task"] = task
        rep["result"] = result
    if urgent:
        rep["urgent"] = True
    if isinstance(text, str) and len(text) > TEXT_MAX:
        raise ReportError("text", f"{len(text)} characters, at most {TEXT_MAX}; "
                          "the text is kept whole, so shorten it")
    validate_report(rep)
    if check_code is not None:
        _codebook(check_code, standard, kind, code)
    return rep


def _codebook(check_code, standard, kind, code):
    try:
        ok = check_code(standard, kind, code)
    except CoreError as exc:
        raise ReportError("code", str(exc))  # noqa: B904
    if not ok:
        raise ReportError("code", f"{code} is not a {kind} class of {standard} in the code book")
