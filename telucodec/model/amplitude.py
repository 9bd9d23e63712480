"""Who owns loudness? Three answers behind one interface, so measurement can pick the default.

The seed codec's decoder never learned output amplitude: it had to reproduce absolute level
from codes alone. Each strategy here splits a waveform into a *level* part (side info, a few
integers sent in the bitstream) and a *shape* part (the normalized waveform the encoder sees):

* ``none`` - identity. The decoder owns absolute amplitude (the seed's behaviour, kept as the
  baseline the others must beat).
* ``rms``  - EnCodec-style. Per-chunk RMS (1 s chunks by default), quantized to 8 bits on a
  log scale, sent as side info, divided out before the encoder and multiplied back after the
  decoder.
* ``lufs`` - DAC-style. One integrated loudness (ITU-R BS.1770 via pyloudnorm) per clip; the
  gain to a target loudness is quantized to 8 bits, sent, and undone after the decoder.

Two rules make every strategy exact and cheap to reason about:

1. The *dequantized* side info is what normalizes. ``normalize`` divides by
   ``gain_curve(side, T)`` and ``restore`` multiplies by ``gain_curve(side, T')`` - the same
   function of the same integers - so ``restore(normalize(x))`` equals ``x`` up to float
   rounding, and the side info alone fully describes the restore (nothing the decoder lacks).
2. The gain curve at sample ``t`` depends only on the side info and ``t``, never on the clip
   length. A decoder whose output is a few samples longer or shorter than its input (hop
   padding) therefore restores the common samples exactly.

Side info is a float32 tensor ``[B, S]`` holding non-negative integers, so the bitstream can
store ``side[i].round().long().tolist()`` at ``side_bits()`` bits each and get the same
tensor back. It is computed under ``torch.no_grad``: it is a measurement, not something to
train through. ``restore`` is an ordinary differentiable multiply by a detached curve, so
losses measured on the restored output train the decoder.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor

AMPLITUDE_KINDS: tuple[str, ...] = ("none", "rms", "lufs")


def _check_wav(wav: Tensor) -> None:
    if wav.dim() != 3 or wav.shape[1] != 1:
        raise ValueError(f"amplitude: expected a waveform shaped [B, 1, T], got {tuple(wav.shape)}")


def _check_side(side: Tensor, batch: int) -> None:
    if side.dim() != 2 or side.shape[0] != batch:
        raise ValueError(f"amplitude: expected side info shaped [{batch}, S], got {tuple(side.shape)}")


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
        _check_wav(wav)
        with torch.no_grad():
            side = self.side_info(wav).to(torch.float32)
        return self.normalize_with(wav, side), side

    def normalize_with(self, wav: Tensor, side: Tensor, start: int = 0) -> Tensor:
        """Normalize with known side info: wav [B,1,T] holds samples ``start..start+T-1`` of a
        clip whose side info is ``side``; long clips are normalized window by window this way."""
        _check_wav(wav)
        _check_side(side, wav.shape[0])
        with torch.no_grad():
            curve = self.gain_curve(side.detach(), wav.shape[-1], start)
        return wav / curve.to(device=wav.device, dtype=wav.dtype)

    def restore(self, wav: Tensor, side: Tensor, start: int = 0) -> Tensor:
        """wav [B,1,T'] (decoder output, T' may differ from the normalized length) -> wav * curve;
        ``start`` as in ``normalize_with`` (a window of a long clip).

        Differentiable w.r.t. ``wav``; no Python loop over samples, so it is cheap inside a
        training step and on GPU.
        """
        _check_wav(wav)
        _check_side(side, wav.shape[0])
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
        _check_wav(wav)  # no division: identity must be bit-exact, not just close
        return wav, self.side_info(wav)

    def normalize_with(self, wav: Tensor, side: Tensor, start: int = 0) -> Tensor:
        _check_wav(wav)
        _check_side(side, wav.shape[0])
        return wav

    def restore(self, wav: Tensor, side: Tensor, start: int = 0) -> Tensor:
        _check_wav(wav)
        _check_side(side, wav.shape[0])
        return wav


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
        _check_wav(wav)
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
        index = torch.round((level_db - self.min_db) / self.step_db).clamp(0, self.num_levels - 1)
        return index.to(torch.float32)

    def levels_db(self, side: Tensor) -> Tensor:
        """Dequantized chunk levels in dBFS, [B, S] float64 (indices clamped to the 8-bit range)."""
        index = side.detach().to(torch.float64).round().clamp(0, self.num_levels - 1)
        return self.min_db + index * self.step_db

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

    def match_level(self, wav: Tensor, side: Tensor, max_db: float = 6.0, block_chunks: int = 64) -> Tensor:
        """Decoded, restored wav [B,1,T] -> the same wav with each chunk's RMS set to the level
        the side info carries (gains interpolated between chunk centres as in ``gain_curve``).

        Why: the side info already tells the decoder every chunk's true loudness, yet a decoder
        whose phase is not yet coherent comes out 1-2 dB quiet (the waveform terms of the loss
        pull it toward silence). Matching at decode time makes the delivered level exact
        whatever the network learned. Chunks at the silence floor are left alone, and a gain
        is limited to +-``max_db`` so a decoder that fails on a chunk is not amplified into
        noise. Not differentiable training-time machinery: ``Codec.decode`` applies it after
        the last window, ``block_chunks`` chunks at a time so an hour-long clip stays small.
        """
        _check_wav(wav)
        _check_side(side, wav.shape[0])
        with torch.no_grad():
            actual = self.chunk_rms(wav)
            levels = self.levels_db(side.to(actual.device))[:, : actual.shape[1]]
            limit = 10.0 ** (max_db / 20.0)
            gains = (torch.pow(10.0, levels / 20.0) / actual.clamp_min(1e-12)).clamp(1.0 / limit, limit)
            gains = torch.where(levels > self.floor_db + self.step_db / 2, gains, torch.ones_like(gains))
            out = torch.empty_like(wav)
            step = block_chunks * self.chunk_samples
            for lo in range(0, wav.shape[-1], step):
                piece = wav[..., lo: lo + step]
                curve = self._interpolate(gains, piece.shape[-1], lo).to(device=wav.device, dtype=wav.dtype)
                out[..., lo: lo + step] = piece * curve
        return out


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
        index = torch.round((gain_db - self.min_gain_db) / self.step_db).clamp(0, self.num_levels - 1)
        return index.to(torch.float32)

    def gains_db(self, side: Tensor) -> Tensor:
        """Dequantized normalization gain in dB, [B, 1] float64 (indices clamped to 8 bits)."""
        index = side.detach().to(torch.float64).round().clamp(0, self.num_levels - 1)
        return self.min_gain_db + index * self.step_db

    def gain_curve(self, side: Tensor, num_samples: int, start: int = 0) -> Tensor:
        b, s = side.shape
        t = max(int(num_samples), 0)
        if s != 1:
            raise ValueError(f"lufs amplitude: expected 1 side value per item, got {s}")
        factor = torch.pow(10.0, -self.gains_db(side) / 20.0).to(torch.float32)  # [B, 1]
        return factor[:, :, None].expand(b, 1, t).contiguous()


_STRATEGIES: dict[str, type[Amplitude]] = {
    "none": NoAmplitude,
    "rms": RmsAmplitude,
    "lufs": LufsAmplitude,
}


def get_amplitude(kind: str, sample_rate: int = 16000, **options: Any) -> Amplitude:
    """Build the strategy named ``kind`` (one of AMPLITUDE_KINDS) with its options.

    Unknown kinds raise ValueError naming the valid ones; unknown options raise TypeError.
    """
    try:
        cls = _STRATEGIES[kind]
    except KeyError:
        raise ValueError(f"unknown amplitude kind {kind!r}; choose one of {', '.join(AMPLITUDE_KINDS)}") from None
    return cls(sample_rate=sample_rate, **options)


__all__ = ["AMPLITUDE_KINDS", "Amplitude", "LufsAmplitude", "NoAmplitude", "RmsAmplitude",
           "get_amplitude"]
