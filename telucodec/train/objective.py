"""The training objective: which loss terms a config asks for, and how they are weighted.

Loss functions are free functions in `telucodec.losses`; their weights live in `LossConfig`.
This module joins the two, and is what the training loop, its validation and the overfit check
all optimize:

    terms = reconstruction_losses(out, target, cfg)          # name -> scalar (weight 0: skipped)
    terms |= adversarial_terms(discriminators, out.wav, target, cfg)   # after adversarial_after
    total = weighted_total(terms, cfg)                         # sum of weight * term
    backward(terms, total, out.wav, cfg, balancer)             # plain, or EnCodec's balancer

With `loss.balancer: true` the terms that are functions of the decoded waveform
(`WAVEFORM_TERMS`) get their weights as shares of the output gradient (`train/balancer.py`);
the quantizer's terms are backpropagated as weighted sums, outside the balance.
"""

from __future__ import annotations

import torch

from telucodec import losses as L
from telucodec.config import CodecConfig
from telucodec.model.codec import CodecOutput
from telucodec.train.balancer import Balancer
from telucodec.train.discriminators import Discriminators

# Terms that are functions of the decoded waveform: the ones the balancer can balance.
WAVEFORM_TERMS = ("mse", "rms", "log_rms", "l1", "mel", "stft", "complex_stft", "phase", "adversarial",
                  "feature_matching")


def reconstruction_losses(out: CodecOutput, target: torch.Tensor, cfg: CodecConfig) -> dict[str, torch.Tensor]:
    """Every weighted reconstruction term by name (weight 0 = not computed)."""
    lc, sr = cfg.loss, cfg.model.sample_rate
    y = out.wav
    terms: dict[str, torch.Tensor] = {}
    if lc.mse:
        terms["mse"] = L.waveform_mse(y, target)
    if lc.rms:
        terms["rms"] = L.rms_loss(y, target, lc.rms_frame)
    if lc.log_rms:
        terms["log_rms"] = L.log_rms_loss(y, target, lc.rms_frame)
    if lc.l1:
        terms["l1"] = L.waveform_l1(y, target)
    if lc.mel:
        terms["mel"] = L.mel_loss(y, target, lc.mel_windows, lc.n_mels, sr)
    if lc.stft:
        terms["stft"] = L.stft_loss(y, target, lc.stft_windows)
    if lc.complex_stft:
        terms["complex_stft"] = L.complex_stft_loss(y, target, lc.phase_windows)
    if lc.phase:
        terms["phase"] = L.phase_loss(y, target, lc.phase_windows)
    terms["commitment"] = out.quantizer.commitment_loss
    if cfg.quantizer.update == "loss":
        terms["codebook"] = out.quantizer.codebook_loss
    return terms


def adversarial_terms(discs: Discriminators, fake: torch.Tensor, real: torch.Tensor,
                      cfg: CodecConfig) -> dict[str, torch.Tensor]:
    """The generator's adversarial and feature-matching terms for decoded `fake` vs `real` [B, 1, T]."""
    logits_fake, feats_fake = discs(fake)
    with torch.no_grad():
        _, feats_real = discs(real)
    return {"adversarial": L.generator_adversarial_loss(logits_fake, cfg.loss.gan_loss),
            "feature_matching": L.feature_matching_loss(feats_real, feats_fake)}


def discriminator_loss(discs: Discriminators, fake: torch.Tensor, real: torch.Tensor,
                       cfg: CodecConfig) -> torch.Tensor:
    """The discriminators' own loss on real audio and detached decoded audio [B, 1, T]."""
    logits_real, _ = discs(real)
    logits_fake, _ = discs(fake.detach())
    return L.discriminator_loss(logits_real, logits_fake, cfg.loss.gan_loss)


def weighted_total(terms: dict[str, torch.Tensor], cfg: CodecConfig) -> torch.Tensor:
    """Sum of `LossConfig` weight x term over the named terms."""
    return sum(getattr(cfg.loss, name) * value for name, value in terms.items())


def reconstruction_total(out: CodecOutput, target: torch.Tensor, cfg: CodecConfig) -> torch.Tensor:
    """The weighted sum of the reconstruction terms: the validation loss and the overfit check's objective."""
    return weighted_total(reconstruction_losses(out, target, cfg), cfg)


def make_balancer(cfg: CodecConfig) -> Balancer | None:
    """EnCodec's balancer over the waveform terms when `loss.balancer` is on, else None."""
    return Balancer({k: getattr(cfg.loss, k) for k in WAVEFORM_TERMS}) if cfg.loss.balancer else None


def backward(terms: dict[str, torch.Tensor], total: torch.Tensor, output: torch.Tensor, cfg: CodecConfig,
             balancer: Balancer | None) -> None:
    """Backpropagate the objective: `total` as it is, or through `balancer` (waveform terms
    balanced with respect to `output`, the rest as their weighted sum)."""
    if balancer is None:
        total.backward()
        return
    balanced = {k: v for k, v in terms.items() if k in WAVEFORM_TERMS}
    rest = {k: v for k, v in terms.items() if k not in WAVEFORM_TERMS}
    balancer.backward(balanced, output, weighted_total(rest, cfg) if rest else None)
