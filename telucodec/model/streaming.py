"""Streaming encode/decode for causal codecs (`ModelConfig.causal = True`), exactly offline's result.

    enc, dec = model.stream_encoder(kbps=3), model.stream_decoder()
    for chunk in microphone:                 # float32 samples, any chunk size
        codes = enc.push(chunk)              # int64 [n_q, new frames]: every whole frame so far
        audio = dec.push(codes)              # float32 [new samples]
    codes, audio = enc.flush(), ...          # end of stream: the zero-padded last frame

How it stays exact: every conv in a causal model pads on the left only, so frame f depends on
nothing after it. Each stream keeps a left-context buffer as long as the model's receptive
field (computed once from the layers, in whole frames) and runs the model on context + new
whole frames, keeping only the new frames. Inside the window everything a kept frame depends
on is real data, so it equals the offline result up to float rounding (~1e-7).

Latency: the encoder emits a frame once its last sample has arrived (one hop, 20 ms at 50 Hz);
the SEANet and SoundStream decoders emit a frame's samples as soon as its codes arrive; the spectral decoder's
inverse STFT overlaps later frames, so it holds back `lookahead` frames (2 with n_fft = 4 hops).
`latency_samples(model)` is the sum: algorithmic latency, compute time not included.

Limits: the bottleneck LSTM (`lstm: true`) would need its state carried across chunks and
amplitude strategies other than `none` measure levels over whole seconds of audio; both are
refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch import nn

from telucodec.config import CodecConfig
from telucodec.errors import ModelError
from telucodec.model.amplitude import Amplitude
from telucodec.model.layers import stack_context, stack_reach
from telucodec.model.quantizer import ResidualVQ


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


def _check_streamable(model: Streamable) -> None:
    mc = model.config.model
    if not mc.causal:
        raise ModelError("streaming needs a causal model (ModelConfig.causal = true); this one looks ahead")
    if mc.lstm:
        raise ModelError("streaming does not support the bottleneck LSTM (lstm: true); use lstm: false")
    if model.amplitude.kind != "none":
        raise ModelError(f"streaming supports amplitude 'none' only; this model uses '{model.amplitude.kind}' "
                         "(its level is measured over whole seconds, which would add that much latency)")


def latency_samples(model: Streamable) -> int:
    """Algorithmic latency of streaming encode + decode, in samples: one frame + decoder lookahead."""
    _check_streamable(model)
    return model.hop + decoder_frames(model.decoder)[1] * model.hop


# ---- streams -------------------------------------------------------------------------------
class StreamEncoder:
    """Feed audio chunks of any size; get the codes of every frame completed so far."""

    def __init__(self, model: Streamable, kbps: float | None = None):
        _check_streamable(model)
        self.model, self.hop, self.n_q = model, model.hop, model.n_q_for_kbps(kbps)
        self.context_frames = encoder_context_frames(model.encoder, model.hop)
        self.latency_samples = model.hop  # a frame is emitted once its last sample arrives
        self.reset()

    def reset(self) -> None:
        self._buffer = torch.zeros(0)  # [context samples | samples of the unfinished frame]
        self._context = 0              # samples of context at the buffer start (whole frames)
        self.frames_emitted = 0

    def _empty(self) -> torch.Tensor:
        return torch.zeros(self.n_q, 0, dtype=torch.long)

    @torch.no_grad()
    def push(self, wav: np.ndarray | torch.Tensor) -> torch.Tensor:
        """wav float32 [n] (mono, model rate) -> codes int64 [n_q, frames completed by it]."""
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(-1)
        if not torch.isfinite(x).all():
            raise ModelError("input audio contains NaN or infinite samples")
        self._buffer = torch.cat([self._buffer, x.clamp(-1.0, 1.0)])
        new = (self._buffer.shape[0] - self._context) // self.hop
        if new == 0:
            return self._empty()
        end = self._context + new * self.hop
        device = next(self.model.parameters()).device
        window = self._buffer[:end].to(device).view(1, 1, -1)
        latent = self.model.encoder(window)[..., self._context // self.hop:]
        codes = self.model.quantizer.encode(latent, self.n_q)[0].cpu()
        keep = min(self.context_frames * self.hop, end)
        self._buffer, self._context = self._buffer[end - keep:], keep
        self.frames_emitted += new
        return codes

    def flush(self) -> torch.Tensor:
        """End of stream: zero-pad the unfinished frame (as offline encode does), emit it, reset."""
        pending = self._buffer.shape[0] - self._context
        codes = self.push(torch.zeros((-pending) % self.hop)) if pending else self._empty()
        self.reset()
        return codes


class StreamDecoder:
    """Feed codes [n_q, frames] of any length; get the audio of every frame that is final."""

    def __init__(self, model: Streamable):
        _check_streamable(model)
        self.model, self.hop = model, model.hop
        self.context_frames, self.lookahead_frames = decoder_frames(model.decoder)
        self.latency_samples = self.lookahead_frames * model.hop
        self.reset()

    def reset(self) -> None:
        self._codes: torch.Tensor | None = None  # [n_q, context frames | frames not yet emitted]
        self._context = 0
        self.samples_emitted = 0

    @torch.no_grad()
    def _run(self, ready: int) -> torch.Tensor:
        assert self._codes is not None
        device = next(self.model.parameters()).device
        latent = self.model.quantizer.decode(self._codes.to(device)[None])
        wav = self.model.decoder(latent)[0, 0, self._context * self.hop: (self._context + ready) * self.hop]
        total = self._context + ready
        keep = min(self.context_frames, total)
        self._codes, self._context = self._codes[:, total - keep:], keep
        self.samples_emitted += wav.shape[0]
        return wav.cpu()

    def push(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """codes int [n_q, F] -> float32 [samples of the frames that are now final]."""
        c = torch.as_tensor(np.asarray(codes, dtype=np.int64)).reshape(np.shape(codes)[0], -1)
        if not 1 <= c.shape[0] <= self.model.max_n_q:
            raise ModelError(f"codes have n_q={c.shape[0]}, the model supports 1..{self.model.max_n_q}")
        if self._codes is not None and c.shape[0] != self._codes.shape[0]:
            raise ModelError(f"codes changed from n_q={self._codes.shape[0]} to {c.shape[0]} mid-stream")
        self._codes = c if self._codes is None else torch.cat([self._codes, c], dim=1)
        ready = self._codes.shape[1] - self._context - self.lookahead_frames
        if ready <= 0:
            return torch.zeros(0)
        return self._run(ready)

    def flush(self) -> torch.Tensor:
        """End of stream: emit the held-back lookahead frames (as offline decode ends), reset."""
        pending = 0 if self._codes is None else self._codes.shape[1] - self._context
        wav = self._run(pending) if pending > 0 else torch.zeros(0)
        self.reset()
        return wav
