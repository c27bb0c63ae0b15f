"""The gateway's one writer of stored and sent times is the core's wire format."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from gridlink.firmware.core.timefmt import TimeFormatError, iso_utc, parse_iso_utc
from gridlink.gateway.clock import epoch_from_iso, parse_iso, wire_time
from gridlink.gateway.queue import Invalid, parse_time
from hypothesis import given
from hypothesis import strategies as st

UNIX = st.floats(min_value=-62_135_596_800.0, max_value=253_402_300_799.0,
                 allow_nan=False, allow_infinity=False)
AWARE = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)),
                                                timezone(timedelta(hours=-5, minutes=-30))]))


@given(st.lists(UNIX, min_size=1, max_size=8))
def test_an_epoch_is_written_as_the_core_writes_it(ts):
    for t in ts + [t + 0.001 for t in ts]:  # repeated seconds go through the kept text
        assert wire_time(t) == iso_utc(t)


@given(AWARE)
def test_a_datetime_is_its_whole_milliseconds_in_utc(t):
    text = wire_time(t)
    assert parse_iso_utc(text) == pytest.approx(t.timestamp() - t.microsecond % 1000 / 1e6,
                                                abs=5e-4)
    assert parse_iso(text) == t.replace(microsecond=t.microsecond // 1000 * 1000)


def test_examples():
    assert wire_time(1_795_000_000.25) == "2026-11-18T11:06:40.250Z"
    assert wire_time(datetime(2026, 11, 28, 10, 15, 7, 250999,
                              tzinfo=timezone(timedelta(hours=8)))) == "2026-11-28T02:15:07.250Z"
    assert wire_time(0) == "1970-01-01T00:00:00.000Z"


def test_out_of_range_and_naive_are_refused():
    with pytest.raises(TimeFormatError):
        wire_time(1e12)
    with pytest.raises(TypeError):
        wire_time(datetime(2026, 1, 1))  # naive: which zone is unknown


def test_request_times_parse_leniently_and_bad_ones_say_so():
    assert parse_iso("2026-11-28T10:15:07+08:00 ") == datetime(2026, 11, 28, 2, 15, 7, tzinfo=UTC)
    assert parse_iso("2026-11-28t02:15:07z") == datetime(2026, 11, 28, 2, 15, 7, tzinfo=UTC)
    assert parse_iso("2026-11-28T02:15:07") == datetime(2026, 11, 28, 2, 15, 7, tzinfo=UTC)
    assert epoch_from_iso("2026-11-28T02:15:07.250Z") == parse_iso_utc("2026-11-28T02:15:07.250Z")
    for bad in ("yesterday", "", None, 5):
        assert epoch_from_iso(bad) is None
        with pytest.raises(Invalid, match="since: not an ISO 8601 time"):
            parse_time(bad, "since")
