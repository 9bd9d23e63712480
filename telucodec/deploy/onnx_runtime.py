"""Run an exported codec with onnxruntime and numpy only: no torch, no telucodec model code.

    codec = OnnxCodec("onnx/")                       # a folder written by `telucodec export-onnx`
    clip = codec.encode(wav, sample_rate=sr)         # wav: mono, float or integer PCM, any rate
    wav2 = codec.decode(clip.codes, clip.side, clip.num_samples)

The two graphs work on *normalized* audio: amplitude normalize (before the encoder) and restore
(after the decoder) stay outside them, because the side info is a per-clip measurement the
bitstream carries. This module is the reference for that step, in numpy, for the `none` and
`rms` strategies (`lufs` needs a BS.1770 loudness meter; use the PyTorch model for it). It
mirrors `telucodec.model.amplitude` and `Codec.encode/decode` exactly:

    encode: side = side_info(wav)            (whole clip, before padding)
            x = wav / gain_curve(side, T)    (float32), zero-padded to a multiple of hop
            codes = encoder.onnx(x[None, None])[0]         -> int64 [n_q, F]
    decode: y = decoder.onnx(codes[None, :n])[0, 0]       -> float32 [F * hop]
            wav = y[:num_samples] * gain_curve(side, num_samples)
            wav = match_level(wav, side)          (only when amplitude.level_match is true)
    (codes of side kind "none", a stream's, carry no level: decode plays them at gain 1)

Caller audio goes through `telucodec.formats.pcm.input_samples`, the one conversion PyTorch's
`Codec.encode` uses too (integer PCM scaled by its dtype's range, [T] or [T, 1], the sample rate
checked and resampled, clipped to [-1, 1]), so the same array gives the same codes here and there.
Long clips run in the windows `Codec.encode` / `Codec.decode` use (config.json `windows`, in frames:
chunk and context), so codes and audio equal PyTorch's at any length and memory stays flat.

An export of version 2 on (config.json `version`) searches only the frames a window keeps
(`keep_from` / `keep_to`: its context frames feed the encoder and are not searched), and where
the `onnx` package is installed only the codebooks a bitrate keeps (a copy of the encoder graph
cut after stage n, `onnx_search.prefix_search`: residual VQ's first n codes do not depend on the
later stages); where the encoder is causal (`encoder_causal`) a window has no context after it.
Otherwise every codebook of every frame is searched and the first n kept here. The decoder
accepts any 1 <= n <= n_q codebooks, each stage's values within that stage's size: the stages
may differ in size (config.json `codebook_sizes`, issue 34; an export without it: n_q stages of
`codebook_size`), and `stage_bits` says each stage's code width for a .tcd writer.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from telucodec.errors import ModelError
from telucodec.formats import level_match
from telucodec.formats.pcm import input_samples

CONFIG_FILE = "config.json"
RMS_BLOCK_CHUNKS = 64  # chunks measured at a time: an hour-long clip needs no float64 copy


@dataclass
class OnnxCodes:
    codes: np.ndarray                      # int64 [n_q, F]
    num_samples: int
    side: list[int] = field(default_factory=list)
    stage_bits: tuple[int, ...] = ()       # as `Codes.stage_bits`: () when every stage has one width,
                                           # else each sent stage's (the stages differ in size)


# ---- amplitude (numpy mirror of telucodec.model.amplitude) -----------------------------------
CURVE_BLOCK = 1 << 14  # samples per block of a gain curve


def _chunk_rms(wav: np.ndarray, chunk: int) -> np.ndarray:
    """RMS per chunk of a float32 clip [T] (float64 [S]); a short last chunk uses its own length.
    Measured RMS_BLOCK_CHUNKS chunks at a time (as `RmsAmplitude.chunk_rms`)."""
    t = wav.shape[0]
    s = max(0, math.ceil(t / chunk))
    energy = np.zeros(s, dtype=np.float64)
    step = RMS_BLOCK_CHUNKS * chunk
    for lo in range(0, t, step):
        piece = wav[lo: lo + step].astype(np.float64)
        k = -(-piece.shape[0] // chunk)
        padded = np.zeros(k * chunk, dtype=np.float64)
        padded[: piece.shape[0]] = piece
        energy[lo // chunk: lo // chunk + k] = np.square(padded).reshape(k, chunk).sum(-1)
    counts = np.full(s, float(chunk))
    if s:
        counts[-1] = t - (s - 1) * chunk
    return np.sqrt(energy / counts)


def rms_side_info(wav: np.ndarray, sample_rate: int, opts: dict[str, Any]) -> list[int]:
    """Per-chunk RMS indices (8-bit, log scale) of a float32 clip [T]."""
    rms = _chunk_rms(wav, int(round(opts["chunk_seconds"] * sample_rate)))
    level_db = 20.0 * np.log10(np.maximum(rms, 10.0 ** (opts["floor_db"] / 20.0)))
    index = np.clip(np.round((level_db - opts["min_db"]) / opts["step_db"]), 0, 255)
    return [int(v) for v in index]


def rms_gain_curve(side: list[int], num_samples: int, sample_rate: int, opts: dict[str, Any],
                   start: int = 0) -> np.ndarray:
    """float32 [num_samples] from sample `start` of the clip: chunk gains at chunk centres, linear
    in amplitude in between (a window of the whole clip's curve, as `RmsAmplitude.gain_curve`)."""
    gains = np.power(10.0, (_levels_db(side, opts) - opts["target_db"]) / 20.0)
    if num_samples and len(side) == 0:
        raise ValueError("rms amplitude: no side values to restore a non-empty waveform")
    return _interpolate(gains, num_samples, int(round(opts["chunk_seconds"] * sample_rate)), start)


def _levels_db(side: list[int], opts: dict[str, Any]) -> np.ndarray:
    """Dequantized chunk levels in dBFS (indices clamped to the 8-bit range)."""
    return opts["min_db"] + np.clip(np.round(np.asarray(side, dtype=np.float64)), 0, 255) * opts["step_db"]


def _interpolate(gains: np.ndarray, num_samples: int, chunk: int, start: int = 0) -> np.ndarray:
    """`RmsAmplitude._interpolate`'s float64 arithmetic, element for element, in blocks of
    CURVE_BLOCK samples whose float64 temporaries stay in cache (twice as fast on a long clip)."""
    if num_samples == 0:
        return np.ones(0, dtype=np.float32)
    if len(gains) == 1:
        return np.full(num_samples, gains[0], dtype=np.float32)
    out = np.empty(num_samples, dtype=np.float32)
    for lo in range(0, num_samples, CURVE_BLOCK):
        hi = min(num_samples, lo + CURVE_BLOCK)
        out[lo:hi] = level_match.curve(gains, start + lo, start + hi, chunk)
    return out


def rms_match_level(wav: np.ndarray, side: list[int], sample_rate: int, opts: dict[str, Any],
                    max_db: float = 6.0) -> np.ndarray:
    """Restored float32 [T] -> each 1 s chunk set to the RMS the side info carries (the gains of
    `RmsAmplitude.match_level`, from the same `formats/level_match.py`: floor chunks untouched,
    gains limited to +-max_db)."""
    chunk = int(round(opts["chunk_seconds"] * sample_rate))
    s = max(0, math.ceil(wav.shape[0] / chunk))
    levels = _levels_db(side[:s], opts)
    active = levels > opts["floor_db"] + opts["step_db"] / 2
    y = np.asarray(wav, dtype=np.float32)
    return level_match.scaled(y, level_match.match_gains(y, levels, chunk, active, max_db), chunk)


def side_info(wav: np.ndarray, kind: str, sample_rate: int, opts: dict[str, Any]) -> list[int]:
    """The side info the bitstream carries for a float32 clip [T] (none: [])."""
    if kind == "none":
        return []
    if kind == "rms":
        return rms_side_info(wav, sample_rate, opts)
    raise ValueError(f"amplitude '{kind}': the numpy reference covers 'none' and 'rms' only")


def normalize_with(wav: np.ndarray, side: list[int], kind: str, sample_rate: int, opts: dict[str, Any],
                   start: int = 0) -> np.ndarray:
    """A window of the clip from sample `start` -> divided by the clip's gain curve there."""
    if kind == "none":
        return wav
    if kind == "rms":
        return wav / rms_gain_curve(side, wav.shape[0], sample_rate, opts, start)
    raise ValueError(f"amplitude '{kind}': the numpy reference covers 'none' and 'rms' only")


def normalize(wav: np.ndarray, kind: str, sample_rate: int, opts: dict[str, Any]) -> tuple[np.ndarray, list[int]]:
    """wav float32 [T] -> (normalized float32 [T], side info)."""
    side = side_info(wav, kind, sample_rate, opts)
    return normalize_with(wav, side, kind, sample_rate, opts), side


def restore(wav: np.ndarray, side: list[int], kind: str, sample_rate: int, opts: dict[str, Any],
            start: int = 0) -> np.ndarray:
    """Decoder output float32 [T] (from sample `start` of the clip) -> wav * gain curve (identity
    for 'none')."""
    if kind == "none":
        return wav
    if kind == "rms":
        return wav * rms_gain_curve(side, wav.shape[0], sample_rate, opts, start)
    raise ValueError(f"amplitude '{kind}': the numpy reference covers 'none' and 'rms' only")


def windows(total: int, chunk: int, context: int):
    """(start, end, keep_start, keep_end) in frames covering [0, total): chunks of `chunk` frames
    with `context` frames each side (`Codec._chunk_bounds`)."""
    start = 0
    while start < total:
        end = min(start + chunk, total)
        yield max(0, start - context), min(total, end + context), start, end
        start = end


# ---- stages ----------------------------------------------------------------------------------
def stage_sizes(config: dict[str, Any]) -> list[int]:
    """Each stage's entry count from an export's config (config.json or streaming.json): its
    `codebook_sizes`, or n_q x `codebook_size` (every export before stages could differ)."""
    sizes = config.get("codebook_sizes")
    return [int(k) for k in sizes] if sizes else [int(config["codebook_size"])] * int(config["n_q"])


def bits_of(sizes: list[int]) -> list[int]:
    """Each stage's code width in bits (`QuantizerConfig.stage_bits`)."""
    return [max(1, (int(k) - 1).bit_length()) for k in sizes]


def check_codes(codes: Any, sizes: list[int]) -> np.ndarray:
    """Integer codes [n, F] with 1 <= n <= len(sizes) and stage s's values in 0..sizes[s] - 1 ->
    int64; anything else a one-line ModelError (the decoder graph adds stage s's start to its
    codes: a value past the stage's size would read another stage's entry, or none)."""
    c = np.asarray(codes)
    if c.dtype.kind not in "iu" or c.ndim != 2:
        raise ModelError(f"codes must be integers [n_q, frames], got {c.dtype} {tuple(c.shape)}")
    if not 1 <= c.shape[0] <= len(sizes):
        raise ModelError(f"codes have n_q={c.shape[0]}, the model supports 1..{len(sizes)}")
    if c.shape[1]:
        low, high = c.min(axis=1), c.max(axis=1)
        for q in np.nonzero((low < 0) | (high >= np.asarray(sizes[: c.shape[0]])))[0][:1].tolist():
            where = f" of stage {q}" if len(set(sizes)) > 1 else ""
            raise ModelError(f"code values{where} must be in 0..{sizes[q] - 1}, got {int(low[q])}..{int(high[q])}")
    return c.astype(np.int64, copy=False)


# ---- the codec -------------------------------------------------------------------------------
def prefix_session(path: str | Path, n: int, threads: int, providers: list[str]) -> Any:
    """An onnxruntime session of the encoder graph at `path` cut after search stage n
    (`onnx_search.prefix_search`, made in memory; needs the onnx package): the same first n codes."""
    import onnx
    import onnxruntime as ort

    from telucodec.deploy.onnx_search import prefix_search

    model = prefix_search(onnx.load(str(path)), n)
    return ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=providers)


def session_options(threads: int = 1) -> Any:
    """onnxruntime session options for a codec graph: `threads` intra-op threads (no spinning:
    a thread that waits for work yields its core, which tokenize's other workers use), one
    inter-op thread, sequential execution, all graph optimizations, and only errors logged (the
    encoder's overridable `n_q` input draws a load-time warning). Denormals are kept: flushing
    them measured no faster here, and the codes must stay PyTorch's."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxCodec:
    """encoder.onnx + decoder.onnx + config.json, run with onnxruntime on the CPU by default
    (`threads` intra-op threads: config.json's `threads`, else 1)."""

    def __init__(self, directory: str | Path, providers: list[str] | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.directory = Path(directory)
        self.config: dict[str, Any] = json.loads((self.directory / CONFIG_FILE).read_text())
        c = self.config
        self.sample_rate, self.hop, self.n_q = int(c["sample_rate"]), int(c["hop_length"]), int(c["n_q"])
        self.stage_sizes = stage_sizes(c)  # each stage's entries
        self.stage_bits = bits_of(self.stage_sizes)  # each stage's code width (a .tcd's, Codes.stage_bits)
        self.model_id = str(c["model_id"])
        self.amplitude_kind = str(c["amplitude"]["kind"])
        self.amplitude_options: dict[str, Any] = dict(c["amplitude"]["options"])
        self.level_match = bool(c["amplitude"].get("level_match", False))
        # (chunk, context) frames of the windows long clips run in; an export without them: one pass
        self.windows: dict[str, list[int] | None] = {k: c.get("windows", {}).get(k) for k in ("encode", "decode")}
        options = session_options(int(threads or c.get("threads", 1)))
        providers = providers or ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(self.directory / c["encoder"]["file"]), options, providers=providers)
        self.decoder = ort.InferenceSession(str(self.directory / c["decoder"]["file"]), options, providers=providers)
        self._session_args, self._zero_row = (options, providers), None  # `_unsent_decoder`, made when needed
        # an export of version 2 on searches the frames asked for (inputs `keep_from`, `keep_to`),
        # and its search can be cut to the stages asked for (`onnx_search.prefix_search`, with onnx)
        inputs = [*self.encoder.get_inputs(), *self.encoder.get_overridable_initializers()]  # inputs with a default: the latter
        self._keeps = "keep_from" in {i.name for i in inputs}
        self._cuts = self._keeps and importlib.util.find_spec("onnx") is not None
        self._prefix_sessions: dict[int, Any] = {}
        self._threads, self._providers = int(threads or c.get("threads", 1)), providers
        # a causal encoder's frames need no audio after them: windows end where their codes do
        self.encoder_causal = bool(c.get("encoder_causal", False))

    def _windows(self, part: str, frames: int):
        chunk_context = self.windows[part]
        return windows(frames, *chunk_context) if chunk_context else windows(frames, max(frames, 1), 0)

    def encode_normalized(self, wav: np.ndarray, n_q: int | None = None,
                          keep: tuple[int, int] | None = None) -> np.ndarray:
        """Normalized float32 [T] -> int64 codes [n_q, ceil(T / hop)] (None: all codebooks); the
        end is zero-padded to a whole frame here, as the graph needs. Only the first `n_q`
        stages are searched (greedy residual VQ: the same codes as the first n_q of all), and
        only frames keep[0]:keep[1] (None: all), whose codes alone are returned."""
        w = np.asarray(wav, dtype=np.float32).reshape(-1)
        x = np.zeros((1, 1, -(-w.size // self.hop) * self.hop), dtype=np.float32)
        x[0, 0, : w.size] = w
        n = self.n_q if n_q is None else int(n_q)
        if not 1 <= n <= self.n_q:
            raise ModelError(f"n_q={n}: the model has 1..{self.n_q} codebooks")
        lo, hi = (0, x.shape[-1] // self.hop) if keep is None else keep
        if not self._keeps:
            return self.encoder.run(None, {"wav": x})[0][0][:n, lo:hi]
        feeds = {"wav": x, "keep_from": np.array([lo], dtype=np.int64), "keep_to": np.array([hi], dtype=np.int64)}
        return self._encoder_for(n).run(None, feeds)[0][0][:n]

    def _encoder_for(self, n: int) -> Any:
        """The encoder session that searches n stages: the file's (all of them) or a copy cut
        after stage n, made once (where the `onnx` package is installed; else all, n kept)."""
        if n == self.n_q or not self._cuts:
            return self.encoder
        if n not in self._prefix_sessions:
            self._prefix_sessions[n] = prefix_session(self.directory / self.config["encoder"]["file"], n,
                                                      self._threads, self._providers)
        return self._prefix_sessions[n]

    def decode_normalized(self, codes: np.ndarray, decoder: Any = None) -> np.ndarray:
        """int64 codes [n, F], 1 <= n <= n_q -> normalized float32 [F * hop]."""
        c = np.asarray(codes, dtype=np.int64).reshape(1, -1, np.shape(codes)[-1])
        return (decoder or self.decoder).run(None, {"codes": c})[0][0, 0]

    def _unsent_decoder(self, codes: np.ndarray, stage_counts: np.ndarray) -> tuple[np.ndarray, Any]:
        """Per-frame stage counts (.tcd version 3): (codes whose unsent stages address a zero row,
        a decoder session whose flat codebooks [sum K_s, D] have that row appended). The graph sums
        one codebook row per stage; row s of frame t, unsent, gets the code sum K - start_s, which
        its offset start_s (s * K for stages of one size K) turns into the zero row's index: the
        stage adds nothing, as `Codec.decode`."""
        import onnxruntime as ort

        total, starts = sum(self.stage_sizes), np.cumsum([0, *self.stage_sizes[:-1]])
        if self._zero_row is None:
            books = np.load(self.directory / self.config["codebooks"]["file"]).astype(np.float32)
            flat = books.reshape(-1, books.shape[-1])  # a stacked [n_q, K, D] or a flat [sum K_s, D] file
            flat = np.concatenate([flat, np.zeros((1, books.shape[-1]), np.float32)])
            options, providers = self._session_args
            value = ort.OrtValue.ortvalue_from_numpy(flat)
            options.add_initializer("flat_codebooks", value)  # the graph's codebook table (deploy/export.py)
            try:
                session = ort.InferenceSession(str(self.directory / self.config["decoder"]["file"]), options,
                                               providers=providers)
            except Exception as exc:  # an export whose decoder has no such table
                raise ModelError(f"{self.directory}: this ONNX export cannot decode per-segment codebook counts "
                                 f"({str(exc).splitlines()[0][:120]}); decode with the PyTorch runtime") from exc
            self._zero_row = (session, value)  # the value must outlive the session
        stages = np.arange(codes.shape[0])[:, None]
        unsent = total - starts[: codes.shape[0], None]
        return np.where(stages < np.asarray(stage_counts)[None, :], codes, unsent), self._zero_row[0]

    def encode(self, wav: Any, n_q: int | None = None, sample_rate: Any = None) -> OnnxCodes:
        """Mono audio (float or integer PCM, [T] or [T, 1]) at `sample_rate` (None: already at
        the codec's) -> codes (first `n_q` codebooks) and side info, as `Codec.encode` gives them."""
        x = input_samples(wav, self.sample_rate if sample_rate is None else sample_rate, self.sample_rate)
        if x.size == 0:
            raise ModelError("input audio is empty")
        kind, rate, opts = self.amplitude_kind, self.sample_rate, self.amplitude_options
        side = side_info(x, kind, rate, opts)
        pieces = []
        for lo, hi, keep_lo, keep_hi in self._windows("encode", -(-x.size // self.hop)):
            hi = keep_hi if self.encoder_causal else hi  # no frame depends on the audio after it
            window = normalize_with(x[lo * self.hop: hi * self.hop], side, kind, rate, opts, lo * self.hop)
            pieces.append(self.encode_normalized(window, n_q or self.n_q, (keep_lo - lo, keep_hi - lo)))
        codes = np.concatenate(pieces, axis=1)
        mixed = len(set(self.stage_bits)) > 1
        return OnnxCodes(codes, int(x.size), side, tuple(self.stage_bits[: codes.shape[0]]) if mixed else ())

    def decode(self, codes: np.ndarray, side: list[int], num_samples: int, side_kind: str | None = None,
               stage_counts: np.ndarray | None = None) -> np.ndarray:
        """Codes [n, F] + side info -> float32 audio [num_samples], unbounded (clip when writing).
        `stage_counts` [F]: the stages each frame sends (None: all n); unsent ones add nothing.
        `side_kind` (None: the export's amplitude): "none" for a stream's codes, which carry no
        level: played at gain 1, no restore, no level match (as `Codec.decode`)."""
        kind = self.amplitude_kind if side_kind is None else side_kind
        if kind != self.amplitude_kind and not (kind == "none" and self.amplitude_kind == "rms"):
            raise ModelError(f"codes carry '{kind}' amplitude side info, the model uses '{self.amplitude_kind}'")
        c, decoder = check_codes(codes, self.stage_sizes), None
        if stage_counts is not None:
            c, decoder = self._unsent_decoder(c, stage_counts)
        out = np.zeros(num_samples, dtype=np.float32)
        for lo, hi, keep_lo, keep_hi in self._windows("decode", c.shape[-1]):
            y = self.decode_normalized(c[:, lo:hi], decoder)[(keep_lo - lo) * self.hop: (keep_hi - lo) * self.hop]
            start = keep_lo * self.hop
            y = restore(y, side, kind, self.sample_rate, self.amplitude_options, start)
            y = y[: max(0, num_samples - start)]
            out[start: start + y.shape[0]] = y
        if self.level_match and kind == "rms":
            out = rms_match_level(out, side, self.sample_rate, self.amplitude_options)
        return out
