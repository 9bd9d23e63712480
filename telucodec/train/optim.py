"""Optimizer set-up and the learning-rate schedule (warm-up, then cosine, exponential or constant)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from telucodec.config import TrainConfig
from telucodec.errors import TelucodecError


def make_optimizer(params: Iterable[torch.nn.Parameter], lr: float, tc: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW (the default) over the parameters that require a gradient."""
    params = [p for p in params if p.requires_grad]
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tc.betas)
    return torch.optim.AdamW(params, lr=lr, betas=tc.betas, weight_decay=tc.weight_decay)


def lr_factor(step: int, total_steps: int, tc: TrainConfig) -> float:
    """The multiplier of `learning_rate` at optimizer step `step` of `total_steps`."""
    if tc.warmup_steps and step < tc.warmup_steps:
        return (step + 1) / tc.warmup_steps
    if tc.lr_schedule == "constant":
        return 1.0
    return decay_factor(min(1.0, (step - tc.warmup_steps) / max(1, total_steps - tc.warmup_steps)), tc)


def decay_factor(progress: float, tc: TrainConfig) -> float:
    """The schedule's multiplier after warm-up, at `progress` in [0, 1] of the run (steps, or the
    CPU budget of a distillation): 1 -> `min_lr_ratio`, cosine or exponential."""
    progress = min(1.0, max(0.0, progress))
    if tc.lr_schedule == "constant":
        return 1.0
    if tc.lr_schedule == "exponential":
        return tc.min_lr_ratio ** progress
    return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def freeze_parts(model: torch.nn.Module, parts: tuple[str, ...]) -> int:
    """Stop the gradient of the named parts ("encoder", "quantizer", "decoder"; `train.freeze`):
    their parameters keep requires_grad False and stay out of the optimizer. A frozen quantizer
    still follows its EMA statistics if it has them. Returns how many parameters were frozen."""
    frozen = 0
    for part in parts:
        module = getattr(model, part, None)
        if not isinstance(module, torch.nn.Module):
            raise TelucodecError(f"train.freeze: unknown part {part!r}; expected encoder, quantizer or decoder")
        for p in module.parameters():
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen
