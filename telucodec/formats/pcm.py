"""Caller audio -> the samples a codec encodes: the one conversion every runtime uses.

`Codec.encode` / `telucodec.compress` (PyTorch), `OnnxCodec.encode` (numpy + onnxruntime, no
torch) and the streaming encoder all take a caller's array through `input_samples` (or its parts,
`pcm_to_float` and `check_sample_rate`), so the same array gives the same samples, and so the same
codes, whichever runtime encodes it:

    dtype     float arrays are taken as they are; integer PCM is divided by its dtype's range
              (int16 / 32768, int32 / 2**31, uint8 centred on 128); anything else is refused
    shape     mono: [T], or any shape with one axis longer than 1 ([T, 1], [1, T])
    rate      a whole number of Hz in MIN_INPUT_SAMPLE_RATE..MAX_INPUT_SAMPLE_RATE, resampled
              (soxr) to the codec's rate when it differs
    values    finite (NaN or infinity is refused), clipped to [-1, 1]

numpy (and soxr, for resampling) only: this module sits below the model and is imported by the
torch-free ONNX runner.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from telucodec.errors import AudioError, ModelError

# the same bounds `formats.audio.load_audio` puts on a file's sample rate
MIN_INPUT_SAMPLE_RATE = 4_000
MAX_INPUT_SAMPLE_RATE = 384_000


def check_sample_rate(value: Any, name: str = "sample_rate") -> int:
    """A caller's sample rate as an int: a whole number of Hz (an int, a numpy integer or an
    integral float such as 16000.0) within MIN_INPUT_SAMPLE_RATE..MAX_INPUT_SAMPLE_RATE.
    Anything else (0, negative, 44100.5, NaN, a bool, a string, None) raises AudioError naming
    `name` and the value."""
    accepted = f"a whole number of Hz from {MIN_INPUT_SAMPLE_RATE} to {MAX_INPUT_SAMPLE_RATE}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise AudioError(f"{name}={value!r}: not a sample rate (accepted: {accepted})")
    number = float(value)
    if not math.isfinite(number) or number != math.floor(number):
        raise AudioError(f"{name}={value!r}: not a whole number of Hz (accepted: {accepted})")
    rate = int(number)
    if not MIN_INPUT_SAMPLE_RATE <= rate <= MAX_INPUT_SAMPLE_RATE:
        raise AudioError(f"{name}={value!r}: out of range (accepted: {accepted})")
    return rate


def pcm_to_float(wav: Any) -> np.ndarray:
    """Samples as a float array: float arrays pass through untouched (no copy); integer PCM is
    divided by its dtype's range (int16 / 32768, uint8 centred on 128, ...) into float32;
    anything else (bool, complex, object, strings) is refused (ModelError)."""
    arr = np.asarray(wav)
    kind = arr.dtype.kind
    if kind == "f":
        return arr
    if kind in "iu":
        info = np.iinfo(arr.dtype)
        scale = (float(info.max) + 1.0) if kind == "i" else (float(info.max) + 1.0) / 2.0
        centre = 0.0 if kind == "i" else scale
        return ((arr.astype(np.float64) - centre) / scale).astype(np.float32)
    raise ModelError(f"input audio must be float or integer PCM samples, got dtype {arr.dtype} "
                     "(convert it with numpy: wav.astype(np.float32) in [-1, 1])")


def mono(wav: np.ndarray) -> np.ndarray:
    """[T], [T, 1], [1, T], ... -> [T] (a view when it can be); more than one channel is refused."""
    if sum(1 for n in wav.shape if n > 1) > 1:
        raise ModelError(f"input audio must be mono [T], got shape {tuple(wav.shape)} "
                         "(mix the channels first, e.g. wav.mean(axis=1))")
    return wav.reshape(-1)


def input_samples(wav: Any, sample_rate: Any, target_rate: int, name: str = "sample_rate") -> np.ndarray:
    """A caller's mono audio at `sample_rate` -> float32 [T] at `target_rate` in [-1, 1].

    Shares memory with `wav` when it already is float32 mono at `target_rate` within [-1, 1] (an
    hour-long clip is held once); otherwise converts (`pcm_to_float`), resamples and clips.
    Raises ModelError (dtype, channels, NaN/inf) or AudioError (the sample rate)."""
    rate = check_sample_rate(sample_rate, name)
    x = mono(pcm_to_float(wav))
    if rate != target_rate and x.size:
        import soxr

        x = soxr.resample(np.asarray(x, dtype=np.float32), rate, target_rate)
    x = np.asarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ModelError("input audio contains NaN or infinite samples")
    if x.size and (x.max() > 1.0 or x.min() < -1.0):
        x = np.clip(x, -1.0, 1.0)  # a copy only when needed
    return x
