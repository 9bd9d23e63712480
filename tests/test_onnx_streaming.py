"""Streaming ONNX graphs (deploy/onnx_streaming_export.py) run by onnxruntime and numpy alone
(deploy/onnx_streaming.py) give the PyTorch streams' codes and audio, for any chunking."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telucodec.config import CodecConfig, ModelConfig, get_config
from telucodec.deploy.export import DECODER_TOLERANCE
from telucodec.deploy.onnx_streaming import OnnxStreamDecoder, OnnxStreamEncoder
from telucodec.deploy.onnx_streaming_export import (
    CONFIG_FILE,
    export_streaming_onnx,
    streaming_export_refusal,
)
from telucodec.errors import TelucodecError
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "te_cv"


def _spectral() -> Codec:  # SEANet encoder (weight norm) + spectral decoder (its iSTFT needs a flush graph)
    cfg = get_config("spectral")
    cfg.model.causal, cfg.model.amplitude = True, "none"
    cfg.model.channels, cfg.model.latent_dim, cfg.model.decoder_hidden = 8, 32, 64
    cfg.model.spectral_layers = 2
    cfg.quantizer.n_q, cfg.quantizer.codebook_size = 4, 256
    torch.manual_seed(0)
    return Codec(cfg).eval()


def _soundstream() -> Codec:  # the shipped model's family (depthwise, grouped and transposed convs), small
    model = ModelConfig(encoder="soundstream", decoder="soundstream", channels=8, ratios=(4, 5, 2, 2),
                        latent_dim=16, causal=True, amplitude="none")
    torch.manual_seed(0)
    return Codec(replace(CodecConfig(), model=model)).eval()


def _speech() -> np.ndarray:
    return load_audio(sorted(EXAMPLES.rglob("*.flac"))[2])


@pytest.fixture(scope="module", params=["spectral", "soundstream"])
def exported(request, tmp_path_factory):
    model = {"spectral": _spectral, "soundstream": _soundstream}[request.param]()
    out = tmp_path_factory.mktemp(f"onnx_stream_{request.param}")
    config = export_streaming_onnx(model, out, parity_clip=_speech()[:20000])
    return model, out, config


def test_export_writes_graphs_and_a_passed_parity_report(exported):
    model, out, config = exported
    assert json.loads((out / CONFIG_FILE).read_text()) == config
    assert config["model_id"] == model.model_id and config["parity"]["passed"]
    assert config["parity"]["audio_max_abs_diff"] < DECODER_TOLERANCE
    assert (out / config["encoder"]["file"]).is_file() and (out / config["decoder"]["file"]).is_file()
    assert bool(config["decoder"]["flush"]) == (config["decoder_delay_samples"] > 0)


def _pieces(total: int, sizes: list[int]):
    start, i = 0, 0
    while start < total:
        yield start, min(total, start + sizes[i % len(sizes)])
        start, i = start + sizes[i % len(sizes)], i + 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, 20000), length=st.integers(1, 6000), dtype=st.sampled_from(["int16", "float32"]),
       sizes=st.lists(st.one_of(st.just(1), st.integers(2, 700), st.integers(701, 3000)), min_size=1, max_size=4),
       code_sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4), n_q=st.integers(1, 8))
def test_onnx_streams_equal_pytorch_streams(exported, start, length, dtype, sizes, code_sizes, n_q):
    model, out, _ = exported
    n_q = min(n_q, model.max_n_q)
    wav = _speech()[start: start + length]
    if dtype == "int16":
        wav = np.clip(np.round(wav * 32768), -32768, 32767).astype(np.int16)
    kbps = n_q * model.kbps_per_codebook()
    enc, o_enc = model.stream_encoder(kbps=kbps), OnnxStreamEncoder(out, n_q=n_q)
    codes = torch.cat([enc.push(wav[a:b]) for a, b in _pieces(len(wav), sizes)] + [enc.flush()], dim=1)
    o_codes = np.concatenate([o_enc.push(wav[a:b]) for a, b in _pieces(len(wav), sizes)] + [o_enc.flush()], axis=1)
    assert np.array_equal(o_codes, codes.numpy())

    dec, o_dec = model.stream_decoder(), OnnxStreamDecoder(out)
    frames = codes.shape[1]
    audio = [dec.push(codes[:, a:b]).numpy() for a, b in _pieces(frames, code_sizes)] + [dec.flush().numpy()]
    o_audio = [o_dec.push(codes[:, a:b].numpy()) for a, b in _pieces(frames, code_sizes)] + [o_dec.flush()]
    assert [len(p) for p in o_audio] == [len(p) for p in audio]  # the same frames final at the same push
    assert float(np.abs(np.concatenate(o_audio) - np.concatenate(audio)).max()) < DECODER_TOLERANCE


def test_models_that_cannot_stream_are_refused(tmp_path):
    cfg = get_config("tiny")
    assert "causal" in streaming_export_refusal(Codec(cfg))
    with pytest.raises(TelucodecError, match="causal"):
        export_streaming_onnx(Codec(cfg).eval(), tmp_path)
    cfg.model.causal, cfg.model.lstm = True, True
    with pytest.raises(TelucodecError, match="LSTM"):
        export_streaming_onnx(Codec(cfg).eval(), tmp_path)
    cfg.model.lstm, cfg.model.amplitude = False, "lufs"
    with pytest.raises(TelucodecError, match="uses 'lufs'"):
        export_streaming_onnx(Codec(cfg).eval(), tmp_path)
    assert not any(tmp_path.iterdir())
    cfg.model.amplitude = "rms"  # streams with no level side info: exported like a 'none' model
    assert streaming_export_refusal(Codec(cfg)) is None
    assert streaming_export_refusal(_soundstream()) is None


def test_the_streaming_runner_needs_no_torch(exported):
    _, out, _ = exported
    code = f"""
import sys
import numpy as np
from telucodec.deploy.onnx_streaming import OnnxStreamDecoder, OnnxStreamEncoder
enc, dec = OnnxStreamEncoder({str(out)!r}), OnnxStreamDecoder({str(out)!r})
codes = enc.push(np.zeros(3000, np.int16))
audio = np.concatenate([dec.push(codes), dec.push(enc.flush()), dec.flush()])
assert audio.dtype == np.float32 and audio.size == (codes.shape[1] + 1) * enc.hop
assert "torch" not in sys.modules, "torch was imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, 20000), frames=st.lists(st.sampled_from([1, 1, 1, 2, 3]), min_size=1, max_size=40),
       n_q=st.integers(1, 8))
def test_one_frame_graphs_and_the_general_ones_hand_over_their_state(exported, start, frames, n_q):
    """Pushes of exactly one frame run the one-frame graphs (IO bindings, state in two buffer
    sets), others the general graphs; any mix of them gives the PyTorch streams' codes and audio,
    and a reset stream (a second pass) gives them again."""
    model, out, config = exported
    assert config["encoder"]["frame_file"] and config["decoder"]["frame_file"]
    n_q = min(n_q, model.max_n_q)
    hop = model.hop
    sizes = [f * hop for f in frames]
    wav = _speech()[start: start + sum(sizes)]
    kbps = n_q * model.kbps_per_codebook()
    enc, o_enc = model.stream_encoder(kbps=kbps), OnnxStreamEncoder(out, n_q=n_q)
    assert o_enc.graph.frame is not None
    codes = torch.cat([enc.push(wav[a:b]) for a, b in _pieces(len(wav), sizes)] + [enc.flush()], dim=1)
    dec = model.stream_decoder()
    audio = np.concatenate([dec.push(codes[:, a:b]).numpy() for a, b in _pieces(codes.shape[1], frames)]
                           + [dec.flush().numpy()])
    o_dec = OnnxStreamDecoder(out)
    for _ in range(2):  # flush resets: the second pass starts from zero state again
        o_codes = np.concatenate([o_enc.push(wav[a:b]) for a, b in _pieces(len(wav), sizes)] + [o_enc.flush()], axis=1)
        assert np.array_equal(o_codes, codes.numpy())
        o_audio = np.concatenate([o_dec.push(codes[:, a:b].numpy()) for a, b in _pieces(codes.shape[1], frames)]
                                 + [o_dec.flush()])
        assert o_audio.shape == audio.shape
        assert float(np.abs(o_audio - audio).max()) < DECODER_TOLERANCE


def test_a_stream_encoder_searches_only_the_stages_it_sends(exported):
    """Greedy residual VQ: the first n codes do not depend on later stages, so the stream encoder
    runs graphs cut after stage n (both the general and the one-frame graph); the codes stay
    PyTorch's (the properties above)."""
    model, out, _ = exported
    for n in range(1, model.max_n_q + 1):
        graph = OnnxStreamEncoder(out, n_q=n).graph
        for session in (graph.session, graph.frame):
            assert session.get_outputs()[0].shape[0] == n
