"""Field checks shared by every wire-message validator (no ``re`` on the core's list)."""

from .errors import CoreError
from .timefmt import TimeFormatError, parse_iso_utc


class MessageError(CoreError):
    """A wire message that breaks protocol v1; ``field`` names the offending field."""

    def __init__(self, field, why):
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


DIGITS = "0123456789"
HEX = "0123456789abcdef"
UPPER_DIGITS = DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEVICE_CHARS = DIGITS + "abcdefghijklmnopqrstuvwxyz-"
TASK_CHARS = UPPER_DIGITS + "abcdefghijklmnopqrstuvwxyz_.:-"


def only(s, allowed):
    """Every character of s is in allowed (strip does the scan in C on both ports)."""
    return not s.strip(allowed)


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


_INF = float("inf")


def is_num(x):
    """An int (not bool) or a finite float (NaN fails both comparisons)."""
    if isinstance(x, float):
        return -_INF < x < _INF
    return isinstance(x, int) and not isinstance(x, bool)


def check_obj(err, obj, field, required, optional=()):
    """obj is a dict with every required key and no key outside required + optional."""
    if not isinstance(obj, dict):
        raise err(field or "message", "must be a JSON object")
    for k in required:
        if k not in obj:
            raise err(f"{field}.{k}" if field else k, "is required")
    for k in obj:
        if k not in required and k not in optional:
            raise err(f"{field}.{k}" if field else str(k), "is not a field of protocol v1")


def check_int(err, x, field, lo, hi):
    if not is_int(x):
        raise err(field, f"must be an integer (got {x!r})")
    if not lo <= x <= hi:
        raise err(field, f"must be between {lo} and {hi} (got {x})")


def check_num(err, x, field, lo, hi):
    if not is_num(x):
        raise err(field, f"must be a finite number (got {x!r})")
    if not lo <= x <= hi:
        raise err(field, f"must be between {lo} and {hi} (got {x})")


def check_str(err, x, field, lo, hi, allowed=None, what=None):
    if not isinstance(x, str):
        raise err(field, f"must be a string (got {type(x).__name__})")
    if not lo <= len(x) <= hi:
        size = f"{lo}" if lo == hi else f"{lo}..{hi}"
        shown = x if len(x) <= 40 else x[:37] + "..."
        raise err(field, f"must be {size} characters long (got {len(x)}: {shown!r})")
    if allowed is not None and not only(x, allowed):
        raise err(field, f"must be {what} (got {x!r})")


def check_enum(err, x, field, values):
    if not isinstance(x, str) or x not in values:
        raise err(field, f"must be one of {', '.join(values)} (got {x!r})")


_DAYS_SEEN = {}  # "YYYY-MM-DD" prefixes of times parse_iso_utc accepted


def _time_of_day_ok(x):
    """The ``THH:MM:SS.mmmZ`` part of a 24-character time is well-formed and in range."""
    if x[10] != "T" or x[13] != ":" or x[16] != ":" or x[19] != "." or x[23] != "Z":
        return False
    digits = x[11:13] + x[14:16] + x[17:19] + x[20:23]
    if digits.strip(DIGITS):
        return False
    return int(x[11:13]) < 24 and int(x[14:16]) < 60 and int(x[17:19]) < 60


def check_time(err, x, field):
    if not isinstance(x, str):
        raise err(field, "must be a UTC time string YYYY-MM-DDTHH:MM:SS.mmmZ")
    # fast path: a date already accepted in full, and a valid time of day; anything
    # else (including every error) goes through parse_iso_utc and its messages
    if len(x) == 24 and x[:10] in _DAYS_SEEN and _time_of_day_ok(x):
        return
    try:
        parse_iso_utc(x)
    except TimeFormatError as exc:
        raise err(field, str(exc))  # noqa: B904
    if len(_DAYS_SEEN) >= 64:
        _DAYS_SEEN.clear()
    _DAYS_SEEN[x[:10]] = True


def check_device(err, x, field="device"):
    check_str(err, x, field, 3, 32, DEVICE_CHARS, "lower-case letters, digits and '-'")
    if x[0] == "-":
        raise err(field, "must start with a letter or digit")


def check_report_id(err, x, field="id"):
    """``<device>:<12-digit seq>``; returns (device, seq)."""
    if not isinstance(x, str) or ":" not in x:
        raise err(field, "must be '<device>:<12-digit sequence>'")
    device, _, seq = x.partition(":")
    check_device(err, device, field)
    if len(seq) != 12 or not only(seq, DIGITS):
        raise err(field, "sequence part must be exactly 12 digits")
    return device, int(seq)


def check_sha256(err, x, field):
    check_str(err, x, field, 64, 64, HEX, "64 lower-case hex digits")
