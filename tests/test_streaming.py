"""Streaming encode/decode of causal models equals offline encode/decode, for any chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telucodec.config import get_config
from telucodec.errors import ModelError
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec
from telucodec.model.streaming import latency_samples

CLIP_SAMPLES = 16000 + 1234  # ~1.1 s of real speech, not a whole number of frames


def _causal(name: str, **model_changes) -> Codec:
    cfg = get_config(name)
    cfg.model.causal = True
    cfg.model.amplitude = "none"
    if name == "spectral":  # a small spectral model: same structure, faster test
        cfg.model.channels, cfg.model.latent_dim, cfg.model.decoder_hidden = 8, 32, 64
        cfg.model.spectral_layers = 2
        cfg.quantizer.n_q, cfg.quantizer.codebook_size = 4, 256
    for key, value in model_changes.items():
        setattr(cfg.model, key, value)
    torch.manual_seed(0)
    return Codec(cfg).eval()


@pytest.fixture(scope="module")
def clip(example_clips) -> np.ndarray:
    return load_audio(example_clips[3])[:CLIP_SAMPLES]


@pytest.fixture(scope="module", params=["tiny", "spectral"])
def setup(request, clip):
    model = _causal(request.param)
    codes = model.encode(clip, 16000, kbps=2.0)
    return model, codes, model.decode(codes)


def _chunks(total: int, sizes: list[int]):
    start, i = 0, 0
    while start < total:
        size = sizes[i % len(sizes)]
        yield start, start + size
        start, i = start + size, i + 1


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(audio_sizes=st.lists(st.integers(1, 4000), min_size=1, max_size=8),
       code_sizes=st.lists(st.integers(1, 12), min_size=1, max_size=8))
def test_streaming_equals_offline(setup, clip, audio_sizes, code_sizes):
    model, offline, offline_wav = setup
    enc = model.stream_encoder(kbps=2.0)
    pieces = [enc.push(clip[a:b]) for a, b in _chunks(len(clip), audio_sizes)] + [enc.flush()]
    codes = torch.cat(pieces, dim=1)
    assert torch.equal(codes, offline.codes)

    dec = model.stream_decoder()
    out = [dec.push(codes[:, a:b]) for a, b in _chunks(codes.shape[1], code_sizes)] + [dec.flush()]
    wav = torch.cat(out)
    assert wav.shape[0] == codes.shape[1] * model.hop
    assert float((wav[: len(clip)] - offline_wav).abs().max()) < 1e-5


def test_streams_emit_as_soon_as_frames_exist(setup, clip):
    model, offline, _ = setup
    hop = model.hop
    enc, dec = model.stream_encoder(kbps=2.0), model.stream_decoder()
    assert enc.push(clip[: hop - 1]).shape[1] == 0
    assert enc.push(clip[hop - 1: hop]).shape[1] == 1           # the frame's last sample completes it
    assert enc.push(clip[hop: 4 * hop + 7]).shape[1] == 3
    first = dec.push(offline.codes[:, :1 + dec.lookahead_frames])
    assert first.shape[0] == hop                                  # one frame, after its lookahead
    assert enc.latency_samples + dec.latency_samples == latency_samples(model)


def test_latency():
    assert latency_samples(_causal("tiny")) == 320                 # one 20 ms frame
    assert latency_samples(_causal("spectral")) == 320 + 2 * 320   # + iSTFT overlap of 2 frames


def test_unsupported_models_are_refused():
    cfg = get_config("tiny")
    with pytest.raises(ModelError, match="causal"):
        Codec(cfg).stream_encoder()
    with pytest.raises(ModelError, match="amplitude 'none' or 'rms'.*uses 'lufs'"):
        _causal("tiny", amplitude="lufs").stream_encoder()
    with pytest.raises(ModelError, match="uses 'lufs'"):
        _causal("tiny", amplitude="lufs").stream_decoder()
    lufs = _causal("tiny", amplitude="lufs")
    with pytest.raises(ModelError, match="level=False: a 'lufs' model"):
        lufs.encode(np.zeros(800, np.float32), level=False)
    with pytest.raises(ModelError, match="codes carry 'none' amplitude side info, the model uses 'lufs'"):
        lufs.check_decodable(_causal("tiny").encode(np.zeros(800, np.float32)), check_model=False)  # no level
    rms = _causal("tiny", amplitude="rms", level_match=True)  # streams, carrying no level
    assert rms.stream_encoder().latency_samples + rms.stream_decoder().latency_samples == latency_samples(rms)


@pytest.mark.parametrize("name", ["tiny", "spectral"])
@pytest.mark.parametrize("causal", [False, True])
def test_encoder_reach_bounds_how_far_one_sample_moves_the_latent(name, causal):
    """`encoder_reach_frames` is what chunked encoding keeps as context: a change to one sample
    must leave every latent frame farther away than that exactly as it was."""
    from dataclasses import replace

    from telucodec.model.streaming import encoder_reach_frames

    cfg = get_config(name)
    torch.manual_seed(0)
    model = Codec(replace(cfg, model=replace(cfg.model, causal=causal))).eval()
    reach = encoder_reach_frames(model.encoder, model.hop)
    assert reach is not None and 1 <= reach < 50
    x = 0.1 * torch.randn(1, 1, 120 * model.hop)
    poked = x.clone()
    at = 60 * model.hop + 7
    poked[..., at] += 0.5
    with torch.no_grad():
        moved = (model.encoder(poked) - model.encoder(x)).abs().amax(dim=1)[0] > 0
    frames = torch.nonzero(moved).flatten()
    assert frames.numel() and frames.min() >= 60 - reach and frames.max() <= 60 + reach
    lstm = Codec(replace(cfg, model=replace(cfg.model, lstm=True)))
    assert encoder_reach_frames(lstm.encoder, lstm.hop) is None  # unbounded: generic context


def test_stream_decoder_refuses_bad_codes_with_one_line():
    model = _causal("tiny")
    dec = model.stream_decoder()
    size = model.config.quantizer.codebook_size
    with pytest.raises(ModelError, match=f"code values must be in 0..{size - 1}"):
        dec.push(np.full((2, 3), size))
    with pytest.raises(ModelError, match="n_q=9"):
        dec.push(np.zeros((9, 1), dtype=np.int64))
    dec.push(np.zeros((2, 1), dtype=np.int64))
    with pytest.raises(ModelError, match="changed from n_q=2 to 3"):
        dec.push(np.zeros((3, 1), dtype=np.int64))


def test_lstm_models_stream_with_their_state_carried():
    """The bottleneck LSTM's (h, c) go from push to push: one frame at a time equals offline."""
    model = _causal("tiny", lstm=True)
    wav = 0.1 * np.random.default_rng(0).standard_normal(model.hop * 9 + 5).astype(np.float32)
    offline = model.encode(wav)
    enc, dec = model.stream_encoder(), model.stream_decoder()
    codes = torch.cat([enc.push(wav[i: i + model.hop]) for i in range(0, len(wav), model.hop)] + [enc.flush()], 1)
    assert torch.equal(codes, offline.codes)
    out = torch.cat([dec.push(codes[:, f: f + 1]) for f in range(codes.shape[1])] + [dec.flush()])
    assert float((out[: len(wav)] - model.decode(offline)).abs().max()) < 1e-5
