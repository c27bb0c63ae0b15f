"""Event clips: a ring of encoded H.264 packets in memory, cut into MP4 clips on a trigger.

The camera's encoder (``video.py``) appends every packet with its capture time (wall
clock, seconds) to a ``PacketRing``.  The ring holds whole groups of pictures (GOPs: a
keyframe and the packets after it) and evicts the oldest GOP once the rest still covers
``max_seconds``, or at once while it holds more than ``max_bytes`` — so it always starts
at a keyframe and its memory is bounded.  ``EventClips.trigger(t)`` asks for the seconds
``pre_s`` before ``t`` and ``post_s`` after it; once the ring has reached ``t + post_s``
(or ``late_s`` after that, with what it has) the window is cut from the keyframe at or
before ``t - pre_s`` and remuxed into an MP4 without re-encoding (PyAV).  A clip whose
ring had less than ``pre_s`` before the trigger (just after start-up, or after a byte
eviction) starts where the ring starts, and its ``Clip.pre_s`` says how much it has.

Packets are Annex B H.264 with the parameter sets (SPS/PPS) repeated on every keyframe —
what libx264 gives without global headers and picamera2's ``H264Encoder(repeat=True)``
gives — so any keyframe can start a clip.
"""

import hashlib
import io
import itertools
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

from ..core import fsio
from ..errors import DeviceError

MP4_TIME_BASE = Fraction(1, 90000)
DEFAULT_PRE_S, DEFAULT_POST_S = 10.0, 20.0


class ClipError(DeviceError):
    """A packet, a trigger or a clip could not be taken as asked."""


class Packet(NamedTuple):
    """One encoded picture: capture time (s), keyframe or not, Annex B bytes."""
    t: float
    key: bool
    data: bytes


class PacketRing:
    """Encoded packets of the last ``max_seconds`` (at least, once recorded; less than one
    GOP more), never more than ``max_bytes`` of them, always starting at a keyframe.
    Thread-safe: the recorder appends while triggers cut windows."""

    def __init__(self, max_seconds, max_bytes):
        if not max_seconds > 0 or not max_bytes > 0:
            raise ClipError(f"ring bounds must be positive, got {max_seconds} s, "
                            f"{max_bytes} bytes")
        self.max_seconds, self.max_bytes = max_seconds, max_bytes
        self._gops = deque()                     # lists of Packet, each from a keyframe
        self._bytes = 0
        self._last_t = None
        self._lock = threading.Lock()
        self.waiting = 0      # packets refused while no keyframe had started a GOP
        self.evicted = 0      # packets evicted by the bounds

    def append(self, t, key, data):
        """Store one packet; False when it is not held (no keyframe before it, or its GOP
        alone is over the byte bound)."""
        if not data:
            raise ClipError("an empty packet")
        with self._lock:
            if self._last_t is not None and t < self._last_t:
                raise ClipError(f"packet time {t:.3f} is before the last one "
                                f"({self._last_t:.3f}): capture times must not go back")
            self._last_t = t
            if key:
                self._gops.append([])
            elif not self._gops:
                self.waiting += 1
                return False
            self._gops[-1].append(Packet(t, bool(key), bytes(data)))
            self._bytes += len(data)
            self._evict(t)
            return bool(self._gops)

    def _evict(self, newest):
        while len(self._gops) > 1 and self._gops[1][0].t <= newest - self.max_seconds:
            self._drop_oldest()
        while self._bytes > self.max_bytes and self._gops:
            self._drop_oldest()

    def _drop_oldest(self):
        gop = self._gops.popleft()
        self._bytes -= sum(len(p.data) for p in gop)
        self.evicted += len(gop)

    def window(self, start, end):
        """The packets from the last keyframe at or before ``start`` (the ring's first
        keyframe when none is that early) through the last one at or before ``end``."""
        with self._lock:
            gops = list(self._gops)
        first = 0
        for i, gop in enumerate(gops):
            if gop[0].t <= start:
                first = i
        return [p for gop in gops[first:] for p in gop if p.t <= end]

    @property
    def oldest(self):
        """Capture time of the first packet held, None before any."""
        with self._lock:
            return self._gops[0][0].t if self._gops and self._gops[0] else None

    @property
    def newest(self):
        """Capture time of the last packet stored, None before any."""
        with self._lock:
            return self._gops[-1][-1].t if self._gops and self._gops[-1] else None

    def stats(self):
        """Bytes, packets, GOPs and the seconds covered, for status and benchmarks."""
        with self._lock:
            packets = [p for gop in self._gops for p in gop]
            return {"bytes": self._bytes, "packets": len(packets), "gops": len(self._gops),
                    "seconds": packets[-1].t - packets[0].t if packets else 0.0,
                    "waiting": self.waiting, "evicted": self.evicted}


def frame_interval(packets):
    """The median gap between consecutive packets (s); 1/15 s for fewer than two."""
    gaps = [b.t - a.t for a, b in itertools.pairwise(packets) if b.t > a.t]
    return statistics.median(gaps) if gaps else 1 / 15


def write_mp4(packets, out, metadata=None):
    """Remux Annex B H.264 ``packets`` (starting at a keyframe) into an MP4 written to
    ``out`` (a path or a binary file), timed by their capture times; no re-encoding."""
    try:
        import av
    except ImportError:
        raise ClipError("clips need PyAV (pip install gridlink[media])") from None
    if not packets:
        raise ClipError("no packets to write")
    if not packets[0].key:
        raise ClipError("a clip must start at a keyframe")
    try:
        probe = av.open(io.BytesIO(packets[0].data), format="h264")
    except av.FFmpegError as exc:
        raise ClipError(f"the first keyframe is not H.264 with its parameter sets: {exc}"
                        ) from None
    step = frame_interval(packets)
    t0 = packets[0].t
    with probe:
        template = probe.streams.video[0]
        if not template.codec_context.width:
            raise ClipError("the first keyframe carries no SPS/PPS (repeat the headers "
                            "on every keyframe)")
        with av.open(out, "w", format="mp4") as mp4:
            mp4.metadata.update(metadata or {})
            stream = mp4.add_stream_from_template(template)
            stream.time_base = MP4_TIME_BASE
            last = -1
            for i, p in enumerate(packets):
                pts = max(round((p.t - t0) / MP4_TIME_BASE), last + 1)
                nxt = packets[i + 1].t if i + 1 < len(packets) else p.t + step
                packet = av.Packet(p.data)
                packet.stream = stream
                packet.time_base = MP4_TIME_BASE
                packet.pts = packet.dts = pts
                packet.duration = max(1, round((nxt - p.t) / MP4_TIME_BASE))
                packet.is_keyframe = p.key
                mp4.mux(packet)
                last = pts


@dataclass(frozen=True)
class Clip:
    """One clip written: where, its hash, and where the trigger falls in it."""
    name: str
    path: Path
    bytes: int
    sha256: str
    trigger_t: float
    start_t: float
    end_t: float
    frames: int
    keyframes: int

    @property
    def pre_s(self):
        """Seconds of the clip before the trigger (less than asked after start-up)."""
        return max(0.0, self.trigger_t - self.start_t)

    @property
    def post_s(self):
        return max(0.0, self.end_t - self.trigger_t)

    def as_dict(self):
        return {"name": self.name, "path": str(self.path), "bytes": self.bytes,
                "sha256": self.sha256, "trigger_t": self.trigger_t, "start_t": self.start_t,
                "end_t": self.end_t, "pre_s": round(self.pre_s, 3),
                "post_s": round(self.post_s, 3), "frames": self.frames,
                "keyframes": self.keyframes}


class _Pending(NamedTuple):
    name: str
    trigger_t: float
    start: float
    end: float


class EventClips:
    """Triggers → MP4 files in ``folder``: ``pre_s`` before each trigger, ``post_s`` after.

    Call ``poll()`` as packets arrive (the recorder does); each clip whose window the ring
    has reached is written and handed to ``on_clip(clip)``; one whose window holds no
    video (the recorder stalled, or the ring lost it) is handed to
    ``on_missed(name, reason)`` instead, so whoever asked hears at once.  Overlapping
    triggers each get their own clip.  The ring must hold ``pre_s + post_s``, or the
    start of a clip would be evicted before its end is recorded."""

    def __init__(self, ring, folder, pre_s=DEFAULT_PRE_S, post_s=DEFAULT_POST_S,
                 on_clip=None, late_s=5.0, clock=time.time, on_missed=None):
        if pre_s < 0 or post_s < 0:
            raise ClipError(f"pre and post seconds must not be negative: {pre_s}, {post_s}")
        if ring.max_seconds < pre_s + post_s:
            raise ClipError(f"the ring holds {ring.max_seconds} s, a clip needs "
                            f"{pre_s} + {post_s} s: give the ring at least that")
        self.ring, self.folder = ring, Path(folder)
        self.pre_s, self.post_s, self.late_s = pre_s, post_s, late_s
        self.on_clip, self.clock, self.on_missed = on_clip, clock, on_missed
        self._pending = []
        self._lock = threading.Lock()
        self._count = 0

    def trigger(self, t=None, name=None, pre_s=None, post_s=None):
        """Ask for the clip around ``t`` (default now); its name (default
        ``clip-<t in ms>-<n>``) becomes ``<folder>/<name>.mp4``.  ``pre_s``/``post_s``
        override the defaults for this clip (the centre's "last 30 s": ``pre_s=30,
        post_s=0``) within what the ring holds."""
        t = self.clock() if t is None else t
        pre_s = self.pre_s if pre_s is None else pre_s
        post_s = self.post_s if post_s is None else post_s
        if pre_s < 0 or post_s < 0 or pre_s + post_s > self.ring.max_seconds:
            raise ClipError(f"a clip of {pre_s} s before and {post_s} s after does not fit "
                            f"the ring's {self.ring.max_seconds} s")
        with self._lock:
            self._count += 1
            name = name or f"clip-{round(t * 1000)}-{self._count}"
            if any(p.name == name for p in self._pending):
                raise ClipError(f"a clip named {name!r} is already pending")
            self._pending.append(_Pending(name, t, t - pre_s, t + post_s))
        return name

    @property
    def pending(self):
        with self._lock:
            return [p.name for p in self._pending]

    def poll(self, now=None):
        """Write every clip that is due; the list of clips written."""
        now = self.clock() if now is None else now
        newest = self.ring.newest
        with self._lock:
            due = [p for p in self._pending
                   if (newest is not None and newest >= p.end) or now >= p.end + self.late_s]
            self._pending = [p for p in self._pending if p not in due]
        done = []
        for p in due:
            clip = self._cut(p)
            if clip is not None:
                done.append(clip)
                if self.on_clip:
                    self.on_clip(clip)
            elif self.on_missed:
                self.on_missed(p.name, self._missed_reason(p))
        return done

    def _missed_reason(self, p):
        oldest, newest = self.ring.oldest, self.ring.newest
        held = "no video at all" if newest is None else \
            f"video from {oldest - p.trigger_t:+.1f} s to {newest - p.trigger_t:+.1f} s"
        return (f"no video was recorded from {p.start - p.trigger_t:+.1f} s to "
                f"{p.end - p.trigger_t:+.1f} s around the trigger (the ring holds {held})")

    def _cut(self, p):
        packets = self.ring.window(p.start, p.end)
        if not packets:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{p.name}.mp4"
        buf = io.BytesIO()
        write_mp4(packets, buf, {
            "creation_time": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z",
                                           time.gmtime(packets[0].t)),
            "comment": f"gridlink trigger at {p.trigger_t - packets[0].t:.3f} s"})
        data = buf.getvalue()
        fsio.write_file(str(path), data, str(self.folder))   # whole or absent after a crash
        return Clip(p.name, path, len(data), hashlib.sha256(data).hexdigest(), p.trigger_t,
                    packets[0].t, packets[-1].t + frame_interval(packets), len(packets),
                    sum(pk.key for pk in packets))
