#!/usr/bin/env python
"""What does adversarial training cost per step on this machine? One real `Trainer.train_step`
(generator + discriminator update) per discriminator set, timed side by side in one run against
the same step without discriminators.

    python benchmarks/gan_cost.py --config spectral --threads 1 --steps 6

Each variant builds a real Trainer on the example clips (batch 16 x 1 s by default), runs one
untimed warm-up step, then times `--steps` steps; the table gives seconds per step and the ratio
to the reconstruction-only step, i.e. how many plain steps one adversarial step costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import torch

from telucodec.cli import build_parser
from telucodec.config import get_config
from telucodec.train.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "none": None,
    "full (MPD 2,3,5,7,11 + MS-STFT 512,1024,2048; 16 ch)": ((2, 3, 5, 7, 11), (512, 1024, 2048), 16),
    "MS-STFT only (512,1024,2048; 16 ch)": ((), (512, 1024, 2048), 16),
    "MS-STFT only, 8 ch": ((), (512, 1024, 2048), 8),
    "MPD 2,3,5 + STFT 1024, 8 ch": ((2, 3, 5), (1024,), 8),
}


def time_steps(name: str, disc: tuple | None, args: argparse.Namespace, work: Path) -> float:
    cfg = get_config(args.config)
    train = replace(cfg.train, adversarial_after=-1 if disc is None else 0, batch_size=args.batch_size)
    if disc is not None:
        train = replace(train, disc_periods=disc[0], disc_stft_sizes=disc[1], disc_channels=disc[2])
    cfg = replace(cfg, train=train)
    path = work / f"{abs(hash(name))}.json"
    cfg.save(path)
    targs = build_parser().parse_args(["train", "--data_dir", str(ROOT / "examples" / "te_cv"), "--checkpoint_dir",
                                       str(work), "--experiment_name", path.stem, "--config", str(path),
                                       "--threads", str(args.threads), "--quiet", "--overwrite"])
    trainer = Trainer(targs)
    trainer.log = lambda msg: None
    trainer.setup()
    batch = torch.stack([trainer.dataset[i] for i in range(args.batch_size)])
    trainer.train_step(batch)  # warm-up (k-means init of the codebooks happens here)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.train_step(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="spectral")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--steps", type=int, default=6)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: time_steps(name, disc, args, Path(tmp)) for name, disc in VARIANTS.items()}
    base = results["none"]
    print(f"\n`{args.config}` preset, batch {args.batch_size} x 1 s, {args.threads} thread(s), median of {args.steps} steps")
    print("| discriminators | s / step | x reconstruction-only step |")
    print("|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
