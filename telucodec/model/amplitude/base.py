"""The interface every amplitude strategy implements (see the package docstring for the two
rules that make every round trip exact), and `none`, the identity."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor


def check_wav(wav: Tensor) -> None:
    """ValueError unless `wav` is shaped [B, 1, T]."""
    if wav.dim() != 3 or wav.shape[1] != 1:
        raise ValueError(f"amplitude: expected a waveform shaped [B, 1, T], got {tuple(wav.shape)}")


def check_side(side: Tensor, batch: int) -> None:
    """ValueError unless `side` is shaped [batch, S]."""
    if side.dim() != 2 or side.shape[0] != batch:
        raise ValueError(f"amplitude: expected side info shaped [{batch}, S], got {tuple(side.shape)}")


def quantize_db(value_db: Tensor, lowest_db: float, step_db: float, levels: int) -> Tensor:
    """dB values -> side-info indices: float32 integers in 0..levels-1, `step_db` apart from `lowest_db`."""
    return torch.round((value_db - lowest_db) / step_db).clamp(0, levels - 1).to(torch.float32)


def dequantize_db(side: Tensor, lowest_db: float, step_db: float, levels: int) -> Tensor:
    """Side-info indices -> dB as float64 (indices rounded and clamped to 0..levels-1 first)."""
    index = side.detach().to(torch.float64).round().clamp(0, levels - 1)
    return lowest_db + index * step_db


class Amplitude(ABC):
    """One amplitude strategy: split level (side info) from shape (normalized waveform).

    Subclasses implement ``side_info`` (measure + quantize), ``gain_curve`` (dequantize into the
    per-sample factor ``restore`` multiplies by), ``num_side_values`` and ``side_bits``. The
    normalize/restore pair is shared here so every strategy divides and multiplies by the very
    same curve, which is what makes the round trip exact.
    """

    kind: str = ""

    def __init__(self, sample_rate: int = 16000) -> None:
        if sample_rate <= 0:
            raise ValueError(f"amplitude: sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)

    # -- to implement -----------------------------------------------------------------------
    @abstractmethod
    def side_info(self, wav: Tensor) -> Tensor:
        """Measure and quantize: wav [B,1,T] -> side [B,S] float32 of non-negative integers."""

    @abstractmethod
    def gain_curve(self, side: Tensor, num_samples: int, start: int = 0) -> Tensor:
        """The factor ``restore`` multiplies by, [B,1,num_samples] float32, from side info alone,
        for samples ``start .. start+num_samples-1`` of the clip (a window of a long clip)."""

    @abstractmethod
    def num_side_values(self, num_samples: int) -> int:
        """S, the number of side values per item for a clip of ``num_samples`` samples."""

    @abstractmethod
    def side_bits(self) -> int:
        """Bits per side value the bitstream needs (every value fits in this many bits)."""

    def options(self) -> dict[str, Any]:
        """Constructor options (besides sample_rate) so a config can rebuild this strategy."""
        return {}

    # -- shared -----------------------------------------------------------------------------
    def normalize(self, wav: Tensor) -> tuple[Tensor, Tensor]:
        """wav [B,1,T] -> (wav / gain_curve(side, T), side [B,S]).

        The division is differentiable w.r.t. ``wav``; the side info and curve are not (they
        are quantized measurements and are treated as constants).
        """
        check_wav(wav)
        with torch.no_grad():
            side = self.side_info(wav).to(torch.float32)
        return self.normalize_with(wav, side), side

    def normalize_with(self, wav: Tensor, side: Tensor, start: int = 0) -> Tensor:
        """Normalize with known side info: wav [B,1,T] holds samples ``start..start+T-1`` of a
        clip whose side info is ``side``; long clips are normalized window by window this way."""
        check_wav(wav)
        check_side(side, wav.shape[0])
        with torch.no_grad():
            curve = self.gain_curve(side.detach(), wav.shape[-1], start)
        return wav / curve.to(device=wav.device, dtype=wav.dtype)

    def restore(self, wav: Tensor, side: Tensor, start: int = 0) -> Tensor:
        """wav [B,1,T'] (decoder output, T' may differ from the normalized length) -> wav * curve;
        ``start`` as in ``normalize_with`` (a window of a long clip).

        Differentiable w.r.t. ``wav``; no Python loop over samples, so it is cheap inside a
        training step and on GPU.
        """
        check_wav(wav)
        check_side(side, wav.shape[0])
        curve = self.gain_curve(side.detach(), wav.shape[-1], start)
        return wav * curve.to(device=wav.device, dtype=wav.dtype)

    def bits_per_second(self, num_samples: int) -> float:
        """Side-info cost in bits/s for a clip of ``num_samples`` samples (0 for an empty clip)."""
        if num_samples <= 0:
            return 0.0
        bits = self.num_side_values(num_samples) * self.side_bits()
        return bits * self.sample_rate / num_samples

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}(sample_rate={self.sample_rate}{', ' if opts else ''}{opts})"


class NoAmplitude(Amplitude):
    """Identity: the decoder learns absolute amplitude itself (the seed's design, the baseline)."""

    kind = "none"

    def side_info(self, wav: Tensor) -> Tensor:
        return torch.zeros(wav.shape[0], 0, dtype=torch.float32, device=wav.device)

    def gain_curve(self, side: Tensor, num_samples: int, start: int = 0) -> Tensor:
        return torch.ones(side.shape[0], 1, max(int(num_samples), 0), dtype=torch.float32,
                          device=side.device)

    def num_side_values(self, num_samples: int) -> int:
        return 0

    def side_bits(self) -> int:
        return 0

    def normalize(self, wav: Tensor) -> tuple[Tensor, Tensor]:
        check_wav(wav)  # no division: identity must be bit-exact, not just close
        return wav, self.side_info(wav)

    def normalize_with(self, wav: Tensor, side: Tensor, start: int = 0) -> Tensor:
        check_wav(wav)
        check_side(side, wav.shape[0])
        return wav

    def restore(self, wav: Tensor, side: Tensor, start: int = 0) -> Tensor:
        check_wav(wav)
        check_side(side, wav.shape[0])
        return wav
