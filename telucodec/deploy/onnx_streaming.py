"""Run a causal codec's streaming ONNX graphs with onnxruntime and numpy only (no torch).

    enc = OnnxStreamEncoder("onnx/", n_q=6)   # a folder written by `export_streaming_onnx`
    dec = OnnxStreamDecoder("onnx/")
    for chunk in microphone:                  # any chunk size; float or integer PCM, [n] or [n, 1]
        codes = enc.push(chunk)               # int64 [n_q, frames completed by it]
        audio = dec.push(codes)               # float32 [samples of the frames now final]
    codes, audio = enc.flush(), ...           # end of stream, then both start afresh

The same streams as `Codec.stream_encoder()` / `stream_decoder()` (telucodec/model/streaming.py),
with the same results (streaming.json's `parity` says by how much they differ): each push runs the
graph once on its new whole frames, the model's state carried from run to run as numpy arrays.
Caller audio goes through `telucodec.formats.pcm.input_samples`, the one conversion every runtime
uses, at the codec's own sample rate.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from telucodec.deploy.onnx_runtime import bits_of, check_codes, stage_sizes
from telucodec.errors import ModelError
from telucodec.formats.pcm import input_samples

CONFIG_FILE = "streaming.json"


class _Graph:
    """One session and the state it carries: run(inputs) -> its first output; the rest become the state.

    With `frame_file` (streaming.json's one-frame graph), a push of exactly one frame runs that
    graph through IO bindings made once: the state lives in two sets of buffers, each run reads
    one set and writes the other (no per-run conversion of a dozen arrays to and from
    onnxruntime's values, ~30 us of a ~200 us frame), and the input and first output are buffers too.
    """

    def __init__(self, directory: Path, file: str, states: list[list[Any]], threads: int,
                 providers: list[str] | None, frame_file: str | None = None, search_stages: int | None = None):
        import onnxruntime as ort

        from telucodec.deploy.onnx_runtime import prefix_session, session_options

        providers = providers or ["CPUExecutionProvider"]

        def session(path: Path) -> Any:
            """The graph, or (an encoder with `search_stages`) a copy that searches only those."""
            if search_stages is None:
                return ort.InferenceSession(str(path), session_options(threads), providers=providers)
            return prefix_session(path, search_stages, threads, providers)

        self.session = session(directory / file)
        self.frame = session(directory / frame_file) if frame_file and (directory / frame_file).is_file() else None
        self.state_names = [name for name, _ in states]
        self.shapes = [tuple(shape) for _, shape in states]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.reset()

    def reset(self) -> None:
        self._sets = [[np.zeros(shape, dtype=np.float32) for shape in self.shapes] for _ in range(2)]
        self._current = 0
        self.state = self._sets[0]
        self._bindings: list[Any] | None = None
        self._bound_input: tuple[str, tuple[int, ...], Any] | None = None

    def run(self, name: str, value: np.ndarray, frames: int) -> np.ndarray:
        """`value` holds `frames` frames: the one-frame graph for one (where there is one), else the
        general graph (its new state copied into the buffers the one-frame bindings read)."""
        if self.frame is not None and frames == 1:
            return self._run_frame(name, value)
        feeds = dict(zip(self.state_names, self.state))
        feeds[name] = value
        first, *new = self.session.run(None, feeds)
        if self.frame is None:
            self.state = new
        else:
            for buffer, fresh in zip(self.state, new):
                np.copyto(buffer, fresh)
        return first

    def _bind(self, name: str, value: np.ndarray) -> None:
        """Two bindings of the one-frame graph: set 0 -> set 1 and set 1 -> set 0, the same input
        and first-output buffers (made again when the input's shape or dtype changes)."""
        import onnxruntime as ort

        buffer = np.zeros(value.shape, dtype=value.dtype)
        first = self.frame.get_outputs()[0].name
        out_shape = [1 if isinstance(d, str) or d is None else d for d in self.frame.get_outputs()[0].shape]  # F = 1
        kind = np.int64 if "int64" in self.frame.get_outputs()[0].type else np.float32
        out = np.zeros(out_shape, dtype=kind)
        values = [[ort.OrtValue.ortvalue_from_numpy(a) for a in chosen] for chosen in self._sets]
        bindings = []
        for src in (0, 1):
            b = self.frame.io_binding()
            b.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(buffer))
            for state_name, v in zip(self.state_names, values[src]):
                b.bind_ortvalue_input(state_name, v)
            b.bind_ortvalue_output(first, ort.OrtValue.ortvalue_from_numpy(out))
            for out_name, v in zip(self.output_names[1:], values[1 - src]):
                b.bind_ortvalue_output(out_name, v)
            bindings.append(b)
        self._bindings, self._bound_input, self._out = bindings, (name, value.shape, value.dtype, buffer), out

    def _run_frame(self, name: str, value: np.ndarray) -> np.ndarray:
        bound = self._bound_input
        if bound is None or bound[:3] != (name, value.shape, value.dtype):
            self._bind(name, value)
            bound = self._bound_input
        np.copyto(bound[3], value)
        self.frame.run_with_iobinding(self._bindings[self._current])
        self._current = 1 - self._current
        self.state = self._sets[self._current]
        return self._out.copy()


def _config(directory: str | Path) -> tuple[Path, dict[str, Any]]:
    folder = Path(directory)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: no {CONFIG_FILE} (write one with export_streaming_onnx)")
    return folder, json.loads(path.read_text())


class OnnxStreamEncoder:
    """Audio chunks of any size in, the codes of every frame completed so far out. The audio is
    coded at its own level, whatever the model's amplitude: codes of side kind "none"."""

    side_kind = "none"  # what a .tcd of a stream's codes carries: no level side info

    def __init__(self, directory: str | Path, n_q: int | None = None, threads: int = 1,
                 providers: list[str] | None = None):
        folder, c = _config(directory)
        self.directory, self.config = folder, c
        self.sample_rate, self.hop, self.max_n_q = int(c["sample_rate"]), int(c["hop_length"]), int(c["n_q"])
        if n_q is not None and not 1 <= n_q <= self.max_n_q:
            raise ModelError(f"n_q={n_q}: the model has 1..{self.max_n_q} codebooks")
        self.n_q = n_q or self.max_n_q
        self.stage_bits = bits_of(stage_sizes(c))[: self.n_q]  # the width of each stage it sends
        # greedy residual VQ: the first n_q codes do not depend on later stages, so a graph cut
        # after stage n_q (made in memory, where the onnx package is installed) gives the same codes
        cut = self.n_q if self.n_q < self.max_n_q and c.get("version", 1) >= 2 and find_spec("onnx") else None
        self.graph = _Graph(folder, c["encoder"]["file"], c["encoder"]["states"], threads, providers,
                            c["encoder"].get("frame_file"), cut)
        self.reset()

    def reset(self) -> None:
        self.graph.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self.frames_emitted = 0

    def push(self, wav: Any) -> np.ndarray:
        """wav [n] or [n, 1] (float in [-1, 1] or integer PCM) -> int64 codes [n_q, frames completed]."""
        x = input_samples(wav, self.sample_rate, self.sample_rate)
        if self._pending.size:
            x = np.concatenate([self._pending, x])
        frames = x.size // self.hop
        self._pending = x[frames * self.hop:].copy()  # `x` may be the caller's buffer
        if frames == 0:
            return np.zeros((self.n_q, 0), dtype=np.int64)
        codes = self.graph.run("wav", x[None, None, : frames * self.hop], frames)
        self.frames_emitted += frames
        return codes[: self.n_q]

    def flush(self) -> np.ndarray:
        """End of stream: zero-pad the unfinished frame (as offline encode does), emit it, reset."""
        pending = self._pending.size
        codes = self.push(np.zeros(self.hop - pending, np.float32)) if pending else np.zeros((self.n_q, 0), np.int64)
        self.reset()
        return codes


class OnnxStreamDecoder:
    """Codes [n, frames] of any length in, the audio of every frame that is final out."""

    def __init__(self, directory: str | Path, threads: int = 1, providers: list[str] | None = None):
        folder, c = _config(directory)
        self.directory, self.config = folder, c
        self.hop, self.max_n_q = int(c["hop_length"]), int(c["n_q"])
        self.stage_sizes = stage_sizes(c)  # each stage's entries: its codes are checked against them
        self.stage_bits = bits_of(self.stage_sizes)
        self.delay = int(c["decoder_delay_samples"])
        self.lookahead_frames = -(-self.delay // self.hop)
        self.graph = _Graph(folder, c["decoder"]["file"], c["decoder"]["states"], threads, providers,
                            c["decoder"].get("frame_file"))
        flush = c["decoder"].get("flush")
        self._flush = None
        if flush:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            self._flush = ort.InferenceSession(str(folder / flush), options,
                                               providers=providers or ["CPUExecutionProvider"])
        self.reset()

    def reset(self) -> None:
        self.graph.reset()
        self._n_q: int | None = None
        self._skip = self.delay
        self._held = np.zeros(0, dtype=np.float32)
        self.samples_emitted = 0

    def _checked(self, codes: Any) -> np.ndarray:
        c = check_codes(codes, self.stage_sizes)
        if self._n_q is not None and c.shape[0] != self._n_q:
            raise ModelError(f"codes changed from n_q={self._n_q} to {c.shape[0]} mid-stream")
        self._n_q = c.shape[0]
        return c

    def _emit(self, wav: np.ndarray, final: bool = False) -> np.ndarray:
        if self._skip:
            cut = min(self._skip, wav.size)
            wav, self._skip = wav[cut:], self._skip - cut
        if self._held.size:
            wav = np.concatenate([self._held, wav])
        ready = wav.size if final else wav.size // self.hop * self.hop
        self._held = wav[ready:]
        self.samples_emitted += ready
        return wav[:ready]

    def push(self, codes: Any) -> np.ndarray:
        """int codes [n, F] -> float32 [samples of the frames that are now final]."""
        c = self._checked(codes)
        if c.shape[1] == 0:
            return np.zeros(0, dtype=np.float32)
        return self._emit(self.graph.run("codes", c, c.shape[1])[0, 0])

    def flush(self) -> np.ndarray:
        """End of stream: emit the held-back samples (as offline decode ends), reset."""
        tail = np.zeros(0, dtype=np.float32)
        if self._flush is not None and self._n_q is not None:
            feeds = dict(zip(self.graph.state_names, self.graph.state))
            tail = self._flush.run(None, feeds)[0][0, 0]
        wav = self._emit(tail, final=True)
        self.reset()
        return wav
