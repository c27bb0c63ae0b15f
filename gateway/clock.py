"""The gateway's times: the wire's text form (the core's ``timefmt``: ISO 8601 UTC,
milliseconds, ``Z``) of epochs and datetimes, ISO 8601 times from requests, and the
supervision centre's calendar day."""

import time
from datetime import UTC, datetime, timedelta, timezone

from gridlink.firmware.core.timefmt import iso_ms

# Beijing time, which every Chinese supervision centre works by (one zone, no summer time):
# the day a case number or a task id counts in
CENTRE_TIME = timezone(timedelta(hours=8), "CST")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_last_second = [(None, "")]  # (unix second, its text up to the dot): replaced whole


def centre_day(t):
    """``20261129`` for an aware datetime: its day in Beijing time (02:00 UTC is 10:00
    the same day there, 20:00 UTC is 04:00 the next)."""
    return t.astimezone(CENTRE_TIME).strftime("%Y%m%d")


def wire_time(t):
    """``2026-11-28T02:15:07.250Z``: the one text form of a time the gateway stores and
    sends, of Unix seconds (rounded to the millisecond, as the core's ``iso_utc``) or of an
    aware datetime (its whole milliseconds).  The core's ``iso_ms`` writes it; the text of
    the second is kept from the previous call (it is on every report's path)."""
    try:
        ms = round(t * 1000)
    except TypeError:  # a datetime (an epoch is the hot path: no type test before it)
        d = t - EPOCH
        ms = (d.days * 86400 + d.seconds) * 1000 + d.microseconds // 1000
    secs, ms = divmod(ms, 1000)
    cached = _last_second[0]
    if cached[0] != secs:
        cached = (secs, iso_ms(secs * 1000)[:-5])
        _last_second[0] = cached
    return f"{cached[1]}.{ms:03d}Z"


def utc_now_iso():
    return wire_time(time.time())


def parse_iso(text):
    """An ISO 8601 time (``Z``/``z`` or an offset; naive means UTC) → aware datetime;
    ValueError when it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def epoch_from_iso(text):
    """Unix seconds for an ISO 8601 time (as ``parse_iso``); ``None`` when unparsable."""
    try:
        return parse_iso(text).timestamp()
    except ValueError:
        return None
