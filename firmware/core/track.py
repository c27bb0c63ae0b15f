"""Patrol track (巡查轨迹): thin positions by time and distance, batch them compactly.

Wire form (protocol v1, topic ``…/track``)::

    {"v":1,"device":"pv-0001","seq":57,"t0":1764296107,"pts":[[0,34809512,113296501,412],[5,…]]}

``seq`` is the batch's number (the device's outbox record), named by the gateway's
``track_stored`` ack; older devices send none.
one point = [seconds after t0, latitude 1e-6°, longitude 1e-6°, speed cm/s], all
integers, about 28 bytes in a Chinese city.  A batch spans at most ``MAX_SPAN_S``
seconds so ``dt`` stays at three digits.
"""

import json
import math

from .errors import CoreError

EARTH_RADIUS_M = 6371008.8
MAX_SPAN_S = 999
MAX_SPEED_CM_S = 99999


class TrackError(CoreError):
    """A track message that breaks protocol v1 (``field`` names the offending part)."""

    def __init__(self, field, why):
        CoreError.__init__(self, field + ": " + why)
        self.field = field
        self.why = why


def distance_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres (haversine)."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


class Thinner:
    """Keeps a position when the vehicle moved ``distance_m``, or when ``interval_s``
    passed and it moved more than ``still_m`` (receiver noise while parked); never two
    points in the same second.  The first position is always kept, and so is the first
    one after time went backwards."""

    __slots__ = ("distance_m", "interval_s", "last", "still_m")

    def __init__(self, interval_s, distance_m, still_m=3.0):
        if interval_s <= 0 or distance_m < 0 or still_m < 0:
            raise TrackError("thinner", "interval_s must be > 0, distances >= 0")
        self.interval_s = interval_s
        self.distance_m = distance_m
        self.still_m = still_m
        self.last = None

    def offer(self, t, lat, lon):
        """True when the position at unix time ``t`` is kept."""
        last = self.last
        if last is not None:
            dt = t - last[0]
            if 0 <= dt < 1:
                return False
            if dt < 0:              # the clock went back (a replay restarted): start over
                last = None
        if last is not None:
            moved = distance_m(last[1], last[2], lat, lon)
            if moved < self.distance_m and not (dt >= self.interval_s and moved > self.still_m):
                return False
        self.last = (t, lat, lon)
        return True


def point(t0, t, lat, lon, speed_mps):
    """One wire point (a list of four ints) relative to ``t0``."""
    speed = 0 if speed_mps is None else round(speed_mps * 100)
    if speed < 0:
        speed = 0
    if speed > MAX_SPEED_CM_S:
        speed = MAX_SPEED_CM_S
    return [round(t - t0), round(lat * 1e6), round(lon * 1e6), speed]


class Batch:
    """Kept points waiting to be sent as one track message."""

    __slots__ = ("device", "max_points", "max_span_s", "pts", "t0")

    def __init__(self, device, max_points=20, max_span_s=60):
        if max_span_s > MAX_SPAN_S or max_points < 1:
            raise TrackError("batch", "max_span_s must be <= 999 and max_points >= 1")
        self.device = device
        self.max_points = max_points
        self.max_span_s = max_span_s
        self.t0 = None
        self.pts = []

    def fits(self, t):
        """True when a point at ``t`` may join this batch."""
        return self.t0 is None or (t - self.t0 <= self.max_span_s and t >= self.t0)

    def add(self, t, lat, lon, speed_mps):
        """Add a point (call ``fits`` first); returns True when the batch is full."""
        if self.t0 is None:
            self.t0 = int(t)
        self.pts.append(point(self.t0, t, lat, lon, speed_mps))
        return len(self.pts) >= self.max_points

    def due(self, now):
        """True when the oldest point waited ``max_span_s`` (send even if not full)."""
        return self.t0 is not None and now - self.t0 >= self.max_span_s

    def take(self, seq=None):
        """The encoded message (numbered ``seq`` when given), and an empty batch for what
        follows; None when empty."""
        if not self.pts:
            return None
        data = encode(self.device, self.t0, self.pts, seq)
        self.t0 = None
        self.pts = []
        return data


def encode(device, t0, pts, seq=None):
    """Compact UTF-8 JSON bytes of one track message (``seq``: the batch's number, which
    the gateway's ``track_stored`` ack names)."""
    body = ",".join("[" + ",".join(str(v) for v in p) + "]" for p in pts)
    number = "" if seq is None else ',"seq":' + str(int(seq))
    return ('{"v":1,"device":"' + device + '"' + number + ',"t0":' + str(int(t0))
            + ',"pts":[' + body + "]}").encode()


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def decode(data):
    """Parse and check a track message; TrackError names the field that is wrong."""
    try:
        obj = json.loads(data)
    except ValueError:
        raise TrackError("track", "not JSON")  # noqa: B904 (no chaining on MicroPython)
    if not isinstance(obj, dict):
        raise TrackError("track", "must be a JSON object")
    for key in obj:
        if key not in ("v", "device", "seq", "t0", "pts"):
            raise TrackError(key, "unknown field")
    if obj.get("v") != 1:
        raise TrackError("v", "must be 1")
    if not isinstance(obj.get("device"), str) or not obj["device"]:
        raise TrackError("device", "must be a device id")
    if "seq" in obj and (not _is_int(obj["seq"]) or obj["seq"] < 0):
        raise TrackError("seq", "must be a batch number (int >= 0)")
    if not _is_int(obj.get("t0")) or obj["t0"] < 0:
        raise TrackError("t0", "must be unix seconds (int >= 0)")
    pts = obj.get("pts")
    if not isinstance(pts, list) or not pts:
        raise TrackError("pts", "must be a non-empty list")
    for i, p in enumerate(pts):
        field = "pts[" + str(i) + "]"
        if not isinstance(p, list) or len(p) != 4:
            raise TrackError(field, "must be [dt_s, lat_1e-6, lon_1e-6, speed_cm_s]")
        for v in p:
            if not _is_int(v):
                raise TrackError(field, "values must be integers")
        if p[0] < 0 or p[0] > MAX_SPAN_S:
            raise TrackError(field, "dt_s out of 0..999")
        if abs(p[1]) > 90000000 or abs(p[2]) > 180000000:
            raise TrackError(field, "position out of range")
        if p[3] < 0:
            raise TrackError(field, "speed must be >= 0")
    return obj
