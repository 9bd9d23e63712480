"""Decoding codes whose frames send different numbers of stages (`Codes.stage_counts`): the
quantized latent is the sum of the sent stages only; an unsent stage adds nothing."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from telucodec.errors import ModelError


def check_stage_counts(counts: np.ndarray | None, n_q: int, frames: int) -> None:
    """Refuse (ModelError) per-frame counts that do not fit codes [n_q, frames]."""
    if counts is None:
        return
    c = np.asarray(counts)
    if c.shape != (frames,) or c.dtype.kind not in "iu":
        raise ModelError(f"stage counts must be {frames} integers (one per frame), got shape {tuple(c.shape)}")
    if frames and (int(c.min()) < 1 or int(c.max()) > n_q):
        raise ModelError(f"stage counts must be in 1..{n_q}, got {int(c.min())}..{int(c.max())}")


def decode_sent(quantizer: nn.Module, codes: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
    """codes [B, n, F] -> latent [B, D, F], frame t summing stages 0..counts[t]-1 (counts [F];
    None: `quantizer.decode`, every stage). Same order of sums as `ResidualVQ.decode`, so uniform
    counts give its latent bit for bit."""
    if counts is None:
        return quantizer.decode(codes)
    out = quantizer.layers[0].lookup(codes[:, 0])
    for i in range(1, codes.shape[1]):
        keep = (counts > i).to(out.dtype)[None, None, :]
        out = out + quantizer.layers[i].lookup(codes[:, i]) * keep
    return out
