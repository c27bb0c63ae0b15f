"""Voice memos: a synthetic memo as Opus in Ogg decodes, is small, and sounds like it; the
microphone factory, and a real capture through sounddevice → PortAudio → ALSA."""

import io
import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
from gridlink.firmware.device import memo
from gridlink.firmware.device.hardware import Hardware
from gridlink.firmware.device.profile import load_profile


def envelope(x, rate, step=0.05):
    """RMS per ``step`` seconds."""
    n = round(rate * step)
    x = np.asarray(x, dtype=float)[: len(x) // n * n]
    return np.sqrt((x.reshape(-1, n) ** 2).mean(axis=1))


@pytest.fixture(scope="module")
def ten_seconds():
    samples = memo.synthetic_memo(10)
    return samples, memo.encode_memo(samples)


def test_a_memo_decodes_to_its_length_as_opus(ten_seconds):
    _samples, data = ten_seconds
    assert data[:4] == b"OggS"
    info = memo.memo_info(data)
    assert info["codec"] == "opus" and info["seconds"] == pytest.approx(10, abs=0.05)


def test_a_memo_is_about_two_kilobytes_a_second(ten_seconds):
    _samples, data = ten_seconds
    assert 10 * memo.DEFAULT_BIT_RATE / 8 * 0.5 < len(data) < 10 * memo.DEFAULT_BIT_RATE / 8 * 1.3


def test_the_decoded_memo_follows_the_words_and_pauses(ten_seconds):
    samples, data = ten_seconds
    with av.open(io.BytesIO(data)) as c:
        out = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    rate = 48000                                   # Opus decodes at 48 kHz
    a, b = envelope(samples, memo.RATE), envelope(out, rate)
    n = min(len(a), len(b))
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.9
    assert (a < 0.05 * a.max()).mean() > 0.1     # the source has pauses between words


def test_synthetic_memos_are_repeatable_and_differ_by_seed():
    assert np.array_equal(memo.synthetic_memo(1, seed=3), memo.synthetic_memo(1, seed=3))
    assert not np.array_equal(memo.synthetic_memo(1, seed=3), memo.synthetic_memo(1, seed=4))


@pytest.mark.parametrize(("samples", "rate", "message"), [
    (np.zeros(0, np.int16), 16000, "empty"),
    (np.zeros(100, np.float32), 16000, "int16"),
    (np.zeros((2, 100), np.int16), 16000, "1-D"),
    (np.zeros(100, np.int16), 44100, "Opus takes"),
    (np.zeros(121 * 8000, np.int16), 8000, "at most"),
])
def test_bad_samples_are_refused(samples, rate, message):
    with pytest.raises(memo.MemoError, match=message):
        memo.encode_memo(samples, rate)


@pytest.mark.parametrize("cut", [0, 60, 200])
def test_a_truncated_or_foreign_memo_is_refused(ten_seconds, cut):
    _samples, data = ten_seconds
    with pytest.raises(memo.MemoError):
        memo.memo_info(data[:cut] if cut else b"not an ogg file at all" * 10)


# ---- microphones ---------------------------------------------------------------------

def test_the_factory_picks_the_microphone_and_refuses_an_unknown_one():
    mic = memo.make_microphone("synthetic")
    assert isinstance(mic, memo.SyntheticMicrophone)
    assert (mic.record(2, seed=3) == memo.synthetic_memo(2, seed=3)).all()
    with pytest.raises(memo.MemoError, match=r"0\.\.120"):
        mic.record(0)
    with pytest.raises(memo.MemoError, match="unknown microphone backend 'alsa'"):
        memo.make_microphone("alsa")


def test_simulation_takes_the_synthetic_microphone_whatever_the_profile_says():
    profile = load_profile("patrol-vehicle")
    profile["memo"] = {"seconds": 2, "microphone": "sounddevice", "device": "hw:1,0"}
    hw = Hardware(profile, "sim")
    assert isinstance(hw.microphone(), memo.SyntheticMicrophone)
    assert hw.memo(1, seed=2).shape == (memo.RATE,)
    profile["memo"]["microphone"] = "synthetic"
    assert isinstance(Hardware(profile, "pi").microphone(), memo.SyntheticMicrophone)


def test_without_the_sounddevice_package_the_error_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(memo.MemoError, match=r"sounddevice package .*gridlink\[audio\]"):
        memo.make_microphone("sounddevice")
    with pytest.raises(memo.MemoError, match=r"0\.\.120"):
        memo.record_memo(0)


def test_without_portaudio_the_error_names_the_debian_package(monkeypatch):
    import ctypes.util

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(memo.MemoError, match=r"PortAudio library .*libportaudio2"):
        memo.make_microphone("sounddevice")


# A microphone PortAudio opens through ALSA: the file plugin hands a capture the samples
# of ``infile`` (over the null device), so what is recorded is known.
ASOUNDRC = """pcm.gridmic {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{infile}"
  format "raw"
}}
"""


def in_alsa_home(tmp_path, code):
    """Run ``code`` in a fresh Python whose ALSA knows the ``gridmic`` device (PortAudio
    reads the ALSA configuration once, when sounddevice is imported); its stdout."""
    samples = memo.synthetic_memo(3, seed=7)
    (tmp_path / "speech.raw").write_bytes(samples.astype("<i2").tobytes())
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(infile=tmp_path / "speech.raw"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "HOME": str(tmp_path)}, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return samples, done.stdout


def test_a_memo_is_recorded_from_a_real_alsa_capture_device(tmp_path):
    samples, out = in_alsa_home(tmp_path, """
import json, numpy
from gridlink.firmware.device import memo
from gridlink.firmware.device.hardware import Hardware
from gridlink.firmware.device.profile import load_profile
profile = load_profile("patrol-vehicle")
profile["memo"] = {"seconds": 2, "microphone": "sounddevice", "device": "gridmic"}
hw = Hardware(profile, "pi")
got = hw.memo(2)
numpy.save("got.npy", got)
info = memo.memo_info(memo.encode_memo(got))
print(json.dumps({"name": hw.microphone().name, "info": info, "dtype": str(got.dtype)}))
""")
    result = json.loads(out)
    got = np.load(tmp_path / "got.npy")
    assert result["name"] == "gridmic" and result["dtype"] == "int16"
    assert got.shape == (2 * memo.RATE,)
    assert (got == samples[:got.size]).all()           # the device's samples, unchanged
    assert result["info"]["seconds"] == pytest.approx(2, abs=0.03)


def test_an_input_device_that_is_not_there_is_a_clear_error(tmp_path):
    _samples, out = in_alsa_home(tmp_path, """
from gridlink.firmware.device import memo
try:
    memo.make_microphone("sounddevice", "no-such-mic")
except memo.MemoError as exc:
    print(exc)
""")
    assert out.startswith("no microphone 'no-such-mic' for 16-bit mono at 16000 Hz")
