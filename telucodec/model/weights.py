"""Loading tensors into a model: what matches, what is missing, and what a folder or checkpoint
holds beyond `state_dict()`.

`load_matching_state` is the one path every load takes (model folders, checkpoints, `--resume`,
`--init_from`, distillation): strict, or best-effort with the names it did not load. Tensors a
model knows but leaves out of `state_dict()` are not "unexpected": its constants (the iSTFT
bases, rebuilt, never loaded) and its training-only state (the quantizer's EMA statistics,
applied by `load_training_state`). `load_shipped_tensors` also keeps what an older folder held
beyond `state_dict()`, so that folder's model id stays what it was (`Codec.shipped_tensors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from telucodec.errors import ModelError
from telucodec.model.training_state import load_training_state, training_state_names

M = TypeVar("M", bound=nn.Module)


@dataclass
class StateMatch:
    """How a state dict lines up with a model: the tensor names in each case, sorted."""

    loaded: list[str]       # in both, same shape: copied into the model
    missing: list[str]      # in the model only: keep their fresh values
    unexpected: list[str]   # in the state only: ignored (e.g. an older design's `decoder.output_scale`)
    mismatched: list[str]   # in both with different shapes: keep their fresh values


def match_state(model: nn.Module, state: dict[str, torch.Tensor]) -> StateMatch:
    own = model.state_dict()
    both = set(own) & set(state)
    mismatched = sorted(k for k in both if own[k].shape != state[k].shape)
    return StateMatch(loaded=sorted(both - set(mismatched)), missing=sorted(set(own) - set(state)),
                      unexpected=sorted(set(state) - set(own) - _known_beyond_state_dict(model)), mismatched=mismatched)


def _known_beyond_state_dict(model: nn.Module) -> set[str]:
    """Tensor names the model knows that `state_dict()` leaves out: its constants (non-persistent
    buffers, which older model folders and checkpoints hold; rebuilt, never loaded) and its
    training-only state (which checkpoints hold; applied by `load_training_state`)."""
    return ({name for name, _ in model.named_buffers()} | training_state_names(model)) - set(model.state_dict())


def load_matching_state(model: nn.Module, state: dict[str, torch.Tensor], strict: bool, source: str) -> list[str]:
    """Load `state` into `model`. strict: any missing, unexpected or mis-shaped key is a one-line
    ModelError naming them; otherwise load what matches and return the model's names that were
    not loaded (missing or mis-shaped; `match_state` tells the unexpected ones too)."""
    own = model.state_dict()
    match = match_state(model, state)
    missing, unexpected, shape_mismatch = match.missing, match.unexpected, match.mismatched
    problems = []
    if unexpected:
        problems.append(f"unexpected keys {_names(unexpected)}")
    if missing:
        problems.append(f"missing keys {_names(missing)}")
    if shape_mismatch:
        problems.append(f"mismatched shapes {_names(shape_mismatch)}")
    if strict and problems:
        raise ModelError(f"{source}: a different architecture ({'; '.join(problems)})")
    good = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and own[k].shape == v.shape}
    # a quantizer stage whose codebook stays fresh keeps all of its state fresh: a loaded
    # `initialized` flag would skip its k-means start and leave the fresh entries random
    fresh_stages = tuple(k[: -len("codebook")] for k in missing + shape_mismatch if k.endswith(".codebook"))
    stage_state = sorted(k for k in good if k.startswith(fresh_stages))  # startswith(()) is False
    for k in stage_state:
        del good[k]
    own.update(good)
    model.load_state_dict(own)
    load_training_state(model, state, set(good))
    return missing + shape_mismatch + stage_state


def load_shipped_tensors(model: M, tensors: dict[str, torch.Tensor], source: str) -> M:
    """Load a model folder's (or a checkpoint's) tensors strictly. The ones it holds beyond
    `state_dict()` (the iSTFT bases and EMA statistics that folders and checkpoints written before
    they were left out hold) are kept as read, for `shipped_tensors`: the model id is computed as
    before for such a folder, so the shipped models' ids and bitstreams stay valid."""
    load_matching_state(model, tensors, strict=True, source=source)
    own = model.state_dict()
    model.__dict__["_id_extras"] = {k: v for k, v in tensors.items() if k not in own}
    return model


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
