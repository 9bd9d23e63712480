"""The Python API: load a model, compress audio to bytes, decompress bytes to audio.

    model = telucodec.load_model()                 # the shipped Telugu model
    data = telucodec.compress(wav, 16000, kbps=3)  # bytes of a .tcd file
    wav, sr = telucodec.decompress(data)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from telucodec.errors import ModelError
from telucodec.model.codec import Codec, load_matching_state

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "telugu-v2"


def default_model_dir() -> Path:
    return PRETRAINED_DIR / DEFAULT_MODEL


def _resolve(path: str | Path) -> Path:
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


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The generator tensors of a model folder or a training checkpoint (no pickle is executed)."""
    from telucodec.train.checkpoint import load_checkpoint

    p = _resolve(path)
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
    p = _resolve(path)
    if p.is_dir():
        model = Codec.from_pretrained(p)
    else:
        from telucodec.train.checkpoint import checkpoint_config, load_checkpoint

        state = load_checkpoint(p)
        model = Codec(checkpoint_config(state, str(p)))
        load_matching_state(model, state["model"], strict=True, source=str(p))
    return model.to(device).eval()


def compress(wav: np.ndarray | torch.Tensor, sample_rate: int, model: Codec | None = None,
             kbps: float | None = None, entropy: bool = False) -> bytes:
    """Mono audio -> bytes of a .tcd bitstream."""
    from telucodec.bitstream import write_bitstream

    model = model if model is not None else load_model()
    return write_bitstream(model.encode(wav, sample_rate, kbps), entropy=entropy)


def decompress(data: bytes, model: Codec | None = None) -> tuple[np.ndarray, int]:
    """Bytes of a .tcd bitstream -> (float32 audio, sample rate). Refuses codes of another model."""
    from telucodec.bitstream import read_bitstream

    model = model if model is not None else load_model()
    codes = read_bitstream(data, expected_model_id=model.model_id)
    return model.decode(codes).numpy(), codes.sample_rate
