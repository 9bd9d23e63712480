"""A new residual quantizer for a pretrained encoder, fitted on cached latents in CPU minutes.

When the encoder is frozen (a converted backbone such as Lyra v2), its latents never change, so
they are computed once and the quantizer learns from them alone, with no decoder in the loop. They
come from `Codec.latents`, the path `Codec.encode` runs (its windows, the encoder's reach as
context at their joins, its amplitude normalization), so the codebooks fit what they will code:

1. k-means start, stage by stage: stage s clusters the residual the stages before it leave
   (k-means++ seeding, `kmeans_iters` Lloyd iterations on up to `sample` frames);
2. EMA refinement: passes over all cached frames through the quantizer's own training forward
   (EMA k-means updates, dead-code replacement, quantizer dropout over n_q, exactly as in a
   training run), so the codebooks end where joint training would have started them.

The result is the quantizer of a model folder that `train_codec.py --init_from` then fine-tunes
with the decoder in the loop (docs/training-log.md, session 11).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from telucodec.formats.dataset import AudioItem, load_clip
from telucodec.model.clustering import kmeans, nearest_entry
from telucodec.model.codec import Codec
from telucodec.model.quantizer import ResidualVQ


@torch.no_grad()
def encode_latents(model: Codec, items: list[AudioItem], log: Callable[[str], None] = print) -> torch.Tensor:
    """Every frame of every clip through the model's (frozen) encoder -> [N, D] float32, by
    `Codec.latents`: the windows, context at their joins and amplitude normalization of
    `Codec.encode`, so the quantizer is fitted on exactly the latents it will code. Clips that
    cannot be read are skipped and counted in the log line."""
    latents, skipped = [], 0
    for item in items:
        try:
            wav = load_clip(item, model.sample_rate).wav
        except Exception:
            skipped += 1
            continue
        latents.append(model.latents(wav).T.contiguous())
    out = torch.cat(latents) if latents else torch.zeros(0, model.config.model.latent_dim)
    log(f"latents: {out.shape[0]} frames of {out.shape[1]} dims from {len(items) - skipped} clips"
        + (f" ({skipped} unreadable, skipped)" if skipped else ""))
    return out


@torch.no_grad()
def kmeans_residual_start(quantizer: ResidualVQ, latents: torch.Tensor, sample: int = 120_000,
                          seed: int = 0, log: Callable[[str], None] = print, first: int = 0) -> list[float]:
    """Step 1: stage-by-stage k-means on the residuals, for stages `first` .. n_q - 1 (the stages
    before `first` are kept and searched greedily, as the encoder does: extending a quantizer).
    Returns the residual energy (mean squared norm per frame) after each fitted stage, the first
    number of the report."""
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(latents.shape[0], generator=gen)[:sample]
    residual = latents[pick].clone()
    for layer in quantizer.layers[:first]:
        residual -= layer.latent_codebook()[layer.nearest(residual)]
    torch.manual_seed(seed)
    books, energy = [], []
    for s in range(first, quantizer.cfg.n_q):
        entries = kmeans(residual, quantizer.layers[s].size, quantizer.cfg.kmeans_iters)
        residual -= entries[nearest_entry(residual, entries)]
        books.append(entries)
        energy.append(float(residual.pow(2).sum(1).mean()))
        log(f"  k-means stage {s + 1}/{quantizer.cfg.n_q}: residual energy {energy[-1]:.3f}")
    quantizer.set_codebooks(books, first)
    return energy


def ema_refine(quantizer: ResidualVQ, latents: torch.Tensor, epochs: int, batch_frames: int = 4096,
               seed: int = 0, log: Callable[[str], None] = print) -> None:
    """Step 2: the quantizer's own training forward over the cached frames (EMA updates, dead-code
    replacement, quantizer dropout), `epochs` passes in shuffled batches of `batch_frames`."""
    gen = torch.Generator().manual_seed(seed)
    quantizer.train()
    for epoch in range(epochs):
        order = torch.randperm(latents.shape[0], generator=gen)
        for start in range(0, len(order), batch_frames):
            x = latents[order[start: start + batch_frames]].T.unsqueeze(0)  # [1, D, frames]
            with torch.no_grad():
                quantizer(x, quantizer.sample_n_q(gen))
        log(f"  EMA pass {epoch + 1}/{epochs}: residual energy at n_q {quantizer.cfg.n_q} "
            f"{residual_energy(quantizer, latents)[-1]:.3f}")
    quantizer.eval()


@torch.no_grad()
def residual_energy(quantizer: ResidualVQ, latents: torch.Tensor, max_frames: int = 60_000) -> list[float]:
    """Mean squared norm of what n_q = 1 .. N stages leave of the latent (on up to `max_frames`)."""
    x = latents[:max_frames]
    residual, out = x.clone(), []
    for layer in quantizer.layers:
        residual -= layer.latent_codebook()[layer.nearest(residual)]
        out.append(float(residual.pow(2).sum(1).mean()))
    return out


def latent_energy(latents: torch.Tensor) -> float:
    """Mean squared norm per frame: what `residual_energy` is a part of."""
    return float(latents.pow(2).sum(1).mean())
