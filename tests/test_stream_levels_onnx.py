"""An `rms` model (the telugu-v7 setting: per-second level sent offline, matched at decode) in
ONNX: its streaming graphs give the codes of the offline level-less encode (`encode(level=False)`,
side kind "none": the input coded at its own level) and audio equal to the offline decode of those
codes (gain 1, no level match); the offline ONNX runner decodes such codes as PyTorch does, and
refuses codes of another level kind."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_onnx_streaming import _pieces  # the same chunking of a clip

from telucodec.config import CodecConfig, ModelConfig
from telucodec.errors import ModelError
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec

pytest.importorskip("onnxruntime")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "te_cv"
AUDIO_TOLERANCE = 1e-5  # the streams' promise: offline's audio within float rounding


def _rms_model() -> Codec:  # the shipped family (SoundStream), small, causal, rms + level_match
    model = ModelConfig(encoder="soundstream", decoder="soundstream", channels=8, ratios=(4, 5, 2, 2),
                        latent_dim=16, causal=True, amplitude="rms", level_match=True)
    torch.manual_seed(0)
    return Codec(replace(CodecConfig(), model=model)).eval()


def _speech() -> np.ndarray:
    return load_audio(sorted(EXAMPLES.rglob("*.flac"))[2])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One folder with the offline graphs (`export_onnx`) and the streaming ones beside them."""
    from telucodec.deploy.export import export_onnx
    from telucodec.deploy.onnx_streaming_export import export_streaming_onnx

    model = _rms_model()
    out = tmp_path_factory.mktemp("onnx_rms")
    export_onnx(model, out, parity_clip=_speech()[:20000])
    config = export_streaming_onnx(model, out, parity_clip=_speech()[:20000])
    return model, out, config


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, 20000), length=st.integers(1, 6000), peak_db=st.sampled_from([-45.0, -25.0, -5.0]),
       dtype=st.sampled_from(["int16", "float32"]),
       sizes=st.lists(st.one_of(st.just(1), st.integers(2, 700), st.integers(701, 3000)), min_size=1, max_size=4),
       code_sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4), n_q=st.integers(1, 8))
def test_onnx_streams_of_an_rms_model_equal_the_offline_levelless_codes_and_decode(
        exported, start, length, peak_db, dtype, sizes, code_sizes, n_q):
    from telucodec.deploy.onnx_runtime import OnnxCodec
    from telucodec.deploy.onnx_streaming import OnnxStreamDecoder, OnnxStreamEncoder
    from telucodec.deploy.runtimes import OnnxRuntime

    model, out, config = exported
    assert config["side_kind"] == "none" and OnnxStreamEncoder.side_kind == "none"
    n_q = min(n_q, model.max_n_q)
    x = _speech()[start: start + length]
    wav = (x * 10 ** (peak_db / 20) / max(float(np.abs(x).max()), 1e-9)).astype(np.float32)
    if dtype == "int16":
        wav = np.clip(np.round(wav * 32768), -32768, 32767).astype(np.int16)
    offline = model.encode(wav, kbps=n_q * model.kbps_per_codebook(), level=False)
    assert offline.side_kind == "none" and offline.side == []
    reference = model.decode(offline).numpy()

    enc = OnnxStreamEncoder(out, n_q=n_q)
    codes = np.concatenate([enc.push(wav[a:b]) for a, b in _pieces(len(wav), sizes)] + [enc.flush()], axis=1)
    assert np.array_equal(codes, offline.codes.numpy())
    dec = OnnxStreamDecoder(out)
    audio = np.concatenate([dec.push(codes[:, a:b]) for a, b in _pieces(codes.shape[1], code_sizes)] + [dec.flush()])
    assert float(np.abs(audio[: offline.num_samples] - reference).max()) <= AUDIO_TOLERANCE

    # the offline ONNX runner: the same decode, directly and through the runtime switch
    runner = OnnxCodec(out)
    assert float(np.abs(runner.decode(codes, [], offline.num_samples, "none") - reference).max()) <= AUDIO_TOLERANCE
    assert float(np.abs(OnnxRuntime(model, out).decode(offline) - reference).max()) <= AUDIO_TOLERANCE


def test_the_onnx_runner_refuses_codes_of_another_level_kind(exported):
    from telucodec.deploy.onnx_runtime import OnnxCodec
    from telucodec.deploy.runtimes import OnnxRuntime

    model, out, _ = exported
    offline = model.encode(_speech()[:5000], level=False)
    with pytest.raises(ModelError, match="'lufs' amplitude side info, the model uses 'rms'"):
        OnnxCodec(out).decode(offline.codes.numpy(), [120], offline.num_samples, "lufs")
    with pytest.raises(ModelError, match="'lufs' amplitude side info, the model uses 'rms'"):
        OnnxRuntime(model, out).decode(replace(offline, side_kind="lufs", side=[120]))
    leveled = model.encode(_speech()[:5000])  # the model's own: side info restored and matched
    assert leveled.side_kind == "rms"
    assert float(np.abs(OnnxRuntime(model, out).decode(leveled) - model.decode(leveled).numpy()).max()) < 1e-4
