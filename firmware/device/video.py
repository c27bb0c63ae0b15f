"""Continuous recording into the clip ring: a frame source, an H.264 encoder, a thread.

Backends (the profile's ``camera.backend``, as for photos):

- ``picamera2``: the Pi's own H.264 encoder (``H264Encoder(repeat=True)``) writing into
  an output that appends each packet to the ring — picamera2's ``CircularOutput`` does
  the same into its own buffer; here the ring is ours, so clips are cut the same way on
  every backend.  Imported only when chosen; not testable off a Pi.
- ``opencv``: a USB camera's frames, encoded by PyAV's libx264.
- ``synthetic``: simulation — the synthetic camera's street scene with a moving vehicle
  and a running clock drawn on every frame, encoded by PyAV's libx264 into real H.264.

``Recorder`` runs source → encoder → ``PacketRing`` on a thread at the frame rate and
polls ``EventClips`` after each frame, so due clips are written as soon as recorded.
"""

import threading
import time
from fractions import Fraction

from .camera import CameraError, SyntheticCamera, open_uvc
from .clips import ClipError, EventClips, PacketRing

DEFAULT_FPS = 15
DEFAULT_BIT_RATE = 900_000      # bit/s: under the 1 Mbit/s budget at 720p


def _av():
    try:
        import av
    except ImportError:
        raise ClipError("video recording needs PyAV (pip install gridlink[media])") from None
    return av


class H264Encoder:
    """PyAV's libx264: RGB frames in, (t, keyframe, Annex B bytes) out.  No B-frames and
    no look-ahead (``zerolatency``), so each frame's packet comes out at once; a keyframe
    every ``gop_s`` seconds, each carrying SPS/PPS (no global header)."""

    def __init__(self, width, height, fps=DEFAULT_FPS, bit_rate=DEFAULT_BIT_RATE, gop_s=1.0,
                 preset="veryfast"):
        av = _av()
        self.av = av
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = Fraction(1, 1000)
        ctx.framerate = Fraction(fps, 1)
        ctx.bit_rate = bit_rate
        ctx.gop_size = max(1, round(fps * gop_s))
        ctx.max_b_frames = 0
        ctx.options = {"preset": preset, "tune": "zerolatency",
                       "x264-params": f"vbv-maxrate={bit_rate // 1000}:"
                                      f"vbv-bufsize={bit_rate // 1000}"}
        self.ctx = ctx
        self.size = (width, height)
        self._t0 = None
        self._last_pts = -1
        self._times = {}

    def encode(self, image, t):
        """Encode one frame (a Pillow image or an RGB array) captured at ``t``."""
        if hasattr(image, "mode"):
            if image.size != self.size:
                raise ClipError(f"frame is {image.size}, the encoder takes {self.size}")
            frame = self.av.VideoFrame.from_image(image.convert("RGB"))
        else:
            frame = self.av.VideoFrame.from_ndarray(image, format="rgb24")
        if self._t0 is None:
            self._t0 = t
        pts = max(round((t - self._t0) * 1000), self._last_pts + 1)   # strictly rising
        frame.pts = self._last_pts = pts
        self._times[pts] = t
        return self._packets(self.ctx.encode(frame))

    def flush(self):
        """The packets still inside the encoder."""
        return self._packets(self.ctx.encode(None))

    def _packets(self, packets):
        out = []
        for p in packets:
            t = self._times.pop(p.pts, None)
            out.append((self._t0 if t is None else t, bool(p.is_keyframe), bytes(p)))
        return out


class SimulatedVideo:
    """Frames for simulation: the synthetic camera's scene (drawn once), a vehicle
    crossing it and the capture time, so consecutive frames differ like a real street."""

    def __init__(self, width, height):
        self.size = (width, height)
        self.scene = SyntheticCamera(self.size).capture()
        self.frames = 0

    def frame(self, t):
        from PIL import ImageDraw

        w, h = self.size
        img = self.scene.copy()
        draw = ImageDraw.Draw(img)
        x = int((t * w / 6) % (w + 200)) - 200          # crosses the frame in 6 s
        y = int(h * 0.7)
        draw.rectangle([x, y, x + 180, y + 70], fill=(200, 30, 30))
        draw.ellipse([x + 20, y + 55, x + 60, y + 95], fill=(20, 20, 20))
        draw.ellipse([x + 120, y + 55, x + 160, y + 95], fill=(20, 20, 20))
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
        draw.rectangle([8, h - 30, 330, h - 6], fill=(0, 0, 0))
        draw.text((14, h - 26), f"gridlink sim {stamp}", fill=(255, 255, 0))
        self.frames += 1
        return img

    def close(self):
        pass


class OpenCVVideo:
    """Frames of a USB (UVC) camera through OpenCV."""

    def __init__(self, device, width, height):
        self.size = (width, height)
        self.cv2, self.cap = open_uvc(device, self.size)

    def frame(self, t):
        ok, frame = self.cap.read()
        if not ok:
            raise CameraError("USB camera gave no frame")
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = self.cv2.resize(frame, self.size)
        return self.cv2.cvtColor(frame, self.cv2.COLOR_BGR2RGB)

    def close(self):
        self.cap.release()


class Recorder:
    """source → encoder → ring on a thread at ``fps``; ``clips.poll()`` after each frame.
    An error on the thread stops it and is kept in ``error``; ``is_alive()`` turns False."""

    def __init__(self, source, encoder, ring, fps=DEFAULT_FPS, clips=None, clock=time.time):
        self.source, self.encoder, self.ring, self.clips = source, encoder, ring, clips
        self.fps, self.clock = fps, clock
        self.error = None
        self.frames = 0
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="clip-recorder", daemon=True)
        self._thread.start()
        return self

    def step(self, t=None):
        """Capture, encode and store one frame (the thread's loop body)."""
        t = self.clock() if t is None else t
        for pt, key, data in self.encoder.encode(self.source.frame(t), t):
            self.ring.append(pt, key, data)
        self.frames += 1
        if self.clips is not None:
            self.clips.poll(t)

    def _run(self):
        period = 1 / self.fps
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                self.step()
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()       # behind: drop the lost frames
        except Exception as exc:      # kept in .error; is_alive() turns False
            self.error = exc

    def is_alive(self):
        return self._thread is not None and self._thread.is_alive()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for pt, key, data in self.encoder.flush():
            self.ring.append(pt, key, data)
        self.source.close()


class Picamera2Recorder:
    """The Pi's CSI camera and hardware H.264 encoder feeding the ring (picamera2)."""

    def __init__(self, width, height, ring, fps=DEFAULT_FPS, bit_rate=DEFAULT_BIT_RATE,
                 gop_s=1.0, clips=None, clock=time.time):
        try:
            from picamera2 import Picamera2
            from picamera2.encoders import H264Encoder as PiH264Encoder
            from picamera2.outputs import Output
        except ImportError:
            raise CameraError("camera backend picamera2 needs the picamera2 package "
                              "(apt install python3-picamera2, or pip install gridlink[pi])"
                              ) from None
        recorder = self

        class RingOutput(Output):
            def outputframe(self, frame, keyframe=True, *args, **kwargs):
                t = clock()
                ring.append(t, keyframe, bytes(frame))
                if clips is not None:
                    clips.poll(t)
                recorder.frames += 1

        self.frames = 0
        self.cam = Picamera2()
        self.cam.configure(self.cam.create_video_configuration(
            main={"size": (width, height)}, controls={"FrameRate": fps}))
        self.encoder = PiH264Encoder(bitrate=bit_rate, repeat=True,
                                     iperiod=max(1, round(fps * gop_s)))
        self.output = RingOutput()

    def start(self):
        self.cam.start_recording(self.encoder, self.output)
        return self

    def is_alive(self):
        return bool(self.cam.started)

    def stop(self):
        self.cam.stop_recording()
        self.cam.close()


def make_recorder(backend, ring, width=1280, height=720, fps=DEFAULT_FPS,
                  bit_rate=DEFAULT_BIT_RATE, gop_s=1.0, device=0, clips=None,
                  clock=time.time):
    """The recorder of ``backend`` (``camera.backend``) into ``ring``; None for ``none``."""
    if backend == "picamera2":
        return Picamera2Recorder(width, height, ring, fps, bit_rate, gop_s, clips, clock)
    if backend == "none":
        return None
    if backend == "opencv":
        source = OpenCVVideo(device, width, height)
    elif backend == "synthetic":
        source = SimulatedVideo(width, height)
    else:
        raise CameraError(f"unknown camera backend {backend!r}")
    return Recorder(source, H264Encoder(width, height, fps, bit_rate, gop_s), ring, fps,
                    clips, clock)


def clip_recorder(conf, backend, folder, on_clip=None, device=0, clock=time.time):
    """(EventClips, recorder) for a profile's ``clips`` section (schema defaults filled
    in): the ring holds ``pre_s + post_s`` and two GOPs within ``ring_bytes``; clips are
    written to ``folder``.  The recorder is None for the ``none`` backend; start it."""
    ring = PacketRing(conf["pre_s"] + conf["post_s"] + 2 * conf["gop_s"], conf["ring_bytes"])
    clips = EventClips(ring, folder, conf["pre_s"], conf["post_s"], on_clip, clock=clock)
    recorder = make_recorder(backend, ring, conf["width"], conf["height"], conf["fps"],
                             conf["bit_rate"], conf["gop_s"], device, clips, clock)
    return clips, recorder
