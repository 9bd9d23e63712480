"""`--overfit_check`: can this pipeline learn at all? Run it before renting a GPU.

A short run on one real clip from the user's data with the user's architecture and objective.
It is judged by what that objective optimizes: the loss falls steadily, the clip's log-mel
distance falls to at most MEL_PASS_FRACTION of the untrained model's, and the output's level comes
within LEVEL_PASS_RANGE of the input's. (Not by SNR: a spectral objective does not pin the
waveform's phase, so a model that learns the clip well can sit at 0 dB SNR or below; the models
this recipe trains do.) It stops at the first evaluation that passes; otherwise it exits non-zero
with a diagnosis of what is stuck. A failure at a learning rate below RETRY_BELOW_LR is tried
again briefly at REFERENCE_LR, to say whether the pipeline or the learning rate is the cause.

Measured with the default preset on the example clips, one CPU thread shared with other jobs
(`python train_codec.py --data_dir examples/te_cv --checkpoint_dir /tmp/c --experiment_name o
--overfit_check --threads 1`): PASSED at step 125 in 126 s, mel distance 0.958 -> 0.400, level
0.75x, loss x0.54. A pipeline whose decoder output is cut off from the
loss fails (tests/test_train.py).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from telucodec.config import with_overrides
from telucodec.evaluation import metrics
from telucodec.formats.dataset import load_dataset
from telucodec.model.codec import Codec
from telucodec.model.loading import base_config
from telucodec.train.experiment import pick_device
from telucodec.train.objective import reconstruction_total
from telucodec.train.optim import make_optimizer

MEL_PASS_FRACTION = 0.5   # pass: the clip's mel distance at most this fraction of the untrained model's
LEVEL_PASS_RANGE = (0.7, 1.4)  # pass: output RMS / input RMS within this (about +/- 3 dB)
LOSS_FALL = 0.7           # pass: the last 10 steps' mean loss below this fraction of the first 10's
EVAL_EVERY = 25           # steps between evaluations of the clip
MIN_STEPS = 50            # no verdict before this many steps
CLIP_SECONDS = 2.0
DEFAULT_MINUTES = 3.0
REFERENCE_LR = 1e-3       # where a failed check at a lower rate is tried again ...
RETRY_BELOW_LR = 5e-4     # ... when the user's rate is below this
RETRY_MINUTES = 2.0       # ... for at most this long (whatever the user's budget), stopping at a pass
RETRY_MAX_STEPS = 3000


@dataclass
class Trial:
    """One overfitting attempt: the per-step losses and grad norms, and every EVAL_EVERY steps the
    clip's mel distance and RMS ratio (`mel_start`: the untrained model's)."""

    lr: float
    losses: list[float] = field(default_factory=list)
    mels: list[float] = field(default_factory=list)
    mel_start: float = math.nan
    rms_ratios: list[float] = field(default_factory=list)
    grads: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    diverged: bool = False


def overfit_check(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    cfg = base_config(args.config, getattr(args, "init_from", None))
    cfg = with_overrides(cfg, learning_rate=args.learning_rate, seed=args.seed)
    cfg = replace(cfg, quantizer=replace(cfg.quantizer, quantizer_dropout=False))
    if args.amplitude:
        cfg = replace(cfg, model=replace(cfg.model, amplitude=args.amplitude))
    sr = cfg.model.sample_rate
    data = load_dataset(args.data_dir, sr, 0.0, (), log=print)
    clip = max(data.train, key=lambda c: float(np.mean(c.wav ** 2)) * min(c.wav.size, CLIP_SECONDS * sr))
    wav = clip.wav[: int(CLIP_SECONDS * sr)]
    minutes = args.max_minutes or DEFAULT_MINUTES
    max_steps = args.max_steps or 100_000
    lr = cfg.train.learning_rate
    print(f"overfit check: {clip.path} ({wav.size / sr:.1f} s), preset {cfg.name}, lr {lr:g}, "
          f"up to {minutes:g} min / {max_steps} steps; pass = loss falling, the clip's mel distance down to "
          f"{MEL_PASS_FRACTION:g}x the untrained model's and its level within {LEVEL_PASS_RANGE[0]:g}-"
          f"{LEVEL_PASS_RANGE[1]:g}x the input's")
    trial = _train(cfg, wav, device, lr, minutes, max_steps)
    if trial.diverged:
        print(f"overfit check FAILED: loss became non-finite at step {trial.steps}: lower the learning rate")
        return 1
    passed, message = _verdict(trial)
    print(message)
    if passed or lr >= RETRY_BELOW_LR:
        return 0 if passed else 1
    # Is it the pipeline or the learning rate? The same run, briefly, at a rate codecs train with.
    print(f"overfit check: trying the same clip at the reference learning rate {REFERENCE_LR:g} "
          f"(up to {RETRY_MINUTES:g} min) to tell a pipeline that cannot learn from a learning rate that is too low")
    retry = _train(cfg, wav, device, REFERENCE_LR, RETRY_MINUTES, RETRY_MAX_STEPS)
    retry_passed, _ = _verdict(retry, quiet=True)
    if retry_passed:
        print(f"overfit check: passes at {REFERENCE_LR:g} in {retry.seconds:.0f} s ({retry.steps} steps, "
              f"{_progress(retry)}): your learning rate {lr:g} is the cause; train with --learning_rate "
              f"{REFERENCE_LR:g} (codecs train at 1e-4 to 1e-3)")
    else:
        print(f"overfit check: fails at {REFERENCE_LR:g} too ({_progress(retry)} in {retry.seconds:.0f} s, "
              f"{retry.steps} steps): the learning rate is not the cause; the pipeline (architecture, losses, "
              "data) does not learn this clip")
    return 1


def _measure(model: Codec, x: torch.Tensor, wav: np.ndarray) -> tuple[float, float]:
    """(mel distance, RMS ratio) of the model's output for the clip, in eval mode."""
    with torch.no_grad():
        model.eval()
        y = model(x).wav[0, 0].float().cpu().numpy()
        model.train()
    return metrics.mel_distance(wav, y, model.sample_rate), metrics.rms_ratio(wav, y)


def _train(cfg, wav: np.ndarray, device: torch.device, lr: float, minutes: float, max_steps: int) -> Trial:
    """Overfit `wav` from a fresh model (same seed every time) at `lr` for the budget, stopping
    at the first evaluation that passes."""
    torch.manual_seed(cfg.train.seed)
    x = torch.from_numpy(wav).view(1, 1, -1).to(device)
    model = Codec(cfg).to(device)
    opt = make_optimizer(model.parameters(), lr, cfg.train)
    t = Trial(lr)
    t.mel_start, _ = _measure(model, x, wav)
    start = time.monotonic()
    while time.monotonic() - start < minutes * 60 and t.steps < max_steps:
        out = model(x)
        total = reconstruction_total(out, x, cfg)
        if not torch.isfinite(total):
            t.diverged = True
            break
        opt.zero_grad(set_to_none=True)
        total.backward()
        t.grads.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)))
        opt.step()
        t.losses.append(float(total.detach()))
        t.steps += 1
        if t.steps % EVAL_EVERY == 0:
            mel, ratio = _measure(model, x, wav)
            t.mels.append(mel)
            t.rms_ratios.append(ratio)
            print(f"  lr {lr:g}  step {t.steps:5d}  loss {np.mean(t.losses[-EVAL_EVERY:]):.4f}  mel distance "
                  f"{mel:.3f} (untrained {t.mel_start:.3f})  RMS ratio {ratio:.3f}  "
                  f"grad {np.mean(t.grads[-EVAL_EVERY:]):.3f}", flush=True)
            if _passes(t):
                break
    t.seconds = time.monotonic() - start
    return t


def _loss_ratio(t: Trial) -> float:
    """Mean loss of the last 10 steps over that of the first 10."""
    return float(np.mean(t.losses[-10:]) / np.mean(t.losses[:10]))


def _level_ok(ratio: float) -> bool:
    return LEVEL_PASS_RANGE[0] <= ratio <= LEVEL_PASS_RANGE[1]


def _passes(t: Trial) -> bool:
    """The latest evaluation shows the pipeline learns: loss falling, the mel distance down by
    the margin, the level right (all at once)."""
    return (t.steps >= MIN_STEPS and bool(t.mels) and _loss_ratio(t) < LOSS_FALL
            and t.mels[-1] <= MEL_PASS_FRACTION * t.mel_start and _level_ok(t.rms_ratios[-1]))


def _progress(t: Trial) -> str:
    """"mel distance 0.96 -> 0.30, level 0.87x": what the trial reached."""
    if not t.mels:
        return f"mel distance {t.mel_start:.3f}, not measured again"
    return f"mel distance {t.mel_start:.3f} -> {t.mels[-1]:.3f}, level {t.rms_ratios[-1]:.2f}x"


def _verdict(t: Trial, quiet: bool = False) -> tuple[bool, str]:
    """(passed, the verdict in words)."""
    if len(t.losses) < MIN_STEPS or not t.mels:
        return False, (f"overfit check FAILED: only {len(t.losses)} steps in {t.seconds:.0f} s: too slow to judge; "
                       "give more --max_minutes")
    ratio = _loss_ratio(t)
    if not quiet:
        print(f"overfit check: {t.steps} steps in {t.seconds:.0f} s; loss x{ratio:.2f}; {_progress(t)}")
    if _passes(t):
        return True, "overfit check PASSED: the pipeline learns this clip"
    reasons = []
    if np.mean(t.grads[-10:]) < 1e-6:
        reasons.append("gradients are ~0: nothing reaches the weights")
    if ratio >= LOSS_FALL:
        reasons.append(f"loss is not falling (ratio {ratio:.2f})"
                       + (f": learning rate {t.lr:g} is too low for a few minutes, try 1e-3" if t.lr < 1e-4 else ""))
    target = MEL_PASS_FRACTION * t.mel_start
    if not math.isfinite(t.mels[-1]):
        reasons.append("the mel distance is not finite")
    elif t.mels[-1] > target:
        reasons.append(f"the clip's mel distance stays at {t.mels[-1]:.3f} (untrained {t.mel_start:.3f}; pass: "
                       f"<= {target:.3f})" + (": the loss falls but the output does not follow it (is the decoder's "
                                                "output cut off from the loss?)" if ratio < LOSS_FALL else ""))
    if not _level_ok(t.rms_ratios[-1]):
        reasons.append(f"output level stuck at {t.rms_ratios[-1]:.2f}x the input's (pass: "
                       f"{LEVEL_PASS_RANGE[0]:g}-{LEVEL_PASS_RANGE[1]:g}x)")
    return False, "overfit check FAILED: " + "; ".join(reasons or ["no steady progress"])
