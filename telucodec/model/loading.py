"""Reading a codec from disk: a model folder, a training checkpoint or an experiment folder.

The one place that knows these layouts, below both the Python API (`telucodec.load_model`) and
training (`--resume`, `--init_from`):

    model folder       config.json + model.safetensors (+ MODEL_CARD.md, + entropy_tables.safetensors:
                       the context coder's tables, part of the model id): `Codec.save_pretrained`
    checkpoint (.pt)   a plain dict written by training (`telucodec.train.checkpoint`), loaded
                       with `weights_only=True`, so a file carrying a pickle payload is refused
                       without running it
    experiment folder  CKPT/NAME/: its model/ folder, else checkpoints/best.pt, else last.pt
    a shipped name     a folder name in `telucodec/pretrained/`: that shipped model

`None` stands for the default shipped model (`DEFAULT_MODEL`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from telucodec.config import DEFAULT_PRESET, CodecConfig, get_config
from telucodec.errors import ModelError
from telucodec.formats.context_tables import TABLES_FILE
from telucodec.model.codec import Codec, load_shipped_tensors

PRETRAINED_DIR = Path(__file__).parents[1] / "pretrained"
DEFAULT_MODEL = "telugu-v7"
CHECKPOINT_FORMAT = 1


def default_model_dir() -> Path:
    """The folder of the shipped default model."""
    return PRETRAINED_DIR / DEFAULT_MODEL


def shipped_models() -> list[str]:
    """Names of the model folders shipped in `PRETRAINED_DIR` (what `--model NAME` accepts)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(d.name for d in PRETRAINED_DIR.iterdir() if (d / "model.safetensors").is_file())


_SHIPPED_IDS: dict[tuple, str] = {}  # (folder, weights mtime_ns, size, tables (mtime_ns, size)) -> model id


def shipped_model_ids() -> dict[str, str]:
    """model id -> name of each shipped model. Hashing a model's weights costs tens of ms, so each
    id is computed once per process (again only if the weights file changes)."""
    ids = {}
    for name in shipped_models():
        folder = PRETRAINED_DIR / name
        st = (folder / "model.safetensors").stat()
        tables = folder / TABLES_FILE  # part of the id of a model that has them
        tst = tables.stat() if tables.is_file() else None
        key = (str(folder.resolve()), st.st_mtime_ns, st.st_size, tst and (tst.st_mtime_ns, tst.st_size))
        if key not in _SHIPPED_IDS:
            try:
                _SHIPPED_IDS[key] = Codec.from_pretrained(folder).model_id
            except ModelError:
                continue
        ids[_SHIPPED_IDS[key]] = name
    return ids


def shipped_model_name(model_id: str) -> str | None:
    """The name of the shipped model with this id (None when no shipped model has it)."""
    return shipped_model_ids().get(str(model_id).lower())


def model_hint(model_id: str) -> str:
    """For a "wrong model" error: which model to use instead, when codes of `model_id` were made by
    a shipped model ("" when no shipped model has this id)."""
    name = shipped_model_name(model_id)
    return (f"made by the shipped model {name}: decode with --model {name} (Python: "
            f"telucodec.load_model({name!r}))") if name else ""


def resolve(path: str | Path) -> Path:
    """A model folder, a training checkpoint (.pt), an experiment folder, or the name of a shipped
    model (a folder name in `PRETRAINED_DIR`) -> the file/folder to load."""
    p = Path(path)
    if not p.exists() and str(path) in shipped_models():
        return PRETRAINED_DIR / str(path)
    if p.is_dir():
        if (p / "model.safetensors").is_file():
            return p
        for candidate in (p / "model", p / "checkpoints" / "best.pt", p / "checkpoints" / "last.pt"):
            if candidate.exists():
                return candidate
        raise ModelError(f"{p}: not a model folder, experiment folder or checkpoint")
    if p.is_file():
        return p
    names = shipped_models()
    raise ModelError(f"{p}: no such model" + (f" (shipped models: {', '.join(names)})" if names else ""))


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


def init_config(path: str | Path) -> CodecConfig:
    """The config a model folder or checkpoint was built with: what `--init_from` trains when no
    `--config` is given (its architecture, and the fine-tuning recipe a converted model carries),
    at the current config version: the model it starts is a new one, written in family sections."""
    p = resolve(path)
    if p.is_dir():
        return CodecConfig.load(p / "config.json").upgraded()
    if p.suffix == ".safetensors":
        return CodecConfig.load(p.parent / "config.json").upgraded()
    return checkpoint_config(load_checkpoint(p), str(p)).upgraded()


def base_config(config: str | None, init_from: str | None) -> CodecConfig:
    """What a training run builds before its flags apply: `--config` (a preset or JSON file) when
    given; else the `--init_from` model's own config; else the default preset."""
    if config is None and init_from:
        return init_config(init_from)
    return get_config(config or DEFAULT_PRESET)


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
        model = load_shipped_tensors(Codec(checkpoint_config(state, str(p))), state["model"], str(p))
    return model.to(device).eval()
