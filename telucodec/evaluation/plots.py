"""Spectrogram images for training samples and the listening report (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def log_spectrogram(wav: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """[bins, frames] log-magnitude in dB (numpy only, for plotting)."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size < n_fft:
        wav = np.pad(wav, (0, n_fft - wav.size))
    window = np.hanning(n_fft).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(wav, n_fft)[::hop] * window
    mag = np.abs(np.fft.rfft(frames, axis=1)).T
    return 20 * np.log10(np.maximum(mag, 1e-6))


def save_spectrograms(path: str | Path, signals: dict[str, np.ndarray], sample_rate: int = 16000,
                      vmax: float | None = None) -> Path:
    """One row per named signal, shared colour scale (top at `vmax` dB if given, else at the
    loudest bin), written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = {name: log_spectrogram(wav) for name, wav in signals.items()}
    if vmax is None:
        vmax = max(float(s.max()) for s in specs.values())
    fig, axes = plt.subplots(len(specs), 1, figsize=(8, 2.2 * len(specs)), squeeze=False)
    for ax, (name, spec) in zip(axes[:, 0], specs.items()):
        duration = spec.shape[1] * 128 / sample_rate
        ax.imshow(spec, origin="lower", aspect="auto", vmin=vmax - 80, vmax=vmax, cmap="magma",
                  extent=(0, duration, 0, sample_rate / 2000))
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)
