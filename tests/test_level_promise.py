"""The level promise of the shipped default model, for inputs at any loudness.

Issue 34: the RMS ratio (output / input) stays within 0.9-1.1 for inputs from -45 to -1 dBFS at
every bitrate, and quality does not depend on how loud the input was. A model that codes its level
in the network (amplitude `none`, telugu-v6) fails both: a -45 dBFS-peak clip came back at 0.76 of
its level, and at 6 kbps it scored PESQ-WB 1.21 against 2.59 at -5 dBFS (benchmarks/level_sweep.py
--pesq). Inputs are real speech (the shipped examples) scaled to a generated peak level; the round
trip is the user's: `compress` -> .tcd bytes -> `decompress`, decoded audio clipped as a WAV holds it.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telucodec
from telucodec.evaluation import metrics
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec

CLIPS = ("cv_ce579334/common_voice_te_43406779.flac", "cv_9e9a356b/common_voice_te_42973996.flac")


@pytest.fixture(scope="module")
def shipped() -> Codec:
    return telucodec.load_model()


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    return [load_audio(EXAMPLES / clip) for clip in CLIPS]


def at_peak(wav: np.ndarray, peak_dbfs: float) -> np.ndarray:
    return (wav / np.abs(wav).max() * 10 ** (peak_dbfs / 20)).astype(np.float32)


def round_trip(model: Codec, wav: np.ndarray, kbps: float) -> np.ndarray:
    out, _ = telucodec.decompress(telucodec.compress(wav, 16000, model=model, kbps=kbps), model=model)
    return np.clip(out[: wav.size], -1.0, 1.0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(CLIPS) - 1), start=st.floats(0.0, 1.0), seconds=st.floats(1.0, 3.0),
       peak=st.floats(-45.0, -1.0), kbps=st.sampled_from([1.5, 3.0, 6.0]))
def test_the_level_comes_back_at_any_input_loudness(shipped, speech, which, start, seconds, peak, kbps):
    wav = speech[which]
    lo = max(0, int(start * (wav.size - seconds * 16000)))
    x = at_peak(wav[lo: lo + int(seconds * 16000)], peak)
    ratio = metrics.rms_ratio(x, round_trip(shipped, x, kbps))
    assert 0.9 <= ratio <= 1.1, (f"{CLIPS[which]} [{lo}:+{x.size}] at {peak:.1f} dBFS peak, {kbps} kbps: "
                                 f"RMS ratio {ratio:.3f}")


@pytest.mark.parametrize("clip", range(len(CLIPS)))
def test_quality_does_not_depend_on_input_loudness(shipped, speech, clip):
    pesq = {peak: metrics.pesq_wb(at_peak(speech[clip], peak), round_trip(shipped, at_peak(speech[clip], peak), 6))
            for peak in (-45.0, -5.0)}
    assert abs(pesq[-45.0] - pesq[-5.0]) < 0.15, pesq
