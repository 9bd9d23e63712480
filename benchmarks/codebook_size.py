"""Larger codebooks at low rates (issue 34, lever 4): 2 x 15-bit against 3 x 10-bit, in one run.

A model's frozen encoder and decoder; residual VQ fitted by k-means on the encoder's latents of the
training speakers (`--train`), then measured on held-out speakers (`--heldout`, every `--every`th
clip), all at the same raw bits per frame:

    30 bits   the model's own first 3 stages (10-bit, trained through the decoder) | k-means 3 x 10 |
              k-means 2 x 15
    60 bits   the model's first 6 stages | 2 x 15 + 3 x 10 (10-bit k-means stages on the 2 x 15 residual)
    120 bits  the model's first 12 stages | 2 x 15 + 9 x 10

Clips of --heldout's speakers are left out of --train (`training_items`). For each: PESQ-WB, STOI, the latent's quantization error (dB re its energy), and at 30 bits the
codes' cross-entropy on the held-out clips under tables fitted on the training codes (marginal
per stage, and given the same stage's previous code folded to 64 classes, add-0.5 smoothing): what
an entropy coder could make of each. Greedy search, uniform stages, no rate control, no
fine-tuning: the codebooks alone. The 15-bit k-means is most of the run (12 iterations of 32,768
centroids over ~560k frames: ~20 CPU minutes a stage on one thread).

    python benchmarks/codebook_size.py --model telugu-v7 --train state/train_manifest.tsv \
        --heldout state/heldout_te.tsv --train_seconds 12000 --every 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import telucodec
from telucodec.evaluation.metrics import pesq_wb, stoi
from telucodec.formats.dataset import index_audio, load_clip

T0 = time.time()


def log(*parts: object) -> None:
    print(f"[{time.time() - T0:6.0f} s]", *parts, flush=True)


def nearest(x: torch.Tensor, books: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Nearest entries of x [N, D] in books [K, D], `chunk` rows at a time: a 32,768-entry search
    over all frames at once would be a 70 GB distance matrix (`clustering.nearest_entry` makes
    the whole one, fine for 1,024 entries)."""
    norms = books.pow(2).sum(1)
    out = torch.empty(x.shape[0], dtype=torch.long)
    for i in range(0, x.shape[0], chunk):
        out[i: i + chunk] = (norms[None] - 2 * x[i: i + chunk] @ books.T).argmin(1)
    return out


def kmeans(x: torch.Tensor, k: int, iters: int) -> torch.Tensor:
    """Lloyd's k-means from k random frames; an empty cluster restarts at a random frame."""
    c = x[torch.randperm(x.shape[0])[:k]].clone()
    for _ in range(iters):
        a = nearest(x, c)
        counts = torch.bincount(a, minlength=k).float()
        sums = torch.zeros_like(c).index_add_(0, a, x)
        empty = counts == 0
        c = torch.where(empty[:, None], x[torch.randint(0, x.shape[0], (k,))], sums / counts.clamp_min(1)[:, None])
    return c


def fit_stages(x: torch.Tensor, bits: list[int], iters: int, start: list[torch.Tensor] = ()) -> list[torch.Tensor]:
    """k-means stages of `bits` on the residual `start`'s stages leave of x."""
    r, books = residual(x, list(start)), []
    for b in bits:
        c = kmeans(r, 2 ** b, iters)
        r -= c[nearest(r, c)]
        books.append(c)
        log(f"  {b}-bit stage: residual energy {float(r.pow(2).sum(1).mean()):.1f} of {float(x.pow(2).sum(1).mean()):.1f}")
    return books


def codes_of(x: torch.Tensor, books: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Greedy residual VQ: (codes per stage, the quantized x)."""
    r, codes = x.clone(), []
    for c in books:
        i = nearest(r, c)
        codes.append(i)
        r -= c[i]
    return codes, x - r


def residual(x: torch.Tensor, books: list[torch.Tensor]) -> torch.Tensor:
    return x - codes_of(x, books)[1] if books else x.clone()


def code_tables(books: list[torch.Tensor], train_codes: list[torch.Tensor], iters: int) -> list[tuple]:
    """Per stage: (fold of each entry to one of 64 classes, marginal counts, counts given the class
    of the previous frame's code)."""
    tables = []
    for c, codes in zip(books, train_codes):
        k = c.shape[0]
        fold = nearest(c, kmeans(c, 64, iters)) if k > 64 else torch.arange(k)
        marginal = torch.bincount(codes, minlength=k).double()
        given = torch.zeros(64, k, dtype=torch.float64)
        given.index_put_((fold[codes[:-1]], codes[1:]), torch.ones(len(codes) - 1, dtype=torch.float64), accumulate=True)
        tables.append((fold, marginal, given))
    return tables


def cross_entropy(table: tuple, codes: torch.Tensor, alpha: float = 0.5) -> tuple[float, float]:
    """Bits per code of `codes` (one clip, one stage): marginal, and given the previous frame."""
    fold, marginal, given = table
    k = marginal.numel()
    p = (marginal + alpha) / (marginal.sum() + alpha * k)
    rows = given[fold[codes[:-1]]]
    q = (rows[torch.arange(len(codes) - 1), codes[1:]] + alpha) / (rows.sum(1) + alpha * k)
    return float(-torch.log2(p[codes]).mean()), float(-torch.log2(q).mean())


def measure(model, clips, books: list[torch.Tensor], tables: list[tuple] | None) -> dict[str, float]:
    pesq, intel, err, marginal, given = [], [], [], [], []
    for wav in clips:
        with torch.no_grad():
            z = model.latents(wav).T.contiguous()
            codes, q = codes_of(z, books)
            x, side = model._encoder_input(wav, model.sample_rate)
            y = model.amplitude.restore(model.decoder(q.T[None]), side, 0)[0, 0, : wav.size].numpy()
        y = np.clip(y, -1, 1)
        pesq.append(pesq_wb(wav, y))
        intel.append(stoi(wav, y))
        err.append(10 * np.log10(float((z - q).pow(2).sum()) / float(z.pow(2).sum())))
        if tables:
            bits = [cross_entropy(t, c) for t, c in zip(tables, codes)]
            marginal.append(sum(b for b, _ in bits))
            given.append(sum(b for _, b in bits))
    out = {"pesq_wb": float(np.mean(pesq)), "stoi": float(np.mean(intel)), "latent_error_db": float(np.mean(err))}
    if tables:
        out.update(bits_marginal=float(np.mean(marginal)), bits_given_previous=float(np.mean(given)))
    return out


def training_items(train: str, heldout: str) -> list:
    """The clips of `train` whose speakers are not among `heldout`'s: codebooks fitted on the very
    frames they are then measured on score far too well (session 14 ran this benchmark with the
    held-out speakers inside --train: 2 x 15-bit k-means books then gained +0.40 PESQ-WB, and +0.06
    once fitted without them, docs/training-log.md session 15)."""
    held = {item.speaker for item in index_audio(heldout)}
    items = [item for item in index_audio(train) if item.speaker not in held]
    if not items:
        raise SystemExit(f"--train {train}: every clip is of a --heldout speaker; nothing to fit on")
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="telugu-v7")
    ap.add_argument("--train", required=True, help="training speakers' clips (folder or manifest)")
    ap.add_argument("--heldout", required=True, help="held-out speakers' clips (folder or manifest)")
    ap.add_argument("--train_seconds", type=float, default=12000, help="seconds of training audio encoded")
    ap.add_argument("--every", type=int, default=3, help="measure every Nth held-out clip")
    ap.add_argument("--iters", type=int, default=12, help="k-means iterations")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = telucodec.load_model(a.model).eval()
    items = training_items(a.train, a.heldout)
    np.random.default_rng(0).shuffle(items)
    latents, seconds = [], 0.0
    with torch.no_grad():
        for item in items:
            try:
                wav = load_clip(item, model.sample_rate).wav
            except Exception:
                continue
            latents.append(model.latents(wav).T.contiguous())
            seconds += wav.size / model.sample_rate
            if seconds > a.train_seconds:
                break
    x = torch.cat(latents)
    log(f"training latents: {x.shape[0]} frames from {seconds / 3600:.2f} h")
    own = [layer.latent_codebook().detach().float() for layer in model.quantizer.layers]
    small = fit_stages(x, [10, 10, 10], a.iters)
    big = fit_stages(x, [15, 15], a.iters)
    tail = fit_stages(x, [10] * 9, a.iters, start=big)
    clips = [load_clip(item, model.sample_rate).wav for item in list(index_audio(a.heldout))[:: a.every]]
    log(f"held-out: {len(clips)} clips")
    runs = {"30 bits: own 3 x 10": own[:3], "30 bits: k-means 3 x 10": small, "30 bits: k-means 2 x 15": big,
            "60 bits: own 6 x 10": own[:6], "60 bits: 2 x 15 + 3 x 10": big + tail[:3],
            "120 bits: own 12 x 10": own[:12], "120 bits: 2 x 15 + 9 x 10": big + tail}
    results = {}
    for name, books in runs.items():
        tables = code_tables(books, codes_of(x, books)[0], a.iters) if name.startswith("30") else None
        results[name] = measure(model, clips, books, tables)
        log(name, json.dumps({k: round(v, 4) for k, v in results[name].items()}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "train_frames": x.shape[0], "clips": len(clips), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
