#!/usr/bin/env python
"""The SEANet encoder as it runs now (each conv pads its symmetric zeros itself; ELUs that read a
fresh tensor work in place) against the layout it replaced (an explicit F.pad copy before every
conv, every ELU allocating its output), side by side in one run on the same weights: encode speed
of one clip (x real time) and one training batch's forward + backward, with the largest output
difference between the two (the change is exact: expect 0).

    python benchmarks/encoder_layout.py --model telucodec/pretrained/telugu-v3 --threads 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import torch
from torch import nn

from benchmarks.istft import best_seconds
from telucodec.api import load_model
from telucodec.model.seanet import PaddedConv1d, SEANetEncoder


def use_old_layout(encoder: SEANetEncoder, old: bool) -> None:
    """Switch the encoder's layers between the two layouts (same weights, same results)."""
    for layer in encoder.modules():
        if isinstance(layer, PaddedConv1d):
            if not hasattr(layer, "new_layout"):
                layer.new_layout = (layer.conv.padding, layer.extra_pad)
            right = layer.total_pad - layer.left_pad
            layer.conv.padding, layer.extra_pad = ((0,), (layer.left_pad, right)) if old else layer.new_layout
        elif isinstance(layer, nn.ELU):
            if not hasattr(layer, "new_inplace"):
                layer.new_inplace = layer.inplace
            layer.inplace = False if old else layer.new_inplace


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="telucodec/pretrained/telugu-v3")
    p.add_argument("--clip_seconds", type=float, default=30.0)
    p.add_argument("--batch", type=int, default=16, help="training batch of 1 s items")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    encoder = load_model(args.model).encoder
    if not isinstance(encoder, SEANetEncoder):
        raise SystemExit(f"{args.model}: its encoder is {type(encoder).__name__}, not the SEANet encoder")
    torch.manual_seed(0)
    clip = 0.05 * torch.randn(1, 1, int(args.clip_seconds * 16000))
    batch = 0.05 * torch.randn(args.batch, 1, 16000)

    def encode() -> torch.Tensor:
        with torch.no_grad():
            return encoder.eval()(clip)

    def train_step() -> None:
        encoder.train()(batch).square().mean().backward()

    layouts = (("old: F.pad + conv, ELU allocates", True), ("now: conv pads, ELU in place", False))
    outputs, best = {}, {name: [float("inf"), float("inf")] for name, _ in layouts}
    for _ in range(args.repeats):  # interleaved, so a busy spell of the machine hits both layouts
        for name, old in layouts:
            use_old_layout(encoder, old)
            outputs[name] = encode()
            best[name][0] = min(best[name][0], best_seconds(encode, 1))
            best[name][1] = min(best[name][1], best_seconds(train_step, 1))
    rows = {name: tuple(times) for name, times in best.items()}
    print(f"| layout ({args.threads} thread) | encode x real time | training batch fwd+bwd ms |")
    print("|---|---|---|")
    for name, (enc, step) in rows.items():
        print(f"| {name} | {args.clip_seconds / enc:.0f} | {1000 * step:.0f} |")
    (old_enc, old_step), (new_enc, new_step) = rows.values()
    a, b = outputs.values()
    print(f"now / old: encode {old_enc / new_enc:.2f}x faster, training batch {old_step / new_step:.2f}x faster; "
          f"largest latent difference {float((a - b).abs().max()):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
