"""A codec's training-only state: what a training checkpoint keeps beside `model.state_dict()`.

`state_dict()` holds what a model folder ships and the model id hashes: weights (and each
quantizer stage's `initialized` flag). The quantizer's EMA statistics and the vectors a k-means
start has collected are left out of it (non-persistent buffers), so a shipped model holds
weights only; training saves them with `training_state` and reads them back with
`load_training_state`, which also restarts the statistics of stages loaded from weights alone.
"""

from __future__ import annotations

import torch
from torch import nn

from telucodec.model.vq_stages import TRAINING_BUFFERS, VectorQuantizer


def training_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every quantizer stage's training-only state by its full name (EMA statistics, and the
    vectors a k-means start has collected): what a training checkpoint keeps beside
    `model.state_dict()`, which leaves it out."""
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, VectorQuantizer):
            prefix = f"{name}." if name else ""
            state.update({prefix + b: getattr(module, b).detach().clone() for b in TRAINING_BUFFERS})
            if module.kmeans_samples:
                state[prefix + "kmeans_samples"] = torch.cat(module.kmeans_samples)
    return state


def training_state_names(model: nn.Module) -> set[str]:
    """The names `training_state` may use for this model (to tell them from unknown tensors)."""
    return {f"{name}.{b}" if name else b for name, module in model.named_modules()
            if isinstance(module, VectorQuantizer) for b in (*TRAINING_BUFFERS, "kmeans_samples")}


@torch.no_grad()
def load_training_state(model: nn.Module, state: dict[str, torch.Tensor], loaded: set[str]) -> None:
    """After `model` loaded the tensors named `loaded` from `state`: each stage whose codebook was
    loaded takes its training state from `state` when it is there (a checkpoint, or a model
    folder written before it was left out). Otherwise (a model folder holds weights only) its
    statistics are already restarted from the loaded entries: every `load_state_dict` does that
    (`VectorQuantizer`'s load hook). A stage left fresh keeps its fresh state."""
    for name, module in model.named_modules():
        if not isinstance(module, VectorQuantizer):
            continue
        prefix = f"{name}." if name else ""
        if prefix + "codebook" not in loaded:
            continue
        saved = {b: state.get(prefix + b) for b in TRAINING_BUFFERS}
        if all(v is not None and v.shape == getattr(module, b).shape for b, v in saved.items()):
            for b, v in saved.items():
                getattr(module, b).copy_(v)
        samples = state.get(prefix + "kmeans_samples")
        module.kmeans_samples = [samples.to(module.codebook)] if samples is not None else []
