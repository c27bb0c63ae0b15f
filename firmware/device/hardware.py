"""The device's hardware, built in one place from the profile and a backend.

As gpiozero builds its devices over a pin factory, ``Hardware`` builds the device's parts
over a backend; nothing else in the device knows which backend runs:

=======  ===========================  ==============================  =====================
backend  pins (buttons, PIR)          camera (``camera.backend``)     GNSS source
=======  ===========================  ==============================  =====================
pi       gpiozero's default (lgpio)   picamera2 / opencv / none       the profile's serial
                                                                      port, or gpsd
sim      gpiozero ``MockFactory``     synthetic (``none`` stays       a capture replayed
                                      none)                           over a pty, read as
                                                                      a serial port
=======  ===========================  ==============================  =====================

``gnss_port`` (``--gnss-port``) overrides the receiver's port on either backend; with it
the simulation replays nothing.  Parts are built when the device asks for them, in its
start order; ``close()`` releases what the backend itself holds (the replay, the pins).
"""

import logging
from dataclasses import dataclass

from ..errors import DeviceError
from . import camera as cam

log = logging.getLogger("gridlink.device.hardware")

BACKENDS = ("pi", "sim")


def backend_for(profile, sim=False):
    """``sim`` when asked (``--sim``) or the profile's ``sim.enabled``, else ``pi``."""
    require_pi(profile)
    return "sim" if sim or profile["sim"]["enabled"] else "pi"


def require_pi(profile):
    """A DeviceError unless the profile is for a Raspberry Pi (the only board run here)."""
    if profile["platform"] != "raspberry-pi":
        raise DeviceError(
            f"profile {profile['profile']} is for a {profile['board']} running MicroPython;"
            " flash it with `gridlink flash` instead of running it here")


@dataclass(frozen=True)
class Replay:
    """What the simulated GNSS replays: a capture, its pace, place and time."""

    capture: str
    speed: float = 1.0
    origin: tuple | None = None     # (lat, lon) the track is moved to
    loop: bool = True
    retime: bool = True             # each round starts now (else the capture's own dates)

    @classmethod
    def of(cls, profile, *, capture=None, speed=None, origin=None, loop=None, retime=True):
        """The profile's ``sim`` section, with any of its values overridden (None: keep)."""
        sim = profile["sim"]
        if origin is None and "origin" in sim:
            origin = (sim["origin"]["lat"], sim["origin"]["lon"])
        return cls(capture=capture or sim["capture"], speed=speed or sim["speed"],
                   origin=origin, loop=sim["loop"] if loop is None else loop, retime=retime)


class Hardware:
    """Builds the GNSS source, camera and trigger inputs of one device for one backend."""

    def __init__(self, profile, backend=None, *, gnss_port=None, replay=None):
        require_pi(profile)
        self.backend = backend or backend_for(profile)
        if self.backend not in BACKENDS:
            raise DeviceError(f"unknown hardware backend {self.backend!r}: use "
                              + " or ".join(BACKENDS))
        self.profile = profile
        self.gnss_port = gnss_port
        if replay is None and self.sim:
            replay = Replay.of(profile)
        self.replay = replay
        self.replayer = None
        self._pins = None
        self._microphone = None

    @property
    def sim(self):
        return self.backend == "sim"

    def pin_factory(self):
        """The pin factory the inputs are built over (None: gpiozero's default)."""
        if self.sim and self._pins is None:
            from gpiozero.pins.mock import MockFactory

            self._pins = MockFactory()
        return self._pins

    def gnss(self, on_fix=None):
        """The receiver as a GnssReader (not started); the simulation starts its replay."""
        from .gnss import GnssReader

        g = self.profile["gnss"]
        if g["source"] == "gpsd":
            return GnssReader(source="gpsd", gpsd=g["gpsd"], on_fix=on_fix)
        port = self.gnss_port
        if port is None and self.sim:
            port = self._start_replay()
        return GnssReader(source="serial", port=port or g["port"], baud=g["baud"],
                          on_fix=on_fix)

    def _start_replay(self):
        from ..sim.replay import Replayer

        r = self.replay
        self.replayer = Replayer(r.capture, speed=r.speed, origin=r.origin, loop=r.loop,
                                 retime=r.retime).start()
        log.info("simulated GNSS: %s at x%s through %s", self.replayer.capture.name, r.speed,
                 self.replayer.path)
        return self.replayer.path

    def camera(self):
        """The profile's camera (the synthetic one in simulation), or None for ``none``."""
        conf = self.profile["camera"]
        backend = conf["backend"]
        if self.sim and backend != "none":
            backend = "synthetic"
        return cam.make_camera(backend, (conf["width"], conf["height"]), conf["device"])

    def recorder(self, folder, on_clip):
        """(EventClips, recorder not started) for the profile's ``clips`` section over the
        camera's backend (the synthetic camera in simulation); the recorder is None for
        ``none``, and in simulation when the profile's ``sim.clips`` is false (the shipped
        vehicle profile: its synthetic 720p H.264 would be software encoding)."""
        from .video import clip_recorder

        conf = self.profile["camera"]
        backend = conf["backend"]
        if self.sim and backend != "none":
            backend = "synthetic" if self.profile["sim"]["clips"] else "none"
        return clip_recorder(self.profile["clips"], backend, folder, on_clip,
                             device=conf["device"])

    def microphone(self):
        """The memo's microphone (``memo.microphone``: sounddevice on a Pi; synthetic
        speech in simulation), built once; a ``MemoError`` says what is missing."""
        from . import memo

        if self._microphone is None:
            conf = self.profile["memo"]
            backend = "synthetic" if self.sim else conf["microphone"]
            self._microphone = memo.make_microphone(backend, conf.get("device"))
        return self._microphone

    def memo(self, seconds, seed=0):
        """16-bit mono samples of a voice memo from the microphone."""
        return self.microphone().record(seconds, seed)

    def triggers(self, **callbacks):
        """The profile's buttons and sensors over this backend's pins (``Triggers``)."""
        from .triggers import Triggers

        return Triggers(self.profile, pin_factory=self.pin_factory(), **callbacks)

    def status(self):
        """What `gridlink device status` shows of the backend."""
        out = {"backend": self.backend}
        if self.replayer is not None:
            r = self.replayer
            out["replay"] = {"capture": str(r.capture), "pty": r.path, "lines": r.sent_lines,
                             "rounds": r.rounds, "running": r.is_alive()}
        return out

    def close(self):
        """Stop the replay and release the pins (after the parts built on them closed)."""
        if self.replayer is not None:
            self.replayer.stop()
        if self._pins is not None:
            self._pins.close()
