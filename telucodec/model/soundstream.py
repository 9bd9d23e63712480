"""The SoundStream encoder and decoder of Lyra v2 (google/lyra, Apache-2.0), as PyTorch modules.

Lyra ships them as streaming TFLite graphs (`soundstream_encoder.tflite`, `lyragan.tflite`); this
is the same network written offline: every conv is causal (left padding of dilation*(k-1) -
(stride-1), exactly the context those graphs keep in their state variables), every transposed
conv drops its last k - stride outputs (the overlap the graphs carry into the next call), so
frame f depends on nothing after it and `model/streaming.py` streams it exactly.

    encoder: conv(1->C, k=4s, stride s) | per stage: 3 units, LeakyReLU, conv(c->2c, k=2s, stride s)
             | LeakyReLU, conv(8C->D, k=3, groups 4)            strides (16, 5, 2, 2): hop 320
    decoder: conv(D->8C, k=3, groups 4), LeakyReLU | per stage: transposed conv(c->c/2, k=2s,
             stride s), 3 units, LeakyReLU | transposed conv(C->1, k=4s, stride s); no tanh
    unit:    x + pw2(lrelu(pw1(dw(lrelu(x)))))  dw: depthwise k=3, dilation 1/3/9;
             pw1: 1x1; pw2: 1x1 in groups of C channels (Lyra's "bconv")

The widths come from `ModelConfig.channels` (C = 64) and `latent_dim` (D = 64), the strides from
`ratios` (16, 5, 2, 2): with those values this is Lyra v2 exactly, and `model/lyra_import.py`
fills it from the graphs. LeakyReLU's slope (0.3) and the unit dilations are Lyra's constants.
"""

from __future__ import annotations

import torch
from torch import nn

from telucodec.config import ModelConfig
from telucodec.model.layers import PaddedConv1d, PaddedConvTranspose1d, Residual, stack_frames

SLOPE = 0.3                 # LeakyReLU alpha in every Lyra graph
DILATIONS = (1, 3, 9)       # the three residual units of each stage
BOTTLENECK_GROUPS = 4       # groups of the latent-side convs (k = 3)


def _act() -> nn.Module:
    return nn.LeakyReLU(SLOPE)


def _conv(in_ch: int, out_ch: int, k: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> PaddedConv1d:
    return PaddedConv1d(in_ch, out_ch, k, stride=stride, dilation=dilation, causal=True, norm=False, groups=groups)


class SoundStreamUnit(Residual):
    """x + pw2(lrelu(pw1(dw(lrelu(x))))): a depthwise-separable residual unit."""

    def __init__(self, dim: int, dilation: int, group_width: int):
        super().__init__()
        self.block = nn.Sequential(
            _act(), _conv(dim, dim, 3, dilation=dilation, groups=dim), _conv(dim, dim, 1),
            _act(), _conv(dim, dim, 1, groups=dim // group_width),
        )


def _units(dim: int, group_width: int) -> list[nn.Module]:
    return [SoundStreamUnit(dim, d, group_width) for d in DILATIONS]


def ported_layers(module: nn.Module) -> list[nn.Module]:
    """The module's Conv1d / ConvTranspose1d layers in forward order (the order the TFLite graph
    runs them, which is how the converter pairs graph weights with modules)."""
    return [m for m in module.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]


class SoundStreamEncoder(nn.Module):
    """wav [B, 1, T] -> latent [B, latent_dim, T / hop]; causal."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch, first, *rest = cfg.channels, *cfg.ratios
        layers: list[nn.Module] = [_conv(1, ch, 4 * first, stride=first)]
        for ratio in rest:
            layers += _units(ch, cfg.channels)
            layers += [_act(), _conv(ch, 2 * ch, 2 * ratio, stride=ratio, groups=ch // cfg.channels)]
            ch *= 2
        layers += [_act(), _conv(ch, cfg.latent_dim, 3, groups=BOTTLENECK_GROUPS)]
        self.net = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.net(wav)

    def stream_layers(self) -> list[nn.Module]:
        return list(self.net)


class SoundStreamDecoder(nn.Module):
    """latent [B, D, F] -> wav [B, 1, F * hop]; causal, unbounded output (no tanh, no scale)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.channels * 2 ** len(cfg.ratios[1:])
        layers: list[nn.Module] = [_conv(cfg.latent_dim, ch, 3, groups=BOTTLENECK_GROUPS), _act()]
        for ratio in reversed(cfg.ratios[1:]):
            layers.append(PaddedConvTranspose1d(ch, ch // 2, 2 * ratio, ratio, causal=True, norm=False,
                                                groups=max(1, ch // (2 * cfg.channels))))
            ch //= 2
            layers += _units(ch, cfg.channels) + [_act()]
        self.net = nn.Sequential(*layers)
        self.output = PaddedConvTranspose1d(ch, 1, 4 * cfg.ratios[0], cfg.ratios[0], causal=True, norm=False)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.output(self.net(latent))

    def stream_layers(self) -> list[nn.Module]:
        return list(self.net) + [self.output]

    def stream_frames(self) -> tuple[int, int]:
        return stack_frames(self.stream_layers())
