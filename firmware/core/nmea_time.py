"""NMEA dates and times, without ``datetime``.

Times are kept as integer milliseconds since midnight UTC ("tod"), dates as
``(year, month, day)`` tuples.  The calendar and the ISO 8601 form (gpsd's
``YYYY-MM-DDTHH:MM:SS.sssZ``, the wire format too) are ``timefmt``'s.
"""

from .compat import const
from .timefmt import days_from_civil, month_days, valid_date

# Two-digit years (RMC) at or above this are 19yy, below it 20yy: GPS time starts
# in 1980, so an NMEA year 80..99 can only be 1980..1999.
CENTURY_PIVOT = const(80)


def next_day(date):
    year, month, day = date
    if day < month_days(year, month):
        return (year, month, day + 1)
    if month < 12:
        return (year, month + 1, 1)
    return (year + 1, 1, 1)


def parse_tod(field):
    """``hhmmss[.s…]`` as milliseconds since midnight, or -1 if it is not a time."""
    n = len(field)
    v = field[:6]
    if n < 6 or not v.isdigit():
        return -1
    v = int(v)
    hh = v // 10000
    mm = v // 100 % 100
    ss = v % 100
    # 60 is a leap second; 61 is never valid
    if hh > 23 or mm > 59 or ss > 60:
        return -1
    tod = hh * 3600000 + mm * 60000 + ss * 1000
    if n > 6:
        if field[6] != 46 or n == 7 or not field[7:].isdigit():  # "."
            return -1
        tod += int((field[7:10] + b"00")[:3])  # the first three digits, as ms
    return tod


def parse_ddmmyy(field):
    """An RMC date ``ddmmyy`` as ``(year, month, day)``, or None if malformed.

    The century comes from ``CENTURY_PIVOT``; whether the year is plausible is the
    caller's decision (see ``NmeaDecoder`` ``min_year``).
    """
    if len(field) != 6 or not field.isdigit():
        return None
    day = int(field[0:2])
    month = int(field[2:4])
    yy = int(field[4:6])
    year = 1900 + yy if yy >= CENTURY_PIVOT else 2000 + yy
    if not valid_date(year, month, day):
        return None
    return (year, month, day)


def epoch_seconds(date, tod):
    """Unix time (seconds, float) of a date and a time of day in ms."""
    days = days_from_civil(date[0], date[1], date[2])
    return days * 86400 + (tod // 1000) + (tod % 1000) / 1000
