"""The Python API: load a model, compress audio to bytes, decompress bytes to audio.

    model = telucodec.load_model()                 # the shipped Telugu model
    data = telucodec.compress(wav, 16000, kbps=3)  # bytes of a .tcd file
    wav, sr = telucodec.decompress(data)

Loading lives in `telucodec.model.loading` (shared with training); the .tcd format in
`telucodec.formats.bitstream`. The names below are re-exported here so `telucodec.api.X` keeps working.

`runtime=` picks the engine ("auto", "torch", "onnx"; None: $TELUCODEC_RUNTIME, else "auto":
the model's ONNX export through onnxruntime when it can run and gives PyTorch's codes, made once
and cached; `telucodec.deploy.runtimes`). Either runtime writes the same bytes for the same audio.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from telucodec.deploy.runtimes import Runtime, choose_runtime
from telucodec.deploy.stream_runtimes import Streams
from telucodec.deploy.stream_runtimes import open_streams as _open_streams
from telucodec.errors import BitstreamError
from telucodec.formats.bitstream import describe, read_bitstream, write_bitstream, write_smallest
from telucodec.formats.codes import Codes
from telucodec.formats.pcm import check_sample_rate
from telucodec.formats.rate import encode_to_rate
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
           "open_streams", "read_codes", "read_weights", "runtime_for"]

log = logging.getLogger("telucodec")


def runtime_for(model: Codec, runtime: str | None = None, beam: int = 1) -> Runtime:
    """The engine `compress` / `decompress` run `model` with (its `.name` and one-line `.note` say
    which and why). Asking for "onnx" where it cannot run gives torch and a UserWarning saying why."""
    chosen = choose_runtime(model, runtime, log=log.info, beam=beam)
    if chosen.name == "torch" and "onnx was asked for" in chosen.note:
        warnings.warn(chosen.note, UserWarning, stacklevel=3)
    return chosen


def open_streams(model: Codec | None = None, kbps: float | None = None, runtime: str | None = None) -> Streams:
    """A live stream encoder and decoder for a causal model (default: the shipped one):
    `.encoder.push(chunk)` -> int64 codes [n_q, frames completed], `.decoder.push(codes)` ->
    float32 audio of the frames now final, `flush()` at the end; numpy out whichever runtime runs.
    `kbps`: the codebooks the stream sends (None: all). `runtime`: "auto" (the streaming ONNX
    graphs where they run with PyTorch's codes, made once and cached), "torch" or "onnx"; `.note`
    says which ran. A stream carries no level (an `rms` model codes the input at its own level).
    Asking for "onnx" where it cannot run gives torch and a UserWarning saying why."""
    model = model if model is not None else load_model()
    streams = _open_streams(model, runtime, kbps=kbps, log=log.info)
    if streams.runtime == "torch" and "onnx was asked for" in streams.note:
        warnings.warn(streams.note, UserWarning, stacklevel=2)
    return streams


def compress(wav: np.ndarray | torch.Tensor, sample_rate: int, model: Codec | None = None,
             kbps: float | None = None, entropy: bool = False, runtime: str | None = None,
             beam: int = 1) -> bytes:
    """Mono audio [T] at `sample_rate` (resampled to the model's) -> bytes of a .tcd bitstream.
    Float samples are taken as they are (clipped to [-1, 1]); integer PCM (int16 from
    `scipy.io.wavfile.read`, int32, uint8) is scaled by its dtype's range; other dtypes are refused.
    A sample rate that is not a whole number of Hz in 4000..384000 is refused (AudioError).
    `kbps`: the file's actual rate, header included: the most codebooks whose smallest file
    fits in it (`formats/rate.py`); above the model's maximum it is capped there, with a
    UserWarning saying so. `entropy` (without `kbps`): entropy-code the codes when that makes the
    file smaller (the plain file otherwise). `beam` > 1: the encoder's beam search (PyTorch).
    `runtime`: "auto", "torch" or "onnx" (module docstring); the bytes are the same whichever runs."""
    check_sample_rate(sample_rate)
    model = model if model is not None else load_model()
    note = model.kbps_cap_note(kbps, name="kbps=")
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    engine = runtime_for(model, runtime, beam)
    if kbps is not None:  # rate control: the file's actual rate, header included, within kbps
        return encode_to_rate(engine, wav, sample_rate, kbps).data
    codes = engine.encode(wav, sample_rate)
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


def decompress(data: bytes, model: Codec | None = None, runtime: str | None = None) -> tuple[np.ndarray, int]:
    """Bytes of a .tcd bitstream -> (float32 mono audio [T], the model's sample rate: 16 kHz for
    the shipped models), unbounded (clip before writing 16-bit). Refuses codes of another model.
    `runtime`: "auto", "torch" or "onnx" (module docstring)."""
    model = model if model is not None else load_model()
    codes = read_codes(data, model)
    return runtime_for(model, runtime).decode(codes), codes.sample_rate
