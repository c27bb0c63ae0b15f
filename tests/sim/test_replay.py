"""The simulated GNSS: real captures replayed through a pty into the real pyserial path."""

import itertools
import os
import time

import pynmea2
import pytest
import serial
from gridlink.firmware.core.nmea import NmeaDecoder, decode, sentence
from gridlink.firmware.core.track import distance_m
from gridlink.firmware.errors import DeviceError
from gridlink.firmware.sim import replay
from hypothesis import given, settings
from hypothesis import strategies as st

ORIGIN = (34.8095, 113.2965)
CAPTURES = ["nmea-rtk.log", "ublox-8.log", "quectel-eg25-g.log", "beidou-bd.log",
            "gp-320fw-2019-04-07-coldboot.log"]


def shared_capture(name):
    """A real capture by name; the test fails (naming where it looked) when it is missing."""
    try:
        return replay.find_capture(name)
    except DeviceError as exc:
        pytest.fail(str(exc), pytrace=False)


def test_bundled_capture_is_the_gpsd_file_with_its_licence():
    path = replay.find_capture("nmea-rtk.log")
    assert path.parent == replay.CAPTURES
    assert b"BSD-2-clause" in path.read_bytes()[:400]
    assert "Redistribution and use" in (replay.CAPTURES / "COPYING.gpsd").read_text()


def test_unknown_capture_names_the_bundled_ones():
    with pytest.raises(DeviceError, match=r"nmea-rtk\.log"):
        replay.find_capture("no-such.log")


@pytest.mark.parametrize("name", CAPTURES)
def test_translation_keeps_the_receivers_motion_and_noise(name):
    path = shared_capture(name)
    lines = replay.read_capture(path)
    moved = replay.translate(lines, ORIGIN)
    assert len(moved) == len(lines)
    before = [p for p in map(replay.sentence_position, lines) if p]
    after = [p for p in map(replay.sentence_position, moved) if p]
    assert len(before) == len(after)
    assert after[0] == pytest.approx(ORIGIN, abs=1e-7)
    for (a0, b0), (a1, b1) in zip(before, after, strict=True):
        # the same north/east offsets in metres from the first position
        assert a1 - after[0][0] == pytest.approx(a0 - before[0][0], abs=2e-7)
        east0 = distance_m(before[0][0], before[0][1], before[0][0], b0)
        east1 = distance_m(after[0][0], after[0][1], after[0][0], b1)
        assert east1 == pytest.approx(east0, rel=1e-3, abs=0.05)
    for old, new in zip(lines, moved, strict=True):
        if replay.sentence_position(old) is None:
            assert new == old                      # garbage and bad checksums untouched
        else:
            text = new[new.rfind(b"$"):].decode().strip()
            msg = pynmea2.parse(text, check=True)
            assert msg.latitude == pytest.approx(replay.sentence_position(new)[0], abs=1e-9)


def test_same_fixes_with_and_without_translation_apart_from_position():
    lines = replay.read_capture(replay.find_capture("nmea-rtk.log"))
    plain = decode(b"".join(lines))
    moved = decode(b"".join(replay.translate(lines, ORIGIN)))
    assert [f.time for f in plain] == [f.time for f in moved]
    assert [f.status for f in plain] == [f.status for f in moved]
    steps_a = [distance_m(a.lat, a.lon, b.lat, b.lon) for a, b in itertools.pairwise(plain)
               if a.lat and b.lat]
    steps_b = [distance_m(a.lat, a.lon, b.lat, b.lon) for a, b in itertools.pairwise(moved)
               if a.lat and b.lat]
    # speeds and noise survive: every step between fixes keeps its length (mm level)
    assert steps_b == pytest.approx(steps_a, rel=2e-3, abs=0.005)


@pytest.mark.parametrize("name", ["nmea-rtk.log", "ublox-8.log", "ublox-zed-f9p-nmea.log"])
def test_retiming_moves_every_epoch_by_the_same_whole_seconds(name):
    path = shared_capture(name)
    lines = replay.read_capture(path)
    start = replay.first_epoch(lines)
    now = 1_795_000_000.0                          # 2026-11-18, crosses no leap second
    offset = round(now - start)
    moved = [replay.retime_sentence(line, offset) for line in lines]
    before = [f for f in decode(b"".join(lines), min_year=2000) if f.epoch is not None]
    after = [f for f in decode(b"".join(moved)) if f.epoch is not None]
    assert len(after) == len(before) > 0
    assert {round(b.epoch - a.epoch, 6) for a, b in zip(before, after, strict=True)} == {offset}
    assert [(a.lat, a.lon, a.status) for a in before] == [(b.lat, b.lon, b.status) for b in after]
    assert abs(after[0].epoch - now) < 1


def test_replayer_starts_each_round_now():
    rp = replay.Replayer("nmea-rtk.log", speed=1000, clock=lambda: 1_795_000_000.0)
    # open before the replay starts: pyserial's open() flushes what was already written
    port = serial.serial_for_url(rp.path, baudrate=9600, timeout=0.5)
    with rp:
        dec, got = NmeaDecoder(), []
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            got.extend(f for f in dec.feed(port.read(4096)) if f.epoch)
        port.close()
    assert got, "no fix with a time came through the pty in 60 s"
    assert abs(got[0].epoch - 1_795_000_000.0) < 1


def test_epochs_follow_the_sentence_times():
    lines = replay.read_capture(replay.find_capture("nmea-rtk.log"))
    groups = replay.epochs(lines)
    tods = [t for t, _ in groups if t is not None]
    assert len(tods) == len(set(tods))
    assert sum(len(g) for _, g in groups) == len(lines)


def test_replay_through_a_pty_into_pyserial_decodes_like_the_file():
    lines = replay.translate(replay.read_capture(replay.find_capture("nmea-rtk.log")), ORIGIN)
    expected = decode(b"".join(lines))
    rp = replay.Replayer("nmea-rtk.log", speed=1000, origin=ORIGIN, retime=False)
    # Open first: pyserial's open() flushes the tty's input, and with it whatever the
    # replayer had already written.
    port = serial.serial_for_url(rp.path, baudrate=9600, timeout=0.5)
    with rp:
        dec, got = NmeaDecoder(), []
        while len(got) < len(expected) - 1:
            data = port.read(4096)
            assert data, f"replay stalled after {len(got)} fixes"
            got.extend(dec.feed(data))
        got.extend(dec.flush())
        port.close()
    assert [f.to_dict() for f in got] == [f.to_dict() for f in expected]


def test_dirty_capture_bytes_arrive_unchanged():
    path = shared_capture("gp-320fw-2019-04-07-coldboot.log")
    lines = replay.read_capture(path)
    with replay.Replayer(path, speed=1000, retime=False) as rp:
        want = b"".join(lines)
        got = b""
        while len(got) < len(want):
            chunk = os.read(rp.slave, 65536)
            assert chunk
            got += chunk
    assert got == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=90).map(lambda b: b + b"\r\n"), max_size=30))
def test_translation_never_breaks_on_arbitrary_bytes(lines):
    moved = replay.translate(lines, ORIGIN)
    assert len(moved) == len(lines)
    for old, new in zip(lines, moved, strict=True):
        if replay.sentence_position(old) is None:
            assert new == old


@settings(max_examples=200, deadline=None)
@given(st.floats(-89.9, 89.9), st.floats(-179.9, 179.9), st.integers(3, 8),
       st.sampled_from(["GGA", "RMC", "GLL"]))
def test_a_shift_lands_on_the_origin_at_the_sentence_resolution(lat, lon, decimals, kind):
    def field(deg, width, hemis):
        value, hemi = replay._fmt(deg, width, decimals, hemis)
        return f"{value},{hemi}"

    pos = f"{field(lat, 2, 'NS')},{field(lon, 3, 'EW')}"
    body = {"GGA": f"GPGGA,120000.00,{pos},1,08,1.0,10.0,M,0.0,M,,",
            "RMC": f"GPRMC,120000.00,A,{pos},0.5,0.0,281126,,,A",
            "GLL": f"GPGLL,{pos},120000.00,A,A"}[kind]
    check = 0
    for b in body.encode():
        check ^= b
    line = f"${body}*{check:02X}\r\n".encode()
    assert replay.sentence_position(line) is not None
    (moved,) = replay.translate([line], ORIGIN)
    got = replay.sentence_position(moved)
    tol = 10 ** -decimals / 60 * 1.01
    assert got[0] == pytest.approx(ORIGIN[0], abs=tol)
    assert got[1] == pytest.approx(ORIGIN[1], abs=tol)
    assert pynmea2.parse(moved.decode().strip(), check=True)


def test_shared_captures_are_found_beside_the_checkout_or_where_the_variable_says(
        tmp_path, monkeypatch):
    from gridlink.firmware.shared_data import ENV, shared_data

    from tests.support.paths import ROOT

    monkeypatch.delenv(ENV, raising=False)
    assert shared_data("nmea") == ROOT.parent / "shared" / "data" / "nmea"
    (tmp_path / "data" / "nmea").mkdir(parents=True)
    (tmp_path / "data" / "nmea" / "only-here.log").write_bytes(b"$GPGGA*00\r\n")
    monkeypatch.setenv(ENV, str(tmp_path))
    assert replay.find_capture("only-here.log") == tmp_path / "data" / "nmea" / "only-here.log"
    with pytest.raises(DeviceError, match=f"shared: {tmp_path}/data/nmea"):
        replay.find_capture("nowhere.log")


def _gap_capture(tmp_path):
    """Four RMC epochs with a ten-minute gap between the second and the third."""
    times = ["080000.00", "080001.00", "081001.00", "081002.00", "081003.00"]
    body = "GPRMC,{},A,3448.570,N,11317.790,E,3.0,90.0,011126,,,A"
    path = tmp_path / "gap.log"
    path.write_bytes(b"".join(sentence(body.format(t)) for t in times))
    return path


def _read_fixes(rp, count, clock=time.time, within_s=10.0):
    """(fix, ``clock()`` when read) for the replay's first ``count`` fixes (or those that
    came within ``within_s``)."""
    port = serial.serial_for_url(rp.path, baudrate=9600, timeout=0.2)
    dec, got = NmeaDecoder(), []
    end = time.monotonic() + within_s
    with rp:
        while len(got) < count and time.monotonic() < end:
            got.extend((f, clock()) for f in dec.feed(port.read(4096)))
    port.close()
    return got


def test_a_shortened_gap_never_runs_the_retimed_capture_ahead_of_now(tmp_path):
    # A "now" that runs ten times as fast as the wall clock, like the replay (speed 10):
    # the capture's 1 s epochs come 1 s apart on it, the 10-minute gap lasts max_gap_s.
    # Before the fix the epochs after the gap carried a time ten minutes in the future.
    base, t0 = time.time(), time.monotonic()

    def now():
        return base + (time.monotonic() - t0) * 10

    rp = replay.Replayer(_gap_capture(tmp_path), speed=10, max_gap_s=2.0, clock=now)
    got = _read_fixes(rp, 4, clock=now)
    assert len(got) == 4
    assert abs(got[0][0].epoch - base) < 1.5
    for fix, read_at in got:
        assert fix.epoch <= read_at, (fix.time, fix.epoch - read_at)
    # the capture's own one-second spacing survives on both sides of the gap
    assert got[1][0].epoch - got[0][0].epoch == pytest.approx(1.0)
    assert got[3][0].epoch - got[2][0].epoch == pytest.approx(1.0)
    assert got[2][0].epoch - got[1][0].epoch < 600


def test_a_replay_faster_than_the_clock_never_runs_ahead_of_now():
    got = _read_fixes(replay.Replayer("nmea-rtk.log", speed=50), 1000, within_s=1.5)
    assert got
    assert all(fix.epoch <= read_at for fix, read_at in got)
    epochs = [f.epoch for f, _ in got]
    assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs)
    assert len(epochs) > 10       # 50 epochs a second, a tenth of a second apart at least


@pytest.mark.parametrize(("tod", "now", "ahead"), [
    (100.0, 86400 * 3 + 50.0, 50.0),
    (86390.0, 86400 * 3 + 5.0, -15.0),      # just before midnight, now just after
    (5.0, 86400 * 3 - 10.0, 15.0),          # just after midnight, now just before
])
def test_seconds_ahead_across_midnight(tod, now, ahead):
    assert replay.seconds_ahead(tod, now) == pytest.approx(ahead)
