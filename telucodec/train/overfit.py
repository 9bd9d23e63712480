"""`--overfit_check`: can this pipeline learn at all? Run it before renting a GPU.

A short run on one real clip from the user's data with the user's architecture. It must show
the loss falling steadily and that clip's SNR rising well above 0 dB within a few CPU minutes;
otherwise it exits non-zero with a diagnosis of what is stuck. A heavy waveform L1 term is
added (OVERFIT_L1_WEIGHT) because spectral losses alone do not pin the phase.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

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


def overfit_check(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    cfg = get_config(args.config)
    cfg = with_overrides(cfg, learning_rate=args.learning_rate, seed=args.seed)
    cfg = replace(cfg, loss=replace(cfg.loss, l1=max(cfg.loss.l1, OVERFIT_L1_WEIGHT)),
                  quantizer=replace(cfg.quantizer, quantizer_dropout=False))
    if args.amplitude:
        cfg = replace(cfg, model=replace(cfg.model, amplitude=args.amplitude))
    torch.manual_seed(cfg.train.seed)
    sr = cfg.model.sample_rate
    data = load_dataset(args.data_dir, sr, 0.0, (), log=print)
    clip = max(data.train, key=lambda c: float(np.mean(c.wav ** 2)) * min(c.wav.size, CLIP_SECONDS * sr))
    wav = clip.wav[: int(CLIP_SECONDS * sr)]
    x = torch.from_numpy(wav).view(1, 1, -1).to(device)
    model = Codec(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.learning_rate, betas=cfg.train.betas)
    minutes = args.max_minutes or DEFAULT_MINUTES
    max_steps = args.max_steps or 100_000
    print(f"overfit check: {clip.path} ({wav.size / sr:.1f} s), preset {cfg.name}, lr {cfg.train.learning_rate:g}, "
          f"up to {minutes:g} min / {max_steps} steps; pass = loss falling and SNR >= {PASS_SNR_DB:g} dB")
    start, step = time.monotonic(), 0
    losses, snrs, rms_ratios, grads = [], [], [], []
    while time.monotonic() - start < minutes * 60 and step < max_steps:
        out = model(x)
        total = reconstruction_total(out, x, cfg)
        if not torch.isfinite(total):
            print(f"overfit check FAILED: loss became {float(total)} at step {step}: lower the learning rate")
            return 1
        opt.zero_grad(set_to_none=True)
        total.backward()
        grads.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)))
        opt.step()
        losses.append(float(total.detach()))
        step += 1
        if step % 25 == 0:
            with torch.no_grad():
                model.eval()
                y = model(x).wav[0, 0].cpu().numpy()
                model.train()
            snrs.append(metrics.snr_db(wav, y))
            rms_ratios.append(metrics.rms_ratio(wav, y))
            print(f"  step {step:5d}  loss {np.mean(losses[-25:]):.4f}  SNR {snrs[-1]:6.2f} dB  "
                  f"RMS ratio {rms_ratios[-1]:.3f}  grad {np.mean(grads[-25:]):.3f}", flush=True)
            if snrs[-1] >= 10.0:
                break
    return _verdict(losses, snrs, rms_ratios, grads, cfg.train.learning_rate, step, time.monotonic() - start)


def _verdict(losses, snrs, rms_ratios, grads, lr, steps, seconds) -> int:
    if len(losses) < 50 or not snrs:
        print(f"overfit check FAILED: only {len(losses)} steps in {seconds:.0f} s: too slow to judge; give more --max_minutes")
        return 1
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    best_snr = max(snrs)
    falling = last < 0.7 * first
    print(f"overfit check: {steps} steps in {seconds:.0f} s; loss {first:.4f} -> {last:.4f}; "
          f"best SNR {best_snr:.2f} dB; final RMS ratio {rms_ratios[-1]:.3f}")
    if falling and best_snr >= PASS_SNR_DB:
        print("overfit check PASSED: the pipeline learns" + ("" if best_snr >= 10 else " (below the 10 dB aim)"))
        return 0
    reasons = []
    if np.mean(grads[-10:]) < 1e-6:
        reasons.append("gradients are ~0: nothing reaches the weights")
    if not falling:
        reasons.append(f"loss is not falling (ratio {last / first:.2f})"
                       + (f": learning rate {lr:g} is too low for a few minutes, try 1e-3" if lr < 1e-4 else ""))
    if not 0.5 <= rms_ratios[-1] <= 2.0:
        reasons.append(f"output amplitude stuck at {rms_ratios[-1]:.2f}x the input")
    if falling and best_snr < PASS_SNR_DB:
        reasons.append(f"loss falls but SNR stays at {best_snr:.1f} dB: the waveform (phase) is not being matched")
    if not math.isfinite(best_snr):
        reasons.append("SNR is not finite")
    print("overfit check FAILED: " + "; ".join(reasons or ["no steady progress"]))
    return 1
