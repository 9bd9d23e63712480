"""The Python API: load a model, compress audio to bytes, decompress bytes to audio.

    model = telucodec.load_model()                 # the shipped Telugu model
    data = telucodec.compress(wav, 16000, kbps=3)  # bytes of a .tcd file
    wav, sr = telucodec.decompress(data)

Loading lives in `telucodec.model.loading` (shared with training); the .tcd format in
`telucodec.formats.bitstream`. The names below are re-exported here so `telucodec.api.X` keeps working.
"""

from __future__ import annotations

import numpy as np
import torch

from telucodec.formats.bitstream import read_bitstream, write_bitstream
from telucodec.model.codec import Codec
from telucodec.model.loading import (
    DEFAULT_MODEL,
    PRETRAINED_DIR,
    default_model_dir,
    load_model,
    read_weights,
)

__all__ = ["DEFAULT_MODEL", "PRETRAINED_DIR", "compress", "decompress", "default_model_dir", "load_model",
           "read_weights"]


def compress(wav: np.ndarray | torch.Tensor, sample_rate: int, model: Codec | None = None,
             kbps: float | None = None, entropy: bool = False) -> bytes:
    """Mono audio -> bytes of a .tcd bitstream."""
    model = model if model is not None else load_model()
    return write_bitstream(model.encode(wav, sample_rate, kbps), entropy=entropy)


def decompress(data: bytes, model: Codec | None = None) -> tuple[np.ndarray, int]:
    """Bytes of a .tcd bitstream -> (float32 audio, sample rate). Refuses codes of another model."""
    model = model if model is not None else load_model()
    codes = read_bitstream(data, expected_model_id=model.model_id)
    return model.decode(codes).numpy(), codes.sample_rate
