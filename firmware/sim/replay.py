"""Replay a real NMEA capture through a pseudo-terminal, at the capture's own pace.

The device opens the pty's slave path with pyserial exactly as it opens ``/dev/serial0``,
so the whole serial path runs for real.  Pacing follows the UTC time of day in the
sentences (GGA, RMC, GLL, GNS, ZDA): every line of one epoch is written together, then
the replayer sleeps until the next epoch (divided by ``speed``; gaps in the capture
longer than ``max_gap_s`` are shortened).  Comment lines (``#``) are dropped, everything
else — garbage, bad checksums, NUL bytes — is sent byte for byte.

With ``retime`` (the default) each round of the replay is moved in time so that it starts
now: the UTC times and dates of the sentences get the same whole-second offset, so the
device sees today's date (old captures would otherwise fall before the decoder's
``min_year``) while the spacing of the epochs stays the receiver's own.  A sentence never
names a time later than the moment it is written: where the replay went faster than the
capture (a shortened gap, ``speed`` above 1) the offset drops by the time it would have
run ahead (times are written rounded down), so the retimed track follows the real clock
and never leads it.  Faster than real time, the epochs then carry the times they were
written at (0.25 s apart at ``speed`` 4); a capture whose time fields have no decimals
gives epochs written within one second the same time, which the decoder merges.

``origin`` moves the track onto another place (for instance the district map) while
keeping the receiver's own motion and noise: every position with a good checksum is
moved by the same north/east offset in metres (first fix → origin), written with the
same number of decimals, and its checksum recomputed.
"""

import calendar
import contextlib
import datetime
import math
import os
import threading
import time
import tty
from pathlib import Path

from ..core.nmea import checksum
from ..shared_data import shared_data

CAPTURES = Path(__file__).resolve().parent / "captures"

# sentence type → (index of time field, index of lat field) in the comma-split fields
_TIME_FIELD = {"GGA": 1, "RMC": 1, "GNS": 1, "ZDA": 1, "GLL": 5}
_LAT_FIELD = {"GGA": 2, "RMC": 3, "GNS": 2, "GLL": 1}


def find_capture(name):
    """A capture path: an existing path, a bundled capture, or one in the shared set."""
    path = Path(name)
    if path.exists():
        return path
    for folder in (CAPTURES, shared_data("nmea")):
        if (folder / name).exists():
            return folder / name
    from ..errors import DeviceError

    known = ", ".join(sorted(p.name for p in CAPTURES.glob("*.log")))
    raise DeviceError(f"NMEA capture {name!r} not found (bundled: {known}; shared: "
                      f"{shared_data('nmea')}; or give a path)")


def read_capture(path):
    """The capture's receiver lines (bytes, line ending kept), without ``#`` comments."""
    data = Path(path).read_bytes()
    lines = data.splitlines(keepends=True)
    return [line for line in lines if not line.lstrip().startswith(b"#")]


def _split(line):
    """(talker+type, fields, body-end index) of a checksummed sentence, or None."""
    text = line.rstrip(b"\r\n")
    start = text.rfind(b"$")
    star = text.rfind(b"*")
    if start < 0 or star < start or len(text) < star + 3:
        return None
    body = text[start + 1:star]
    try:
        want = int(text[star + 1:star + 3], 16)
    except ValueError:
        return None
    if checksum(body) != want:
        return None
    try:
        fields = body.decode("ascii").split(",")
    except UnicodeDecodeError:
        return None
    return fields, text[:start + 1]


def sentence_tod(line):
    """Seconds since midnight UTC named by a sentence, or None."""
    parsed = _split(line)
    if parsed is None:
        return None
    fields = parsed[0]
    kind = fields[0][-3:]
    i = _TIME_FIELD.get(kind)
    if i is None or len(fields) <= i or len(fields[i]) < 6:
        return None
    f = fields[i]
    try:
        return int(f[0:2]) * 3600 + int(f[2:4]) * 60 + float(f[4:])
    except ValueError:
        return None


def _deg(value, hemi, width):
    d = int(value[:width])
    return (d + float(value[width:]) / 60.0) * (-1 if hemi in ("S", "W") else 1)


def _fmt(deg, width, decimals, hemis):
    hemi = hemis[0] if deg >= 0 else hemis[1]
    deg = abs(deg)
    d = int(deg)
    minutes = round((deg - d) * 60.0, decimals)
    if minutes >= 60.0:
        d, minutes = d + 1, 0.0
    mm = f"{minutes:0{3 + decimals if decimals else 2}.{decimals}f}"
    return f"{d:0{width}d}{mm}", hemi


def sentence_position(line):
    """(lat, lon) of a sentence with a good checksum and a position, or None."""
    parsed = _split(line)
    if parsed is None:
        return None
    fields = parsed[0]
    i = _LAT_FIELD.get(fields[0][-3:])
    if i is None or len(fields) <= i + 3 or not fields[i] or not fields[i + 2]:
        return None
    try:
        return _deg(fields[i], fields[i + 1], 2), _deg(fields[i + 2], fields[i + 3], 3)
    except ValueError:
        return None


def shift_sentence(line, move):
    """The sentence with its position mapped by ``move(lat, lon) → (lat, lon)``; lines
    without a good checksum or a position are returned as they are."""
    parsed = _split(line)
    if parsed is None:
        return line
    fields, prefix = parsed
    i = _LAT_FIELD.get(fields[0][-3:])
    if i is None or len(fields) <= i + 3 or not fields[i] or not fields[i + 2]:
        return line
    try:
        lat, lon = move(_deg(fields[i], fields[i + 1], 2), _deg(fields[i + 2], fields[i + 3], 3))
    except ValueError:
        return line
    lon = (lon + 180.0) % 360.0 - 180.0
    lat_dec = len(fields[i].partition(".")[2])
    lon_dec = len(fields[i + 2].partition(".")[2])
    fields[i], fields[i + 1] = _fmt(lat, 2, lat_dec, "NS")
    fields[i + 2], fields[i + 3] = _fmt(lon, 3, lon_dec, "EW")
    return _reframe(prefix, fields, line)


def _reframe(prefix, fields, line):
    """The sentence rebuilt from ``fields``: its checksum made anew (the core's), the
    line's own ending kept."""
    body = ",".join(fields).encode("ascii")
    ending = line[len(line.rstrip(b"\r\n")):] or b"\r\n"
    return prefix + body + b"*" + f"{checksum(body):02X}".encode() + ending


def _fmt_tod(seconds, template):
    """hhmmss[.ss…] of ``seconds`` since midnight with the decimals of ``template``."""
    decimals = len(template.partition(".")[2])
    scale = 10 ** decimals
    units = math.floor(seconds * scale + 1e-6) % (86400 * scale)  # down: never ahead
    whole, frac = divmod(units, scale)
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    return f"{h:02d}{m:02d}{sec:02d}" + (f".{frac:0{decimals}d}" if decimals else "")


def _tod(field):
    return int(field[0:2]) * 3600 + int(field[2:4]) * 60 + float(field[4:])


def retime_sentence(line, offset):
    """The sentence with its UTC time (and date) moved by ``offset`` seconds (rounded down
    to the decimals of its time field)."""
    parsed = _split(line)
    if parsed is None:
        return line
    fields, prefix = parsed
    kind = fields[0][-3:]
    i = _TIME_FIELD.get(kind)
    if i is None or len(fields) <= i or len(fields[i]) < 6:
        return line
    try:
        tod = _tod(fields[i])
        if kind == "RMC" and len(fields) > 9 and len(fields[9]) == 6:
            d = fields[9]
            day = datetime.date(2000 + int(d[4:6]) if int(d[4:6]) < 80 else 1900 + int(d[4:6]),
                                int(d[2:4]), int(d[0:2]))
            when = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(
                seconds=tod + offset)
            fields[9] = when.strftime("%d%m%y")
        elif kind == "ZDA" and len(fields) > 4 and fields[2] and fields[3] and fields[4]:
            day = datetime.date(int(fields[4]), int(fields[3]), int(fields[2]))
            when = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(
                seconds=tod + offset)
            fields[2], fields[3], fields[4] = f"{when.day:02d}", f"{when.month:02d}", \
                f"{when.year:04d}"
        fields[i] = _fmt_tod(tod + offset, fields[i])
    except (ValueError, OverflowError):
        return line
    return _reframe(prefix, fields, line)


def seconds_ahead(tod, now):
    """How far a time of day ``tod`` lies after the instant ``now`` (Unix seconds), in
    seconds within half a day either way (the capture may cross midnight)."""
    return (tod - now % 86400 + 43200) % 86400 - 43200


def first_epoch(lines):
    """Unix seconds of the capture's first dated instant (RMC or ZDA), or None."""
    for line in lines:
        parsed = _split(line)
        if parsed is None:
            continue
        f = parsed[0]
        try:
            if f[0][-3:] == "RMC" and len(f) > 9 and len(f[9]) == 6 and len(f[1]) >= 6:
                y = int(f[9][4:6])
                day = datetime.date(2000 + y if y < 80 else 1900 + y, int(f[9][2:4]),
                                    int(f[9][0:2]))
            elif f[0][-3:] == "ZDA" and len(f) > 4 and f[2] and f[3] and f[4] and len(f[1]) >= 6:
                day = datetime.date(int(f[4]), int(f[3]), int(f[2]))
            else:
                continue
        except ValueError:
            continue
        return calendar.timegm(day.timetuple()) + _tod(f[1])
    return None


def epochs(lines):
    """[(tod or None, [lines])]: lines grouped by the time of day of their sentences."""
    out = []
    current, group = None, []
    for line in lines:
        tod = sentence_tod(line)
        if tod is not None and tod != current and group:
            out.append((current, group))
            group = []
        if tod is not None:
            current = tod
        group.append(line)
    if group:
        out.append((current, group))
    return out


def translate(lines, origin):
    """Lines moved so that the first position lands on ``origin`` (lat, lon).

    The track keeps its shape in metres: north/east offsets from the first position are
    carried over (longitude offsets rescaled by the cosine of the latitudes), so speeds,
    turns and the receiver's noise stay what they were.
    """
    first = next((p for p in map(sentence_position, lines) if p is not None), None)
    if first is None or origin is None:
        return list(lines)
    lat0, lon0 = first
    scale = math.cos(math.radians(lat0)) / math.cos(math.radians(origin[0]))

    def move(lat, lon):
        dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
        return origin[0] + (lat - lat0), origin[1] + dlon * scale

    return [shift_sentence(line, move) for line in lines]


def open_pty():
    """(master fd, slave fd, slave path) of a raw pseudo-terminal."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class Replayer:
    """Writes a capture into a pty in a thread; ``path`` is what the device opens."""

    def __init__(self, capture, speed=1.0, origin=None, loop=False, max_gap_s=2.0,
                 retime=True, clock=time.time):
        self.capture = find_capture(capture)
        self.speed = speed
        self.loop = loop
        self.max_gap_s = max_gap_s
        self.clock = clock
        lines = translate(read_capture(self.capture), origin)
        self.first = first_epoch(lines) if retime else None
        self.groups = epochs(lines)
        self.master, self.slave, self.path = open_pty()
        self.sent_lines = 0
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nmea-replay", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            prev = None
            offset = 0 if self.first is None else round(self.clock() - self.first)
            for tod, group in self.groups:
                if prev is not None and tod is not None:
                    gap = tod - prev
                    if gap < 0:
                        gap += 86400
                    gap = min(gap, self.max_gap_s)
                    if self._stop.wait(gap / self.speed):
                        return
                if tod is not None:
                    prev = tod
                    if self.first is not None:
                        ahead = seconds_ahead(tod + offset, self.clock())
                        if ahead > 0:
                            offset -= ahead
                if offset:
                    group = [retime_sentence(line, offset) for line in group]
                try:
                    os.write(self.master, b"".join(group))
                except OSError:
                    return
                self.sent_lines += len(group)
            self.rounds += 1
            if not self.loop:
                return

    def is_alive(self):
        """True until the capture has been written (for ever with ``loop``)."""
        return self._thread.is_alive()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

