"""Canonical compact JSON: the same bytes on CPython and MicroPython.

MicroPython's dicts are unordered and ``json.dumps`` formats floats its own way, so the
wire encoder is written here: keys in protocol order (then alphabetical), no spaces,
UTF-8 (no ``\\u`` escapes except control characters), floats with at most 7 decimals.
Decoding uses the platform's ``json.loads``.  (``# noqa: B904``: the core may not use
``raise ... from``, which MicroPython lacks.)
"""

import json

from .errors import CoreError


class EncodeError(CoreError):
    """A value that has no JSON encoding (NaN, infinity, bytes, lone surrogates...)."""


# Protocol key order: the order the wire documents show.
_ORDER = (
    "v", "id", "ids", "device", "seq", "task", "type", "report", "state", "time", "time_source",
    "fix", "lat", "lon", "alt", "mode", "status", "reason", "sats", "hdop", "age", "flags",
    "grid", "kind", "standard", "code", "object", "source", "result", "photos", "sha256",
    "n", "of", "size", "bytes", "text", "deadline", "t0", "pts", "outbox", "reports",
    "track", "disk_free", "cpu_temp", "uptime", "firmware", "codebook", "profile",
)
_RANK = {k: i for i, k in enumerate(_ORDER)}
_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
        "\f": "\\f"}


def _key(k):
    return (_RANK.get(k, 1000), k)


def format_float(x, decimals=7):
    """Shortest fixed-point text of x with at most ``decimals`` decimals ("34.81", "-0.5")."""
    if x != x or x in (float("inf"), float("-inf")):
        raise EncodeError(f"{x} has no JSON encoding")
    s = ("%." + str(decimals) + "f") % x
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s == "-0":
        s = "0"
    return s


def _str(s, out):
    out.append('"')
    for ch in s:
        e = _ESC.get(ch)
        if e is not None:
            out.append(e)
        elif ch < " ":
            out.append("\\u" + "{:04x}".format(ord(ch)))  # noqa: UP032
        else:
            out.append(ch)
    out.append('"')


def _enc(obj, out):
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        out.append(format_float(obj))
    elif isinstance(obj, str):
        _str(obj, out)
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _enc(item, out)
        out.append("]")
    elif isinstance(obj, dict):
        out.append("{")
        keys = sorted(obj.keys(), key=_key)
        for i, k in enumerate(keys):
            if not isinstance(k, str):
                raise EncodeError(f"object key {k!r} is not a string")
            if i:
                out.append(",")
            _str(k, out)
            out.append(":")
            _enc(obj[k], out)
        out.append("}")
    else:
        raise EncodeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj):
    """Canonical compact UTF-8 JSON bytes of obj."""
    out = []
    _enc(obj, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeError:
        raise EncodeError("string is not valid Unicode (lone surrogate)")  # noqa: B904


def loads(data):
    """Parse JSON bytes/str; raises EncodeError (not ValueError) on malformed input."""
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data).decode("utf-8")
        return json.loads(data)
    except (ValueError, UnicodeError) as exc:
        raise EncodeError(f"not valid UTF-8 JSON: {exc}")  # noqa: B904
