#!/usr/bin/env python
"""Give a model more residual stages: its own stages kept as they are, new ones fitted by k-means
on what they leave of the latent.

    python scripts/extend_quantizer.py --model CHECKPOINT_OR_FOLDER --data_dir state/train_manifest.tsv \
        --val_speakers A,B --n_q 16 --out state/v6-rvq16

Why: entropy coding makes a stage cost less than its raw bits (about 22 % less with context
tables), so the top bitrate can carry more stages than the model was built with. The decoder is
unchanged: later stages only bring the quantized latent closer to the unquantized one, which the
decoder already decodes best. The latents come from `Codec.latents` (the path `Codec.encode`
runs), and each new stage is fitted on the residual the encoder's own greedy search leaves
(`quantizer_fit.kmeans_residual_start` from the first new stage, the fit script's k-means).
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--model", required=True, help="model folder, checkpoint or shipped name")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--val_speakers", default="", help="speakers to leave out (comma-separated)")
    p.add_argument("--n_q", type=int, required=True, help="stages of the extended model (more than the model's)")
    p.add_argument("--kmeans_iters", type=int, default=12)
    p.add_argument("--sample", type=int, default=120_000, help="frames each new stage's k-means sees")
    p.add_argument("--name", default=None, help="config name of the new model (default: the source's + -rvqN)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if Path(a.out).exists():
        sys.exit(f"--out {a.out}: already exists; choose another folder")
    torch.set_num_threads(a.threads)
    t0 = time.process_time()
    source = load_model(a.model)
    old = source.config.quantizer.n_q
    if a.n_q <= old:
        sys.exit(f"--n_q {a.n_q}: the model already has {old} stages; give more")
    cfg = source.config
    quant = replace(cfg.quantizer, n_q=a.n_q, kmeans_iters=a.kmeans_iters)  # not in the model id
    model = Codec(replace(cfg, name=a.name or f"{cfg.name}-rvq{a.n_q}", quantizer=quant))
    model.load_state_dict({**model.state_dict(), **source.state_dict()})
    model.eval()
    train, _ = split_validation(discover(a.data_dir), 0.0, tuple(s for s in a.val_speakers.split(",") if s))
    latents = qf.encode_latents(model, train)
    qf.kmeans_residual_start(model.quantizer, latents, a.sample, first=old)
    energy = qf.residual_energy(model.quantizer, latents)
    print(f"latent energy {qf.latent_energy(latents):.2f}; residual energy by n_q: "
          + " ".join(f"{e:.2f}" for e in energy))
    model.save_pretrained(a.out)
    print(f"wrote {a.out} (model id {model.model_id}); {time.process_time() - t0:.0f} CPU s in all")


if __name__ == "__main__":
    main()
