"""One conversion of caller audio for every runtime: integer PCM, float arrays, [T] or [T, 1],
any length, and the sample rate, taken the same way by PyTorch (`Codec.encode`, `compress`) and
by the numpy ONNX runner (`OnnxCodec.encode`); bad sample rates are the package's own error."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import as_dtype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telucodec
from telucodec.config import get_config
from telucodec.errors import TelucodecError
from telucodec.model.codec import Codec

pytest.importorskip("onnxruntime")

SR = 16000
DTYPES = ("int16", "int32", "uint8", "float32", "float64")


@pytest.fixture(scope="module")
def rms_export(tmp_path_factory, example_clips):
    """A random-weight tiny model with the `rms` amplitude (so the level travels as side info)
    and its ONNX export."""
    from telucodec.deploy.export import export_onnx
    from telucodec.deploy.onnx_runtime import OnnxCodec

    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = Codec(replace(cfg, model=replace(cfg.model, amplitude="rms"))).eval()
    out = tmp_path_factory.mktemp("pcm_onnx")
    export_onnx(model, out, parity_clip=example_clips[0])
    return model, OnnxCodec(out)


def speechy(rng: np.random.Generator, n: int, level: float) -> np.ndarray:
    """Band-limited noise with a syllable-rate envelope, RMS about `level`."""
    noise = np.convolve(rng.standard_normal(n + 15), np.hanning(16), mode="valid")[:n]
    envelope = 0.3 + np.abs(np.sin(np.arange(n) * 2 * np.pi * 4 / SR))
    x = noise * envelope
    return (x * level / max(float(np.sqrt(np.mean(x**2))), 1e-9)).clip(-1, 1)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(DTYPES), column=st.booleans(), length=st.integers(1, 2 * SR + 777),
       level=st.floats(0.003, 0.3), seed=st.integers(0, 2**31 - 1))
def test_onnx_runner_and_pytorch_take_the_same_samples(rms_export, dtype, column, length, level, seed):
    """Same caller array (any dtype, [T] or [T, 1]) -> the same codes and side info from both
    runtimes, and decoded audio at the same level."""
    model, codec = rms_export
    wav = as_dtype(speechy(np.random.default_rng(seed), length, level), dtype)
    if column:
        wav = wav[:, None]
    ref = model.encode(wav, SR)
    clip = codec.encode(wav)
    np.testing.assert_array_equal(clip.codes, ref.codes.numpy())
    assert clip.side == ref.side and clip.num_samples == ref.num_samples == length
    ours = codec.decode(clip.codes, clip.side, clip.num_samples)
    theirs = model.decode(ref).numpy()
    assert ours.shape == theirs.shape == (length,)
    assert rms(ours) == pytest.approx(rms(theirs), rel=1e-3, abs=1e-7)


BAD_RATES = st.one_of(
    st.integers(max_value=0),                                      # zero, negative
    st.integers(min_value=1, max_value=3999),                      # below any audio file we read
    st.integers(min_value=384_001, max_value=10**12),              # above it
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not (np.isfinite(v) and v == int(v))),
    st.booleans(),
    st.text(max_size=6),
    st.just(None),
    st.just(np.float32(16000.5)),
)


def _entry_points(model: Codec, codec) -> dict:
    from telucodec.deploy.runtimes import OnnxRuntime, TorchRuntime

    wav = np.zeros(3200, dtype=np.float32)
    onnx = OnnxRuntime(model, codec.directory)
    return {
        "telucodec.compress": lambda sr: telucodec.compress(wav, sr, model=model),
        "telucodec.compress(runtime=onnx)": lambda sr: telucodec.compress(wav, sr, model=model, runtime="onnx"),
        "Codec.encode": lambda sr: model.encode(wav, sr),
        "OnnxCodec.encode": lambda sr: codec.encode(wav, sample_rate=sr),
        "TorchRuntime.encode": lambda sr: TorchRuntime(model).encode(wav, sr),
        "OnnxRuntime.encode": lambda sr: onnx.encode(wav, sr),
    }


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(rate=BAD_RATES)
def test_bad_sample_rates_are_our_own_error_at_every_entry_point(rms_export, rate):
    model, codec = rms_export
    for name, call in _entry_points(model, codec).items():
        if rate is None and not name.startswith("telucodec.compress"):
            continue  # None means "the model's own rate" there
        with pytest.raises(TelucodecError, match="sample_rate") as info:
            call(rate)
        assert isinstance(info.value, ValueError), name  # still a ValueError for callers that catch that


@pytest.mark.parametrize("rate", [16000, np.int64(16000), 16000.0, 48000, np.int32(8000)])
def test_good_sample_rates_are_taken(rms_export, rate):
    model, codec = rms_export
    wav = speechy(np.random.default_rng(0), int(rate) // 2, 0.1).astype(np.float32)
    ref = model.encode(wav, rate)
    clip = codec.encode(wav, sample_rate=rate)
    np.testing.assert_array_equal(clip.codes, ref.codes.numpy())
    assert ref.num_samples == clip.num_samples == SR // 2
