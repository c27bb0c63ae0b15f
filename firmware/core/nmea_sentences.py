"""Field decoding of RMC GGA GNS GLL VTG GSA GSV ZDA.

Each handler takes a sentence body (``GPGGA,…`` without ``$`` and ``*hh``), parses
every field it uses first and only then changes the epoch, so a sentence with a bad
field (ValueError/IndexError, counted by the caller) leaves no trace.  It returns True
when the sentence was accepted, False for a bad field the parse did not raise on.
Repeated time and position fields (an epoch's GGA, RMC and GLL carry the same ones)
are decoded once.
"""

from .nmea_epoch import GGA as _GGA
from .nmea_epoch import GNS as _GNS
from .nmea_epoch import EpochAssembler
from .nmea_time import parse_ddmmyy, parse_tod
from .timefmt import valid_date

KNOTS_TO_MPS = 1852 / 3600
KMH_TO_MPS = 1 / 3.6

# timed sentence types, as bits of _Epoch.seen (GGA and GNS: see nmea_epoch)
_RMC = 1
_GLL = 8
_ZDA = 16

# GGA quality → gpsd status: 0 invalid, 1 GPS, 2 DGPS, 3 PPS (the P-code service:
# an ordinary GPS fix to us), 4 RTK fixed, 5 RTK float, 6 dead reckoning, 7 manual
# input, 8 simulator, 9 SBAS on some receivers (differential).  Others: GPS.
_GGA_STATUS = {b"": 0, b"0": 0, b"1": 1, b"2": 2, b"3": 1, b"4": 3, b"5": 4, b"6": 5,
               b"7": 7, b"8": 8, b"9": 2}
# GSA fix type: empty (unknown), 1 no fix, 2 2D, 3 3D
_GSA_MODE = {b"": 0, b"1": 1, b"2": 2, b"3": 3}
# FAA mode indicator (RMC, GLL, GNS, VTG) → gpsd status; 0 means "no fix":
# A autonomous, D differential, E estimated (dead reckoning), F float RTK,
# R fixed RTK, P precise, M manual input, S simulator, N not valid, and the
# Quectel C (caution), U (unsafe), V (invalid).  Unknown letters: GPS.
_FAA_STATUS = {65: 1, 68: 2, 69: 5, 70: 4, 82: 3, 80: 2, 77: 7, 83: 8, 78: 0,
               67: 0, 85: 0, 86: 0}


class _SliceMaker:
    """``SLICE[a:b]`` is the slice a:b as an object: made once, it saves building one per
    use in a hot path (CPython before 3.12 and MicroPython build it every time)."""

    def __getitem__(self, key):
        return key


SLICE = _SliceMaker()
_GSV_COUNTS = SLICE[6:10]  # "3,2,"
_GSA_SATS = SLICE[3:15]    # the 12 satellite fields
# GSV "total,part," with one-digit counts, 1 <= part <= total → part
_GSV_PART = {}
for _t in range(1, 10):
    for _p in range(1, _t + 1):
        _GSV_PART[bytes((48 + _t, 44, 48 + _p, 44))] = _p


def _coord(value, hemi, pos, neg, limit):
    """``dddmm.mmmm`` and its hemisphere letter as signed degrees (ValueError if bad)."""
    v = float(value)
    if not 0.0 <= v < 100000.0:  # also False for NaN
        raise ValueError
    deg = int(v) // 100
    minutes = v - deg * 100
    if minutes >= 60.0:
        raise ValueError
    r = deg + minutes / 60.0
    if r > limit:
        raise ValueError
    if hemi == neg:
        return -r
    if hemi != pos:
        raise ValueError
    return r


def _finite(v):
    """v itself if it is a finite float (not NaN, not ±inf)."""
    if v - v != 0.0:
        raise ValueError
    return v


class SentenceDecoder(EpochAssembler):
    """The sentence handlers, keyed by sentence type in ``_handlers``."""

    def __init__(self, min_year):
        EpochAssembler.__init__(self, min_year)
        self._tf = b""              # last time field and its value (see _tod)
        self._tv = -1
        self._cla = self._cns = self._clo = self._cew = b""  # last position fields
        self._cpos = (None, None)
        self._df = b""              # last RMC date field and its value
        self._dv = False
        self._zd = self._zm = self._zy = b""  # last ZDA date fields and their value
        self._zv = None
        self._handlers = {
            b"RMC": self._rmc, b"GGA": self._gga, b"GNS": self._gns, b"GLL": self._gll,
            b"VTG": self._vtg, b"GSA": self._gsa, b"GSV": self._gsv, b"ZDA": self._zda,
        }

    def _tod(self, field):
        """Time of day in ms of a new time field (the callers reuse the last one's value
        while it repeats); -1 if empty, -2 if malformed."""
        if not field:
            tod = -1
        else:
            tod = parse_tod(field) if len(field) < 16 else -1
            if tod < 0:
                tod = -2
        self._tf = field
        self._tv = tod
        return tod

    def _coords(self, la, ns, lo, ew):
        """(lat, lon) of four position fields."""
        if la == self._cla and lo == self._clo and ns == self._cns and ew == self._cew:
            return self._cpos
        pos = (_coord(la, ns, b"N", b"S", 90.0), _coord(lo, ew, b"E", b"W", 180.0))
        self._cla = la
        self._cns = ns
        self._clo = lo
        self._cew = ew
        self._cpos = pos
        return pos

    def _rmc(self, body):
        f = body.split(b",")
        t = f[1]
        tod = self._tv if t == self._tf else self._tod(t)
        if tod < -1:
            return False
        st = f[2]
        if st == b"A" or st == b"D":
            status = 2 if st == b"D" else 1
            if len(f) > 12 and f[12]:
                status = _FAA_STATUS.get(f[12][0], 1)
            valid = status > 0 and f[3] != b"" and f[5] != b""
            pos = self._coords(f[3], f[4], f[5], f[6]) if valid else None
            speed = float(f[7]) if f[7] else 0.0
            track = float(f[8]) if f[8] else 0.0
            if speed - speed != 0.0 or track - track != 0.0:  # NaN or infinite
                return False
            if not f[7]:
                speed = None
            if not f[8]:
                track = None
            d = f[9]
            if d == self._df:
                date = self._dv
            else:
                date = parse_ddmmyy(d) if d else False
                self._df = d
                self._dv = date
        elif st == b"V" or st == b"":
            valid = False
        else:
            return False
        ep = self._ep
        if self._open and ep.key == tod:
            ep.seen |= _RMC
        else:
            ep = self._at(tod, _RMC)
        ep.valid = valid
        if valid:
            ep.lat, ep.lon = pos
            if ep.rank <= 1:
                ep.status = status
                ep.rank = 1
            if speed is not None:
                ep.speed = speed * KNOTS_TO_MPS
            if track is not None:
                ep.track = track
            if date is not False:
                if date is not None and date[0] >= self.min_year and not ep.bad_date:
                    ep.date = date  # the common case of _set_date, inlined
                else:
                    self._set_date(ep, date)
        return True

    def _gga(self, body):
        f = body.split(b",", 10)  # fields after the altitude are not used
        t = f[1]
        tod = self._tv if t == self._tf else self._tod(t)
        if tod < -1:
            return False
        status = _GGA_STATUS.get(f[6])
        if status is None:
            quality = int(f[6])
            if quality < 0:
                return False
            status = 1
        valid = status > 0 and f[2] != b"" and f[4] != b""
        if valid:
            pos = self._coords(f[2], f[3], f[4], f[5])
            sats = int(f[7]) if f[7] else None
            hdop = float(f[8]) if f[8] else None  # range-checked below
            alt = float(f[9]) if f[9] else None
            if alt is not None and alt - alt != 0.0:
                return False
        ep = self._ep
        if self._open and ep.key == tod:
            ep.seen |= _GGA
        else:
            ep = self._at(tod, _GGA)
        ep.valid = valid
        if valid:
            ep.lat, ep.lon = pos
            ep.status = status
            ep.rank = 3
            if alt is not None:
                ep.alt = alt
            if sats is not None:
                ep.sats = sats
            if hdop is not None and 0.0 < hdop < 99.0:  # False for NaN and inf too
                ep.hdop = hdop
        return True

    def _gns(self, body):
        f = body.split(b",")
        t = f[1]
        tod = self._tv if t == self._tf else self._tod(t)
        if tod < -1:
            return False
        status = 0
        for m in f[6]:  # one mode letter per constellation: the best one counts
            s = _FAA_STATUS.get(m, 1)
            if s > status:
                status = s
        valid = status > 0 and f[2] != b"" and f[4] != b""
        if len(f) > 13 and (f[13] == b"U" or f[13] == b"V"):
            valid = False  # NMEA 4.1 navigational status: unsafe, not valid
        if valid:
            pos = self._coords(f[2], f[3], f[4], f[5])
            sats = int(f[7]) if f[7] else None
            hdop = _finite(float(f[8])) if f[8] else None
            alt = _finite(float(f[9])) if f[9] else None
        ep = self._ep
        if self._open and ep.key == tod:
            ep.seen |= _GNS
        else:
            ep = self._at(tod, _GNS)
        ep.valid = valid
        if valid:
            ep.lat, ep.lon = pos
            if ep.rank <= 2:
                ep.status = status
                ep.rank = 2
            if alt is not None:
                ep.alt = alt
            if sats is not None:
                ep.sats = sats
            if hdop is not None and hdop < 99.0:
                ep.hdop = hdop
        return True

    def _gll(self, body):
        f = body.split(b",")
        t = f[5]
        tod = self._tv if t == self._tf else self._tod(t)
        if tod < -1:
            return False
        status = 1
        if len(f) > 7 and f[7]:
            status = _FAA_STATUS.get(f[7][0], 1)
        valid = f[6] == b"A" and status > 0 and f[1] != b"" and f[3] != b""
        if valid:
            pos = self._coords(f[1], f[2], f[3], f[4])
        ep = self._ep
        if self._open and ep.key == tod:
            ep.seen |= _GLL
        else:
            ep = self._at(tod, _GLL)
        ep.valid = valid
        if valid:
            ep.lat, ep.lon = pos
            if ep.rank <= 0:
                ep.status = status
                ep.rank = 0
        return True

    def _vtg(self, body):
        f = body.split(b",")
        if len(f) >= 9 and f[2] == b"T":
            track = f[1]
            knots = f[5]
            kmh = f[7]
            if len(f) > 9 and f[9] and _FAA_STATUS.get(f[9][0], 1) == 0:
                return True  # mode "not valid": accepted, nothing to use
        elif len(f) == 5:  # NMEA 1.x: track, magnetic track, knots, km/h; no letters
            track = f[1]
            knots = f[3]
            kmh = f[4]
        else:
            return False
        track = _finite(float(track)) if track else None
        if knots:
            speed = _finite(float(knots)) * KNOTS_TO_MPS
        elif kmh:
            speed = _finite(float(kmh)) * KMH_TO_MPS
        else:
            speed = None
        ep = self._untimed()
        if speed is not None:
            ep.speed = speed
        if track is not None:
            ep.track = track
        return True

    def _gsa(self, body):
        f = body.split(b",")
        if len(f) < 18:
            return False
        mode = _GSA_MODE.get(f[2], 0)  # others (u-blox Antaris "E": dead reckoning): no mode
        used = 12 - f[_GSA_SATS].count(b"")
        ep = self._ep
        hdop = None
        if ep.hdop is None or not self._open:
            hdop = float(f[16]) if f[16] else None
        if not self._open:
            ep = self._untimed()
        if mode > ep.gsa_mode:
            ep.gsa_mode = mode
        # receivers send one GSA per constellation: the used satellites add up
        ep.gsa_used = used if ep.gsa_used < 0 else ep.gsa_used + used
        if hdop is not None and 0.0 < hdop < 99.0:  # also False for NaN and inf
            ep.hdop = hdop
        return True

    def _gsv(self, body):
        # Only the first sentence of a set is decoded (satellites in view); the others
        # are checked for shape.  NMEA 4.1 adds a signal id after the satellites.
        commas = body.count(b",")  # 4k + 3 (4 fields per satellite), + 1 with a signal id
        if commas < 3 or (commas - 1) & 3 < 2:
            return False
        part = _GSV_PART.get(body[_GSV_COUNTS])  # one-digit counts: "xxGSV,3,2,…"
        if part is None:
            f = body.split(b",", 4)
            total = int(f[1])
            part = int(f[2])
            if not 1 <= part <= total:
                return False
            if part != 1:
                return True
            seen = f[3]
        elif part != 1:
            return True
        else:
            seen = body[10:body.find(b",", 10)] if commas > 3 else body[10:]
        seen = int(seen) if seen else 0
        if seen < 0:
            return False
        # key: talker, plus the signal id's field (its last two bytes) if present
        key = body[:2] + body[-2:] if commas & 3 == 0 else body[:2]
        if self._visible.get(key) != seen:
            self._visible[key] = seen
            self._visible_changed = True
        return True

    def _zda(self, body):
        f = body.split(b",")
        if len(f) < 5:
            return False
        t = f[1]
        tod = self._tv if t == self._tf else self._tod(t)
        if tod < -1:
            return False
        d, m, y = f[2], f[3], f[4]
        if not (d or m or y):
            self._at(tod, _ZDA)
            return True
        if d == self._zd and m == self._zm and y == self._zy:
            date = self._zv  # the date changes once a day: decode it once
        else:
            date = None
            if len(y) == 4 and d.isdigit() and m.isdigit() and y.isdigit():
                date = (int(y), int(m), int(d))
                if not valid_date(date[0], date[1], date[2]):
                    date = None
            self._zd, self._zm, self._zy, self._zv = d, m, y, date
        self._set_date(self._at(tod, _ZDA), date)
        return True
