"""`rms`: EnCodec-style per-chunk level sent as side info, and decode-time level matching (both
on the same chunk grid and gain interpolation)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from telucodec.formats import level_match
from telucodec.model.amplitude.base import Amplitude, check_side, check_wav, dequantize_db, quantize_db


class RmsAmplitude(Amplitude):
    """EnCodec-style per-chunk RMS scale, 8-bit log-quantized, linearly interpolated gain.

    Measurement: the clip is cut into chunks of ``chunk_seconds`` (16000 samples at 16 kHz by
    default) aligned to the clip start; each chunk's RMS is taken over the samples it actually
    has (a short last chunk is not diluted by padding), floored at ``floor_db`` dBFS, and
    quantized in dB:

        index = round((20*log10(rms) - min_db) / step_db), clamped to [0, 255]
        level_db = min_db + index * step_db

    Defaults: ``min_db = -100`` (RMS 1e-5, about the 16-bit dither floor), ``step_db = 0.4``,
    so 256 levels reach ``-100 + 255*0.4 = +2 dBFS`` - above the 0 dBFS RMS of a full-scale
    square wave, the loudest a [-1, 1] input can be. Worst-case level error is half a step,
    0.2 dB, well under the ~1 dB just-noticeable level difference; it only shifts where the
    normalized chunk sits, never the round trip. Cost: 8 bits per chunk = 8 bit/s at 1 s chunks
    (0.5 % of the lowest 1.5 kbps mode).

    Floor: chunks quieter than ``floor_db`` (default -80 dBFS, 1e-4) are treated as that loud,
    so digital silence stays silence (0 / gain = 0, no 0/0) and near-silence is amplified by at
    most ``target - floor`` = 60 dB instead of being blown up into a speech-level noise burst
    the encoder would waste codes on.

    Target: the normalized signal sits at ``target_db`` dBFS RMS, default -20 dBFS (0.1), not
    EnCodec's unit RMS: speech peaks 12-20 dB above its RMS, so at -20 dBFS the normalized
    signal keeps the [-1, 1] range the SEANet stack, its initialization and the
    waveform/mel-loss floors were sized for (the same range ``none`` trains in), and it lands
    at the same level as the ``lufs`` target, so the measured comparison differs only in the
    strategy, not in the numeric range the network sees.

    Gain curve: the per-chunk gain ``10**((level_db - target_db)/20)`` sits at each chunk's
    centre; between centres it is interpolated linearly *in amplitude*, before the first centre
    and after the last it is held. Restore multiplies by this curve and normalize divides by the
    same curve, so chunk borders have no gain steps and the round trip stays exact. Linear
    amplitude (rather than dB) interpolation is deliberate: near a border between a loud and a
    quiet chunk the gain never falls below half the loud chunk's gain, so the loud speech is
    never normalized more than ~6 dB above target (dB interpolation would let it overshoot by
    half the level difference, e.g. +30 dB next to silence).

    Long files: side info is one index per chunk and each index depends only on its own chunk,
    so a clip's side info is the concatenation of its pieces' when pieces are whole chunks.
    Curve knots sit at fixed positions from the clip start, so a window of a long clip is
    normalized and restored with the whole clip's side info and the window's ``start``
    (``normalize_with`` / ``restore``), which gives exactly the whole-clip curve there.
    """

    kind = "rms"

    def __init__(self, sample_rate: int = 16000, chunk_seconds: float = 1.0,
                 target_db: float = -20.0, floor_db: float = -80.0, min_db: float = -100.0,
                 step_db: float = 0.4) -> None:
        super().__init__(sample_rate)
        chunk = int(round(chunk_seconds * self.sample_rate))
        if chunk < 1:
            raise ValueError(f"rms amplitude: chunk_seconds={chunk_seconds} is under one sample")
        if step_db <= 0:
            raise ValueError(f"rms amplitude: step_db must be positive, got {step_db}")
        if not (math.isfinite(target_db) and floor_db < target_db <= 0.0):
            raise ValueError(f"rms amplitude: target_db={target_db} must be a level in dBFS above floor_db={floor_db} "
                             "and at most 0")
        if floor_db < min_db:
            raise ValueError(f"rms amplitude: floor_db={floor_db} is below the quantizer's "
                             f"lowest level min_db={min_db}")
        self.chunk_seconds = float(chunk_seconds)
        self.chunk_samples = chunk
        self.target_db = float(target_db)
        self.floor_db = float(floor_db)
        self.min_db = float(min_db)
        self.step_db = float(step_db)
        self.num_levels = 2 ** self.side_bits()

    @property
    def max_db(self) -> float:
        """Loudest representable chunk level in dBFS (index 255)."""
        return self.min_db + (self.num_levels - 1) * self.step_db

    def options(self) -> dict[str, Any]:
        return {"chunk_seconds": self.chunk_seconds, "target_db": self.target_db,
                "floor_db": self.floor_db, "min_db": self.min_db, "step_db": self.step_db}

    def num_side_values(self, num_samples: int) -> int:
        return max(0, math.ceil(int(num_samples) / self.chunk_samples))

    def side_bits(self) -> int:
        return 8

    def chunk_rms(self, wav: Tensor, block_chunks: int = 64) -> Tensor:
        """True (unquantized) RMS per chunk, [B, S] float64; a short last chunk uses its own length.
        Measured `block_chunks` chunks at a time, so an hour-long clip needs no float64 copy."""
        check_wav(wav)
        b, t = wav.shape[0], wav.shape[-1]
        s = self.num_side_values(t)
        c = self.chunk_samples
        x = wav.detach().reshape(b, t)
        energy = torch.zeros(b, s, dtype=torch.float64, device=wav.device)
        for first in range(0, s, block_chunks):
            piece = x[:, first * c: (first + block_chunks) * c].to(torch.float64)
            k = -(-piece.shape[-1] // c)
            piece = torch.nn.functional.pad(piece, (0, k * c - piece.shape[-1]))
            energy[:, first: first + k] = piece.reshape(b, k, c).square().sum(-1)
        counts = torch.full((s,), float(self.chunk_samples), dtype=torch.float64, device=x.device)
        if s:
            counts[-1] = t - (s - 1) * self.chunk_samples
        return (energy / counts).sqrt()

    def side_info(self, wav: Tensor) -> Tensor:
        rms = self.chunk_rms(wav)
        level_db = 20.0 * torch.log10(rms.clamp_min(10.0 ** (self.floor_db / 20.0)))
        return quantize_db(level_db, self.min_db, self.step_db, self.num_levels)

    def levels_db(self, side: Tensor) -> Tensor:
        """Dequantized chunk levels in dBFS, [B, S] float64 (indices clamped to the 8-bit range)."""
        return dequantize_db(side, self.min_db, self.step_db, self.num_levels)

    def gain_curve(self, side: Tensor, num_samples: int, start: int = 0) -> Tensor:
        """Per-sample restore factor [B,1,T]: chunk gains at chunk centres, linear in between.

        Chunk k's centre is sample ``k*C + (C-1)/2`` from the clip start whatever the clip
        length, so a curve for T' samples agrees with the curve for T on their common samples,
        and the window from ``start`` is exactly that stretch of the whole clip's curve.
        """
        if side.shape[1] == 0 and int(num_samples) > 0:
            raise ValueError("rms amplitude: no side values to restore a non-empty waveform")
        gains = torch.pow(10.0, (self.levels_db(side) - self.target_db) / 20.0)  # [B, S] float64
        return self._interpolate(gains, num_samples, start)

    def _interpolate(self, gains: Tensor, num_samples: int, start: int = 0) -> Tensor:
        """Per-chunk factors [B, S] -> per-sample curve [B, 1, T] float32 (see ``gain_curve``)."""
        b, s = gains.shape
        t = max(int(num_samples), 0)
        if t == 0:
            return torch.ones(b, 1, 0, dtype=torch.float32, device=gains.device)
        if s == 1:
            return gains.to(torch.float32)[:, :, None].expand(b, 1, t).contiguous()
        # Position of every sample in chunk-centre units: chunk k's centre maps to exactly k.
        samples = torch.arange(start, start + t, dtype=torch.float64, device=gains.device)
        pos = (samples + 0.5) / self.chunk_samples - 0.5
        pos = pos.clamp(0.0, float(s - 1))
        left = pos.floor().clamp(max=s - 2).long()
        frac = pos - left
        g_left = gains[:, left]
        g_right = gains[:, left + 1]
        curve = g_left + (g_right - g_left) * frac
        return curve.to(torch.float32)[:, None, :]

    def match_level(self, wav: Tensor, side: Tensor, max_db: float = 6.0) -> Tensor:
        """Decoded, restored wav [B,1,T] -> the same wav with each chunk's RMS set to the level
        the side info carries (gains interpolated between chunk centres as in ``gain_curve``).

        Why: the side info already tells the decoder every chunk's true loudness, yet a decoder
        whose phase is not yet coherent comes out 1-2 dB quiet (the waveform terms of the loss
        pull it toward silence). Matching at decode time makes the delivered level exact
        whatever the network learned. Chunks at the silence floor are left alone, and a gain
        is limited to +-``max_db`` so a decoder that fails on a chunk is not amplified into
        noise. The gains are solved so that each chunk's RMS *after* the interpolated curve is
        its level (`formats/level_match.py`, shared with the ONNX runner). Not differentiable
        training-time machinery: ``Codec.decode`` applies it after the last window, on the CPU.
        """
        check_wav(wav)
        check_side(side, wav.shape[0])
        s = self.num_side_values(wav.shape[-1])
        levels = self.levels_db(side.detach().cpu())[:, :s].numpy()
        rows = []
        for b in range(wav.shape[0]):
            y = wav[b, 0].detach().cpu().to(torch.float32).numpy()
            active = levels[b] > self.floor_db + self.step_db / 2
            gains = level_match.match_gains(y, levels[b], self.chunk_samples, active, max_db)
            rows.append(torch.from_numpy(level_match.scaled(y, gains, self.chunk_samples)))
        return torch.stack(rows)[:, None].to(device=wav.device, dtype=wav.dtype)
