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

Under `precision: bf16` the forward runs in `autocast` (CUDA, or the CPU for tests), the
teacher's (`train.target: teacher`) as the student's; the reconstruction terms are computed in
float32 with autocast off (spectra need the precision and torch.stft takes no bf16), as are the
quantizer and the inverse STFT inside the model.
"""

from __future__ import annotations

import copy

import torch

from telucodec import losses as L
from telucodec.config import CodecConfig
from telucodec.model.codec import Codec, CodecOutput
from telucodec.train.balancer import Balancer
from telucodec.train.discriminators import Discriminators

# Terms that are functions of the decoded waveform: the ones the balancer can balance.
WAVEFORM_TERMS = ("mse", "rms", "log_rms", "l1", "mel", "stft", "complex_stft", "phase", "adversarial",
                  "feature_matching")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The training forward's autocast: bf16 on CUDA and on the CPU alike (the CPU is slower at it
    but runs the same code path, so it is tested there); off for "fp32"."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def reconstruction_losses(out: CodecOutput, target: torch.Tensor, cfg: CodecConfig) -> dict[str, torch.Tensor]:
    """Every weighted reconstruction term by name (weight 0 = not computed), in float32."""
    with torch.autocast(target.device.type, enabled=False):
        return _reconstruction_losses(out, out.wav.float(), target.float(), cfg)


def _reconstruction_losses(out: CodecOutput, y: torch.Tensor, target: torch.Tensor,
                           cfg: CodecConfig) -> dict[str, torch.Tensor]:
    lc, sr = cfg.loss, cfg.model.sample_rate
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
    with torch.autocast(real.device.type, enabled=False):  # float32 sums of bf16 feature maps
        return {"adversarial": L.generator_adversarial_loss(_floats(logits_fake), cfg.loss.gan_loss),
                "feature_matching": L.feature_matching_loss([_floats(f) for f in feats_real],
                                                            [_floats(f) for f in feats_fake])}


def discriminator_loss(discs: Discriminators, fake: torch.Tensor, real: torch.Tensor,
                       cfg: CodecConfig) -> torch.Tensor:
    """The discriminators' own loss on real audio and detached decoded audio [B, 1, T], in one
    forward of both (under DDP a module runs one forward per backward)."""
    b = real.shape[0]
    logits, _ = discs(torch.cat([real, fake.detach().to(real.dtype)]))
    with torch.autocast(real.device.type, enabled=False):
        return L.discriminator_loss(_floats([x[:b] for x in logits]), _floats([x[b:] for x in logits]), cfg.loss.gan_loss)


def _floats(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.float() for t in tensors]


def weighted_total(terms: dict[str, torch.Tensor], cfg: CodecConfig) -> torch.Tensor:
    """Sum of `LossConfig` weight x term over the named terms."""
    return sum(getattr(cfg.loss, name) * value for name, value in terms.items())


def reconstruction_total(out: CodecOutput, target: torch.Tensor, cfg: CodecConfig) -> torch.Tensor:
    """The weighted sum of the reconstruction terms: the validation loss and the overfit check's objective."""
    return weighted_total(reconstruction_losses(out, target, cfg), cfg)


def parameters_may_go_unused(cfg: CodecConfig) -> bool:
    """Whether a training step can leave a generator parameter without a gradient, which DDP must
    be told (`find_unused_parameters`), else the next step fails with "Expected to have finished
    reduction": quantizer stages with parameters of their own (codebooks learned by loss, the
    factorized stages' projections) that per-batch quantizer dropout skips, and the factorized
    out-projections while `quantizer_warmup_steps` decodes the unquantized latent."""
    q = cfg.quantizer
    stage_parameters = q.update in ("loss", "decoder") or q.codebook_dim > 0
    skips_stages = q.quantizer_dropout and q.dropout_fraction <= 0
    bypassed = q.codebook_dim > 0 and cfg.train.quantizer_warmup_steps > 0
    return (stage_parameters and skips_stages) or bypassed


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


def frozen_teacher(model: Codec, state: dict[str, torch.Tensor] | None = None) -> Codec:
    """A frozen copy of `model` (or of `state`, a teacher saved in a checkpoint), for
    `train.target: teacher`: reconstruction losses then compare with what this copy decodes from
    the *unquantized* latent. Fine-tuning a decoder trained with discriminators (Lyra's) against
    the input audio with mel/STFT/MSE losses blurs it (its phase is its own, not the input's);
    against its own unquantized output, the target has that same phase and detail, and the decoder
    learns only to undo the quantizer (docs/training-log.md, session 11)."""
    teacher = copy.deepcopy(model)
    if state is not None:
        teacher.load_state_dict(state)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def teacher_target(teacher: Codec, batch: torch.Tensor) -> torch.Tensor:
    """The teacher's decode of its unquantized latent for `batch` [B, 1, T], as float32.

    It runs under the caller's autocast, in the student's precision: a float32 teacher beside a
    bf16 student made the early loss mostly bf16 rounding (a student identical to its teacher
    started far from zero), which the student then spent its first steps chasing."""
    return teacher(batch, quantize=False).wav.float()
