"""UTC timestamps on the wire: ``2026-11-28T02:15:07.250Z`` (ISO 8601, milliseconds, Z).

The one place for civil-date arithmetic and this format: reports (``iso_utc``,
``parse_iso_utc``), NMEA fixes (``iso_date_ms`` of a receiver's date and time of day) and
the gateway's stored times (``iso_ms``, through ``gateway.clock.wire_time``) share it.  No
``datetime`` on MicroPython, so the calendar is done here (Howard Hinnant's days-from-civil
algorithms).  Leap seconds are not represented.
"""

from .errors import CoreError


class TimeFormatError(CoreError):
    """A timestamp that is not ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""


_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def is_leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def month_days(y, m):
    """Days in month m (1..12) of year y."""
    return 29 if m == 2 and is_leap(y) else _MDAYS[m - 1]


def valid_date(y, m, d):
    return 1 <= m <= 12 and 1 <= d <= month_days(y, m)


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of the proleptic Gregorian date y-m-d."""
    y -= m <= 2
    era = y // 400  # floor division (Hinnant's C adjusts truncation; Python floors)
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(year, month, day) of day number z (days since 1970-01-01)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return (y + (m <= 2), m, d)


def iso_date_ms(date, ms):
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` of a date (year, month, day) and ms since its midnight.

    A leap second (a receiver's 23:59:60.x, ``ms`` ≥ 86,400,000) is written as the next
    day's 00:00:00.x, as Unix time counts it — the fix's epoch — and as every validator
    of the wire format accepts (seconds 00-59)."""
    if ms >= 86400000:
        date = civil_from_days(days_from_civil(date[0], date[1], date[2]) + ms // 86400000)
        ms %= 86400000
    secs, milli = divmod(ms, 1000)
    mins, ss = divmod(secs, 60)
    hh, mm = divmod(mins, 60)
    return f"{date[0]:04d}-{date[1]:02d}-{date[2]:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{milli:03d}Z"


def iso_utc(unix_seconds):
    """Format unix seconds (int or float) as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (rounded to ms)."""
    ms = int(round(unix_seconds * 1000))  # noqa: RUF046 (float round on MicroPython)
    return iso_ms(ms, unix_seconds)


def iso_ms(unix_ms, shown=None):
    """Format whole unix milliseconds (an int) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``: the one
    writer of the wire form (``iso_utc`` rounds seconds to this).  A time outside the
    years 0000-9999 raises TimeFormatError naming ``shown`` (the caller's value)."""
    days, ms = divmod(unix_ms, 86400000)
    date = civil_from_days(days)
    if not 0 <= date[0] <= 9999:
        raise TimeFormatError(f"time out of range: {unix_ms if shown is None else shown}")
    return iso_date_ms(date, ms)


def _digits(s, a, b):
    for i in range(a, b):
        c = s[i]
        if c < "0" or c > "9":
            return None
    return int(s[a:b])


def parse_iso_utc(text):
    """Unix seconds (float) of a wire timestamp; raises TimeFormatError naming the problem.

    Accepts exactly ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (24 characters), a real calendar date.
    """
    if not isinstance(text, str) or len(text) != 24:
        raise TimeFormatError("expected YYYY-MM-DDTHH:MM:SS.mmmZ (24 characters)")
    for i, ch in ((4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "."), (23, "Z")):
        if text[i] != ch:
            raise TimeFormatError(f"expected {ch!r} at position {i} of YYYY-MM-DDTHH:MM:SS.mmmZ")
    parts = []
    for a, b in ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19), (20, 23)):
        v = _digits(text, a, b)
        if v is None:
            raise TimeFormatError(f"non-digit in positions {a}-{b - 1}")
        parts.append(v)
    y, mo, d, hh, mi, ss, ms = parts
    if not 1 <= mo <= 12:
        raise TimeFormatError(f"month {mo} out of range")
    if not 1 <= d <= month_days(y, mo):
        raise TimeFormatError(f"day {d} out of range for {y:04d}-{mo:02d}")
    if hh > 23 or mi > 59 or ss > 59:
        raise TimeFormatError("time of day out of range")
    return days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss + ms / 1000
