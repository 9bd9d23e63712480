"""A frame-rate encoder that reads the complex STFT instead of the waveform (the ESC / APCodec idea).

Why: the SEANet encoder runs its first layers at 16,000 samples/s and took ~40 % of a training
step with 18 % of the parameters (issue 13). This one does one analysis (a strided conv with a
fixed DFT basis: exports to ONNX, no torch.stft), power-law compresses the spectrum, and does all
its learned work at the 50 Hz frame rate. An STFT whose window overlaps its hop is invertible, so
no information is lost before the first learned layer.

Shapes: wav [B, 1, T], T a multiple of the hop -> latent [B, latent_dim, T / hop]. Frame f is
centred on sample f * hop + hop / 2, like the spectral decoder's synthesis frames.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from telucodec.config import ModelConfig
from telucodec.errors import ModelError
from telucodec.model.layers import PaddedConv1d
from telucodec.model.spectral import ConvNeXtBlock

COMPRESSION = 0.3  # |X| ** 0.3 with the phase kept: the compressed complex spectrum of speech enhancement


class STFTEncoder(nn.Module):
    """wav -> compressed real/imaginary STFT [B, 2 * bins, F] -> ConvNeXt blocks -> latent."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n_fft, hop = cfg.encoder_n_fft, cfg.hop_length
        if n_fft < hop or (n_fft - hop) % 2:
            raise ModelError(f"encoder_n_fft {n_fft}: must be at least the hop ({hop}) and differ from it by an even number")
        self.hop, self.n_fft = hop, n_fft
        self.left_pad = n_fft - hop if cfg.causal else (n_fft - hop) // 2
        self.bins = n_fft // 2 + 1
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(self.bins, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / n_fft
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        basis = torch.cat([window * torch.cos(angle), -window * torch.sin(angle)]) / math.sqrt(n_fft)
        self.register_buffer("basis", basis.float().unsqueeze(1))  # [2 * bins, 1, n_fft]
        dim = cfg.encoder_hidden
        self.input = PaddedConv1d(2 * self.bins, dim, 3, causal=cfg.causal)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim, cfg.causal) for _ in range(cfg.encoder_layers)])
        self.norm = nn.LayerNorm(dim)
        self.output = nn.Linear(dim, cfg.latent_dim)

    def spectrum(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, T] -> compressed (real, imaginary) [B, 2 * bins, T / hop]."""
        x = F.pad(wav, (self.left_pad, self.n_fft - self.hop - self.left_pad))
        spec = F.conv1d(x, self.basis, stride=self.hop)
        real, imag = spec[:, : self.bins], spec[:, self.bins:]
        # clamp, not "+ eps": the ONNX exporter drops an added 1e-12 and silence then gives inf * 0
        scale = (real * real + imag * imag).clamp_min(1e-12) ** ((COMPRESSION - 1.0) / 2)  # |X| ** (c - 1)
        return torch.cat([real * scale, imag * scale], dim=1)

    def stream_layers(self) -> None:
        """No conv stack to measure: the STFT reads whole windows, so this encoder does not stream."""
        return None

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.input(self.spectrum(wav)))
        return self.output(self.norm(x.transpose(1, 2))).transpose(1, 2)
