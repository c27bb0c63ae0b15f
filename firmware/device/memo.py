"""Voice memos: mono speech recorded with a report, encoded as Opus in Ogg (PyAV).

``make_microphone`` picks where a memo comes from: ``SoundDeviceMicrophone`` (a real
microphone through sounddevice/PortAudio, on a Pi; imported only when chosen) or
``SyntheticMicrophone``; ``synthetic_memo`` makes a speech-like signal for simulation and
tests (voiced syllables on a gliding pitch with two formants, pauses between words, a
little noise).
``encode_memo`` turns 16-bit mono samples into an ``.ogg`` file's bytes: Opus at 16 kbit/s
is about 2 KB a second; ``memo_info`` decodes one back and says its length.
"""

import io
import math
import random
import threading

from ..errors import DeviceError

RATE = 16000                      # Hz: wideband speech, one of Opus's input rates
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
DEFAULT_BIT_RATE = 16000          # bit/s
MAX_SECONDS = 120


class MemoError(DeviceError):
    """A memo could not be recorded, encoded or decoded."""


def _av():
    try:
        import av
    except ImportError:
        raise MemoError("voice memos need PyAV (pip install gridlink[media])") from None
    return av


def synthetic_memo(seconds, rate=RATE, seed=0):
    """``seconds`` of speech-like int16 mono samples (a numpy array) at ``rate``."""
    import numpy as np

    rng = random.Random(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    out = np.zeros(n)
    pos = 0.0
    while pos < seconds:
        word = rng.uniform(0.3, 0.8)
        for k in range(rng.randint(1, 3)):                      # syllables of one word
            start, length = pos + k * word / 3, word / 3
            i0, i1 = round(start * rate), min(n, round((start + length) * rate))
            if i0 >= n:
                break
            tt = t[i0:i1] - start
            pitch = rng.uniform(100, 220) * (1 + 0.2 * tt / max(length, 1e-3))
            phase = 2 * math.pi * np.cumsum(pitch) / rate
            voiced = sum(np.sin(h * phase) / h for h in range(1, 12))
            formants = sum(np.sin(2 * math.pi * f * tt) for f in (rng.uniform(400, 900),
                                                               rng.uniform(1100, 2400)))
            env = np.sin(math.pi * np.clip(tt / length, 0, 1)) ** 2
            out[i0:i1] += env * (voiced * (1 + 0.3 * formants))
        pos += word + rng.uniform(0.15, 0.5)                     # the pause after it
    out += np.random.default_rng(seed).normal(0, 0.02, n)
    out *= 0.5 / max(1e-9, float(np.abs(out).max()))
    return (out * 32767).astype(np.int16)


MICROPHONES = ("sounddevice", "synthetic")


def make_microphone(backend, device=None, rate=RATE):
    """The microphone a memo is recorded from: ``sounddevice`` (PortAudio; ``device`` a
    PortAudio device name or index, None its default input; imported only when chosen)
    or ``synthetic`` (speech-like audio for simulation)."""
    if backend == "sounddevice":
        return SoundDeviceMicrophone(device, rate)
    if backend == "synthetic":
        return SyntheticMicrophone(rate)
    raise MemoError(f"unknown microphone backend {backend!r}: one of {', '.join(MICROPHONES)}")


def _check_seconds(seconds):
    if not 0 < seconds <= MAX_SECONDS:
        raise MemoError(f"a memo is 0..{MAX_SECONDS} s, not {seconds}")


class SoundDeviceMicrophone:
    """A real microphone through sounddevice (PortAudio: ALSA on a Pi).  Built only when
    sounddevice, the PortAudio library and an input ``device`` are all there; else a
    ``MemoError`` says which is missing."""

    def __init__(self, device=None, rate=RATE):
        try:
            import sounddevice
        except ImportError:
            raise MemoError("recording memos needs the sounddevice package "
                            "(pip install gridlink[audio])") from None
        except OSError as exc:           # the package is there, PortAudio is not
            raise MemoError(f"recording memos needs the PortAudio library ({exc}; "
                            "apt install libportaudio2)") from None
        self.sd, self.rate = sounddevice, rate
        try:
            info = sounddevice.query_devices(device, "input")
            sounddevice.check_input_settings(device, channels=1, dtype="int16",
                                             samplerate=rate)
        except (ValueError, sounddevice.PortAudioError) as exc:
            raise MemoError(f"no microphone {'(default input)' if device is None else device!r}"
                            f" for 16-bit mono at {rate} Hz: {exc}") from None
        self.device = device
        self.name = info["name"]
        self._lock = threading.Lock()      # sounddevice's rec/wait share one stream

    def record(self, seconds, seed=0):
        """``seconds`` from the microphone as int16 mono samples (a numpy array)."""
        _check_seconds(seconds)
        try:
            with self._lock:
                samples = self.sd.rec(round(seconds * self.rate), samplerate=self.rate,
                                      channels=1, dtype="int16", device=self.device)
                self.sd.wait()
        except self.sd.PortAudioError as exc:
            raise MemoError(f"recording from {self.name!r} failed: {exc}") from None
        return samples.reshape(-1)


class SyntheticMicrophone:
    """Speech-like audio (``synthetic_memo``), a new utterance for each ``seed``."""

    name = "synthetic"

    def __init__(self, rate=RATE):
        self.rate = rate

    def record(self, seconds, seed=0):
        _check_seconds(seconds)
        return synthetic_memo(seconds, self.rate, seed)


def record_memo(seconds, rate=RATE, device=None):
    """Record ``seconds`` from the microphone (sounddevice) as int16 mono samples."""
    _check_seconds(seconds)
    return SoundDeviceMicrophone(device, rate).record(seconds)


def encode_memo(samples, rate=RATE, bit_rate=DEFAULT_BIT_RATE):
    """Ogg/Opus bytes of int16 mono ``samples`` at ``rate``."""
    import numpy as np

    av = _av()
    samples = np.asarray(samples)
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise MemoError(f"a memo is 1-D int16 samples, not {samples.dtype} of shape "
                        f"{samples.shape}")
    if not samples.size:
        raise MemoError("an empty memo")
    if rate not in OPUS_RATES:
        raise MemoError(f"Opus takes {OPUS_RATES} Hz, not {rate}")
    if samples.size > MAX_SECONDS * rate:
        raise MemoError(f"a memo is at most {MAX_SECONDS} s, this one "
                        f"{samples.size / rate:.0f} s")
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono")
        stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def memo_info(data):
    """{"codec", "rate", "seconds"} of an Ogg/Opus memo, decoding every packet."""
    av = _av()
    try:
        with av.open(io.BytesIO(data), format="ogg") as c:
            if not c.streams.audio:
                raise MemoError("no audio stream in the memo")
            stream = c.streams.audio[0]
            samples = sum(f.samples for f in c.decode(stream))
            codec = stream.codec_context.name
            rate = stream.codec_context.sample_rate
    except av.FFmpegError as exc:
        raise MemoError(f"not a playable Ogg memo: {exc}") from None
    if not samples:
        raise MemoError("the memo holds no audio")
    return {"codec": codec, "rate": rate, "seconds": samples / rate}
