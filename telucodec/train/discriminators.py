"""Multi-period (HiFi-GAN) and multi-scale STFT (EnCodec) discriminators.

Each returns (logits list, feature-map lists) so the losses in `losses.py` stay free functions.
Discriminators live only in training checkpoints, never in a shipped model. Under DDP they are
wrapped like the generator and built from the same seed on every rank (train/loop.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm


def _conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv layers then a 1-channel output conv -> (flattened logits, every feature map)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: int = 16):
        super().__init__()
        self.period = period
        chs = [1, channels, channels * 4, channels * 16, channels * 32]
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(chs[i], chs[i + 1], (5, 1), (3, 1), padding=(2, 0))) for i in range(4)
        ])
        self.convs.append(weight_norm(nn.Conv2d(chs[-1], chs[-1], (5, 1), 1, padding=(2, 0))))
        self.post = weight_norm(nn.Conv2d(chs[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = wav.shape
        x = F.pad(wav, (0, (-t) % self.period), mode="reflect" if t > self.period else "constant")
        x = x.view(b, c, -1, self.period)
        return _conv_stack(self.convs, self.post, x)


class STFTDiscriminator(nn.Module):
    def __init__(self, n_fft: int, channels: int = 16):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4), dilation=(1, 1))),
            weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(2, 4), dilation=(2, 1))),
            weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(4, 4), dilation=(4, 1))),
            weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
        ])
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with torch.autocast(wav.device.type, enabled=False):  # torch.stft takes no bf16: float32 under autocast
            spec = torch.stft(wav.squeeze(1).float(), self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        return _conv_stack(self.convs, self.post, x)


class Discriminators(nn.Module):
    """All discriminators together: wav [B, 1, T] -> (list of logits, list of feature lists)."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), stft_sizes: tuple[int, ...] = (512, 1024, 2048),
                 channels: int = 16):
        super().__init__()
        if not periods and not stft_sizes:
            raise ValueError("discriminators: give at least one period or one STFT size")
        self.discs = nn.ModuleList([PeriodDiscriminator(p, channels) for p in periods]
                                   + [STFTDiscriminator(n, channels * 2) for n in stft_sizes])

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, feats = [], []
        for d in self.discs:
            lo, fe = d(wav)
            logits.append(lo)
            feats.append(fe)
        return logits, feats
