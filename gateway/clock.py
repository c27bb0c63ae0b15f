"""UTC timestamps in the one text form the intake tables use (ISO 8601, ms, ``Z``)."""

import time
from datetime import UTC, datetime


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
