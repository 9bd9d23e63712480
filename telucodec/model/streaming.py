"""Streaming encode/decode for causal codecs (`ModelConfig.causal = True`), offline's result.

    enc, dec = model.stream_encoder(kbps=3), model.stream_decoder()
    for chunk in microphone:                 # any chunk size; what `encode` takes (float or int PCM)
        codes = enc.push(chunk)              # int64 [n_q, new frames]: every whole frame so far
        audio = dec.push(codes)              # float32 [new samples]
    codes, audio = enc.flush(), ...          # end of stream: the zero-padded last frame

How: every conv in a causal model pads on the left only, so frame f depends on nothing after it.
A stream runs the model as stateful steps (`model/stream_steps.py`): each causal conv keeps its
last input samples (its left context), each transposed conv the overlap it adds to the next frame,
the bottleneck LSTM its (h, c), the spectral decoder's inverse STFT its overlap-add tail; a push
runs only its new whole frames, so streaming costs about what offline coding costs per frame plus
a fixed cost per push (`benchmarks/streaming_cost.py`). Each step starts from zeros, which is what
the offline layers pad with, so a stream equals `encode` / `decode` up to float rounding (the
latent within ~1e-6 of its size): the same codes, barring a residual that two entries are equally
near to within that rounding (none in tests/test_streaming_properties.py), and audio within
~1e-6. A stream uses the weights the model has when the stream is made or `reset()` (as an export
would): reset it after changing them.

Latency: the encoder emits a frame once its last sample has arrived (one hop, 20 ms at 50 Hz);
the SEANet and SoundStream decoders emit a frame's samples as soon as its codes arrive; the spectral decoder's
inverse STFT overlaps later frames, so it holds back `lookahead` frames (2 with n_fft = 4 hops).
`latency_samples(model)` is the sum: algorithmic latency, compute time not included.

Level: a stream has no second ahead to measure, so it carries no level side info. An `rms` model
streams as if its level were not sent: the encoder codes the input at its own level (gain 1, no
normalization) and the decoder plays its output at gain 1, with no level match. Offline, that is
`encode(..., level=False)` (codes of side kind "none") and `decode` of those codes, which is what
such a stream equals; a .tcd of stream codes (`make_codes(..., side_kind="none")`) decodes with
the same model. `lufs` models (one loudness per whole clip) are refused.

Limits: the `stft` encoder reads whole STFT windows (no `stream_layers`); it is refused with a
clear error.
An LSTM model streams exactly from its whole past; offline `encode`/`decode` run such a model in
20 s windows with 2 s of context (`CHUNK_SECONDS`), so past 20 s the two differ and the stream is
the exact one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from telucodec.config import CodecConfig
from telucodec.errors import ModelError
from telucodec.model.amplitude import Amplitude
from telucodec.model.clustering import nearest_entry
from telucodec.model.layers import stack_context, stack_reach
from telucodec.model.quantizer import ResidualVQ, VectorQuantizer
from telucodec.model.stream_steps import Step, stack_streamer


class Streamable(Protocol):
    """What the streams use of a codec; `telucodec.model.codec.Codec` is one (and hands them out
    as `stream_encoder()` / `stream_decoder()`, so this module never imports it)."""

    config: CodecConfig
    amplitude: Amplitude
    hop: int
    encoder: nn.Module
    quantizer: ResidualVQ
    decoder: nn.Module

    @property
    def max_n_q(self) -> int: ...

    def n_q_for_kbps(self, kbps: float | None) -> int: ...

    def _as_mono_tensor(self, wav: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...


# ---- receptive fields (each family's modules say which layers to measure) -------------------
def encoder_context_frames(encoder: nn.Module, hop: int) -> int:
    """Frames of past audio the encoder needs to reproduce the next frame exactly."""
    layers = encoder.stream_layers()
    if layers is None:
        raise ModelError(f"streaming encode is not supported by the {type(encoder).__name__} "
                         "(it reads whole STFT frames); encode such a model whole (`encode`)")
    return stack_context(layers, hop)


def encoder_reach_frames(encoder: nn.Module, hop: int) -> int | None:
    """Frames on either side beyond which audio cannot change a frame's latent (causal or not),
    or None where that is unbounded or unknown (the bottleneck LSTM, an encoder with no layer stack)."""
    layers = encoder.stream_layers()
    return None if layers is None else stack_reach(layers, hop)


def decoder_frames(decoder: nn.Module) -> tuple[int, int]:
    """(context, lookahead) in frames: past codes needed, and frames to wait for after a frame."""
    return decoder.stream_frames()


# Amplitude strategies whose models also run without level side info: streams, `encode(level=False)`
# and the decode of codes of side kind "none" (gain 1: no normalize, restore or level match).
LEVELLESS_AMPLITUDES: tuple[str, ...] = ("none", "rms")


def _check_streamable(model: Streamable) -> None:
    if not model.config.model.causal:
        raise ModelError("streaming needs a causal model (ModelConfig.causal = true); this one looks ahead")
    if model.amplitude.kind not in LEVELLESS_AMPLITUDES:
        raise ModelError(f"streaming supports amplitude 'none' or 'rms' (a stream carries no level side info); "
                         f"this model uses '{model.amplitude.kind}', whose level is one loudness of the whole clip")


def encoder_streamer(encoder: nn.Module) -> Step:
    """The encoder as one streaming step (`model/stream_steps.py`): its own `streamer()` if it has
    one, else the steps of its `stream_layers()`; refused where it has neither."""
    if hasattr(encoder, "streamer"):
        return encoder.streamer()
    layers = encoder.stream_layers()
    if layers is None:
        raise ModelError(f"streaming encode is not supported by the {type(encoder).__name__} "
                         "(it reads whole STFT frames); encode such a model whole (`encode`)")
    return stack_streamer(layers)


def decoder_streamer(decoder: nn.Module) -> Step:
    """The decoder as one streaming step: its own `streamer()` (the spectral decoder's head and
    inverse STFT), else the steps of its `stream_layers()`."""
    if hasattr(decoder, "streamer"):
        return decoder.streamer()
    layers = decoder.stream_layers() if hasattr(decoder, "stream_layers") else None
    if layers is None:
        raise ModelError(f"streaming decode is not supported by the {type(decoder).__name__}")
    return stack_streamer(layers)


def _lookahead_frames(step: Step, hop: int) -> int:
    return -(-step.delay // hop)


def latency_samples(model: Streamable) -> int:
    """Algorithmic latency of streaming encode + decode, in samples: one frame + decoder lookahead."""
    _check_streamable(model)
    return model.hop + _lookahead_frames(decoder_streamer(model.decoder), model.hop) * model.hop


def _device(model: Streamable) -> torch.device:
    return next(model.parameters()).device


class _CodeSearch:
    """`ResidualVQ.encode` (beam 1: each stage's nearest entry, then its residual), with what each
    stage's search needs of its codebook computed once per stream: `nearest_entry`'s entry norms
    (recomputing them on every one-frame push was half the search's time) and each entry as the
    vector it adds to the latent. The same numbers, so the same codes (tests/test_streaming*)."""

    def __init__(self, quantizer: ResidualVQ, n_q: int):
        self.stages = []
        for layer in quantizer.layers[:n_q]:
            plain = type(layer).nearest is VectorQuantizer.nearest  # the L2 search on `codebook`
            book = layer.codebook.detach()
            self.stages.append((layer, book, book.pow(2).sum(1) if plain else None,
                                layer.latent_codebook().detach()))

    def encode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [D, F] -> codes [n_q, F]."""
        residual = latent.t().contiguous()  # [F, D], frame-major as `encode`'s
        codes = []
        for layer, book, norms, vectors in self.stages:
            c = nearest_entry(residual, book, norms) if norms is not None else layer.nearest(residual)
            residual = residual - F.embedding(c, vectors)
            codes.append(c)
        return torch.stack(codes)


class _CodeLookup:
    """`ResidualVQ.decode` as one table look-up and a sum over stages: every stage's entries as the
    vectors they add to the latent, stacked once per stream (12 look-ups and adds per one-frame
    push were 7 % of a stream's time). The sum's order differs: the latent by float rounding."""

    def __init__(self, quantizer: ResidualVQ):
        vectors = [layer.latent_codebook().detach() for layer in quantizer.layers]
        self.table = torch.cat(vectors)  # [sum of the stages' sizes, D]
        starts = [0] + [v.shape[0] for v in vectors[:-1]]
        self.offsets = torch.tensor(starts, device=self.table.device).cumsum(0)[:, None]  # stage s's first row

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [n, F] (n <= n_q) -> latent [D, F]."""
        return F.embedding(codes + self.offsets[: codes.shape[0]], self.table).sum(0).t()


# ---- streams -------------------------------------------------------------------------------
class StreamEncoder:
    """Feed audio chunks of any size; get the codes of every frame completed so far.

    Takes what `Codec.encode` takes (float or integer PCM, [n] or [n, 1], numpy or torch), at the
    model's sample rate. A frame is encoded once its last sample has arrived: each push runs the
    encoder on its new whole frames only, every conv continuing from its state. The input is coded
    at its own level, whatever the model's amplitude: the codes are `encode(..., level=False)`'s,
    of side kind "none" (`side_kind`)."""

    side_kind = "none"  # what a .tcd of a stream's codes carries: no level side info

    def __init__(self, model: Streamable, kbps: float | None = None):
        _check_streamable(model)
        self.model, self.hop, self.n_q = model, model.hop, model.n_q_for_kbps(kbps)
        encoder_streamer(model.encoder)  # refuses an encoder that cannot stream, now
        self.latency_samples = model.hop  # a frame is emitted once its last sample arrives
        self.reset()

    def reset(self) -> None:
        """Start a new stream (with the model's weights as they are now)."""
        self._step = encoder_streamer(self.model.encoder)
        self._state = self._step.init(_device(self.model))
        self._search = _CodeSearch(self.model.quantizer, self.n_q)
        self._pending = torch.zeros(0)  # samples of the unfinished frame
        self.frames_emitted = 0

    def _empty(self) -> torch.Tensor:
        return torch.zeros(self.n_q, 0, dtype=torch.long)

    def push(self, wav: np.ndarray | torch.Tensor) -> torch.Tensor:
        """wav [n] or [n, 1] (float in [-1, 1] or integer PCM) -> codes int64 [n_q, frames completed by it]."""
        x = self.model._as_mono_tensor(wav, self.model.sample_rate)  # exactly `Codec.encode`'s conversion
        with torch.inference_mode():  # ~10 % less per op than no_grad; what leaves is cloned out of it
            codes = self._push(x)
        return codes.clone()

    def _push(self, x: torch.Tensor) -> torch.Tensor:
        if self._pending.numel():
            x = torch.cat([self._pending, x])
        frames = x.shape[0] // self.hop
        # a copy: `x` may share memory with the caller's buffer, which a callback may reuse
        self._pending = x[frames * self.hop:].clone()
        if frames == 0:
            return self._empty()
        window = x[: frames * self.hop].to(_device(self.model)).view(1, -1)
        latent, self._state = self._step.step(window, self._state)
        self.frames_emitted += frames
        return self._search.encode(latent).cpu()

    def flush(self) -> torch.Tensor:
        """End of stream: zero-pad the unfinished frame (as offline encode does), emit it, reset."""
        pending = self._pending.shape[0]
        with torch.inference_mode():
            codes = self._push(torch.zeros(self.hop - pending)) if pending else self._empty()
        self.reset()
        return codes.clone()


class StreamDecoder:
    """Feed codes [n_q, frames] of any length; get the audio of every frame that is final.

    Each push runs the decoder on its new frames only, every layer continuing from its state;
    the spectral decoder's inverse STFT holds its last frames back until later frames overlap them.
    The output plays at gain 1 (no restore, no level match): `decode` of side kind "none" codes."""

    def __init__(self, model: Streamable):
        _check_streamable(model)
        self.model, self.hop = model, model.hop
        self.lookahead_frames = _lookahead_frames(decoder_streamer(model.decoder), model.hop)
        self.latency_samples = self.lookahead_frames * model.hop
        self.reset()

    def reset(self) -> None:
        """Start a new stream (with the model's weights as they are now)."""
        self._step = decoder_streamer(self.model.decoder)
        self._state = self._step.init(_device(self.model))
        self._lookup = _CodeLookup(self.model.quantizer)
        self._n_q: int | None = None
        self._skip = self._step.delay     # samples the step makes before the first output sample
        self._held = torch.zeros(0)       # final samples of a frame not yet whole
        self.samples_emitted = 0

    def _checked(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        c = torch.as_tensor(np.asarray(codes, dtype=np.int64)).reshape(np.shape(codes)[0], -1)
        if not 1 <= c.shape[0] <= self.model.max_n_q:
            raise ModelError(f"codes have n_q={c.shape[0]}, the model supports 1..{self.model.max_n_q}")
        if self._n_q is not None and c.shape[0] != self._n_q:
            raise ModelError(f"codes changed from n_q={self._n_q} to {c.shape[0]} mid-stream")
        self.model.check_code_values(c)
        self._n_q = c.shape[0]
        return c

    def _emit(self, wav: torch.Tensor, final: bool = False) -> torch.Tensor:
        """Drop what precedes the first output sample, hold back a frame not yet whole."""
        if self._skip:
            cut = min(self._skip, wav.shape[0])
            wav, self._skip = wav[cut:], self._skip - cut
        if self._held.numel():
            wav = torch.cat([self._held, wav])
        ready = wav.shape[0] if final else wav.shape[0] // self.hop * self.hop
        self._held = wav[ready:]
        self.samples_emitted += ready
        return wav[:ready]

    def push(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """codes int [n_q, F] -> float32 [samples of the frames that are now final]."""
        c = self._checked(codes)
        if c.shape[1] == 0:
            return torch.zeros(0)
        with torch.inference_mode():  # as in StreamEncoder.push
            latent = self._lookup.decode(c.to(_device(self.model)))
            wav, self._state = self._step.step(latent, self._state)
            wav = self._emit(wav[0].cpu())
        return wav.clone()

    def flush(self) -> torch.Tensor:
        """End of stream: emit the held-back samples (as offline decode ends), reset."""
        with torch.inference_mode():
            tail = self._step.flush(self._state) if self._n_q is not None else None
            wav = self._emit(torch.zeros(0) if tail is None else tail[0].cpu(), final=True)
        self.reset()
        return wav.clone()
