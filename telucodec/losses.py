"""Loss functions, free of weights: the weights live in `LossConfig` and the loop applies them.

Shapes: x (output) and y (target) are wav [B, 1, T].
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch.nn import functional as F


def waveform_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(x, y)


def waveform_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(x, y)


def frame_rms(wav: torch.Tensor, frame: int) -> torch.Tensor:
    """wav [B, 1, T] -> RMS per non-overlapping frame [B, T // frame] (at least one frame)."""
    t = wav.shape[-1]
    usable = max(frame, (t // frame) * frame)
    w = F.pad(wav, (0, max(0, usable - t)))[..., :usable]
    return w.reshape(w.shape[0], -1, frame).pow(2).mean(-1).add(1e-12).sqrt()


def rms_loss(x: torch.Tensor, y: torch.Tensor, frame: int = 320) -> torch.Tensor:
    """The seed's MSE(RMS), per 20 ms frame so it also teaches the loudness contour."""
    return F.mse_loss(frame_rms(x, frame), frame_rms(y, frame))


def log_rms_loss(x: torch.Tensor, y: torch.Tensor, frame: int = 320, floor: float = 1e-3) -> torch.Tensor:
    """L1 between log10 frame RMS of output and target, over frames of the target above `floor`
    (-60 dBFS). Unlike the seed's MSE(RMS) it does not shrink with the signal level: an output at
    half the target's level costs the same for quiet and loud speech (0.3 = 6 dB)."""
    rx = torch.log10(frame_rms(x, frame).clamp_min(floor * 1e-2))
    ry = torch.log10(frame_rms(y, frame).clamp_min(floor * 1e-2))
    mask = (ry > math.log10(floor)).float()
    return ((rx - ry).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1] in float64, 0 Hz to Nyquist, peak 1 (no
    area norm): the one filterbank, for the mel loss here and `evaluation/metrics.mel_distance`."""
    def hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)

    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = 700.0 * (10.0 ** (np.linspace(0.0, float(hz_to_mel(sample_rate / 2.0)), n_mels + 2) / 2595.0) - 1.0)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


@functools.lru_cache(maxsize=16)
def _mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, device: str) -> torch.Tensor:
    return torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)).float().to(device)


def _spectrum(wav: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Complex STFT [B, bins, frames], always in float32: under bf16 autocast too (torch.stft
    takes no bf16, and spectral losses need the precision)."""
    with torch.autocast(wav.device.type, enabled=False):
        wav = wav.float()
        window = torch.hann_window(n_fft, device=wav.device, dtype=wav.dtype)
        return torch.stft(wav.reshape(-1, wav.shape[-1]), n_fft, hop_length=n_fft // 4, window=window,
                          return_complex=True, center=True,
                          pad_mode="reflect" if wav.shape[-1] > n_fft // 2 else "constant")


def _magnitude(wav: torch.Tensor, n_fft: int) -> torch.Tensor:
    return _spectrum(wav, n_fft).abs().clamp_min(1e-7)  # [B, bins, frames]


def log_mel(wav: torch.Tensor, n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    mel = _mel_filterbank(n_fft, n_mels, sample_rate, str(wav.device)) @ _magnitude(wav, n_fft)
    return torch.log(mel.clamp_min(1e-5))


def mel_loss(x: torch.Tensor, y: torch.Tensor, windows: tuple[int, ...], n_mels: int, sample_rate: int) -> torch.Tensor:
    """Multi-resolution log-mel L1, averaged over the windows."""
    total = x.new_zeros(())
    for n_fft in windows:
        total = total + F.l1_loss(log_mel(x, n_fft, n_mels, sample_rate), log_mel(y, n_fft, n_mels, sample_rate))
    return total / len(windows)


def stft_loss(x: torch.Tensor, y: torch.Tensor, windows: tuple[int, ...]) -> torch.Tensor:
    """Multi-resolution spectral convergence + log-magnitude L1.

    Spectral convergence is a ratio of norms over the whole batch, not per item: per item, a
    silent crop divides by ~0 and spikes the loss into the thousands.
    """
    total = x.new_zeros(())
    for n_fft in windows:
        mx, my = _magnitude(x, n_fft), _magnitude(y, n_fft)
        sc = torch.linalg.vector_norm(my - mx) / torch.linalg.vector_norm(my).clamp_min(1e-5)
        total = total + sc + F.l1_loss(torch.log(mx), torch.log(my))
    return total / len(windows)


def complex_stft_loss(x: torch.Tensor, y: torch.Tensor, windows: tuple[int, ...], power: float = 0.3) -> torch.Tensor:
    """Power-law compressed complex spectral MSE (speech enhancement's phase-aware loss, Braun &
    Tashev 2021): 0.7 * |X^c - Y^c|^2 + 0.3 * (|X|^c - |Y|^c)^2 with X^c = |X|^c e^{i angle X}.

    Magnitude losses (mel, STFT) leave the phase free; waveform L1/MSE constrain it but are
    dominated by the few loud low-frequency bins. Compressing magnitudes to the power 0.3 gives
    quiet bins (upper harmonics, consonants) a say in the phase, which is what PESQ listens to.
    """
    total = x.new_zeros(())
    for n_fft in windows:
        sx, sy = _spectrum(x, n_fft), _spectrum(y, n_fft)
        mx, my = sx.abs().clamp_min(1e-5), sy.abs().clamp_min(1e-5)
        cx, cy = mx.pow(power), my.pow(power)
        complex_term = (cx * (sx / mx) - cy * (sy / my)).abs().pow(2).mean()
        total = total + 0.7 * complex_term + 0.3 * F.mse_loss(cx, cy)
    return total / len(windows)


def _anti_wrap(d: torch.Tensor) -> torch.Tensor:
    """|d| after wrapping d into [-pi, pi): the distance between two angles."""
    return torch.abs(d - 2 * math.pi * torch.round(d / (2 * math.pi)))


def phase_loss(x: torch.Tensor, y: torch.Tensor, windows: tuple[int, ...]) -> torch.Tensor:
    """APNet/APCodec's anti-wrapping phase losses on re-analysed spectra: instantaneous phase,
    group delay (phase difference across frequency) and instantaneous frequency (across time),
    each weighted by the target's compressed magnitude so bins holding only noise, whose phase
    is unpredictable, do not steer the decoder."""
    total = x.new_zeros(())
    for n_fft in windows:
        sx, sy = _spectrum(x, n_fft), _spectrum(y, n_fft)
        px, py = torch.angle(sx + 1e-9), torch.angle(sy)
        w = sy.abs().pow(0.3).detach()
        w = w / w.sum().clamp_min(1e-9)
        ip = (_anti_wrap(px - py) * w).sum()
        gd = (_anti_wrap(torch.diff(px, dim=1) - torch.diff(py, dim=1)) * w[:, 1:]).sum()
        iaf = (_anti_wrap(torch.diff(px, dim=2) - torch.diff(py, dim=2)) * w[:, :, 1:]).sum()
        total = total + ip + gd + iaf
    return total / len(windows)


# ---- adversarial (hifi-gan style free functions over lists of discriminator outputs) ----------

def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    total = real[0].new_zeros(())
    for r, f in zip(real, fake):
        if kind == "hinge":
            total = total + F.relu(1 - r).mean() + F.relu(1 + f).mean()
        else:
            total = total + (r - 1).pow(2).mean() + f.pow(2).mean()
    return total / len(real)


def generator_adversarial_loss(fake: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    total = fake[0].new_zeros(())
    for f in fake:
        total = total + (F.relu(1 - f).mean() if kind == "hinge" else (f - 1).pow(2).mean())
    return total / len(fake)


def feature_matching_loss(real_feats: list[list[torch.Tensor]], fake_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean relative L1 between discriminator feature maps of real and generated audio."""
    total, count = None, 0
    for rs, fs in zip(real_feats, fake_feats):
        for r, f in zip(rs, fs):
            term = F.l1_loss(f, r.detach()) / r.detach().abs().mean().clamp_min(1e-5)
            total = term if total is None else total + term
            count += 1
    return total / max(count, 1)
