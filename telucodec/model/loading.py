"""Reading a codec from disk: a model folder, a training checkpoint or an experiment folder.

The one place that knows these layouts, below both the Python API (`telucodec.load_model`) and
training (`--resume`, `--init_from`):

    model folder       config.json + model.safetensors (+ MODEL_CARD.md): `Codec.save_pretrained`
    checkpoint (.pt)   a plain dict written by training (`telucodec.train.checkpoint`), loaded
                       with `weights_only=True`, so a file carrying a pickle payload is refused
                       without running it
    experiment folder  CKPT/NAME/: its model/ folder, else checkpoints/best.pt, else last.pt

`None` stands for the model shipped in `telucodec/pretrained/`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from telucodec.config import CodecConfig
from telucodec.errors import ModelError
from telucodec.model.codec import Codec, load_matching_state

PRETRAINED_DIR = Path(__file__).parents[1] / "pretrained"
DEFAULT_MODEL = "telugu-v2"
CHECKPOINT_FORMAT = 1


def default_model_dir() -> Path:
    """The folder of the shipped default model."""
    return PRETRAINED_DIR / DEFAULT_MODEL


def resolve(path: str | Path) -> Path:
    """A model folder, a training checkpoint (.pt) or an experiment folder -> the file/folder to load."""
    p = Path(path)
    if p.is_dir():
        if (p / "model.safetensors").is_file():
            return p
        for candidate in (p / "model", p / "checkpoints" / "best.pt", p / "checkpoints" / "last.pt"):
            if candidate.exists():
                return candidate
        raise ModelError(f"{p}: not a model folder, experiment folder or checkpoint")
    if p.is_file():
        return p
    raise ModelError(f"{p}: no such model")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely (tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: refused: not a plain-tensor telucodec checkpoint ({first[:200]})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise ModelError(f"{path}: not a telucodec training checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def checkpoint_config(state: dict[str, Any], source: str) -> CodecConfig:
    """The `CodecConfig` saved inside a loaded checkpoint; `source` names the file in errors."""
    try:
        return CodecConfig.from_dict(state["config"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{source}: checkpoint has no usable config") from exc


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The generator tensors of a model folder or a training checkpoint (no pickle is executed)."""
    p = resolve(path)
    if p.is_dir():
        return load_file(str(p / "model.safetensors"))
    if p.suffix == ".safetensors":
        return load_file(str(p))
    return load_checkpoint(p)["model"]


def load_model(path: str | Path | None = None, device: str = "cpu") -> Codec:
    """Load a codec for inference. None = the shipped default model."""
    if path is None:
        path = default_model_dir()
        if not (path / "model.safetensors").is_file():
            raise ModelError("no pretrained model is shipped in this install yet; pass a model folder or checkpoint (--model)")
    p = resolve(path)
    if p.is_dir():
        model = Codec.from_pretrained(p)
    else:
        state = load_checkpoint(p)
        model = Codec(checkpoint_config(state, str(p)))
        load_matching_state(model, state["model"], strict=True, source=str(p))
    return model.to(device).eval()
