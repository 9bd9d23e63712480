"""The runtime switch for streams: a causal model's stream encoder and decoder, PyTorch's or its
streaming ONNX graphs run by onnxruntime, chosen as `deploy/runtimes.py` chooses for files.

    streams = open_streams(model, "auto", kbps=6)    # or "torch", "onnx"; None: $TELUCODEC_RUNTIME
    codes = streams.encoder.push(chunk)              # int64 numpy [n_q, frames completed]
    audio = streams.decoder.push(codes)              # float32 numpy [samples now final]
    print(streams.note)                              # one line: which runtime streams, and why

Both runtimes take the same chunks (any size, float or integer PCM) and give numpy arrays; the
ONNX streams give PyTorch's codes and its audio within float rounding (the export's parity check
on a real clip, pushed 20 ms at a time). "auto" picks onnx when onnxruntime is installed and the
model's streaming export exists or can be made once with codes identical to PyTorch's; anything
else streams in PyTorch with a note saying why (a model the streaming export refuses: the LSTM,
factorized codebooks; onnxruntime missing; an export that failed, recorded in
`<model_id>-stream.failed` beside the cached exports so it is not retried each time). Asking for
onnx where it cannot run falls back the same way: never an error. A model that cannot stream at
all (not causal, the `lufs` amplitude) is refused by PyTorch's streams, as `stream_encoder()` is.

The streaming graphs are kept beside the offline export: `onnx-stream/` in a writable model
folder outside the package, else `cache_dir()/onnx/<model_id>-stream/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from telucodec.deploy.runtimes import (
    check_runtime_name,
    checked_export_config,
    export_places,
    make_once,
    onnx_obstacle,
    runtime_parity_clip,
    write_export_folder,
)
from telucodec.model.codec import Codec
from telucodec.runtime import cache_dir

STREAM_SUFFIX = "-stream"  # the streaming export's folder: the offline one's name + this


@dataclass
class Streams:
    """A stream encoder and decoder of one model, both numpy in and out (`push`, `flush`, `reset`)."""

    encoder: Any
    decoder: Any
    runtime: str  # "torch" or "onnx"
    note: str     # one line: which runtime streams, and why


class _NumpyStream:
    """A PyTorch stream (`Codec.stream_encoder()` / `stream_decoder()`) giving numpy arrays."""

    def __init__(self, stream: Any):
        self.stream = stream

    def push(self, x: Any) -> np.ndarray:
        return self.stream.push(x).numpy()

    def flush(self) -> np.ndarray:
        return self.stream.flush().numpy()

    def reset(self) -> None:
        self.stream.reset()


def stream_places(model: Codec, model_path: str | Path | None) -> tuple[list[Path], Path]:
    """(folders a streaming export of `model` may be in, the folder a new one is written to): the
    offline export's places (`runtimes.export_places`), each with STREAM_SUFFIX."""
    places, target = export_places(model, model_path)
    return [p.with_name(p.name + STREAM_SUFFIX) for p in places], target.with_name(target.name + STREAM_SUFFIX)


def usable_stream_export(directory: Path, model: Codec) -> dict[str, Any] | None:
    """streaming.json of a streaming export of exactly `model` in `directory`, made by this code's
    exporter (`STREAMING_VERSION`: an older one is made again), that passed its parity check."""
    from telucodec.deploy.onnx_streaming_export import CONFIG_FILE, STREAMING_VERSION

    return checked_export_config(directory, CONFIG_FILE, "telucodec-onnx-streaming", STREAMING_VERSION, model)


def make_stream_export(model: Codec, target: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write `model`'s streaming graphs into `target` whole (beside it, then renamed into place)."""
    from telucodec.deploy.onnx_streaming_export import CONFIG_FILE, export_streaming_onnx

    if log is not None:
        log(f"exporting the model's streaming graphs to ONNX for the onnx runtime, once: {target}")
    clip = runtime_parity_clip(model)
    return write_export_folder(target, lambda tmp: export_streaming_onnx(model, tmp, clip),
                               lambda folder: usable_stream_export(folder, model), CONFIG_FILE)


def open_streams(model: Codec, requested: str | None = None, *, kbps: float | None = None,
                 model_path: str | Path | None = None, log: Callable[[str], None] | None = None,
                 threads: int = 1) -> Streams:
    """A stream encoder (sending the codebooks `kbps` needs; None: all) and decoder for `model`,
    in the runtime `requested` ("torch", "onnx", "auto"; None: the default). Never raises for an
    ONNX runtime that cannot run: the streams are then PyTorch's, with `note` saying why."""
    name = check_runtime_name(requested)

    def torch_streams(why: str) -> Streams:
        asked = "onnx was asked for but " if name == "onnx" else ""
        note = "runtime: torch (requested)" if name == "torch" else f"runtime: torch ({asked}{why})"
        return Streams(_NumpyStream(model.stream_encoder(kbps)), _NumpyStream(model.stream_decoder()), "torch", note)

    if name == "torch":
        return torch_streams("")
    from telucodec.deploy.onnx_streaming_export import streaming_export_refusal

    places, target = stream_places(model, model_path)
    found = next(((d, c) for d in places if (c := usable_stream_export(d, model)) is not None), None)
    why = onnx_obstacle(model, need_export=found is None) or (streaming_export_refusal(model) if found is None else None)
    if why:
        return torch_streams(why)
    made = ""
    if found is None:
        made_now = make_once(lambda: make_stream_export(model, target, log),
                             cache_dir() / "onnx" / f"{model.model_id}{STREAM_SUFFIX}.failed")
        if isinstance(made_now, str):
            return torch_streams(made_now)
        found, made = (target, made_now[0]), made_now[1]
    directory, config = found
    parity = config.get("parity", {})
    note = f"runtime: onnx (onnxruntime streaming graphs, export {directory}{made})"
    if not parity.get("codes_identical"):
        differs = (f"the streaming export's codes differ from PyTorch's on {parity.get('codes_mismatched', '?')} "
                   "codes of the parity clip (float near-ties)")
        if name == "auto":
            return torch_streams(differs)
        note = f"runtime: onnx (requested; {differs}; export {directory})"
    from telucodec.deploy.onnx_streaming import OnnxStreamDecoder, OnnxStreamEncoder

    encoder = OnnxStreamEncoder(directory, n_q=model.n_q_for_kbps(kbps), threads=threads)
    return Streams(encoder, OnnxStreamDecoder(directory, threads=threads), "onnx", note)
