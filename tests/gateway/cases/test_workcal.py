"""Working time without a store: deadlines over lunch, nights, weekends, holidays and 调休
workdays, and a property check against counting minute by minute."""

from datetime import UTC, date, datetime, time, timedelta

import pytest
from gridlink.gateway.cases.workcal import CalendarError, WorkCalendar, parse_day
from gridlink.gateway.clock import CENTRE_TIME
from hypothesis import given, settings
from hypothesis import strategies as st

HOUR = 3600
# 2026-09-30 is a Wednesday; 10-01..10-07 国庆 (holidays), 10-10 Saturday worked (调休)
NATIONAL_DAY = {date(2026, 10, d) for d in range(1, 8)}
CAL = WorkCalendar(holidays=NATIONAL_DAY, workdays={date(2026, 10, 10)})


def centre(y, m, d, hh, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=CENTRE_TIME)


@pytest.mark.parametrize(("start", "seconds", "due"), [
    (centre(2026, 9, 30, 9, 0), 2 * HOUR, centre(2026, 9, 30, 11, 0)),
    (centre(2026, 9, 30, 11, 0), 2 * HOUR, centre(2026, 9, 30, 15, 0)),    # over lunch
    (centre(2026, 9, 30, 12, 30), 60, centre(2026, 9, 30, 14, 1)),          # from lunch
    (centre(2026, 9, 30, 17, 0), HOUR, centre(2026, 10, 8, 9, 0)),          # over 国庆
    (centre(2026, 10, 9, 17, 0), HOUR, centre(2026, 10, 10, 9, 0)),         # 调休 Saturday
    (centre(2026, 10, 10, 17, 30), HOUR, centre(2026, 10, 12, 9, 30)),      # Sunday off
    (centre(2026, 9, 30, 20, 0), 7 * HOUR, centre(2026, 10, 8, 17, 30)),    # a whole day
])
def test_deadlines_in_working_time(start, seconds, due):
    assert CAL.add(start, seconds) == due
    assert CAL.add(start.astimezone(UTC), seconds) == due  # any zone in, the same moment


def test_bad_hours_and_days_are_refused():
    with pytest.raises(CalendarError, match="in order"):
        WorkCalendar(hours=((time(14), time(18)), (time(8), time(12))))
    with pytest.raises(CalendarError, match="YYYY-MM-DD"):
        parse_day("2026-02-30")
    everything_off = WorkCalendar(holidays={date(2026, 1, 1) + timedelta(days=i)
                                            for i in range(1200)})
    with pytest.raises(CalendarError, match="no room"):
        everything_off.add(centre(2026, 1, 1, 9), 60)


def minute_by_minute(cal, start, minutes):
    """The slow oracle: walk minute by minute, counting the working ones."""
    t = start
    while minutes:
        local = t.astimezone(CENTRE_TIME)
        if cal.is_working_day(local.date()) and any(
                a <= local.time() < b for a, b in cal.hours):
            minutes -= 1
        t += timedelta(minutes=1)
    # the due moment is the end of the last working minute
    return t


@settings(max_examples=60, deadline=None)
@given(start=st.datetimes(min_value=datetime(2026, 9, 20), max_value=datetime(2026, 10, 20)),
       minutes=st.integers(1, 3 * 7 * 60),
       holidays=st.sets(st.dates(date(2026, 9, 20), date(2026, 11, 20)), max_size=10))
def test_working_time_matches_counting_minutes(start, minutes, holidays):
    cal = WorkCalendar(holidays=holidays)
    start = start.replace(second=0, microsecond=0, tzinfo=CENTRE_TIME)
    assert cal.add(start, minutes * 60) == minute_by_minute(cal, start, minutes)
