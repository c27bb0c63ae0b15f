"""Track thinning and batch encoding (firmware/core/track.py), CPython and MicroPython."""

import itertools
import json
import math

import pytest
from gridlink.firmware.core import track
from hypothesis import given
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython

# A drive: 60 s parked (receiver noise of ~1 m), then 60 s north at 8 m/s, then parked again.
M_PER_DEG = 111_195.0


def drive():
    pts = []
    lat, lon = 34.8095, 113.2965
    for t in range(180):
        if 60 <= t < 120:
            lat += 8.0 / M_PER_DEG
        jitter = ((t * 7919) % 13 - 6) / 6 * 1e-5 * (0.1 if 60 <= t < 120 else 1)
        pts.append((1_764_296_100 + t, lat + jitter * 0.5, lon + jitter * 0.5,
                    8.0 if 60 <= t < 120 else 0.0))
    return pts


def thin(points, interval_s=5, distance_m=20):
    th = track.Thinner(interval_s, distance_m)
    return [i for i, (t, la, lo, _s) in enumerate(points) if th.offer(t, la, lo)]


def test_distance_matches_a_known_baseline():
    # one degree of latitude on the mean sphere
    assert track.distance_m(0, 0, 1, 0) == pytest.approx(math.radians(1) * 6371008.8)
    assert track.distance_m(34.8, 113.3, 34.8, 113.3) == 0


def test_parked_vehicle_yields_no_points_after_the_first():
    kept = thin(drive())
    parked_first = [i for i in kept if i < 60]
    parked_last = [i for i in kept if i >= 125]
    assert parked_first == [0]
    assert parked_last == []  # the arrival may be kept, nothing of the parked noise after


def test_moving_vehicle_is_kept_every_distance_step():
    kept = thin(drive())
    moving = [i for i in kept if 60 <= i < 121]
    gaps = [b - a for a, b in itertools.pairwise(moving)]
    assert gaps and set(gaps) == {3}  # 8 m/s, 20 m: every third second


def test_never_two_points_in_one_second():
    th = track.Thinner(1, 0, still_m=0)
    assert th.offer(10.0, 34.0, 113.0)
    assert not th.offer(10.5, 34.1, 113.0)
    assert th.offer(11.0, 34.1, 113.0)


def test_batch_encodes_the_wire_form_and_decodes_back():
    b = track.Batch("pv-0001", max_points=3, max_span_s=60)
    assert not b.add(1_764_296_100.4, 34.8095, 113.2965, 4.12)
    assert not b.add(1_764_296_105, 34.80968, 113.2965, None)
    assert b.add(1_764_296_110, -34.5, -113.25, -1)
    data = b.take()
    obj = json.loads(data)
    assert obj == {"v": 1, "device": "pv-0001", "t0": 1_764_296_100,
                   "pts": [[0, 34809500, 113296500, 412], [5, 34809680, 113296500, 0],
                           [10, -34500000, -113250000, 0]]}
    assert track.decode(data) == obj
    assert b.take() is None and b.t0 is None
    b.add(1_764_296_100, 34.8095, 113.2965, 0)
    numbered = b.take(seq=57)
    assert numbered == (b'{"v":1,"device":"pv-0001","seq":57,"t0":1764296100,'
                        b'"pts":[[0,34809500,113296500,0]]}')
    assert track.decode(numbered)["seq"] == 57


def test_batch_span_and_due():
    b = track.Batch("pv-0001", max_points=50, max_span_s=30)
    b.add(1000, 34.8, 113.3, 1)
    assert b.fits(1030) and not b.fits(1031) and not b.fits(999)
    assert not b.due(1029) and b.due(1030)
    with pytest.raises(track.TrackError):
        track.Batch("pv-0001", max_span_s=1000)


@pytest.mark.parametrize("bad, field", [
    (b"nope", "track"),
    (b'{"v":2,"device":"a","t0":1,"pts":[[0,1,2,3]]}', "v"),
    (b'{"v":1,"device":"a","t0":1,"pts":[]}', "pts"),
    (b'{"v":1,"device":"a","t0":1,"pts":[[0,1,2]]}', "pts[0]"),
    (b'{"v":1,"device":"a","t0":1,"pts":[[0,1.5,2,3]]}', "pts[0]"),
    (b'{"v":1,"device":"a","t0":1,"pts":[[1000,1,2,3]]}', "pts[0]"),
    (b'{"v":1,"device":"a","t0":1,"pts":[[0,91000000,2,3]]}', "pts[0]"),
    (b'{"v":1,"device":"a","t0":1,"pts":[[0,1,2,3]],"x":1}', "x"),
    (b'{"v":1,"device":"a","seq":-1,"t0":1,"pts":[[0,1,2,3]]}', "seq"),
    (b'{"v":1,"device":"a","seq":"7","t0":1,"pts":[[0,1,2,3]]}', "seq"),
])
def test_decode_names_the_bad_field(bad, field):
    with pytest.raises(track.TrackError) as err:
        track.decode(bad)
    assert err.value.field == field


lat_s = st.floats(-89.999, 89.999, allow_nan=False)
lon_s = st.floats(-179.999, 179.999, allow_nan=False)


@given(st.lists(st.tuples(st.integers(0, 999), lat_s, lon_s, st.floats(0, 999, allow_nan=False)),
                min_size=1, max_size=40))
def test_encode_decode_roundtrip_within_a_micro_degree(points):
    pts = [track.point(0, t, la, lo, s) for t, la, lo, s in points]
    obj = track.decode(track.encode("pv-0001", 0, pts))
    for (t, la, lo, s), p in zip(points, obj["pts"], strict=True):
        assert p[0] == t
        assert abs(p[1] / 1e6 - la) <= 5e-7 and abs(p[2] / 1e6 - lo) <= 5e-7
        assert abs(p[3] - s * 100) <= 0.5


@given(st.integers(0, 999), st.floats(0, 55, allow_nan=False), st.floats(73, 136, allow_nan=False),
       st.floats(0, 99, allow_nan=False))
def test_a_point_in_china_costs_at_most_32_bytes(dt, lat, lon, speed):
    one = track.encode("pv-0001", 0, [track.point(0, dt, lat, lon, speed)])
    two = track.encode("pv-0001", 0, [track.point(0, dt, lat, lon, speed)] * 2)
    assert len(two) - len(one) <= 32


MPY_SCRIPT = """
import json
from gridcore import track
pts = json.loads(open('/drive.json').read())
th = track.Thinner(5, 20)
kept = [i for i, p in enumerate(pts) if th.offer(p[0], p[1], p[2])]
b = track.Batch('pv-0001', 20, 600)
out = []
for i in kept:
    p = pts[i]
    if b.add(p[0], p[1], p[2], p[3]):
        out.append(b.take().decode())
last = b.take()
if last:
    out.append(last.decode())
print(json.dumps({'kept': kept, 'msgs': out}))
"""


@pytest.mark.micropython
def test_micropython_thins_and_encodes_the_same_bytes():
    pts = drive()
    result = json.loads(run_micropython(MPY_SCRIPT, files={"/drive.json": json.dumps(pts)}))
    kept = thin(pts)
    assert result["kept"] == kept
    b = track.Batch("pv-0001", 20, 600)
    msgs = []
    for i in kept:
        t, la, lo, s = pts[i]
        if b.add(t, la, lo, s):
            msgs.append(b.take().decode())
    last = b.take()
    if last:
        msgs.append(last.decode())
    assert result["msgs"] == msgs
