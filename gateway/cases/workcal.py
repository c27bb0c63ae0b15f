"""The centre's working time: when a deadline counted in working hours falls due.

Days and hours are the centre's (Beijing time, ``clock.CENTRE_TIME``).  Monday to Friday
are working days and Saturday and Sunday are not, unless the calendar says otherwise: a
``holiday`` is a weekday off (国庆, 春节 …), a ``workday`` a weekend day worked (调休).
Working hours are the same on every working day.  No I/O: the case book hands in the
calendar's days.
"""

from datetime import date, datetime, time, timedelta

from ..clock import CENTRE_TIME
from ..errors import GatewayError

# 上午 08:30–12:00, 下午 14:00–17:30: seven working hours a day
DEFAULT_HOURS = ((time(8, 30), time(12, 0)), (time(14, 0), time(17, 30)))
MAX_DAYS = 3 * 366  # a deadline further than this many calendar days is refused


class CalendarError(GatewayError, ValueError):
    """Working hours that cannot be used, or a deadline the calendar cannot place."""


class WorkCalendar:
    """``holidays`` and ``workdays`` are sets of ``date``; ``hours`` a tuple of
    (start, end) ``time`` pairs, in order and not overlapping."""

    def __init__(self, holidays=(), workdays=(), hours=DEFAULT_HOURS):
        last = time(0, 0)
        for start, end in hours:
            if not last <= start < end:
                raise CalendarError(f"working hours must be in order and not overlap: "
                                    f"{start}-{end}")
            last = end
        if not hours:
            raise CalendarError("working hours: at least one period")
        self.holidays = frozenset(holidays)
        self.workdays = frozenset(workdays)
        self.hours = tuple(hours)

    def is_working_day(self, day):
        if day in self.holidays:
            return False
        return day in self.workdays or day.weekday() < 5

    def add(self, start, seconds):
        """The aware datetime ``seconds`` of working time after ``start`` (aware)."""
        if seconds < 0:
            raise CalendarError("seconds: not negative")
        t = start.astimezone(CENTRE_TIME)
        left = timedelta(seconds=seconds)
        day = t.date()
        for _ in range(MAX_DAYS):
            if self.is_working_day(day):
                for begin, end in self.hours:
                    a = _at(day, begin)
                    b = _at(day, end)
                    if t >= b:
                        continue
                    t = max(t, a)
                    if left <= b - t:
                        return t + left
                    left -= b - t
                    t = b
            day += timedelta(days=1)
            t = max(t, _at(day, time(0, 0)))
        raise CalendarError(f"no room for {seconds} s of working time within {MAX_DAYS} days")


def _at(day, clock_time):
    return datetime.combine(day, clock_time, tzinfo=CENTRE_TIME)


def parse_day(text):
    """A ``YYYY-MM-DD`` calendar day, or CalendarError."""
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise CalendarError(f"day: YYYY-MM-DD, not {text!r}") from None
