#!/usr/bin/env python
"""The spectral decoder's inverse STFT by FFT (eager PyTorch) against the DFT-basis matmuls that
ONNX graphs use, side by side in one run: a training batch (forward + backward) and an inference
clip (forward only), with the largest difference between the two frame sets.

    python benchmarks/istft.py --n_fft 1280 --hop 320 --batch 16 --seconds 1 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import torch

from telucodec.model.spectral import InverseSTFT


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n_fft", type=int, default=1280)
    p.add_argument("--hop", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=1.0, help="per training item")
    p.add_argument("--clip_seconds", type=float, default=30.0, help="the inference clip")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ist = InverseSTFT(args.n_fft, args.hop)
    bins = args.n_fft // 2 + 1

    frames = int(args.seconds * 16000 / args.hop)
    real = torch.randn(args.batch, bins, frames, requires_grad=True)
    imag = torch.randn(args.batch, bins, frames, requires_grad=True)
    clip_frames = int(args.clip_seconds * 16000 / args.hop)
    clip_real, clip_imag = torch.randn(1, bins, clip_frames), torch.randn(1, bins, clip_frames)
    diff = float((ist.frames(clip_real, clip_imag) - ist.frames(clip_real, clip_imag, by_fft=False)).abs().max())

    print(f"inverse STFT {args.n_fft}/{args.hop}, {args.threads} thread(s); best of {args.repeats}")
    print("| path | train batch fwd+bwd ms | inference clip fwd ms |")
    print("|---|---|---|")
    times = {}
    for name, fft in (("DFT bases (ONNX)", False), ("FFT (eager)", True)):
        train = best_seconds(lambda fft=fft: ist.frames(real, imag, fft).square().sum().backward(), args.repeats)
        with torch.no_grad():
            infer = best_seconds(lambda fft=fft: ist.frames(clip_real, clip_imag, fft), args.repeats)
        times[name] = (train, infer)
        print(f"| {name} | {1000 * train:.1f} | {1000 * infer:.1f} |")
    (tb, ib), (tf, i_f) = times["DFT bases (ONNX)"], times["FFT (eager)"]
    print(f"FFT is {tb / tf:.1f}x faster per training batch ({args.batch} x {args.seconds:g} s) and "
          f"{ib / i_f:.1f}x per {args.clip_seconds:g} s clip; max |frame difference| {diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
