#!/usr/bin/env python
"""Give a pretrained model a new residual quantizer fitted on its frozen encoder's latents.

    python scripts/fit_quantizer.py --model lyra-v2 --data_dir state/train_manifest.tsv \
        --val_speakers A,B --n_q 12 --bits 10 --ema_epochs 2 --out state/lyra-rvq12x10

`--bits` may give each stage its own width: `--bits 15x2,10x14` is two 15-bit stages (32,768
entries) then fourteen 10-bit ones (n_q is then the number of stages listed).

Encodes the training clips once (the held-out speakers are left out) through `Codec.latents`, the
path `Codec.encode` runs, starts every stage by k-means on the residual the stages before it
leave, refines with the quantizer's own EMA / dead-code / quantizer-dropout updates over the
cached latents, and writes a model folder whose
encoder and decoder are the input model's and whose quantizer is the new one
(`telucodec/train/quantizer_fit.py`). Prints the residual energy per stage, the figure to compare
with the input model's own quantizer at equal bits.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import torch

from telucodec.formats.dataset import discover, split_validation
from telucodec.model.codec import Codec
from telucodec.model.loading import load_model
from telucodec.train import quantizer_fit as qf


def stage_widths(bits: str, n_q: int) -> list[int]:
    """`--bits`: "10" (every one of n_q stages) or "15x2,10x14" / "15,15,10" (each stage's own)."""
    try:
        if "," not in bits and "x" not in bits:
            return [int(bits)] * n_q
        widths = []
        for part in bits.split(","):
            width, _, count = part.partition("x")
            widths += [int(width)] * int(count or 1)
    except ValueError:
        sys.exit(f"--bits {bits}: expected a width (10) or widths per stage (15x2,10x14)")
    if not widths or not all(1 <= w <= 16 for w in widths):
        sys.exit(f"--bits {bits}: every width must be 1..16 bits")
    return widths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--model", required=True, help="model folder, checkpoint or shipped name (e.g. lyra-v2)")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--val_speakers", default="", help="speakers to leave out (comma-separated)")
    p.add_argument("--n_q", type=int, default=12)
    p.add_argument("--bits", default="10", help="bits per code (codebook size 2**bits), or per stage: 15x2,10x14")
    p.add_argument("--kmeans_iters", type=int, default=12)
    p.add_argument("--sample", type=int, default=120_000, help="frames each stage's k-means sees")
    p.add_argument("--ema_epochs", type=int, default=2)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if Path(a.out).exists():
        sys.exit(f"--out {a.out}: already exists; choose another folder")
    torch.set_num_threads(a.threads)
    t0 = time.process_time()
    source = load_model(a.model)
    cfg = source.config.upgraded()  # a new model: the current config version (model id: its own weights)
    widths = stage_widths(a.bits, a.n_q)
    sizes = tuple(2 ** b for b in widths)
    quant = replace(cfg.quantizer, n_q=len(widths), codebook_size=max(sizes),
                    codebook_sizes=sizes if len(set(sizes)) > 1 else (), kmeans_iters=a.kmeans_iters,
                    kmeans_init=True, quantizer_dropout=True, update="ema",
                    dead_code_steps=cfg.quantizer.dead_code_steps or 50)
    model = Codec(replace(cfg, name=f"{cfg.name}-rvq{a.bits.replace(',', '-')}", quantizer=quant))
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("quantizer.")}
    model.load_state_dict({**model.state_dict(), **state})
    model.eval()
    train, _ = split_validation(discover(a.data_dir), 0.0, tuple(s for s in a.val_speakers.split(",") if s))
    latents = qf.encode_latents(model, train)
    total = qf.latent_energy(latents)
    print(f"latent energy {total:.2f}; encoded in {time.process_time() - t0:.0f} CPU s")
    qf.kmeans_residual_start(model.quantizer, latents, a.sample)
    qf.ema_refine(model.quantizer, latents, a.ema_epochs)
    energy = qf.residual_energy(model.quantizer, latents)
    print("residual energy by n_q: " + " ".join(f"{e:.2f}" for e in energy))
    model.save_pretrained(a.out)
    print(f"wrote {a.out} (model id {model.model_id}); {time.process_time() - t0:.0f} CPU s in all")


if __name__ == "__main__":
    main()
