"""SEANet-style convolutional encoder and waveform decoder (as in EnCodec), plus the conv
building blocks shared with the spectral decoder.

Shapes: wav [B, 1, T] with T a multiple of the hop (the codec pads); latent [B, D, F], F = T / hop.
Every conv pads explicitly: symmetric ("same") by default, all on the left when `causal`, so the
causal model can be streamed later with exactly the offline result.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from telucodec.config import ModelConfig


class PaddedConv1d(nn.Module):
    """Conv1d with explicit padding so that output frames = ceil(input / stride) exactly."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 causal: bool = False, norm: bool = True, groups: int = 1):
        super().__init__()
        self.total_pad = dilation * (kernel_size - 1) - (stride - 1)
        self.left_pad = self.total_pad if causal else self.total_pad // 2
        # The symmetric part of the zero padding is the conv's own (no copy of the input: F.pad
        # was ~16 % of a SEANet encoder's time); only what is left over is padded explicitly.
        inner = min(self.left_pad, self.total_pad - self.left_pad)
        self.extra_pad = (self.left_pad - inner, self.total_pad - self.left_pad - inner)
        conv = nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, dilation=dilation, groups=groups, padding=inner)
        self.conv = weight_norm(conv) if norm else conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.extra_pad):
            x = F.pad(x, self.extra_pad)
        return self.conv(x)


class PaddedConvTranspose1d(nn.Module):
    """ConvTranspose1d whose output is exactly `stride` times longer than its input."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, causal: bool = False):
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(in_ch, out_ch, kernel_size, stride=stride))
        self.trim = kernel_size - stride
        self.left_trim = 0 if causal else self.trim // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[..., self.left_trim: y.shape[-1] - (self.trim - self.left_trim)]


class ResidualUnit(nn.Module):
    """x + conv1(elu(conv3(elu(x)))). Every ELU in this file that reads a fresh conv or residual
    output works in place (one 16 kHz activation fewer to allocate per layer, ~10 % of an encode);
    the first one here reads x, which the skip connection still needs, so it does not."""

    def __init__(self, dim: int, dilation: int, causal: bool):
        super().__init__()
        self.block = nn.Sequential(
            nn.ELU(), PaddedConv1d(dim, dim // 2, 3, dilation=dilation, causal=causal),
            nn.ELU(inplace=True), PaddedConv1d(dim // 2, dim, 1, causal=causal),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class BottleneckLSTM(nn.Module):
    """Two-layer LSTM with a skip connection, at the frame rate (EnCodec's SLSTM)."""

    def __init__(self, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x.permute(2, 0, 1))
        return x + y.permute(1, 2, 0)


def _residual_stack(dim: int, layers: int, causal: bool) -> list[nn.Module]:
    return [ResidualUnit(dim, 3 ** i, causal) for i in range(layers)]


class SEANetEncoder(nn.Module):
    """wav [B, 1, T] -> latent [B, latent_dim, T / hop]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.channels
        layers: list[nn.Module] = [PaddedConv1d(1, ch, 7, causal=cfg.causal)]
        for ratio in reversed(cfg.ratios):
            layers += _residual_stack(ch, cfg.residual_layers, cfg.causal)
            layers += [nn.ELU(inplace=True), PaddedConv1d(ch, ch * 2, 2 * ratio, stride=ratio, causal=cfg.causal)]
            ch *= 2
        if cfg.lstm:
            layers.append(BottleneckLSTM(ch))
        layers += [nn.ELU(inplace=True), PaddedConv1d(ch, cfg.latent_dim, 7, causal=cfg.causal)]
        self.net = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.net(wav)


class SEANetDecoder(nn.Module):
    """latent [B, D, F] -> wav [B, 1, F * hop].

    The last layer is a plain Conv1d(k=7, pad=3): no tanh and no learnable output scale, so
    nothing can fight the conv weights over the output amplitude (the seed's failure).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.decoder_hidden
        layers: list[nn.Module] = [PaddedConv1d(cfg.latent_dim, ch, 7, causal=cfg.causal)]
        if cfg.lstm:
            layers.append(BottleneckLSTM(ch))
        for ratio in cfg.ratios:
            out_ch = max(ch // 2, 1)
            layers += [nn.ELU(inplace=True), PaddedConvTranspose1d(ch, out_ch, 2 * ratio, ratio, causal=cfg.causal)]
            layers += _residual_stack(out_ch, cfg.residual_layers, cfg.causal)
            ch = out_ch
        layers.append(nn.ELU(inplace=True))
        self.net = nn.Sequential(*layers)
        # The seed's output layer, verbatim in the non-causal case: Conv1d(k=7, pad=3).
        self.output = (PaddedConv1d(ch, 1, 7, causal=True, norm=False) if cfg.causal
                       else nn.Conv1d(ch, 1, kernel_size=7, padding=3))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.output(self.net(latent))
