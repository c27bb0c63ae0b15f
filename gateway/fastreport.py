"""The gateway's fast path for reports: msgspec decodes and checks in C, Python the rest.

``check_report(payload)`` returns the report as a msgspec ``Struct`` when it can vouch
that the core's ``validate_report`` (with ``encoded_size``) accepts it, and None
otherwise: the caller then takes the slow path (``json`` + the core's validator), which
gives the canonical rejection reason.  ``decode_report(payload)`` is the same as the
dict ``json.loads(payload)`` gives.  Absent optional keys (``object``, ``task``,
``result``, ``urgent``) are ``UNSET`` on the Struct.  A None for a valid report only
costs time; it happens for what devices never send (see "Falls back" below).

msgspec decodes the payload straight into a ``Struct`` whose types and constraints are
the per-field rules of protocol v1 (types without bool for int, no NaN/Infinity, number
ranges, enums, text length, unknown or missing keys, explicit nulls for the optional
keys).  What it cannot express, or only slowly — string formats (its ``pattern`` costs
about 1 µs a field), id = device:seq, the date exists, the flag rules, the standard's
code and object digits, task/result, photo duplicates — is checked here in Python,
reusing the core's constants and, for the rare cases, its checks.

Where msgspec and ``json`` read the same bytes, they agree: a duplicate key keeps its
last value in both (msgspec checks every occurrence, so a bad first value falls back);
ints stay ints (each number field is ``int | float``, never coerced); big ints are ints.
msgspec is the stricter reader elsewhere, and each such case falls back:

  * a UTF-8 BOM, or UTF-16/32: ``json.loads`` of bytes reads those (the gateway does not,
    it decodes UTF-8 first) — the only valid reports not vouched for;
  * a lone ``\\uD800``-style surrogate escape or CESU-8 surrogate bytes, NaN, Infinity
    and numbers beyond a double (``1e400``): msgspec refuses them, and so does the core
    (text must be encodable, other strings have fixed character sets, numbers finite).

The result's key order is the protocol's (``canonjson``'s, what devices send), not the
payload's; photo entries keep the payload's order (the row stores them as text).
"""

import re
from typing import Annotated, Literal

from gridlink.firmware.core.checks import DEVICE_CHARS, DIGITS, HEX, UPPER_DIGITS, check_time
from gridlink.firmware.core.report import (
    CODE_DIGITS,
    FLAGS,
    KINDS,
    MAX_BYTES,
    OBJECT_DIGITS,
    PHOTO_MAX_BYTES,
    PHOTOS_MAX,
    RESULTS,
    SEQ_MAX,
    SOURCES,
    STANDARD_CHARS,
    TEXT_MAX,
    TIME_SOURCES,
    VERSION,
    ReportError,
    check_task_id,
)

try:
    import msgspec
    from msgspec import UNSET, Meta, Struct, UnsetType
except ImportError:  # the gateway still works, on the slow path only
    msgspec = None
    UNSET = object()  # never found on anything: check_report always says "slow path"

__all__ = ["UNSET", "check_report", "decode_report"]


def _unavailable(payload):
    """msgspec is not installed: never vouch, the caller's slow path judges everything."""
    return None


def _chars(allowed):
    """A regex character class of exactly the characters in ``allowed``."""
    return "[" + "".join(re.escape(c) for c in allowed) + "]"


# String formats are checked here, not by msgspec's ``pattern`` (about 1 µs each there,
# a fifth of that called directly).  fullmatch: "$" would also match before a newline.
# check_time's format and time of day (whether the date exists is asked of check_time)
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                   r"\.[0-9]{3}Z").fullmatch
# report._check_code: 3-40 of STANDARD_CHARS, starting with a letter
_STANDARD = re.compile("[A-Za-z]" + _chars(STANDARD_CHARS) + "{2,39}").fullmatch
_KNOWN_STANDARDS = frozenset(s for s in CODE_DIGITS if _STANDARD(s))


if msgspec is None:
    check_report = decode_report = _unavailable
else:
    def _int(lo, hi):
        return Annotated[int, Meta(ge=lo, le=hi)]

    def _num(lo, hi):
        # core's check_num: an int stays an int, so never let msgspec coerce int → float
        # (a constraint cannot sit on ``int | float``, but a union of two can)
        return Annotated[int, Meta(ge=lo, le=hi)] | Annotated[float, Meta(ge=lo, le=hi)]

    class _Fix(Struct, forbid_unknown_fields=True, gc=False):
        # report.validate_fix; every key required, some may be null
        lat: _num(-90, 90)
        lon: _num(-180, 180)
        alt: _num(-1000, 100000) | None
        mode: _int(1, 3)
        status: _int(0, 8)
        sats: _int(0, 255) | None
        hdop: _num(0, 100) | None
        age: _num(0, 10**9)

    class _Report(Struct, forbid_unknown_fields=True, gc=False):
        v: Literal[VERSION]
        id: str
        device: str
        seq: _int(1, SEQ_MAX)
        time: str
        time_source: Literal[TIME_SOURCES]
        fix: _Fix | None
        # more flags than FLAGS has must repeat one, which the core refuses
        flags: Annotated[list[Literal[FLAGS]], Meta(max_length=len(FLAGS))]
        grid: str | None
        kind: Literal[KINDS]
        standard: str
        code: str
        source: Literal[SOURCES]
        # a dict, not a Struct: the row keeps each photo's keys in the payload's order
        photos: Annotated[list[dict[str, str | int]], Meta(max_length=PHOTOS_MAX)]
        text: Annotated[str, Meta(max_length=TEXT_MAX)]
        # optional keys: absent is UNSET; an explicit null is refused (as by the core)
        object: UnsetType | str = UNSET
        task: UnsetType | str = UNSET
        result: UnsetType | Literal[RESULTS] = UNSET
        urgent: UnsetType | bool = UNSET  # only true is valid: false falls back (refused)

    _decode = msgspec.json.Decoder(_Report).decode
    _DAYS = {}  # "YYYY-MM-DD" of dates check_time accepted (bounded)

    def check_report(payload):
        """The report as a ``_Report`` Struct if the core's validator accepts it (with
        ``encoded_size=len(payload)``); None to say "take the slow path"."""
        try:
            if len(payload) > MAX_BYTES:
                return None
            r = _decode(payload)
        except Exception:  # msgspec's DecodeError/ValidationError, UnicodeDecodeError...
            return None
        device, seq = r.device, r.seq
        # check_device, then the id: device + ":" + 12 digits that read as seq (≤ SEQ_MAX)
        if not 3 <= len(device) <= 32 or device.strip(DEVICE_CHARS) or device[0] == "-":
            return None
        if r.id != f"{device}:{seq:012d}":
            return None
        t = r.time
        if _TIME(t) is None or (t[:10] not in _DAYS and not _date_ok(t)):
            return None
        grid = r.grid
        if grid is not None and (not 14 <= len(grid) <= 15 or grid.strip(DIGITS)):
            return None
        fix, flags, system = r.fix, r.flags, r.time_source == "system"
        if (flags or system or fix is None) and not _flags_ok(flags, system, fix):
            return None
        std, code = r.standard, r.code
        if std not in _KNOWN_STANDARDS and _STANDARD(std) is None:
            return None
        n = CODE_DIGITS.get(std)
        if n is None:
            if not 2 <= len(code) <= 12 or code.strip(UPPER_DIGITS):
                return None
        elif len(code) != n or code.strip(DIGITS):
            return None
        obj_id = r.object
        if obj_id is not UNSET:
            n = OBJECT_DIGITS.get(std)
            if n is None:
                if not 6 <= len(obj_id) <= 32 or obj_id.strip(UPPER_DIGITS):
                    return None
            elif len(obj_id) != n or obj_id.strip(DIGITS):
                return None
        task, result = r.task, r.result
        if r.source == "task":
            if task is UNSET or result is UNSET or not _task_ok(task):
                return None
        elif task is not UNSET or result is not UNSET:
            return None
        photos = r.photos
        if photos and not _photos_ok(photos):
            return None
        if r.urgent is False:
            return None
        return r

    def decode_report(payload):
        """The report dict ``json.loads(payload)`` gives if the core's validator accepts
        it (with ``encoded_size=len(payload)``); None to say "take the slow path"."""
        r = check_report(payload)
        if r is None:
            return None
        fix, task, obj_id, result = r.fix, r.task, r.object, r.result
        out = {"v": VERSION, "id": r.id, "device": r.device, "seq": r.seq}
        if task is not UNSET:
            out["task"] = task
        out["time"] = r.time
        out["time_source"] = r.time_source
        out["fix"] = None if fix is None else {
            "lat": fix.lat, "lon": fix.lon, "alt": fix.alt, "mode": fix.mode,
            "status": fix.status, "sats": fix.sats, "hdop": fix.hdop, "age": fix.age}
        out["flags"] = r.flags
        out["grid"] = r.grid
        out["kind"] = r.kind
        out["standard"] = r.standard
        out["code"] = r.code
        if obj_id is not UNSET:
            out["object"] = obj_id
        out["source"] = r.source
        if result is not UNSET:
            out["result"] = result
        out["photos"] = r.photos
        out["text"] = r.text
        if r.urgent is True:
            out["urgent"] = True
        return out

    def _date_ok(t):
        """The date of a well-formed time exists (the core's check, remembered)."""
        try:
            check_time(ReportError, t, "time")
        except ReportError:
            return False
        if len(_DAYS) >= 64:
            _DAYS.clear()
        _DAYS[t[:10]] = True
        return True

    def _flags_ok(flags, system, fix):
        """report._check_flags for flags already known to be names from FLAGS."""
        if len(set(flags)) != len(flags):
            return False
        if system != ("clock_fallback" in flags):
            return False
        if fix is None:
            return "no_fix" in flags and "stale_fix" not in flags \
                and "fixed_position" not in flags
        if "no_fix" in flags and "fixed_position" not in flags:
            return False
        return not ("stale_fix" in flags and "fixed_position" in flags)

    def _task_ok(task):
        try:
            check_task_id(task)
        except ReportError:
            return False
        return True

    def _photos_ok(photos):
        """report._check_photos for dicts of str/int values (at most PHOTOS_MAX)."""
        seen = set()
        for p in photos:
            if len(p) != 2:
                return False
            sha, size = p.get("sha256"), p.get("bytes")
            if type(sha) is not str or len(sha) != 64 or sha.strip(HEX):
                return False
            if type(size) is not int or not 1 <= size <= PHOTO_MAX_BYTES:
                return False
            if (sha, size) in seen:
                return False
            seen.add((sha, size))
        return True
