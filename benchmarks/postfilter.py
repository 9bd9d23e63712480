#!/usr/bin/env python
"""Can a classic speech-codec postfilter repair the decoded magnitude? Scored side by side.

    python benchmarks/postfilter.py --model telucodec/pretrained/telugu-v3 --data_dir state/heldout_te.tsv --clips 24

The bottleneck report says the decoder loses the magnitude: harmonics above ~1.2 kHz smeared,
formants blurred. CELP codecs (G.729, AMR-WB) answer exactly that with decode-time postfilters,
which cost no training and no bits, so they are the cheapest candidate to try first:
- a long-term (pitch) postfilter: per 10 ms frame, the lag of the best normalized correlation
  (50-400 Hz), then x[n] + g/2 (x[n-T] + x[n+T]), normalized, where the voicing is above `thr`;
- a short-term (formant) postfilter A(z/gn) / A(z/gd) from a 16th-order LPC of the decoded
  speech, with an optional tilt correction and a smoothed per-frame gain back to the input level.
Each variant is applied to the model's decode of the same held-out clips at 6 and 1.5 kbps.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import numpy as np
import torch
from bottleneck import held_out_clips  # the same clips, round-robin by speaker
from scipy.signal import lfilter

from telucodec.api import load_model
from telucodec.evaluation import metrics

FRAME = 160  # 10 ms at 16 kHz
ORDER = 16


def pitch_per_frame(x: np.ndarray, min_lag: int = 40, max_lag: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """Lag and normalized correlation (clipped to 0..1) of each 10 ms frame against its past."""
    count = len(x) // FRAME
    lags = np.arange(min_lag, max_lag + 1)
    padded = np.concatenate([np.zeros(max_lag), x])
    best_lag, best_corr = np.zeros(count, int), np.zeros(count)
    for i in range(count):
        start = max_lag + i * FRAME
        cur = padded[start : start + FRAME]
        energy = cur @ cur
        if energy < 1e-8:
            continue
        past = padded[start - lags[:, None] + np.arange(FRAME)[None, :]]
        corr = (past @ cur) / np.sqrt(np.einsum("ij,ij->i", past, past) * energy + 1e-12)
        k = int(np.argmax(corr))
        best_lag[i], best_corr[i] = lags[k], float(np.clip(corr[k], 0.0, 1.0))
    return best_lag, best_corr


def pitch_postfilter(x: np.ndarray, gamma: float, threshold: float) -> np.ndarray:
    lag, corr = pitch_per_frame(x)
    y = x.copy()
    for i in np.flatnonzero(corr >= threshold):
        idx = np.arange(i * FRAME, (i + 1) * FRAME)
        back = np.where(idx >= lag[i], x[np.maximum(idx - lag[i], 0)], 0.0)
        ahead = np.where(idx + lag[i] < len(x), x[np.minimum(idx + lag[i], len(x) - 1)], 0.0)
        g = gamma * corr[i]
        y[idx] = (x[idx] + 0.5 * g * (back + ahead)) / (1.0 + g)
    return y


def lpc(frame: np.ndarray) -> np.ndarray:
    """A(z) coefficients [1, a1..a16] by Levinson-Durbin (with a tiny white-noise floor)."""
    r = np.correlate(frame, frame, "full")[len(frame) - 1 : len(frame) + ORDER].copy()
    r[0] = r[0] * 1.0001 + 1e-9
    a, err = np.zeros(ORDER + 1), r[0]
    a[0] = 1.0
    for i in range(1, ORDER + 1):
        k = -(r[i] + a[1:i] @ r[i - 1 : 0 : -1]) / err
        a[1 : i + 1] += k * np.concatenate([a[i - 1 : 0 : -1], [1.0]])
        err *= 1.0 - k * k
    return a


def formant_postfilter(x: np.ndarray, gn: float, gd: float, tilt: float) -> np.ndarray:
    span = 3 * FRAME + 160  # a 40 ms analysis window centred on each 10 ms frame
    window = np.hanning(span)
    padded = np.pad(x, (FRAME + 80, span))
    powers = np.arange(ORDER + 1)
    y, zn, zd = np.zeros_like(x), np.zeros(ORDER), np.zeros(ORDER)
    for start in range(0, len(x), FRAME):
        a = lpc(padded[start : start + span] * window)
        seg, zn = lfilter(a * gn**powers, [1.0], x[start : start + FRAME], zi=zn)
        y[start : start + FRAME], zd = lfilter([1.0], a * gd**powers, seg, zi=zd)
    if tilt:
        y = lfilter([1.0, -tilt], [1.0], y)
    gain = 1.0
    for start in range(0, len(x), FRAME):  # back to the input's level, smoothed over ~100 ms
        a_, b_ = x[start : start + FRAME], y[start : start + FRAME]
        gain = 0.9 * gain + 0.1 * np.sqrt((a_ @ a_ + 1e-9) / (b_ @ b_ + 1e-9))
        y[start : start + FRAME] = b_ * gain
    return y


VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda x: x,
    "pitch g 0.5, voiced > 0.5": lambda x: pitch_postfilter(x, 0.5, 0.5),
    "pitch g 1.0, voiced > 0.3": lambda x: pitch_postfilter(x, 1.0, 0.3),
    "formant 0.55/0.70": lambda x: formant_postfilter(x, 0.55, 0.70, 0.0),
    "formant 0.50/0.75": lambda x: formant_postfilter(x, 0.50, 0.75, 0.0),
    "formant 0.60/0.80, tilt 0.2": lambda x: formant_postfilter(x, 0.60, 0.80, 0.2),
    "pitch 0.5 + formant 0.55/0.70": lambda x: formant_postfilter(pitch_postfilter(x, 0.5, 0.5), 0.55, 0.70, 0.0),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="telucodec/pretrained/telugu-v3")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--val_speakers", default=None, help="comma-separated speakers (default: every clip's)")
    p.add_argument("--clips", type=int, default=24)
    args = p.parse_args()
    torch.set_num_threads(1)
    clips = held_out_clips(args.data_dir, args.val_speakers, args.clips, 16000)
    model = load_model(args.model)
    decoded = {}
    with torch.no_grad():
        for kbps in (6.0, 1.5):
            decoded[kbps] = [
                np.clip(model.decode(model.encode(w, 16000, kbps)).numpy(), -1, 1)[: w.size].astype(np.float64)
                for w in clips
            ]
    print(f"{len(clips)} clips ({sum(c.size for c in clips) / 16000:.0f} s), model {args.model}")
    print("| postfilter | PESQ-WB 6 kbps | STOI | mel dist | RMS ratio | PESQ-WB 1.5 kbps | STOI 1.5 | ms per s |")
    print("|---" * 8 + "|")
    for name, apply in VARIANTS.items():
        start = time.perf_counter()
        filtered = {kbps: [apply(d) for d in decoded[kbps]] for kbps in decoded}
        ms_per_s = 1000 * (time.perf_counter() - start) / (2 * sum(c.size for c in clips) / 16000)
        hi = [metrics.score_all(w, f) for w, f in zip(clips, filtered[6.0])]
        lo = [metrics.score_all(w, f) for w, f in zip(clips, filtered[1.5])]
        mean = lambda rows, key: float(np.mean([r[key] for r in rows]))  # noqa: E731
        print(f"| {name} | {mean(hi, 'pesq_wb'):.3f} | {mean(hi, 'stoi'):.3f} | {mean(hi, 'mel_distance'):.3f} | "
              f"{mean(hi, 'rms_ratio'):.3f} | {mean(lo, 'pesq_wb'):.3f} | {mean(lo, 'stoi'):.3f} | {ms_per_s:.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
