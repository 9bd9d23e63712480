"""Give a trained codec a new encoder by distillation: the student encoder learns to reproduce the
teacher encoder's latent, and takes over the teacher's quantizer and decoder unchanged.

Why: a new encoder trained end to end from a warm-started decoder starts from a latent the
codebooks and decoder have never seen, and a 30-minute trial mostly pays for that (the `fine`
trial of docs/training-log.md, session 4). Regressing the teacher's latent costs one teacher
encoder forward and one student forward/backward per batch, no decoder and no spectral loss, so
the student reaches the teacher's latent space in a few CPU minutes; end-to-end training
(`--init_from` the result) goes on from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch.nn import functional as F

from telucodec.model.codec import Codec, load_matching_state
from telucodec.train.optim import decay_factor, make_optimizer


def take_over(student: Codec, teacher: Codec) -> list[str]:
    """Copy every teacher tensor outside the encoder whose name and shape the student shares (the
    quantizer and decoder); returns the names of the student's tensors left as initialised."""
    shared = {k: v for k, v in teacher.state_dict().items() if not k.startswith("encoder.")}
    return load_matching_state(student, shared, strict=False, source="teacher")


def _relative_error(student: Codec, teacher: Codec, wav: torch.Tensor) -> torch.Tensor:
    """MSE between the student's and the teacher's latent of `wav`, over the teacher latent's variance."""
    with torch.no_grad():
        x, _ = teacher.amplitude.normalize(wav)
        target = teacher.encoder(x)
    return F.mse_loss(student.encoder(x), target) / target.var().clamp_min(1e-12)


def latent_error(student: Codec, teacher: Codec, wav: torch.Tensor) -> float:
    """Relative latent error: MSE(student, teacher latent) / the teacher latent's variance."""
    with torch.no_grad():
        return float(_relative_error(student, teacher, wav))


def distill_encoder(student: Codec, teacher: Codec, batches: Iterable[torch.Tensor], learning_rate: float,
                    cpu_seconds: float, log: Callable[[str], None] = print, log_every: int = 100) -> list[float]:
    """Train `student.encoder` on `batches` ([B, 1, T] waveforms) until the process has used
    `cpu_seconds` of CPU time or the batches run out; returns the relative error of every step.
    Optimizer, gradient clipping and learning-rate schedule are the student config's, as in
    training; the schedule runs over the CPU budget (no warm-up: the student starts from scratch
    but with a fixed target, and a long constant rate leaves the error on a plateau)."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    tc = student.config.train
    opt = make_optimizer(student.encoder.parameters(), learning_rate, tc)
    start, errors = time.process_time(), []
    for step, wav in enumerate(batches, 1):
        for group in opt.param_groups:
            group["lr"] = learning_rate * decay_factor((time.process_time() - start) / cpu_seconds, tc)
        loss = _relative_error(student, teacher, wav)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.encoder.parameters(), tc.grad_clip)
        opt.step()
        errors.append(float(loss.detach()))
        if step % log_every == 0:
            log(f"step {step}: relative latent error {sum(errors[-log_every:]) / log_every:.4f}")
        if time.process_time() - start >= cpu_seconds:
            break
    return errors
