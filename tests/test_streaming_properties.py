"""Properties of streaming: for every input `Codec.encode` accepts (int16, int32, float64, float32
samples; [T] or [T, 1]; numpy or torch) and any chunking (down to one sample, or one frame of
codes), a stream gives exactly offline's codes and, within float rounding, offline's audio.

The models: the shipped default (telugu-v5, SoundStream encoder and decoder) and small random
causal models of the other families (SEANet encoder + SEANet or spectral decoder, and SEANet with
the bottleneck LSTM, whose state a stream carries), a small model whose stages differ in size
(256, 256, then 16 entries), and a small `rms` model with `level_match`, whose streams carry no
level: offline's reference is then `encode(..., level=False)` (codes of side kind "none", the input
coded at its own level) and its decode (gain 1, no level match). For `none` models `level=False`
changes nothing, so every model is checked against the same call."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from conftest import as_dtype
from hypothesis import given, settings
from hypothesis import strategies as st

import telucodec
from telucodec.config import get_config
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "te_cv"
MODELS = ("telugu-v5", "tiny", "spectral", "tiny-lstm", "tiny-rms", "tiny-mixed")
DTYPES = ("int16", "int32", "float64", "float32")
AUDIO_TOLERANCE = 1e-5


@functools.cache
def _model(name: str) -> Codec:
    if name == "telugu-v5":
        return telucodec.load_model(name)
    cfg = get_config(name.removesuffix("-lstm").removesuffix("-rms").removesuffix("-mixed"))
    cfg.model.causal, cfg.model.amplitude, cfg.model.lstm = True, "none", name.endswith("-lstm")
    if name.endswith("-rms"):  # the shipped v7 setting: per-second level sent offline, matched at decode
        cfg.model.amplitude, cfg.model.level_match = "rms", True
    if name.endswith("-mixed"):  # stages of different sizes (.tcd version 4): wide first, then narrow
        cfg.quantizer.codebook_sizes = (256, 256, 16, 16, 16, 16, 16, 16)
    if name == "spectral":  # same structure as the preset, smaller: a faster test
        cfg.model.channels, cfg.model.latent_dim, cfg.model.decoder_hidden = 8, 32, 64
        cfg.model.spectral_layers = 2
        cfg.quantizer.n_q, cfg.quantizer.codebook_size = 4, 256
    torch.manual_seed(0)
    return Codec(cfg).eval()


@functools.cache
def _speech() -> np.ndarray:
    return load_audio(sorted(EXAMPLES.rglob("*.flac"))[3])


def _input(start: int, length: int, gain: float, dtype: str, column: bool, as_tensor: bool):
    """A piece of real speech as the caller might hold it: PCM of `dtype`, [T] or [T, 1]."""
    x = as_dtype(_speech()[start: start + length].astype(np.float64) * gain, dtype)
    x = x[:, None] if column else x
    return torch.from_numpy(x) if as_tensor else x


def _pieces(total: int, sizes: list[int]):
    start, i = 0, 0
    while start < total:
        yield start, min(total, start + sizes[i % len(sizes)])
        start, i = start + sizes[i % len(sizes)], i + 1


audio_inputs = st.fixed_dictionaries({
    "start": st.integers(0, 8000), "length": st.integers(1, 5000), "gain": st.sampled_from([0.3, 1.0, 1.7]),
    "dtype": st.sampled_from(DTYPES), "column": st.booleans(), "as_tensor": st.booleans(),
})
# chunk sizes cycled over the clip: single samples, a few samples, around a frame, many frames
chunkings = st.lists(st.one_of(st.just(1), st.integers(2, 40), st.integers(300, 700), st.integers(701, 4000)),
                     min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(MODELS), audio=audio_inputs, sizes=chunkings, kbps_step=st.integers(1, 12))
def test_stream_encoder_equals_encode_for_every_input_it_accepts(name, audio, sizes, kbps_step):
    model = _model(name)
    wav = _input(**audio)
    kbps = min(kbps_step, model.max_n_q) * model.kbps_per_codebook()
    offline = model.encode(wav, kbps=kbps, level=False)
    enc = model.stream_encoder(kbps=kbps)
    codes = torch.cat([enc.push(wav[a:b]) for a, b in _pieces(len(wav), sizes)] + [enc.flush()], dim=1)
    assert codes.shape == offline.codes.shape
    differ = (codes != offline.codes).any(dim=0)
    assert not differ.any(), f"{int(differ.sum())} of {differ.numel()} frames differ from offline (dtype {audio['dtype']})"

    dec = model.stream_decoder()
    wav_out = torch.cat([dec.push(codes), dec.flush()])[: offline.num_samples]
    assert float((wav_out - model.decode(offline)).abs().max()) <= AUDIO_TOLERANCE


# pushes of 0..30 frames (empty ones included), ending in one that is not empty
code_chunkings = st.tuples(st.lists(st.one_of(st.integers(0, 3), st.integers(4, 30)), max_size=5),
                           st.integers(1, 30)).map(lambda t: [*t[0], t[1]])


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(MODELS), start=st.integers(0, 8000), length=st.integers(1, 6000),
       sizes=code_chunkings, kbps_step=st.integers(1, 12))
def test_stream_decoder_equals_decode_for_any_code_chunking(name, start, length, sizes, kbps_step):
    """Code pushes of 0..30 frames: every push returns the frames that are final, whole (one frame
    once `lookahead_frames` more have arrived), and all of it is offline's decode."""
    model = _model(name)
    kbps = min(kbps_step, model.max_n_q) * model.kbps_per_codebook()
    offline = model.encode(_speech()[start: start + length], kbps=kbps, level=False)
    dec = model.stream_decoder()
    pushed, out = 0, []
    for a, b in _pieces(offline.num_frames, sizes):
        piece = dec.push(offline.codes[:, a:b])
        pushed += b - a
        assert piece.shape[0] == max(0, pushed - dec.lookahead_frames) * model.hop - sum(map(len, out))
        out.append(piece)
    out.append(dec.flush())
    wav = torch.cat(out)
    assert wav.shape[0] == offline.num_frames * model.hop
    assert float((wav[: offline.num_samples] - model.decode(offline)).abs().max()) <= AUDIO_TOLERANCE


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(MODELS), junk=st.integers(1, 2000), how=st.sampled_from(["reset", "flush"]),
       sizes=chunkings, start=st.integers(0, 8000))
def test_a_stream_after_reset_or_flush_starts_afresh(name, junk, how, sizes, start):
    """Whatever a stream saw before `reset()` (or after `flush()`), the next one equals offline."""
    model = _model(name)
    enc, dec = model.stream_encoder(), model.stream_decoder()
    rng = np.random.default_rng(junk)
    codes = enc.push(rng.uniform(-1, 1, junk).astype(np.float32))
    dec.push(codes)
    dec.push(np.stack([rng.integers(0, size, 3) for size in model.config.quantizer.stage_sizes]))
    for stream in (enc, dec):
        getattr(stream, how)()
    wav = _speech()[start: start + 3000]
    offline = model.encode(wav, level=False)
    codes = torch.cat([enc.push(wav[a:b]) for a, b in _pieces(len(wav), sizes)] + [enc.flush()], dim=1)
    assert torch.equal(codes, offline.codes)
    out = torch.cat([dec.push(codes[:, a:b]) for a, b in _pieces(codes.shape[1], [1, 2, 5])] + [dec.flush()])
    assert float((out[: offline.num_samples] - model.decode(offline)).abs().max()) <= AUDIO_TOLERANCE


@settings(max_examples=15, deadline=None)
@given(audio=audio_inputs, sizes=chunkings, kbps_step=st.integers(1, 12), peak_db=st.sampled_from([-45.0, -25.0, -5.0]))
def test_a_stream_of_an_rms_model_carries_no_level_and_its_file_decodes_as_streamed(audio, sizes, kbps_step,
                                                                                     peak_db):
    """An `rms` model's stream codes the input at its own level: a .tcd of its codes says side
    kind "none" (no side values), the same model decodes that file to the stream's audio (gain 1,
    no level match), the offline level-less encode gives those very codes, and the leveled encode
    still sends its per-second side info. Codes of another model's level kind are refused."""
    from dataclasses import replace

    import pytest

    from telucodec.errors import ModelError
    from telucodec.formats.bitstream import read_bitstream, write_bitstream

    model = _model("tiny-rms")
    x = _speech()[audio["start"]: audio["start"] + audio["length"]]
    wav = (x * 10 ** (peak_db / 20) / max(float(np.abs(x).max()), 1e-9)).astype(np.float32)
    kbps = min(kbps_step, model.max_n_q) * model.kbps_per_codebook()
    enc, dec = model.stream_encoder(kbps=kbps), model.stream_decoder()
    codes = torch.cat([enc.push(wav[a:b]) for a, b in _pieces(len(wav), sizes)] + [enc.flush()], dim=1)
    streamed = torch.cat([dec.push(codes), dec.flush()])[: len(wav)]

    written = read_bitstream(write_bitstream(model.make_codes(codes, len(wav), [], side_kind="none")),
                             expected_model_id=model.model_id)
    assert written.side_kind == "none" and written.side == []
    assert float((model.decode(written) - streamed).abs().max()) <= AUDIO_TOLERANCE
    offline = model.encode(wav, kbps=kbps, level=False)
    assert offline.side_kind == "none" and offline.side == [] and torch.equal(offline.codes, codes)
    leveled = model.encode(wav, kbps=kbps)
    assert leveled.side_kind == "rms" and len(leveled.side) == model.amplitude.num_side_values(len(wav))
    with pytest.raises(ModelError, match="'lufs' amplitude side info, the model uses 'rms'"):
        model.decode(replace(offline, side_kind="lufs", side=[120]))
    with pytest.raises(ModelError, match="no 'rms' amplitude side info"):
        model.decode(replace(offline, side_kind="rms"))
