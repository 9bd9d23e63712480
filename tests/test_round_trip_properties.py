"""encode -> decode keeps length for any length, and the level of speech within 6 dB, with the
shipped default model and generated inputs.

6 dB, not the 0.9-1.1 RMS ratio issue 34 aims at: the shipped model sends no level (amplitude
`none`), and on 1 s crops of speech it comes back as low as 0.65 of its level (hypothesis found
one at 6 kbps, -1 dBFS peak); docs/training-log.md has the level sweep. The bound catches a
decoder whose level is broken, not one that is merely off."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

import telucodec
from telucodec.errors import TelucodecError

SR = 16000


@pytest.fixture(scope="module")
def shipped() -> telucodec.Codec:
    return telucodec.load_model()


@pytest.fixture(scope="module")
def speech(example_clips) -> np.ndarray:
    return np.concatenate([sf.read(str(p), dtype="float32")[0] for p in example_clips[:4]])


@settings(max_examples=30, deadline=None)
@given(length=st.integers(1, 48000), dtype=st.sampled_from(["float32", "int16"]), kbps=st.sampled_from([1.5, 6.0]),
       seed=st.integers(0, 2**31 - 1))
def test_any_length_comes_back_that_long(shipped, length: int, dtype: str, kbps: float, seed: int) -> None:
    wav = np.random.default_rng(seed).normal(0, 0.05, length).astype(np.float32)
    if dtype == "int16":
        wav = (wav * 32767).astype(np.int16)
    data = telucodec.compress(wav, SR, model=shipped, kbps=kbps if length >= SR else None)  # a budget fits 1 s+
    out, sr = telucodec.decompress(data, model=shipped)
    assert sr == SR and out.shape == (length,) and np.all(np.isfinite(out))


def test_zero_samples_are_refused_by_name(shipped) -> None:
    with pytest.raises(TelucodecError, match="empty"):
        telucodec.compress(np.zeros(0, np.float32), SR, model=shipped)


@settings(max_examples=12, deadline=None)
@given(start=st.floats(0, 0.8), seconds=st.floats(1.0, 4.0), peak_db=st.floats(-30.0, -1.0))
def test_speech_keeps_its_level_within_6_db_at_6_kbps(shipped, speech, start: float, seconds: float,
                                                     peak_db: float) -> None:
    lo = int(start * (speech.size - 4 * SR))
    clip = speech[lo: lo + int(seconds * SR)]
    clip = (clip / np.abs(clip).max() * 10 ** (peak_db / 20)).astype(np.float32)
    out, _ = telucodec.decompress(telucodec.compress(clip, SR, model=shipped, kbps=6), model=shipped)
    ratio = np.sqrt(np.mean(out ** 2) / np.mean(clip ** 2))
    assert 10 ** (-6 / 20) <= ratio <= 10 ** (6 / 20), ratio
