"""Voice memos: a synthetic memo as Opus in Ogg decodes, is small, and sounds like it."""

import io

import av
import numpy as np
import pytest
from gridlink.firmware.device import memo


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


def test_recording_without_sounddevice_is_a_clear_error():
    with pytest.raises(memo.MemoError, match=r"0\.\.120"):
        memo.record_memo(0)
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        with pytest.raises(memo.MemoError, match="sounddevice"):
            memo.record_memo(1)
