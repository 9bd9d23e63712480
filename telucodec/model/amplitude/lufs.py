"""`lufs`: DAC-style whole-clip loudness (ITU-R BS.1770), one gain sent as side info."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from telucodec.model.amplitude.base import Amplitude, dequantize_db, quantize_db


class LufsAmplitude(Amplitude):
    """DAC-style whole-clip loudness normalization to ``target_lufs`` (default -20 LUFS).

    Measurement: integrated loudness per ITU-R BS.1770 (pyloudnorm, K-weighting and gating).
    It is undefined for clips shorter than the 0.4 s gating block and -inf/meaningless when
    every block sits under the -70 LUFS absolute gate; then (or whenever it is below
    ``min_lufs``) the clip's plain RMS in dBFS stands in as the loudness estimate (for speech
    it is within a couple of dB of the K-weighted value, enough for a level normalizer).

    Gain: ``gain_db = target_lufs - loudness``, clamped to
    ``[max_gain_db - 255*step_db, max_gain_db]`` and quantized to 8 bits with ``step_db`` =
    0.25 dB: defaults cover -33.75 .. +30 dB. The +30 dB cap is what keeps silence and
    near-silence (loudness -inf, or room tone at -70 dBFS) from being blown up into loud noise
    the encoder would spend codes on; such clips simply sit below target. -33.75 dB covers
    any [-1, 1] input (nothing is louder than about +3 LUFS). Half-step error 0.125 dB.
    Cost: 8 bits per clip, whatever its length. 8 bits at 0.25 dB rather than 16 at 0.01 dB:
    the step only moves where the normalized clip sits (the round trip is exact either way),
    and a single byte keeps both non-trivial strategies at the same ``side_bits``.

    The gain is one number, so the curve is a constant and length-independent; ``normalize``
    runs numpy/pyloudnorm per item (a Python loop over the batch, never over samples).
    """

    kind = "lufs"
    LONG_SECONDS = 600.0  # longer clips: loudness measured segment by segment

    def __init__(self, sample_rate: int = 16000, target_lufs: float = -20.0,
                 max_gain_db: float = 30.0, step_db: float = 0.25, min_lufs: float = -70.0,
                 block_seconds: float = 0.4) -> None:
        super().__init__(sample_rate)
        if step_db <= 0:
            raise ValueError(f"lufs amplitude: step_db must be positive, got {step_db}")
        self.target_lufs = float(target_lufs)
        self.max_gain_db = float(max_gain_db)
        self.step_db = float(step_db)
        self.min_lufs = float(min_lufs)
        self.block_seconds = float(block_seconds)
        self.num_levels = 2 ** self.side_bits()
        self._meter: Any = None

    @property
    def min_gain_db(self) -> float:
        """Most negative representable gain (index 0)."""
        return self.max_gain_db - (self.num_levels - 1) * self.step_db

    def options(self) -> dict[str, Any]:
        return {"target_lufs": self.target_lufs, "max_gain_db": self.max_gain_db,
                "step_db": self.step_db, "min_lufs": self.min_lufs,
                "block_seconds": self.block_seconds}

    def num_side_values(self, num_samples: int) -> int:
        return 1

    def side_bits(self) -> int:
        return 8

    def _get_meter(self) -> Any:
        if self._meter is None:
            import pyloudnorm  # only this strategy needs it; keep the import local and lazy

            self._meter = pyloudnorm.Meter(self.sample_rate, block_size=self.block_seconds)
        return self._meter

    def loudness(self, x: np.ndarray) -> float:
        """Loudness estimate of one mono clip in LUFS (-inf only for digital silence).

        BS.1770 integrated loudness where it is defined and above ``min_lufs``; otherwise RMS dBFS.
        Clips longer than ``LONG_SECONDS`` are measured segment by segment (flat memory).
        """
        x = np.asarray(x).reshape(-1)
        if x.size > self.LONG_SECONDS * self.sample_rate:
            value, ms = self._long_loudness(x)
        else:
            x = x.astype(np.float64, copy=False)
            value = -math.inf
            if x.size >= self.block_seconds * self.sample_rate:
                value = float(self._get_meter().integrated_loudness(x))
            ms = float(np.mean(np.square(x))) if x.size else 0.0
        if not math.isfinite(value) or value < self.min_lufs:
            value = 10.0 * math.log10(ms) if ms > 0.0 else -math.inf
        return value

    def _long_loudness(self, x: np.ndarray, segment_blocks: int = 600) -> tuple[float, float]:
        """(integrated loudness, mean square) of a long clip: pyloudnorm's measurement (its K-weighting
        filters, 400 ms blocks every 100 ms, -70 LUFS and -10 LU gates), but filtered one segment
        at a time with the filter state carried over, so an hour needs no float64 copy."""
        import scipy.signal

        hop = int(round(self.block_seconds * 0.25 * self.sample_rate))  # blocks overlap by 75 %
        stages = [(f.b, f.a, f.passband_gain) for f in self._get_meter()._filters.values()]
        states = [np.zeros(max(len(a), len(b)) - 1) for b, a, _ in stages]
        energy, total = [], 0.0  # filtered energy per hop; plain energy of the whole clip
        for i in range(0, x.size, segment_blocks * hop):
            y = x[i: i + segment_blocks * hop].astype(np.float64)
            total += float(np.dot(y, y))
            for k, (b, a, gain) in enumerate(stages):
                y, states[k] = scipy.signal.lfilter(b, a, y, zi=states[k])
                y *= gain
            n = y.size // hop
            energy.append(np.square(y[: n * hop]).reshape(n, hop).sum(axis=1))
        z = np.convolve(np.concatenate(energy), np.ones(4), "valid") / (4 * hop)  # block mean squares
        with np.errstate(divide="ignore"):
            block_lufs = -0.691 + 10.0 * np.log10(z)
        loud = z[block_lufs >= -70.0]
        value = -math.inf
        if loud.size:
            relative_gate = -0.691 + 10.0 * math.log10(loud.mean()) - 10.0
            gated = z[(block_lufs > relative_gate) & (block_lufs >= -70.0)]
            if gated.size and gated.mean() > 0:
                value = -0.691 + 10.0 * math.log10(gated.mean())
        return value, total / x.size

    def side_info(self, wav: Tensor) -> Tensor:
        dtype = torch.float64 if wav.dtype == torch.float64 else torch.float32  # no float64 copy of an hour
        x = wav.detach().to("cpu", dtype).reshape(wav.shape[0], -1).numpy()
        gains = []
        for item in x:
            loud = self.loudness(item)
            gain = self.target_lufs - loud if math.isfinite(loud) else self.max_gain_db
            gains.append(min(max(gain, self.min_gain_db), self.max_gain_db))
        gain_db = torch.tensor(gains, dtype=torch.float64, device=wav.device).reshape(-1, 1)
        return quantize_db(gain_db, self.min_gain_db, self.step_db, self.num_levels)

    def gains_db(self, side: Tensor) -> Tensor:
        """Dequantized normalization gain in dB, [B, 1] float64 (indices clamped to 8 bits)."""
        return dequantize_db(side, self.min_gain_db, self.step_db, self.num_levels)

    def gain_curve(self, side: Tensor, num_samples: int, start: int = 0) -> Tensor:
        b, s = side.shape
        t = max(int(num_samples), 0)
        if s != 1:
            raise ValueError(f"lufs amplitude: expected 1 side value per item, got {s}")
        factor = torch.pow(10.0, -self.gains_db(side) / 20.0).to(torch.float32)  # [B, 1]
        return factor[:, :, None].expand(b, 1, t).contiguous()
