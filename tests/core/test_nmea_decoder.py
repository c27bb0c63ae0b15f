"""The NMEA decoder on hand-made vectors: sentence types, talkers, dirt, dates, counters."""

import pytest
from gridlink.firmware.core.nmea import REASONS, NmeaDecoder, checksum, decode, sentence
from gridlink.firmware.core.nmea_fix import FIELDS, Fix

KN = 1852 / 3600


def S(*bodies):
    """Sentences with correct checksums, CRLF-terminated."""
    return b"".join(sentence(b) for b in bodies)


def one(data, **options):
    fixes = decode(data, **options)
    assert len(fixes) == 1, fixes
    return fixes[0]


CYCLE = S(
    "GPRMC,123519.50,A,4807.0380,N,01131.0000,E,022.4,084.4,230394,003.1,W,A",
    "GPGGA,123519.50,4807.0380,N,01131.0000,E,1,08,0.9,545.4,M,46.9,M,,",
    "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1",
    "GPGSV,2,1,08,01,40,083,46,02,17,308,41,12,07,344,39,14,22,228,45",
    "GPGSV,2,2,08,15,40,083,46,16,17,308,41,17,07,344,39,18,22,228,45",
    "GPVTG,084.4,T,087.5,M,022.4,N,041.5,K,A",
)


def test_one_cycle_makes_one_fix_with_every_field():
    fix = one(CYCLE, min_year=1990)
    assert fix.time == "1994-03-23T12:35:19.500Z"
    assert fix.epoch == 764426119.5
    assert fix.lat == pytest.approx(48 + 7.038 / 60, abs=1e-12)
    assert fix.lon == pytest.approx(11 + 31 / 60, abs=1e-12)
    assert fix.alt == 545.4
    assert fix.speed == pytest.approx(22.4 * KN)
    assert fix.track == 84.4
    assert (fix.mode, fix.status, fix.sats, fix.hdop, fix.visible) == (3, 1, 8, 0.9, 8)
    assert list(fix.to_dict()) == list(FIELDS)
    assert {"time", "lat", "lon", "alt", "speed", "track", "mode", "status", "sats",
            "hdop"} <= set(fix.to_dict())


def test_southern_western_hemispheres_and_high_precision_minutes():
    fix = one(S("GNGGA,132819.60,4134.49795459,S,09345.03431408,W,4,10,0.9,278.161,M,,M,,"))
    assert fix.lat == pytest.approx(-(41 + 34.49795459 / 60), abs=1e-12)
    assert fix.lon == pytest.approx(-(93 + 45.03431408 / 60), abs=1e-12)
    assert fix.status == 3  # GGA quality 4: RTK fixed


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "BD", "GB", "GQ", "QZ", "GI"])
def test_every_talker_decodes_alike(talker):
    data = S(f"{talker}RMC,101010,A,3448.6000,N,11317.4000,E,1.0,90.0,281126,,,D",
             f"{talker}GGA,101010,3448.6000,N,11317.4000,E,2,09,1.1,120.5,M,,M,,")
    fix = one(data)
    assert fix.time == "2026-11-28T10:10:10.000Z"
    assert (fix.lat, fix.lon) == (pytest.approx(34.81), pytest.approx(113.29))
    assert (fix.mode, fix.status) == (3, 2)


@pytest.mark.parametrize(("quality", "status"), [("1", 1), ("2", 2), ("4", 3), ("5", 4),
                                                 ("6", 5), ("8", 8)])
def test_gga_quality_to_gpsd_status(quality, status):
    fix = one(S(f"GPGGA,000001,4807.038,N,01131.000,E,{quality},05,1.0,10.0,M,,M,,"))
    assert fix.status == status


def test_gga_status_wins_over_rmc_mode_indicator():
    # Trimble RTK: RMC says only "D" while GGA says RTK fixed (gpsd reports 3)
    data = S("GNGGA,133859.80,4134.50180205,N,09345.03586649,W,4,19,0.7,280.8,M,,M,5.8,0002",
             "GNRMC,133859.80,A,4134.50180205,N,09345.03586649,W,0.008,0.0,180320,,,D")
    assert one(data).status == 3


def test_gns_gll_and_zda():
    data = S("GNGNS,074155.799,3114.8770,N,12135.2463,E,ANNA,05,1.3,156.9,8.3,,0000",
             "GPGLL,3114.8770,N,12135.2463,E,074155.799,A,A",
             "GPZDA,074155.799,25,02,2025,00,00")
    fix = one(data)
    assert fix.time == "2025-02-25T07:41:55.799Z"
    assert (fix.alt, fix.sats, fix.hdop, fix.mode, fix.status) == (156.9, 5, 1.3, 3, 1)


def test_gsa_per_constellation_adds_used_satellites_and_gsv_counts_signals_once():
    data = S("GNRMC,003956.00,A,4552.65403,S,17030.00668,E,0.025,,120426,,,A,V",
             "GNGSA,A,3,13,16,21,15,10,29,27,20,,,,,1.05,0.64,0.83,1",
             "GNGSA,A,3,82,66,81,,,,,,,,,,1.05,0.64,0.83,2",
             "GPGSV,1,1,04,05,06,110,19,10,24,284,34,13,37,124,29,15,63,083,11,1",
             "GPGSV,1,1,04,05,06,110,,10,24,284,,13,37,124,,15,63,083,,6",
             "GLGSV,1,1,03,65,53,144,,66,58,305,32,67,06,313,,1")
    fix = one(data)
    assert (fix.mode, fix.sats, fix.hdop, fix.visible) == (3, 11, 0.64, 7)
    assert fix.track is None


def test_vtg_speed_knots_or_kmh_and_invalid_vtg_is_ignored():
    base = "GPRMC,000001,A,4807.038,N,01131.000,E,,,010126,,,A"
    assert one(S(base, "GPVTG,10.0,T,,M,2.0,N,3.7,K,A")).speed == pytest.approx(2 * KN)
    assert one(S(base, "GPVTG,10.0,T,,M,,N,36.0,K,A")).speed == pytest.approx(10.0)
    assert one(S(base, "GPVTG,10.0,T,,M,2.0,N,3.7,K,N")).speed is None


def test_rmc_only_receiver_is_2d_and_gll_only_epoch_keeps_previous_3d():
    assert one(S("GPRMC,205150.00,A,4807.038,N,01131.000,E,1.0,,010126,,,A")).mode == 2
    data = S("GPGGA,030129.00,2638.1726,N,08011.3892,W,1,06,1.5,16,M,-28,M,,",
             "GPRMC,030129.0,A,2638.1726,N,08011.3892,W,0.00,219.6,010426,,",
             "GPGLL,2638.1727,N,08011.3892,W,030130.000,A,A")
    first, second = decode(data)
    assert (first.mode, second.mode) == (3, 3)
    assert second.time == "2026-04-01T03:01:30.000Z" and second.speed is None


# Receivers that send no GSA: gpsd's rule for the mode (firmware/core/nmea_epoch.py).
GGA_ALT_3_SATS = "GPGGA,081500.00,3448.570,N,11317.790,E,1,03,2.5,112.4,M,-15.0,M,,"
RMC_0815 = "GPRMC,081500.00,A,3448.570,N,11317.790,E,3.0,90.0,011126,,,A"


def test_gga_and_rmc_receiver_with_an_altitude_is_3d_whatever_the_satellites():
    # gpsd raises the mode to 3-D on the altitude; 3 satellites gave 2-D here before
    assert one(S(GGA_ALT_3_SATS, RMC_0815)).mode == 3
    assert one(S(RMC_0815, GGA_ALT_3_SATS)).mode == 3
    assert one(S(GGA_ALT_3_SATS.replace(",03,", ",,"), RMC_0815)).mode == 3


def test_rmc_only_receiver_stays_2d_epoch_after_epoch():
    data = S(*(f"GPRMC,08150{i}.00,A,3448.570,N,11317.790,E,3.0,90.0,011126,,,A"
               for i in range(4)))
    assert [f.mode for f in decode(data)] == [2, 2, 2, 2]


def test_gga_without_an_altitude_is_2d_even_after_a_3d_epoch():
    no_alt = [f"GPGGA,08150{i}.00,3448.570,N,11317.790,E,1,08,0.9,,M,,M,," for i in range(3)]
    assert [f.mode for f in decode(S(*no_alt))] == [2, 2, 2]
    with_alt = "GPGGA,081459.00,3448.570,N,11317.790,E,1,08,0.9,112.4,M,-15.0,M,,"
    assert [f.mode for f in decode(S(with_alt, *no_alt))] == [3, 2, 2, 2]
    # a GSA that states the mode still wins
    stated = S(no_alt[0], "GPGSA,A,3,04,05,09,12,24,,,,,,,,2.5,1.3,2.1")
    assert one(stated).mode == 3


def test_no_fix_sentences_give_mode_1_without_position():
    data = S("GPGGA,212406.000,0000.0000000,N,00000.0000000,E,0,00,0.0,0.000,M,0.000,M,,0000",
             "GPGLL,0000.0000000,N,00000.0000000,E,212406.000,V,N",
             "GPRMC,212406.000,V,0000.0000000,N,00000.0000000,E,000.0,000.0,280326,,,N")
    fix = one(data)
    assert (fix.lat, fix.lon, fix.mode, fix.status, fix.speed) == (None, None, 1, 0, None)
    assert fix.time is None  # an RMC without a fix does not date the epoch


def test_all_empty_cycles_give_one_fix_each():
    cycle = S("GNGNS,,,,,,NNN,,,,,,", "GPVTG,,T,,M,,N,,K,N", "GPGSA,A,1,,,,,,,,,,,,,,,",
              "GPGGA,,,,,,0,,,,,,,,", "GPRMC,,V,,,,,,,,,,N")
    fixes = decode(cycle * 3)
    assert [f.mode for f in fixes] == [1, 1, 1]
    assert all(f.time is None and f.tod is None for f in fixes)


# -- dirt ------------------------------------------------------------------------------

GOOD_GGA = b"$GPGGA,030131.00,2638.1728,N,08011.3893,W,1,06,1.5,00016,M,-0028,M,,*56\r\n"


def test_lowercase_checksum_and_lf_only_lines():
    line = sentence("GPRMC,205150.00,A,4807.038,N,01131.000,E,1.0,,010126,,,A")
    lower = line[:-4] + line[-4:-2].lower() + b"\n"
    assert decode(lower)[0].to_dict() == decode(line)[0].to_dict()
    assert decode(line.replace(b"\r\n", b"\n") * 2)[0].lat is not None


def test_bad_checksum_is_rejected_and_the_good_data_around_it_survives():
    bad = GOOD_GGA.replace(b"2638.1728", b"2638.1729")
    good = sentence("GPGGA,030132.00,2638.1728,N,08011.3893,W,1,06,1.5,16,M,-28,M,,")
    dec = NmeaDecoder(min_year=1980)
    fixes = dec.feed(bad + good) + dec.flush()
    assert dec.rejected["bad_checksum"] == 1
    assert len(fixes) == 1 and fixes[0].tod == (3 * 60 + 1) * 60000 + 32000


def test_merged_and_truncated_sentences():
    # triton400: the GGA lost its tail, the GLL behind it on the same line is whole
    merged = b"$GPGGA,030130$GPGLL,2638.1728,N,08011.3893,W,030131.000,A,A*41\r\n"
    # gp-320fw after a reboot: NUL padding and a sentence cut short
    padded = b"$GPRMC,000346.03,A,4808" + b"\x00" * 12 + b"      \r\n"
    dec = NmeaDecoder()
    fixes = dec.feed(GOOD_GGA + merged + padded) + dec.flush()
    assert dec.rejected["truncated"] == 2
    assert dec.accepted == 2
    assert fixes[0].lat == pytest.approx(26 + 38.1728 / 60)


def test_double_dollar_prefix_leading_space_and_garbage_line():
    data = (b"$" + GOOD_GGA + b" " + GOOD_GGA.replace(b"030131", b"030132")[:-2]
            + b"\r\n\x8a\x17garbage\xff\r\n")
    dec = NmeaDecoder()
    fixes = dec.feed(data) + dec.flush()
    assert dec.accepted == 1  # the second one's checksum no longer matches its time
    assert dec.rejected["bad_checksum"] == 1 and dec.rejected["garbage"] == 1
    assert len(fixes) == 1
    teseo = b"$$GNGGA,030131.00,2638.1728,N,08011.3893,W,1,06,1.5,00016,M,-0028,M,,*48\r\n"
    assert NmeaDecoder().feed(teseo) == [] and decode(teseo)[0].lat is not None


def test_proprietary_and_unknown_sentences_are_counted_and_ignored():
    dec = NmeaDecoder()
    dec.feed(S("PGRME,15.0,M,22.5,M,27.0,M", "PSTMVER,GNSSLIB_8.4.18.25_ARM",
               "GPTXT,01,01,02,ANTSTATUS=OK", "GPBOD,,T,,M,,") + GOOD_GGA)
    assert dec.rejected["proprietary"] == 2
    assert dec.rejected["unknown"] == 2
    assert dec.accepted == 1


def test_bad_field_rejects_the_whole_sentence_and_leaves_no_trace():
    bad_lat = sentence("GPGGA,030131.00,26x8.1728,N,08011.3893,W,1,06,1.5,16,M,,M,,")
    bad_hemi = sentence("GPRMC,030131.00,A,2638.1728,Q,08011.3893,W,1.0,,010426,,,A")
    dec = NmeaDecoder(min_year=1980)
    fixes = dec.feed(bad_lat + bad_hemi + GOOD_GGA) + dec.flush()
    assert dec.rejected["bad_field"] == 2
    assert [f.lat for f in fixes] == [pytest.approx(26 + 38.1728 / 60)]
    assert fixes[0].speed is None  # nothing of the rejected RMC got in


def test_no_checksum_rule():
    plain = b"$GPGGA,030131.00,2638.1728,N,08011.3893,W,1,06,1.5,16,M,,M,,\r\n"
    short = b"$GPGGA,030132.00,2638.1728,N,08011.3893,W,1,06\r\n"
    strict = NmeaDecoder()
    assert strict.feed(plain) + strict.flush() == []
    assert strict.rejected["no_checksum"] == 1
    lenient = NmeaDecoder(allow_no_checksum=True)
    fixes = lenient.feed(plain + short) + lenient.flush()
    assert [f.lat for f in fixes] == [pytest.approx(26 + 38.1728 / 60)]
    assert lenient.rejected["truncated"] == 1  # incomplete field count
    # once the stream has shown checksums, a line without one is a cut line
    after = NmeaDecoder(allow_no_checksum=True)
    after.feed(GOOD_GGA + plain)
    assert after.rejected["truncated"] == 1 and after.accepted == 1


def test_over_long_line_is_rejected_whole_in_any_chunking():
    data = b"$GPTXT," + b"x" * 2000 + b"*00\r\n" + GOOD_GGA
    whole = NmeaDecoder()
    whole.feed(data)
    chunked = NmeaDecoder()
    for i in range(0, len(data), 100):
        chunked.feed(data[i:i + 100])
    for dec in (whole, chunked):
        assert dec.rejected["too_long"] == 1 and dec.accepted == 1 and dec.lines == 2


def test_counters_add_up_on_a_dirty_real_style_stream():
    data = (GOOD_GGA + b"$GPGGA,030130$GPGLL,2638.1728,N,08011.3893,W,030131.000,A,A*41\r\n"
            + b"junk\r\n" + S("PLCS,REV,PLN012054S07,070312,145743") + b"$GPN,0*11\r\n")
    dec = NmeaDecoder()
    dec.feed(data)
    dec.flush()
    stats = dec.stats()
    assert stats["lines"] == 5
    assert stats["sentences"] == stats["accepted"] + sum(stats["rejected"].values()) == 6
    assert set(stats["rejected"]) <= set(REASONS)


def test_feed_takes_bytearray_and_memoryview():
    assert decode(bytearray(GOOD_GGA))[0].lat is not None
    dec = NmeaDecoder()
    assert dec.feed(memoryview(GOOD_GGA)) + dec.flush() != []


# -- dates -----------------------------------------------------------------------------

def rmc(time, date, status="A"):
    return sentence(f"GPRMC,{time},{status},4807.038,N,01131.000,E,1.0,90.0,{date},,,A")


def gga(time):
    return sentence(f"GPGGA,{time},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")


def test_gga_epochs_use_the_last_good_date_and_roll_over_at_midnight():
    fixes = decode(rmc("235959", "311226") + gga("235959.5") + gga("000000.5"))
    assert [f.time for f in fixes] == ["2026-12-31T23:59:59.000Z",
                                       "2026-12-31T23:59:59.500Z",
                                       "2027-01-01T00:00:00.500Z"]
    assert fixes[2].epoch - fixes[1].epoch == pytest.approx(1.0)


@pytest.mark.parametrize("date", ["2208-1", "220899", "161206", "300219", "001226", "1212"])
def test_a_bad_date_never_yields_a_time_and_forgets_the_kept_one(date):
    dec = NmeaDecoder()  # default min_year: 2020
    fixes = dec.feed(rmc("000230", "010426") + rmc("000231", date) + gga("000232"))
    fixes += dec.flush()
    assert fixes[0].time == "2026-04-01T00:02:30.000Z"
    assert [f.time for f in fixes[1:]] == [None, None]
    assert fixes[1].lat is not None and fixes[1].tod == 151000  # the position stays
    assert dec.bad_dates == 1 and dec.accepted == 3


def test_min_year_decides_which_century_old_captures_get():
    # a week-rollover date (year 99 means 1999): rejected by default, accepted for old logs
    assert decode(rmc("000231.42", "220899"))[0].time is None
    old = decode(rmc("000231.42", "220899"), min_year=1980)[0]
    assert old.time == "1999-08-22T00:02:31.420Z"


def test_rmc_without_fix_does_not_date_but_zda_does():
    data = rmc("000427", "161206", "V") + sentence("GPZDA,000427.00,22,08,2026,,") + gga("000428")
    fixes = decode(data)
    assert [f.time for f in fixes] == ["2026-08-22T00:04:27.000Z", "2026-08-22T00:04:28.000Z"]


def test_checksum_helper_on_every_length():
    for n in range(300):  # the folding and the long-body paths
        body = bytes((i * 37 + n) % 256 for i in range(n))
        expected = 0
        for b in body:
            expected ^= b
        assert checksum(body) == expected, n
    assert sentence("GPBOD,,T,,M,,") == b"$GPBOD,,T,,M,,*47\r\n"  # as garmin-geko201 sends
    assert Fix().to_dict()["mode"] == 1


def test_fix_time_is_the_wire_timestamp_of_its_epoch():
    # one ISO formatter (timefmt) for fixes and reports: the two must never drift apart
    from gridlink.firmware.core.timefmt import iso_utc, parse_iso_utc

    data = (rmc("000000", "290228") + rmc("123456.7", "290228") + rmc("235959.99", "311299")
            + sentence("GPZDA,000001.005,01,03,2028,,") + gga("000002"))
    fixes = decode(data, min_year=1980)
    assert [f.time for f in fixes] == ["2028-02-29T00:00:00.000Z", "2028-02-29T12:34:56.700Z",
                                       "1999-12-31T23:59:59.990Z", "2028-03-01T00:00:01.005Z",
                                       "2028-03-01T00:00:02.000Z"]
    for fix in fixes:
        assert iso_utc(fix.epoch) == fix.time
        assert parse_iso_utc(fix.time) == pytest.approx(fix.epoch, abs=1e-6)


def test_a_leap_second_fix_is_written_as_unix_time_counts_it():
    # 2016-12-31T23:59:60 was a real leap second; a receiver reports it as 235960.
    # Unix time (the fix's epoch) has no :60, so the time is the next day's 00:00:00.5,
    # which the report validator (seconds 00-59) accepts; T24:00:00 it would refuse
    from gridlink.firmware.core.report import ReportError
    from gridlink.firmware.core.timefmt import iso_utc, parse_iso_utc

    fix = decode(rmc("235960.5", "311216"), min_year=1980)[-1]
    assert fix.time == "2017-01-01T00:00:00.500Z"
    assert iso_utc(fix.epoch) == fix.time
    assert parse_iso_utc(fix.time) == pytest.approx(fix.epoch, abs=1e-6)
    from gridlink.firmware.core.checks import check_time

    check_time(ReportError, fix.time, "time")  # raises if the wire format refused it
    year_end = decode(rmc("235960.0", "311299"), min_year=1980)[-1]
    assert year_end.time == "2000-01-01T00:00:00.000Z"
