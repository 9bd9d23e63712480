"""encode -> decode keeps length for any length, with the shipped default model and generated
inputs. (The level of speech at any loudness: tests/test_level_promise.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import telucodec
from telucodec.errors import TelucodecError

SR = 16000


@pytest.fixture(scope="module")
def shipped() -> telucodec.Codec:
    return telucodec.load_model()


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
