"""`--overfit_check`: can this pipeline learn at all? Run it before renting a GPU.

A short run on one real clip from the user's data with the user's architecture. It must show
the loss falling steadily and that clip's SNR rising well above 0 dB within a few CPU minutes;
otherwise it exits non-zero with a diagnosis of what is stuck. A failure at a learning rate
below RETRY_BELOW_LR is tried again briefly at REFERENCE_LR, to say whether the pipeline or the
learning rate is the cause. A heavy waveform L1 term is
added (OVERFIT_L1_WEIGHT) because spectral losses alone do not pin the phase.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from telucodec.config import get_config, with_overrides
from telucodec.evaluation import metrics
from telucodec.formats.dataset import load_dataset
from telucodec.model.codec import Codec
from telucodec.train.experiment import pick_device
from telucodec.train.objective import reconstruction_total

PASS_SNR_DB = 6.0        # "well above 0 dB"; 10 dB is the aim
OVERFIT_L1_WEIGHT = 10.0  # spectral losses alone do not pin the phase; SNR needs it
CLIP_SECONDS = 2.0
DEFAULT_MINUTES = 3.0
REFERENCE_LR = 1e-3       # where a failed check at a lower rate is tried again ...
RETRY_BELOW_LR = 5e-4     # ... when the user's rate is below this
RETRY_MINUTES = 2.0       # ... for at most this long (whatever the user's budget), stopping at a pass
RETRY_MAX_STEPS = 3000


@dataclass
class Trial:
    """One overfitting attempt: the per-step losses and grad norms, and every 25 steps the
    clip's SNR and RMS ratio."""

    lr: float
    losses: list[float] = field(default_factory=list)
    snrs: list[float] = field(default_factory=list)
    rms_ratios: list[float] = field(default_factory=list)
    grads: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    diverged: bool = False


def overfit_check(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    cfg = get_config(args.config)
    cfg = with_overrides(cfg, learning_rate=args.learning_rate, seed=args.seed)
    cfg = replace(cfg, loss=replace(cfg.loss, l1=max(cfg.loss.l1, OVERFIT_L1_WEIGHT)),
                  quantizer=replace(cfg.quantizer, quantizer_dropout=False))
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
          f"up to {minutes:g} min / {max_steps} steps; pass = loss falling and SNR >= {PASS_SNR_DB:g} dB")
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
    retry = _train(cfg, wav, device, REFERENCE_LR, RETRY_MINUTES, RETRY_MAX_STEPS, stop_snr=PASS_SNR_DB)
    retry_passed, _ = _verdict(retry, quiet=True)
    if retry_passed:
        print(f"overfit check: passes at {REFERENCE_LR:g} in {retry.seconds:.0f} s ({retry.steps} steps, best SNR "
              f"{max(retry.snrs):.1f} dB): your learning rate {lr:g} is the cause; train with --learning_rate "
              f"{REFERENCE_LR:g} (codecs train at 1e-4 to 1e-3)")
    else:
        print(f"overfit check: fails at {REFERENCE_LR:g} too (best SNR {max(retry.snrs, default=math.nan):.1f} dB "
              f"in {retry.seconds:.0f} s, {retry.steps} steps): the learning rate is not the cause; the pipeline "
              "(architecture, losses, data) does not learn this clip")
    return 1


def _train(cfg, wav: np.ndarray, device: torch.device, lr: float, minutes: float, max_steps: int,
           stop_snr: float = 10.0) -> Trial:
    """Overfit `wav` from a fresh model (same seed every time) at `lr` for the budget, stopping
    early once the clip's SNR reaches `stop_snr`."""
    torch.manual_seed(cfg.train.seed)
    x = torch.from_numpy(wav).view(1, 1, -1).to(device)
    model = Codec(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=cfg.train.betas)
    t = Trial(lr)
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
        if t.steps % 25 == 0:
            with torch.no_grad():
                model.eval()
                y = model(x).wav[0, 0].cpu().numpy()
                model.train()
            t.snrs.append(metrics.snr_db(wav, y))
            t.rms_ratios.append(metrics.rms_ratio(wav, y))
            print(f"  lr {lr:g}  step {t.steps:5d}  loss {np.mean(t.losses[-25:]):.4f}  SNR {t.snrs[-1]:6.2f} dB  "
                  f"RMS ratio {t.rms_ratios[-1]:.3f}  grad {np.mean(t.grads[-25:]):.3f}", flush=True)
            if t.snrs[-1] >= stop_snr:
                break
    t.seconds = time.monotonic() - start
    return t


def _verdict(t: Trial, quiet: bool = False) -> tuple[bool, str]:
    """(passed, the verdict in words)."""
    if len(t.losses) < 50 or not t.snrs:
        return False, (f"overfit check FAILED: only {len(t.losses)} steps in {t.seconds:.0f} s: too slow to judge; "
                       "give more --max_minutes")
    first, last = np.mean(t.losses[:10]), np.mean(t.losses[-10:])
    best_snr = max(t.snrs)
    falling = last < 0.7 * first
    if not quiet:
        print(f"overfit check: {t.steps} steps in {t.seconds:.0f} s; loss {first:.4f} -> {last:.4f}; "
              f"best SNR {best_snr:.2f} dB; final RMS ratio {t.rms_ratios[-1]:.3f}")
    if falling and best_snr >= PASS_SNR_DB:
        return True, "overfit check PASSED: the pipeline learns" + ("" if best_snr >= 10 else " (below the 10 dB aim)")
    reasons = []
    if np.mean(t.grads[-10:]) < 1e-6:
        reasons.append("gradients are ~0: nothing reaches the weights")
    if not falling:
        reasons.append(f"loss is not falling (ratio {last / first:.2f})"
                       + (f": learning rate {t.lr:g} is too low for a few minutes, try 1e-3" if t.lr < 1e-4 else ""))
    if not 0.5 <= t.rms_ratios[-1] <= 2.0:
        reasons.append(f"output amplitude stuck at {t.rms_ratios[-1]:.2f}x the input")
    if falling and best_snr < PASS_SNR_DB:
        reasons.append(f"loss falls but SNR stays at {best_snr:.1f} dB: the waveform (phase) is not being matched")
    if not math.isfinite(best_snr):
        reasons.append("SNR is not finite")
    return False, "overfit check FAILED: " + "; ".join(reasons or ["no steady progress"])
