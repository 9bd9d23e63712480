"""A frame-rate decoder ending in an inverse STFT (the Vocos / WavTokenizer idea).

All the network's work happens at 50 frames/s instead of 16,000 samples/s, so a step costs a
fraction of the waveform decoder's. The head predicts log-magnitude and phase per frame; the
inverse STFT is written as matrix products and a transposed convolution (overlap-add), which
exports to ONNX and streams. Shapes: latent [B, D, F] -> wav [B, 1, F * hop].
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from telucodec.config import ModelConfig
from telucodec.errors import ModelError
from telucodec.model.layers import PaddedConv1d, receptive_extent
from telucodec.model.stream_steps import ChainStep, State, is_portable, streamer


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, causal: bool):
        super().__init__()
        self.dwconv = PaddedConv1d(dim, dim, 7, causal=causal, norm=False, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 3 * dim)
        self.pw2 = nn.Linear(3 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)

    def streamer(self) -> _ConvNeXtStep:
        return _ConvNeXtStep(self)


class _ConvNeXtStep:
    """A ConvNeXt block streaming: its depthwise conv carries its past; the rest acts per frame."""

    delay = 0

    def __init__(self, block: ConvNeXtBlock):
        self.block, self.dwconv = block, block.dwconv.streamer()
        self.n_state = self.dwconv.n_state

    def init(self, device: torch.device | str) -> State:
        return self.dwconv.init(device)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        b = self.block
        y, state = self.dwconv.step(x, state)  # [C, n]
        y = b.pw2(F.gelu(b.pw1(b.norm(y.transpose(-1, -2)))))
        return x + (b.gamma * y).transpose(-1, -2), state

    def flush(self, state: State) -> None:
        return None


def start_new_blocks_as_identity(model: nn.Module, fresh: list[str]) -> list[str]:
    """Zero the layer scale of every ConvNeXt block none of whose tensors a warm start loaded
    (`fresh`: the names it left as initialised); returns those blocks' names.

    Such a block then adds nothing, so a deeper model warm-started from a shallower one (new
    blocks appended) starts exactly where that one was and grows from there (ReZero, Net2Net);
    `gamma` still gets a gradient, so the block learns from the first step."""
    fresh_set, zeroed = set(fresh), []
    for name, module in model.named_modules():
        if isinstance(module, ConvNeXtBlock) and all(f"{name}.{k}" in fresh_set for k in module.state_dict()):
            with torch.no_grad():
                module.gamma.zero_()
            zeroed.append(name)
    return zeroed


class InverseSTFT(nn.Module):
    """iSTFT with a Hann window, hop `hop`, size `n_fft`; output length exactly F * hop.

    Frame f is centred on sample f * hop + hop / 2 (so frames line up with the encoder's
    frames), and the overlap-add is normalised by the summed squared window.
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(bins, dtype=torch.float64)
        angle = 2 * math.pi * n[:, None] * k[None, :] / n_fft
        scale = torch.full((bins,), 2.0, dtype=torch.float64)
        scale[0] = 1.0
        if n_fft % 2 == 0:
            scale[-1] = 1.0
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        # frames = window * irfft(spec): [n_fft, bins] bases for the real and imaginary parts.
        # Constants, rebuilt here: not in state_dict(), so not in model folders nor the model id
        # (older folders hold them; codec.py keeps those folders' ids as they were)
        self.register_buffer("cos_basis", (window[:, None] * torch.cos(angle) * scale / n_fft).float(), persistent=False)
        self.register_buffer("sin_basis", (-window[:, None] * torch.sin(angle) * scale / n_fft).float(), persistent=False)
        self.register_buffer("window_sq", (window ** 2).float().view(1, n_fft, 1), persistent=False)
        self.register_buffer("window", window.float().view(1, n_fft, 1), persistent=False)

    def frames(self, real: torch.Tensor, imag: torch.Tensor, by_fft: bool = True) -> torch.Tensor:
        """Windowed inverse-DFT frames: real, imag [B, bins, F] -> [B, n_fft, F].

        `by_fft` False computes the same numbers as two matmuls with the stored DFT bases, the form
        ONNX graphs get; FFT costs O(n log n) instead of n_fft x bins per frame.
        """
        if by_fft:
            return torch.fft.irfft(torch.complex(real, imag), n=self.n_fft, dim=1) * self.window
        return (torch.einsum("nk,bkf->bnf", self.cos_basis, real)
                + torch.einsum("nk,bkf->bnf", self.sin_basis, imag))

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        with torch.autocast(real.device.type, enabled=False):  # float32 under bf16 autocast too
            return self._synthesis(real.float(), imag.float())

    def _synthesis(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        frames = self.frames(real, imag, by_fft=not torch.onnx.is_in_onnx_export())
        num_frames = frames.shape[-1]
        wav = self._overlap_add(frames)  # [B, 1, (F-1)*hop + n_fft]
        env = self._overlap_add(self.window_sq.expand(1, self.n_fft, num_frames))
        start = (self.n_fft - self.hop) // 2
        end = start + num_frames * self.hop
        return wav[..., start:end] / env[..., start:end].clamp_min(1e-3)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        length = (frames.shape[-1] - 1) * self.hop + self.n_fft
        out = F.fold(frames, output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop))
        return out.view(frames.shape[0], 1, length)


class SpectralDecoder(nn.Module):
    """latent [B, D, F] -> ConvNeXt blocks at the frame rate -> (log-magnitude, phase) -> iSTFT.

    With `spectral_upsample` U > 1 the frame-rate features are upsampled U times (a transposed
    conv) and refined by `spectral_fine_layers` narrower blocks at U x the frame rate: the tokens
    stay at the frame rate, the synthesis frames get shorter. `spectral_fine_mode` "replace" ends
    in one iSTFT of hop `hop / U` and size `spectral_n_fft`; "residual" keeps the frame-rate head
    and adds the fine path's correction through an iSTFT of hop `hop / U` and size 4 x that.
    Why try it: the 1280/320 head must predict 641 magnitudes and phases per 20 ms whose four
    overlapping 80 ms windows agree, and on telugu-v2 both are wrong at that geometry (its own
    magnitude with the true phase: PESQ 2.05; the true magnitude with its phase: 1.82). Whether
    shorter frames help is measured, not assumed (docs/training-log.md, session 4): a magnitude
    alone pins the waveform less at 320/80 than at 1280/320 (Griffin-Lim PESQ 3.11 vs 3.52).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.decoder_hidden
        self.input = PaddedConv1d(cfg.latent_dim, dim, 7, causal=cfg.causal)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim, cfg.causal) for _ in range(cfg.spectral_layers)])
        up, mode = cfg.spectral_upsample, cfg.spectral_fine_mode
        if up < 1 or cfg.hop_length % up:
            raise ModelError(f"spectral_upsample {up}: must be a positive divisor of the hop ({cfg.hop_length})")
        if mode not in ("replace", "residual"):
            raise ModelError(f"spectral_fine_mode {mode!r}: expected 'replace' or 'residual'")
        if up > 1 and cfg.causal:
            raise ModelError("spectral_upsample > 1 does not stream yet: use it with causal: false")
        self.up, self.residual = up, up > 1 and mode == "residual"
        self.bins = cfg.spectral_n_fft // 2 + 1
        if up > 1:
            fine, fine_hop = cfg.spectral_fine_hidden, cfg.hop_length // up
            self.upsample = nn.ConvTranspose1d(dim, fine, 2 * up, stride=up, padding=up // 2)
            self.fine_blocks = nn.Sequential(*[ConvNeXtBlock(fine, cfg.causal) for _ in range(cfg.spectral_fine_layers)])
        if self.residual:
            # the frame-rate path stays as it is; the fine path adds a correction in a 4 x hop iSTFT,
            # predicted as real/imaginary parts from a zero-initialised layer: it starts at exactly
            # zero, so a model warm-started from a plain spectral decoder starts where that one was
            self.fine_norm = nn.LayerNorm(fine)
            self.fine_bins = 2 * fine_hop + 1
            self.fine_head = nn.Linear(fine, 2 * self.fine_bins)
            nn.init.zeros_(self.fine_head.weight)
            nn.init.zeros_(self.fine_head.bias)
            self.fine_istft = InverseSTFT(4 * fine_hop, fine_hop)
            # A fixed gain, not a parameter (nothing here learns the output level). Adam moves every
            # weight by about lr per step whatever the size of its gradient, so a zero-initialised
            # head at gain 1 and lr 4e-4 added noise as loud as the speech within 100 steps (training
            # loss 3.19 -> 3.60 from telugu-v2); at 0.01 it barely moved in 30 CPU minutes.
            self.fine_gain = cfg.spectral_fine_gain
        elif up > 1:
            dim = fine
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 2 * self.bins)
        self.istft = InverseSTFT(cfg.spectral_n_fft, cfg.hop_length // (1 if self.residual else up))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x, fine = self._head_input(latent)
        wav = self._synthesise(self.head(self.norm(x.transpose(1, 2))).transpose(1, 2))
        if self.residual:
            y = self.fine_head(self.fine_norm(fine.transpose(1, 2))).transpose(1, 2)  # [B, 2*fine_bins, F*up]
            wav = wav + self.fine_gain * self.fine_istft(y[:, : self.fine_bins], y[:, self.fine_bins:])
        return wav

    def _head_input(self, latent: torch.Tensor, need_fine: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(what `self.head` reads, the fine path's features [B, fine, F * up] or None)."""
        x = self.blocks(self.input(latent))
        if self.up == 1 or (self.residual and not need_fine):
            return x, None
        fine = self.fine_blocks(self.upsample(x)[..., : latent.shape[-1] * self.up])
        return (x, fine) if self.residual else (fine, fine)

    def _synthesise(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 2*bins, frames] (log-magnitude, phase) -> wav [B, 1, frames * hop], in float32
        under bf16 autocast too (exp and the polar form need the range and precision)."""
        with torch.autocast(x.device.type, enabled=False):
            mag, phase = self._polar(x.float())
            return self.istft(mag * torch.cos(phase), mag * torch.sin(phase))

    def _polar(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.exp(x[:, : self.bins].clamp(max=6.0)), x[:, self.bins:]

    def streamer(self) -> ChainStep:
        """The decoder as streaming steps: the convs carry their past, the head acts per frame and
        the inverse STFT carries its overlap, delaying its output by (n_fft - hop) / 2 samples."""
        if self.up > 1:
            raise ModelError("spectral_upsample > 1 does not stream yet: use it with causal: false")
        return ChainStep([streamer(self.input), *[streamer(b) for b in self.blocks], _SpectralHeadStep(self)])

    def stream_frames(self) -> tuple[int, int]:
        """(context, lookahead) frames for streaming: the iSTFT overlaps later frames, so a frame
        is final only `lookahead` frames later."""
        extent, _ = receptive_extent([self.input] + [b.dwconv for b in self.blocks], 1.0)
        istft = self.istft
        start = (istft.n_fft - istft.hop) // 2  # frame g's window covers [g*hop - start, g*hop - start + n_fft)
        behind = math.ceil((istft.n_fft - start) / istft.hop) - 1
        ahead = math.ceil(start / istft.hop)
        return math.ceil(extent) + behind, ahead

    def head_spectrum(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the head asks `self.istft` to synthesise, as (magnitude, phase) [B, bins, frames]
        (for the bottleneck report; the residual mode's fine correction is not included)."""
        x, _ = self._head_input(latent, need_fine=False)
        return self._polar(self.head(self.norm(x.transpose(1, 2))).transpose(1, 2))


class _SpectralHeadStep:
    """Head + inverse STFT, streaming: x [dim, n] -> [1, n * hop], the samples of the overlap-add
    that are final, with the summed squared window alongside (state [2, n_fft - hop]: both tails;
    with a leading batch dimension of 1, as an export traces it, x, output and state all have it).
    Offline output sample i is overlap-add sample i + `delay`, so the first `delay` samples the
    stream makes are none of its output, and `flush` gives the last `delay` ones."""

    n_state = 1

    def __init__(self, decoder: SpectralDecoder):
        self.decoder, istft = decoder, decoder.istft
        self.n_fft, self.hop = istft.n_fft, istft.hop
        self.delay = (self.n_fft - self.hop) // 2
        self.overlap = self.n_fft - self.hop
        self.by_fft = not is_portable()  # a graph gets the DFT-basis matmuls

    def init(self, device: torch.device | str) -> State:
        return [torch.zeros(2, self.overlap, device=device)]

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        d, istft = self.decoder, self.decoder.istft
        with torch.autocast(x.device.type, enabled=False):
            lead = x.shape[:-2]  # () or (1,)
            spec = d.head(d.norm(x.transpose(-1, -2))).transpose(-1, -2).float().reshape(1, -1, x.shape[-1])
            mag, phase = d._polar(spec)
            frames = istft.frames(mag * torch.cos(phase), mag * torch.sin(phase), by_fft=self.by_fft)
            n = frames.shape[-1]
            both = torch.cat([frames, istft.window_sq.expand(1, self.n_fft, n)], dim=1)  # [1, 2 n_fft, n]
            length = (n - 1) * self.hop + self.n_fft
            ola = F.fold(both, output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop))
            ola = ola.reshape(*lead, 2, length)
            ola = torch.cat([ola[..., : self.overlap] + state[0], ola[..., self.overlap:]], dim=-1)
            done = ola[..., : n * self.hop]
            return done[..., :1, :] / done[..., 1:, :].clamp_min(1e-3), [ola[..., n * self.hop:]]

    def flush(self, state: State) -> torch.Tensor:
        tail = state[0][..., : self.delay]
        return tail[..., :1, :] / tail[..., 1:, :].clamp_min(1e-3)
