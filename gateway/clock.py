"""UTC timestamps in the one text form the intake tables use (ISO 8601, ms, ``Z``), and
the supervision centre's calendar day."""

import time
from datetime import UTC, datetime, timedelta, timezone

# Beijing time, which every Chinese supervision centre works by (one zone, no summer time):
# the day a case number or a task id counts in
CENTRE_TIME = timezone(timedelta(hours=8), "CST")


def centre_day(t):
    """``20261129`` for an aware datetime: its day in Beijing time (02:00 UTC is 10:00
    the same day there, 20:00 UTC is 04:00 the next)."""
    return t.astimezone(CENTRE_TIME).strftime("%Y%m%d")


def iso_from_epoch(t):
    """``2026-11-28T02:15:07.250Z`` for a Unix time in seconds."""
    ms = round(t * 1000)
    secs, ms = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


def utc_now_iso():
    return iso_from_epoch(time.time())


def epoch_from_iso(text):
    """Unix seconds for an ISO 8601 UTC time (``Z`` or an offset); ``None`` when unparsable."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
