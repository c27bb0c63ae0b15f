"""Assembling the sentences of one UTC epoch into a ``Fix``.

Timed sentences (RMC GGA GNS GLL ZDA) are routed by their time of day: the same
time joins the epoch in progress, another time completes it and opens the next.  A
timed sentence with an empty time field joins the epoch in progress unless that epoch
already had one of its type (then it opens a new epoch: receivers without a fix often
send all-empty RMC/GGA every cycle).  Untimed sentences (VTG GSA) join the epoch in
progress, or open one that the next timed sentence adopts.

Mode: a GSA fix type of 2 or 3 if the epoch had one.  A receiver that does not state
it gets gpsd's rule: 3D if GGA/GNS gave an altitude (whatever the satellite count: gpsd
raises the mode to 3D on the altitude, the next RMC of the cycle at the latest); 2D if
the epoch had a GGA/GNS without an altitude (SiRF 2.2 and others send none: 2D at
most); an epoch of RMC/GLL only keeps the previous epoch's mode if it had a fix (a
receiver that was 3D a second ago and now sends only GLL is still 3D, as gpsd reasons),
else 2D (an RMC-only receiver is 2D).  Status: from the most specific sentence of the epoch, GGA
quality over GNS mode over RMC and GLL mode indicators (RMC says only "D" for an RTK
fix that GGA calls 4).  Position: the last sentence that carried one.  If the last
position sentence said "no fix", the epoch has no position, mode 1, status 0.
"""

from .nmea_fix import MODE_2D, MODE_3D, MODE_NONE, STATUS_GPS, STATUS_NONE, Fix
from .nmea_time import next_day

# the timed sentence types that carry an altitude, as bits of _Epoch.seen (the others
# are numbered in nmea_sentences)
GGA = 2
GNS = 4


class _Epoch:
    """What the sentences of the epoch in progress said (one reused instance)."""

    __slots__ = ("alt", "bad_date", "date", "gsa_mode", "gsa_used", "hdop", "key", "lat",
                 "lon", "rank", "sats", "seen", "speed", "status", "track", "valid")

    def __init__(self):
        self.reset(None)

    def reset(self, key):
        self.key = key          # time of day in ms; None while unknown
        self.seen = 0           # bits of the timed sentence types seen
        self.valid = False      # the last position sentence said "valid fix"
        self.lat = None
        self.lon = None
        self.alt = None
        self.speed = None
        self.track = None
        self.status = 0
        self.rank = -1          # specificity of the sentence that set status
        self.gsa_mode = 0
        self.gsa_used = -1
        self.sats = None
        self.hdop = None
        self.date = None
        self.bad_date = False


class EpochAssembler:
    """Epoch state shared by the sentence handlers; completed fixes go to the list ``_out``."""

    def __init__(self, min_year):
        self.min_year = min_year
        self.fixes = 0
        self.bad_dates = 0
        self._ep = _Epoch()
        self._open = False
        self._date = None           # last good date, kept across epochs
        self._last_tod = -1
        self._last_mode = MODE_NONE
        self._visible = {}          # GSV talker (+ signal id) → satellites in view
        self._visible_changed = False
        self._visible_total = None
        self._out = None

    def _at(self, tod, bit):
        """The epoch a timed sentence of type ``bit`` at ``tod`` (ms, -1 empty) joins."""
        ep = self._ep
        if self._open:
            if tod < 0:
                if not ep.seen & bit:
                    ep.seen |= bit
                    return ep
            elif ep.key is None:
                if not ep.seen & bit:
                    ep.key = tod
                    ep.seen |= bit
                    return ep
            elif ep.key == tod:
                ep.seen |= bit
                return ep
            self._close()
        ep.reset(tod if tod >= 0 else None)
        ep.seen = bit
        self._open = True
        return ep

    def _untimed(self):
        ep = self._ep
        if not self._open:
            ep.reset(None)
            self._open = True
        return ep

    def _set_date(self, ep, date):
        """Record the date an RMC or ZDA gave (None: malformed)."""
        if date is None or date[0] < self.min_year:
            ep.bad_date = True
            ep.date = None
            self.bad_dates += 1
        elif not ep.bad_date:
            ep.date = date

    def _close(self):
        ep = self._ep
        self._open = False
        if not ep.seen:
            return  # only untimed sentences: nothing to report
        tod = ep.key
        date = None
        if ep.bad_date:
            self._date = None
        elif ep.date is not None:
            date = self._date = ep.date
        elif self._date is not None and tod is not None:
            if tod < self._last_tod:
                self._date = next_day(self._date)
            date = self._date
        if tod is not None:
            self._last_tod = tod
        sats = ep.sats
        if sats is None and ep.gsa_used >= 0:
            sats = ep.gsa_used
        if self._visible_changed:
            self._visible_total = self._count_visible()
            self._visible_changed = False
        if ep.valid and ep.lat is not None:
            alt = ep.alt
            mode = ep.gsa_mode
            if mode < MODE_2D:
                if alt is not None:
                    mode = MODE_3D
                elif ep.seen & (GGA | GNS):
                    mode = MODE_2D
                elif self._last_mode >= MODE_2D:
                    mode = self._last_mode
                else:
                    mode = MODE_2D
            fix = Fix(date, tod, ep.lat, ep.lon, alt, ep.speed, ep.track, mode,
                      ep.status or STATUS_GPS, sats, ep.hdop, self._visible_total)
        else:
            mode = MODE_NONE
            fix = Fix(date, tod, None, None, None, ep.speed, ep.track, mode, STATUS_NONE, sats,
                      ep.hdop, self._visible_total)
        self._last_mode = mode
        self.fixes += 1
        self._out.append(fix)

    def _count_visible(self):
        """Satellites in view: per talker the largest count over its signals, summed."""
        if not self._visible:
            return None
        best = {}
        for key, n in self._visible.items():
            talker = key[:2]
            if n > best.get(talker, -1):
                best[talker] = n
        total = 0
        for n in best.values():
            total += n
        return total
