"""SEANet-style convolutional encoder and waveform decoder (as in EnCodec).

Shapes: wav [B, 1, T] with T a multiple of the hop (the codec pads); latent [B, D, F], F = T / hop.
The padded conv blocks live in `model/layers.py` (re-exported here for older imports).
"""

from __future__ import annotations

import torch
from torch import nn

from telucodec.config import ModelConfig
from telucodec.model.layers import PaddedConv1d, PaddedConvTranspose1d, Residual, stack_frames
from telucodec.model.stream_steps import LSTMStep

__all__ = ["PaddedConv1d", "PaddedConvTranspose1d", "Residual", "ResidualUnit", "BottleneckLSTM",
           "SEANetEncoder", "SEANetDecoder"]


class ResidualUnit(Residual):
    """x + conv1(elu(conv3(elu(x)))). Every ELU in this file that reads a fresh conv or residual
    output works in place (one 16 kHz activation fewer to allocate per layer, ~10 % of an encode);
    the first one here reads x, which the skip connection still needs, so it does not."""

    def __init__(self, dim: int, dilation: int, causal: bool):
        super().__init__()
        self.block = nn.Sequential(
            nn.ELU(), PaddedConv1d(dim, dim // 2, 3, dilation=dilation, causal=causal),
            nn.ELU(inplace=True), PaddedConv1d(dim // 2, dim, 1, causal=causal),
        )


class BottleneckLSTM(nn.Module):
    """Two-layer LSTM with a skip connection, at the frame rate (EnCodec's SLSTM)."""

    def __init__(self, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x.permute(2, 0, 1))
        return x + y.permute(1, 2, 0)

    def streamer(self) -> LSTMStep:
        """Streams with its (h, c) carried from push to push, so a stream sees the whole past."""
        return LSTMStep(self.lstm)


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

    def stream_layers(self) -> list[nn.Module]:
        return list(self.net)


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

    def stream_layers(self) -> list[nn.Module]:
        return list(self.net) + [self.output]

    def stream_frames(self) -> tuple[int, int]:
        return stack_frames(self.stream_layers())
