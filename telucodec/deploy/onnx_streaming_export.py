"""Streaming ONNX graphs: a causal codec's streams (`Codec.stream_encoder()` / `stream_decoder()`) as
graphs whose state is explicit inputs and outputs, run by `telucodec.deploy.onnx_streaming`.

    export_streaming_onnx(model, "onnx/")   # writes, beside whatever else is in the folder:

    OUT/stream_encoder.onnx   wav [1, F * hop] float32 (F whole frames, the model's rate, at its own
                              level: no normalization), enc_state_0.. -> codes [n_q, F] int64, enc_state_out_0..
                              (the encoder's stateful steps + every RVQ stage's nearest entry)
    OUT/stream_decoder.onnx   codes [n, F] int64 (1 <= n <= n_q), dec_state_0.. -> wav [1, F * hop],
                              dec_state_out_0.. (its first `delay` samples, over the whole stream,
                              precede the output: the spectral decoder's inverse STFT overlap)
    OUT/stream_decoder_flush.onnx   dec_state_0.. -> wav [1, delay]: the last samples at the end
                              (only where `delay` > 0)
    OUT/streaming.json        rates, n_q, each stage's codebook size (`codebook_sizes`: stages may
                              differ, issue 34), every state's name and shape, delay, lookahead, model_id,
                              side_kind ("none": streams carry no level side info, an `rms` model's
                              too; its decoder output plays at gain 1), and the parity report

F is dynamic: one run per push, whatever it holds. The graphs are the streaming steps of
`telucodec/model/stream_steps.py` made under `portable()` (plain Conv / ConvTranspose nodes, the
inverse STFT by DFT-basis matmuls), traced by the torch.export-based exporter at opset 18, like
`deploy/export.py`'s offline graphs. Each state starts as zeros (`streaming.json` gives shapes).

Parity: on a real clip, pushed in 20 ms chunks, the ONNX streams and the PyTorch streams must give
the same codes (mismatches allowed only where two entries are equidistant to float rounding, as
`deploy/export.py` judges) and audio within `DECODER_TOLERANCE`; the report gives the max difference.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from telucodec.deploy.export import (
    DECODER_TOLERANCE,
    OPSET,
    flat_table,
    mismatches_are_near_ties,
    parity_wav,
    stage_books,
    stage_offsets,
)
from telucodec.deploy.onnx_rewrite import convs_as_2d_file
from telucodec.deploy.onnx_search import replace_first_output_by_search
from telucodec.errors import TelucodecError
from telucodec.model.codec import Codec
from telucodec.model.stream_steps import Step, portable, rank4_ready
from telucodec.model.streaming import decoder_streamer, encoder_streamer, latency_samples

ENCODER_FILE, DECODER_FILE, FLUSH_FILE = "stream_encoder.onnx", "stream_decoder.onnx", "stream_decoder_flush.onnx"
FRAME_ENCODER_FILE, FRAME_DECODER_FILE = "stream_encoder_frame.onnx", "stream_decoder_frame.onnx"
STREAMING_VERSION = 3  # streaming.json "version": 2 adds the one-frame graphs ("frame_file"); 3: transposed
# convs as polyphase convs (their state: input frames), tensors and states 4-D where every step runs so.
# Stages of different sizes (issue 34: `codebook_sizes`, per-stage books and table offsets) left a
# model with stages of one size the same graphs, so the version stayed 3
CONFIG_FILE = "streaming.json"
PARITY_CHUNK_MS = 20


class StreamLatentGraph(nn.Module):
    """(wav [1, 1, F * hop], *state) -> (latent [F, D], *new state): the encoder's steps; the
    exported file gets the search appended (`onnx_search.replace_first_output_by_search`)."""

    def __init__(self, step: Step, rank4: bool = False):
        super().__init__()
        self.step, self.rank4 = step, rank4

    def forward(self, wav: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        latent, new = self.step.step(wav[:, :, None] if self.rank4 else wav, list(state))  # [1, D, (1,) F]
        return (latent.reshape(latent.shape[1], -1).t(), *new)


def convs_for_graphs(step: Any) -> None:
    """Steps (a chain's, recursively) that run a depthwise conv as one multiply-add per tap run it
    as one conv instead: in a graph each tap is a Slice, a Mul and an Add node, nine nodes where
    one Conv does (onnxruntime's cost per node, ~0.5-1 us, is what a frame's graph spends most on).
    (Tried and dropped: transposed convs as a matrix product + overlap-add of padded pieces; on
    one frame of the shipped decoder 46 more nodes and small batched MatMuls cost what
    ConvTranspose did.)"""
    for child in getattr(step, "steps", ()):
        convs_for_graphs(child)
    if getattr(step, "kind", None) == "taps":
        step.kind, step._run = "conv", step._conv


class StreamDecoderGraph(nn.Module):
    """(codes [n, F], *state) -> (wav [1, 1, F * hop], *new state). `books`: each stage's
    entries [K_s, D], looked up in one table (`export.flat_table`, as the offline decoder)."""

    def __init__(self, step: Step, books: list[torch.Tensor], rank4: bool = False):
        super().__init__()
        self.step, self.codebook_size, self.rank4 = step, int(books[0].shape[0]), rank4
        table, starts = flat_table(books)
        self.register_buffer("table", table)  # [sum K_s, D]
        self.register_buffer("stage_starts", starts)  # None for stages of one size: no constant

    def forward(self, codes: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        offsets = stage_offsets(codes.shape[0], self.codebook_size, self.stage_starts, codes.device)
        latent = F.embedding(codes + offsets, self.table).sum(0).t()[None]  # [1, D, F]
        wav, new = self.step.step(latent[:, :, None] if self.rank4 else latent, list(state))
        return (wav.reshape(1, 1, -1), *new)


class FlushGraph(nn.Module):
    """(*state) -> wav [1, 1, delay]: what the decoder's last step still holds at the end."""

    def __init__(self, step: Step):
        super().__init__()
        self.step = step

    def forward(self, *state: torch.Tensor) -> torch.Tensor:
        return self.step.flush(list(state))


def _export(graph: nn.Module, args: tuple, names_in: list[str], names_out: list[str],
            dynamic: dict[str, Any], path: Path) -> None:
    """`dynamic`: torch.export's dynamic shapes by forward() argument (the states: fixed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            # torch.export first: the ONNX exporter would read the states' tuple of Nones as one
            # input's axes
            program = torch.export.export(graph.eval(), args, dynamic_shapes=dynamic, strict=False)
            torch.onnx.export(program, args, str(tmp), dynamo=True, opset_version=OPSET, external_data=False,
                              input_names=names_in, output_names=names_out, verbose=False)
    finally:
        onnx_log.setLevel(level)
    os.replace(tmp, path)


def streaming_export_refusal(model: Codec) -> str | None:
    """Why `export_streaming_onnx` would refuse `model` (one line), or None when it can export it:
    for `export-onnx`, which writes streaming graphs beside the offline ones where a model streams."""
    try:
        latency_samples(model)  # the streams' own checks and words: causal, amplitude 'none' or 'rms'
        encoder_streamer(model.encoder)  # an encoder that streams (not `stft`)
    except Exception as exc:
        return f"streaming ONNX export: {exc}"
    if model.config.quantizer.codebook_dim > 0:
        return (f"streaming ONNX export: quantizer.codebook_dim={model.config.quantizer.codebook_dim} "
                "(factorized codes, searched by cosine) is not supported")
    if model.config.model.lstm:
        return ("streaming ONNX export: the bottleneck LSTM (lstm: true) is not supported "
                "(stream such a model in PyTorch: Codec.stream_encoder())")
    return None


def export_streaming_onnx(model: Codec, out_dir: str | Path,
                          parity_clip: str | Path | np.ndarray | None = None) -> dict[str, Any]:
    """Write stream_encoder.onnx, stream_decoder.onnx (+ stream_decoder_flush.onnx) and
    streaming.json to `out_dir`, then check them against the PyTorch streams on a real clip.
    Returns streaming.json's content; raises TelucodecError for a model that cannot stream (not
    causal, the `lufs` amplitude, an `stft` encoder, factorized codebooks, the LSTM) or
    when the graphs disagree with PyTorch."""
    refusal = streaming_export_refusal(model)
    if refusal:
        raise TelucodecError(refusal)
    latency = latency_samples(model)
    wav = parity_wav(model, parity_clip)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise TelucodecError("streaming ONNX export: move the model to the CPU first (model.cpu())")
    hop, books = model.hop, stage_books(model)
    with torch.no_grad(), portable():
        enc_step, dec_step = encoder_streamer(model.encoder), decoder_streamer(model.decoder)
        # a batch dimension of 1 on every tensor: the graphs' convs then need no reshaping; where
        # every step runs 4-D, tensors and states are [1, C, 1, T] (2-D convs end to end)
        convs_for_graphs(enc_step)
        convs_for_graphs(dec_step)
        enc4, dec4 = rank4_ready(enc_step), rank4_ready(dec_step)
        enc_state = [t[None, :, None] if enc4 else t[None] for t in enc_step.init("cpu")]
        dec_state = [t[None, :, None] if dec4 else t[None] for t in dec_step.init("cpu")]
        enc_in = [f"enc_state_{i}" for i in range(len(enc_state))]
        dec_in = [f"dec_state_{i}" for i in range(len(dec_state))]
        frames = torch.export.Dim("frames", min=1, max=100_000)
        n = torch.export.Dim("n_q", min=1, max=model.max_n_q) if model.max_n_q > 1 else None
        norms = [b.pow(2).sum(-1).numpy() for b in books]  # as nearest_entry computes them
        enc_out = ["latent", *[f"enc_state_out_{i}" for i in range(len(enc_state))]]
        dec_out = ["wav", *[f"dec_state_out_{i}" for i in range(len(dec_state))]]
        # the graphs for any number of frames, and the same for exactly one frame (static shapes:
        # onnxruntime folds every slice bound, a fifth fewer nodes for the 20 ms push)
        for file, count, dims in ((ENCODER_FILE, 3, {"wav": {2: hop * frames}}), (FRAME_ENCODER_FILE, 1, {"wav": None})):
            _export(StreamLatentGraph(enc_step, enc4), (torch.zeros(1, 1, count * hop), *enc_state), ["wav", *enc_in],
                    enc_out, {**dims, "state": (None,) * len(enc_in)}, out / file)
            replace_first_output_by_search(out / file, [b.numpy() for b in books], norms)
            convs_as_2d_file(out / file)
        for file, count, dims in ((DECODER_FILE, 3, {"codes": {0: n, 1: frames} if n else {1: frames}}),
                                  (FRAME_DECODER_FILE, 1, {"codes": {0: n} if n else None})):
            example = torch.zeros(model.max_n_q, count, dtype=torch.long)
            _export(StreamDecoderGraph(dec_step, books, dec4), (example, *dec_state), ["codes", *dec_in], dec_out,
                    {**dims, "state": (None,) * len(dec_in)}, out / file)
            convs_as_2d_file(out / file)
        if dec_step.delay:
            _export(FlushGraph(dec_step), tuple(dec_state), dec_in, ["wav"], {"state": (None,) * len(dec_in)},
                    out / FLUSH_FILE)
    config: dict[str, Any] = {
        "format": "telucodec-onnx-streaming", "version": STREAMING_VERSION, "model_id": model.model_id,
        "sample_rate": model.sample_rate, "hop_length": hop, "frame_rate": model.frame_rate,
        "n_q": model.max_n_q, "codebook_size": model.config.quantizer.codebook_size, "opset": OPSET,
        "codebook_sizes": model.config.quantizer.stage_sizes,  # each stage's (the runners check codes by them)
        "latency_samples": latency, "decoder_delay_samples": dec_step.delay,
        "side_kind": "none",  # a stream carries no level: model/streaming.py
        "encoder": {"file": ENCODER_FILE, "input": "wav [1, 1, F * hop] float32 in [-1, 1], F >= 1 whole frames",
                    "output": "codes [n_q, F] int64 (keep the first n for fewer kbps)",
                    "frame_file": FRAME_ENCODER_FILE,  # the same graph for F = 1 exactly
                    "states": [[name, list(t.shape)] for name, t in zip(enc_in, enc_state)]},
        "decoder": {"file": DECODER_FILE, "input": "codes [n, F] int64, 1 <= n <= n_q",
                    "output": "wav [1, 1, F * hop] float32; the stream's first decoder_delay_samples precede its output",
                    "states": [[name, list(t.shape)] for name, t in zip(dec_in, dec_state)],
                    "frame_file": FRAME_DECODER_FILE,
                    "flush": FLUSH_FILE if dec_step.delay else None},
        "note": "states start as float32 zeros of these shapes; each run's *_state_out_i is the next run's *_state_i",
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    config["parity"] = streaming_parity(model, out, wav)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    if not config["parity"]["passed"]:
        raise TelucodecError(f"streaming ONNX parity check failed: {json.dumps(config['parity'])}")
    return config


def streaming_parity(model: Codec, out_dir: Path, wav: np.ndarray, chunk_ms: int = PARITY_CHUNK_MS) -> dict[str, Any]:
    """The ONNX streams against the PyTorch streams on `wav`, both pushed `chunk_ms` at a time."""
    from telucodec.deploy.onnx_streaming import OnnxStreamDecoder, OnnxStreamEncoder

    chunk = model.sample_rate * chunk_ms // 1000
    pieces = range(0, len(wav), chunk)
    enc, dec = model.stream_encoder(), model.stream_decoder()
    codes = torch.cat([enc.push(wav[i: i + chunk]) for i in pieces] + [enc.flush()], dim=1)
    audio = torch.cat([dec.push(codes), dec.flush()]).numpy()
    o_enc, o_dec = OnnxStreamEncoder(out_dir), OnnxStreamDecoder(out_dir)
    o_codes = np.concatenate([o_enc.push(wav[i: i + chunk]) for i in pieces] + [o_enc.flush()], axis=1)
    # the ONNX decoder decodes PyTorch's codes, a frame at a time, so its audio is comparable
    o_audio = np.concatenate([o_dec.push(codes[:, f: f + 1].numpy()) for f in range(codes.shape[1])] + [o_dec.flush()])
    with torch.no_grad():
        x = torch.from_numpy(np.concatenate([wav, np.zeros((-len(wav)) % model.hop, np.float32)]))
        latent = model.encoder(x.view(1, 1, -1))[0]
    same_shape = o_codes.shape == tuple(codes.shape) and o_audio.shape == audio.shape
    report: dict[str, Any] = {
        "clip_seconds": round(len(wav) / model.sample_rate, 3), "chunk_ms": chunk_ms,
        "codes_identical": bool(same_shape and np.array_equal(o_codes, codes.numpy())),
        "codes_mismatched": int((o_codes != codes.numpy()).sum()) if same_shape else -1,
        "audio_max_abs_diff": float(np.abs(o_audio - audio).max()) if same_shape and audio.size else float("inf"),
        "audio_peak": float(np.abs(audio).max()) if audio.size else 0.0,
    }
    report["mismatches_are_near_ties"] = bool(same_shape and mismatches_are_near_ties(model, latent, codes, o_codes))
    report["passed"] = bool(report["mismatches_are_near_ties"] and report["audio_max_abs_diff"] < DECODER_TOLERANCE)
    return report
