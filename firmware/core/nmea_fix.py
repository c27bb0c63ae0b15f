"""One fix epoch: everything a receiver said about one UTC instant."""

from .nmea_time import epoch_seconds
from .timefmt import iso_date_ms

# gpsd's fix.status numbers (TPV "status")
STATUS_NONE = 0
STATUS_GPS = 1
STATUS_DGPS = 2
STATUS_RTK_FIX = 3
STATUS_RTK_FLOAT = 4
STATUS_DR = 5
STATUS_GNSS_DR = 6
STATUS_TIME = 7
STATUS_SIM = 8

MODE_NONE = 1
MODE_2D = 2
MODE_3D = 3

# The keys of ``Fix.to_dict()``, in output order: gpsd's TPV names, then our own.
FIELDS = ("time", "epoch", "lat", "lon", "alt", "speed", "track", "mode", "status",
          "sats", "hdop", "visible")


class Fix:
    """A completed fix epoch.

    ``time`` is gpsd's ISO 8601 form (``YYYY-MM-DDTHH:MM:SS.sssZ``) and ``epoch`` the
    same instant in Unix seconds, both made from ``date`` (year, month, day) and
    ``tod`` (milliseconds since midnight UTC); they are None when the date is
    unknown or was rejected, while ``tod`` is still set.  ``lat``,
    ``lon`` (degrees), ``alt`` (m above mean sea level), ``speed`` (m/s over
    ground), ``track`` (degrees true) are None when the receiver did not report them
    as valid.  ``mode`` is 1 no fix, 2 2D, 3 3D; ``status`` uses gpsd's numbers (0 no
    fix, 1 GPS, 2 DGPS, 3 RTK fixed, 4 RTK float, 5 dead reckoning, 7 manual
    input, 8 simulated).  ``sats`` is satellites used, ``hdop`` the horizontal
    dilution of precision, ``visible`` satellites in view (from GSV).
    """

    __slots__ = ("_epoch", "_time", "alt", "date", "hdop", "lat", "lon", "mode", "sats",
                 "speed", "status", "tod", "track", "visible")

    def __init__(self, date=None, tod=None, lat=None, lon=None, alt=None, speed=None,
                 track=None, mode=MODE_NONE, status=STATUS_NONE, sats=None, hdop=None,
                 visible=None):
        self.date = date        # (year, month, day) or None
        self.tod = tod          # ms since midnight UTC or None
        self.lat = lat
        self.lon = lon
        self.alt = alt
        self.speed = speed
        self.track = track
        self.mode = mode
        self.status = status
        self.sats = sats
        self.hdop = hdop
        self.visible = visible
        self._time = False      # computed on first use: most fixes of a stream are
        self._epoch = False     # thinned out before anyone reads their time

    @property
    def time(self):
        if self._time is False:
            if self.date is None or self.tod is None:
                self._time = None
            else:
                self._time = iso_date_ms(self.date, self.tod)
        return self._time

    @property
    def epoch(self):
        if self._epoch is False:
            if self.date is None or self.tod is None:
                self._epoch = None
            else:
                self._epoch = epoch_seconds(self.date, self.tod)
        return self._epoch

    @property
    def has_position(self):
        return self.mode >= MODE_2D and self.lat is not None

    def to_dict(self):
        """A JSON-ready dict with gpsd's TPV names plus ``sats``, ``hdop``, ``visible``."""
        return {
            "time": self.time,
            "epoch": self.epoch,
            "lat": self.lat,
            "lon": self.lon,
            "alt": self.alt,
            "speed": self.speed,
            "track": self.track,
            "mode": self.mode,
            "status": self.status,
            "sats": self.sats,
            "hdop": self.hdop,
            "visible": self.visible,
        }

    def __eq__(self, other):
        if not isinstance(other, Fix):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.tod == other.tod

    def __repr__(self):
        return (f"Fix(time={self.time!r}, lat={self.lat!r}, lon={self.lon!r}, "
                f"mode={self.mode}, status={self.status})")
