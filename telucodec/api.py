"""The Python API: load a model, compress audio to bytes, decompress bytes to audio.

    model = telucodec.load_model()                 # the shipped Telugu model
    data = telucodec.compress(wav, 16000, kbps=3)  # bytes of a .tcd file
    wav, sr = telucodec.decompress(data)

Loading lives in `telucodec.model.loading` (shared with training); the .tcd format in
`telucodec.formats.bitstream`. The names below are re-exported here so `telucodec.api.X` keeps working.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from telucodec.errors import BitstreamError
from telucodec.formats.bitstream import describe, read_bitstream, write_bitstream, write_smallest
from telucodec.formats.codes import Codes
from telucodec.model.codec import Codec
from telucodec.model.loading import (
    DEFAULT_MODEL,
    PRETRAINED_DIR,
    default_model_dir,
    load_model,
    model_hint,
    read_weights,
)

__all__ = ["DEFAULT_MODEL", "PRETRAINED_DIR", "compress", "decompress", "default_model_dir", "load_model",
           "read_codes", "read_weights"]


def compress(wav: np.ndarray | torch.Tensor, sample_rate: int, model: Codec | None = None,
             kbps: float | None = None, entropy: bool = False) -> bytes:
    """Mono audio [T] at `sample_rate` (resampled to the model's) -> bytes of a .tcd bitstream.
    Float samples are taken as they are (clipped to [-1, 1]); integer PCM (int16 from
    `scipy.io.wavfile.read`, int32, uint8) is scaled by its dtype's range; other dtypes are refused.
    `kbps` above the model's maximum is capped there, with a UserWarning saying so. `entropy`:
    entropy-code the codes when that makes the file smaller (the plain file otherwise)."""
    model = model if model is not None else load_model()
    note = model.kbps_cap_note(kbps, name="kbps=")
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    codes = model.encode(wav, sample_rate, kbps)
    return write_smallest(codes)[0] if entropy else write_bitstream(codes)


def read_codes(data: bytes, model: Codec) -> Codes:
    """Parse .tcd bytes for `model`. A file made by another model is refused (BitstreamError), and
    when a shipped model made it, the error names that model."""
    try:
        return read_bitstream(data, expected_model_id=model.model_id)
    except BitstreamError as exc:
        if not str(exc).startswith("wrong model"):
            raise
        hint = model_hint(describe(data)["model_id"])
        raise BitstreamError(f"{exc}; {hint}" if hint else str(exc)) from exc


def decompress(data: bytes, model: Codec | None = None) -> tuple[np.ndarray, int]:
    """Bytes of a .tcd bitstream -> (float32 mono audio [T], the model's sample rate: 16 kHz for
    the shipped models), unbounded (clip before writing 16-bit). Refuses codes of another model."""
    model = model if model is not None else load_model()
    codes = read_codes(data, model)
    return model.decode(codes).numpy(), codes.sample_rate
