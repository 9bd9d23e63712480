"""`telucodec export-onnx`: the codec as two ONNX graphs, checked against PyTorch on a real clip.

    OUT/encoder.onnx    wav [1, 1, T] float32, *normalized*, T a multiple of hop (zero-pad the end)
                        [, keep_from / keep_to int64 [1]: optional, default all frames]
                        -> codes [1, n_q, keep_to - keep_from] int64
                        (the encoder + residual-VQ nearest-neighbour search, inside the graph: the
                        search is `deploy/onnx_search.py`'s, the convs 2-D: `deploy/onnx_rewrite.py`)
    OUT/decoder.onnx    codes [1, n, F] int64, 1 <= n <= n_q -> wav [1, 1, F * hop] float32, normalized
    OUT/codebooks.npy   float32 [n_q, codebook_size, latent_dim]: the RVQ codebooks; where the
                        stages differ in size (`codebook_sizes`), every stage's entries in one
                        table [sum(codebook_sizes), latent_dim], stage s from row sum(sizes[:s])
    OUT/config.json     sample rate, hop, n_q, codebook size/bits (and each stage's:
                        `codebook_sizes`, `stage_bits`), amplitude kind + options,
                        model_id, file and tensor names, the parity figures

T, F and n are dynamic. Amplitude normalize/restore is not in the graphs (its side info is a
per-clip measurement); `telucodec.deploy.onnx_runtime` does it in numpy for `none` and `rms` and runs
both graphs without torch. Export uses the torch.export-based exporter (`dynamo=True`, opset 18:
the spectral decoder's overlap-add is Col2Im) on a copy of the model with weight norm folded in.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from telucodec.deploy.onnx_rewrite import convs_as_2d_file
from telucodec.deploy.onnx_search import KEEP_INPUTS, LATENT, append_search
from telucodec.errors import TelucodecError
from telucodec.model.codec import CHUNK_SECONDS, CONTEXT_SECONDS, ENCODE_CHUNK_SECONDS, Codec
from telucodec.model.streaming import encoder_reach_frames, encoder_streamer

ENCODER_FILE, DECODER_FILE, CODEBOOKS_FILE = "encoder.onnx", "decoder.onnx", "codebooks.npy"
OPSET = 18
# config.json "version": what the files hold. 2: the encoder's search is `onnx_search`'s (stages a
# runner can cut, precomputed norms, a two-level argmin, `keep_from` / `keep_to` inputs), both
# graphs' convs 2-D. A cached export of another version is made again
# (`deploy/runtimes.usable_export`), so nobody runs an export older than this code. Stages of
# different sizes (issue 34) changed nothing for a model whose stages have one size (its files are
# what version 2 wrote; config.json gains `codebook_sizes` / `stage_bits`, which a runner reads as
# n_q x `codebook_size` where they are missing), so the version stayed 2.
EXPORT_VERSION = 2
# PyTorch inverts the decoder's STFT by FFT, the ONNX graph by DFT-basis matmuls (ONNX has no
# irfft the exporter emits). Against a float64 decoder, the FFT output is off by 4e-7 and the
# matmuls' float32 sums of n_fft/2+1 terms by up to 1.2e-4 (telugu-v3, a 0.61-peak clip): the
# limit leaves room for that (-66 dB below full scale) and still fails a wrong graph.
DECODER_TOLERANCE = 5e-4
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class LatentGraph(nn.Module):
    """Normalized wav [1, 1, T] -> the encoder's latent [T / hop, D] (the search is appended to
    the exported file by `onnx_search.append_search`)."""

    def __init__(self, model: Codec):
        super().__init__()
        self.encoder = model.encoder

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.encoder(wav)[0].transpose(0, 1)


def flat_table(books: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(every stage's entries in one table [sum K_s, D], the row each stage starts at [n_q, 1]
    int64, or None where the stages have one size K: stage s starts at s * K, as before issue 34)."""
    sizes = [int(b.shape[0]) for b in books]
    starts = None if len(set(sizes)) == 1 else torch.tensor([sum(sizes[:s]) for s in range(len(sizes))])[:, None]
    return torch.cat(books), starts


def stage_offsets(n: int, codebook_size: int, starts: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """[n, 1] int64: what turns the codes of the first n stages into rows of `flat_table`'s table
    (stage s: its start; s * codebook_size where the stages have one size)."""
    if starts is None:
        return torch.arange(n, device=device)[:, None] * codebook_size
    return starts[:n]


class DecoderGraph(nn.Module):
    """codes [1, n, F] (any n <= n_q) -> normalized wav [1, 1, F * hop]."""

    def __init__(self, model: Codec):
        super().__init__()
        self.decoder = model.decoder
        books = stage_books(model)
        self.codebook_size = int(books[0].shape[0])
        table, starts = flat_table(books)
        # the table's name is what `onnx_runtime.OnnxCodec._unsent_decoder` replaces
        self.register_buffer("flat_codebooks", table)  # [sum K_s, D]
        self.register_buffer("stage_starts", starts)  # None for stages of one size: no constant

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        offsets = stage_offsets(codes.shape[1], self.codebook_size, self.stage_starts, codes.device)
        latent = F.embedding(codes[0] + offsets, self.flat_codebooks).sum(0)  # [F, D]
        return self.decoder(latent.t()[None])


def window_frames(model: Codec) -> dict[str, list[int]]:
    """[chunk, context] frames of the windows `Codec.encode` / `Codec.decode` cut a long clip in
    (`Codec._encoder_windows`, `decode`): config.json `windows`, so the numpy runner cuts the same."""
    reach = encoder_reach_frames(model.encoder, model.hop)
    generic = [int(CHUNK_SECONDS * model.frame_rate), int(CONTEXT_SECONDS * model.frame_rate)]
    return {"encode": generic if reach is None else [int(ENCODE_CHUNK_SECONDS * model.frame_rate), reach],
            "decode": generic}


def encoder_is_causal(model: Codec) -> bool:
    """A frame's latent depends on no later audio (a causal model whose encoder streams): long
    clips then need no context after a window (config.json `encoder_causal`)."""
    if not model.config.model.causal:
        return False
    try:
        encoder_streamer(model.encoder)
    except Exception:  # an encoder without a streaming form (stft): windows keep both sides
        return False
    return True


def stage_books(model: Codec) -> list[torch.Tensor]:
    """Every stage's entries [K_s, D] float32 (the family interface, model/families.py)."""
    return [book.float() for book in model.quantizer.stage_codebooks()]


def codebooks_file(books: list[torch.Tensor]) -> tuple[np.ndarray, str]:
    """codebooks.npy's array and its shape's words: stacked [n_q, K, D] where the stages have one
    size (as every export before issue 34), else `flat_table`'s [sum K_s, D]."""
    if len({int(b.shape[0]) for b in books}) == 1:
        return torch.stack(books).numpy(), "[n_q, codebook_size, latent_dim] float32"
    return torch.cat(books).numpy(), ("[sum(codebook_sizes), latent_dim] float32: stage s's entries from row "
                                      "sum(codebook_sizes[:s])")


def plain_copy(model: Codec) -> Codec:
    """A CPU copy with weight-norm parametrizations folded into plain weights (same numbers)."""
    copy = Codec(model.config)
    copy.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    for module in list(copy.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return copy.eval()


def _export(graph: nn.Module, example: torch.Tensor, input_name: str, output_name: str,
            dims: dict[int, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    onnx_log = logging.getLogger("torch.onnx")  # "torchvision is not installed" notes, etc.
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # deprecation chatter from torch.export internals
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(graph.eval(), (example,), str(tmp), dynamo=True, opset_version=OPSET,
                              external_data=False, input_names=[input_name], output_names=[output_name],
                              dynamic_shapes={input_name: dims}, verbose=False)
    finally:
        onnx_log.setLevel(level)
    os.replace(tmp, path)


def default_parity_clip() -> Path | None:
    """The first real speech clip shipped in examples/ (None in an install without them)."""
    clips = sorted(EXAMPLES.rglob("*.flac")) if EXAMPLES.is_dir() else []
    return clips[0] if clips else None


def mismatches_are_near_ties(model: Codec, latent: torch.Tensor, codes: torch.Tensor, other: np.ndarray,
                             rel_tol: float = 1e-4) -> bool:
    """True when `other` codes [n_q, F] equal PyTorch's `codes` except where PyTorch's nearest
    codebook entry and the other one are equally near (within `rel_tol`) to the residual.

    Two float32 engines may sum a distance in another order, so where two entries are all but
    equidistant the argmin can flip: a tie, not a broken graph. Per frame, the first stage that
    differs must be such a tie (later stages then see another residual and differ as a
    consequence); any other difference is a real mismatch. `latent` is the encoder output [D, F].
    """
    ours = codes.numpy()
    frames = np.nonzero((np.asarray(other) != ours).any(axis=0))[0]
    layers = model.quantizer.layers
    for f in frames.tolist():
        stage = int(np.nonzero(np.asarray(other)[:, f] != ours[:, f])[0][0])
        residual = latent[:, f].clone()
        for q in range(stage):
            residual -= layers[q].codebook[int(ours[q, f])]
        book = layers[stage].codebook
        d_ours = float((residual - book[int(ours[stage, f])]).pow(2).sum())
        d_other = float((residual - book[int(other[stage, f])]).pow(2).sum())
        if abs(d_other - d_ours) > rel_tol * max(d_ours, 1e-12):
            return False
    return True


def parity_check(model: Codec, out_dir: Path, wav: np.ndarray) -> dict[str, Any]:
    """onnxruntime vs PyTorch on `wav`: graph level (normalized domain) and end to end."""
    from telucodec.deploy.onnx_runtime import OnnxCodec

    codec = OnnxCodec(out_dir)
    report: dict[str, Any] = {"clip_seconds": round(len(wav) / model.sample_rate, 3)}
    with torch.no_grad():
        codes = model.encode(wav, model.sample_rate)
        x = torch.from_numpy(wav).view(1, 1, -1)
        side = model.amplitude.side_info(x)
        x_norm = model.amplitude.normalize_with(x, side)
        onnx_codes = codec.encode_normalized(x_norm.numpy()[0, 0])
        latent = model.encoder(x_norm)[0]
        report["encoder_codes_identical"] = bool(np.array_equal(onnx_codes, codes.codes.numpy()))
        report["encoder_codes_mismatched"] = int((onnx_codes != codes.codes.numpy()).sum())
        report["encoder_mismatches_are_near_ties"] = mismatches_are_near_ties(model, latent, codes.codes, onnx_codes)
        y_torch = model.decoder(model.quantizer.decode(codes.codes[None]))[0, 0].numpy()
        y_onnx = codec.decode_normalized(codes.codes.numpy())
        report["decoder_max_abs_diff"] = float(np.abs(y_onnx - y_torch).max())
        report["decoder_peak"] = float(np.abs(y_torch).max())
        if model.amplitude.kind in ("none", "rms"):  # the numpy amplitude reference, end to end
            clip = codec.encode(wav)
            report["end_to_end_codes_identical"] = bool(np.array_equal(clip.codes, codes.codes.numpy())
                                                        and clip.side == codes.side)
            ties = mismatches_are_near_ties(model, latent, codes.codes, clip.codes) and clip.side == codes.side
            report["end_to_end_mismatches_are_near_ties"] = ties
            y = codec.decode(clip.codes, clip.side, clip.num_samples)
            same_codes = replace(codes, codes=torch.from_numpy(np.asarray(clip.codes, dtype=np.int64)))
            report["end_to_end_max_abs_diff"] = float(np.abs(y - model.decode(same_codes).numpy()).max())
    report["passed"] = bool(report["encoder_mismatches_are_near_ties"]
                            and report["decoder_max_abs_diff"] < DECODER_TOLERANCE
                            and report.get("end_to_end_mismatches_are_near_ties", True)
                            and report.get("end_to_end_max_abs_diff", 0.0) < DECODER_TOLERANCE)
    return report


def parity_wav(model: Codec, parity_clip: str | Path | np.ndarray | None) -> np.ndarray:
    """The clip an export's parity check codes: given samples, a file, or the default example."""
    from telucodec.formats.audio import load_audio

    if parity_clip is None:
        parity_clip = default_parity_clip()
    if parity_clip is None:
        raise TelucodecError("no parity clip: pass one (--parity_clip), examples/ is not installed here")
    if isinstance(parity_clip, np.ndarray):
        return np.asarray(parity_clip, dtype=np.float32).reshape(-1)
    return load_audio(parity_clip, model.sample_rate)


def export_onnx(model: Codec, out_dir: str | Path, parity_clip: str | Path | np.ndarray | None = None) -> dict[str, Any]:
    """Write encoder.onnx, decoder.onnx, codebooks.npy and config.json to `out_dir`, then check
    parity with PyTorch on a real clip. Returns config.json's content (with a "parity" report);
    raises TelucodecError when the ONNX graphs disagree with PyTorch."""

    if model.config.quantizer.codebook_dim > 0:
        raise TelucodecError(f"ONNX export: quantizer.codebook_dim={model.config.quantizer.codebook_dim} "
                             "(factorized codes, searched by cosine) is not supported; the runtime's "
                             "search is the plain nearest-entry one")
    wav = parity_wav(model, parity_clip)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    plain = plain_copy(model)
    hop = model.hop
    samples = hop * torch.export.Dim("wav_frames", min=1)
    frames = torch.export.Dim("frames", min=2)
    n = torch.export.Dim("n_q", min=1, max=model.max_n_q) if model.max_n_q > 1 else None
    _export(LatentGraph(plain), torch.zeros(1, 1, 7 * hop), "wav", LATENT, {2: samples}, out / ENCODER_FILE)
    books = stage_books(plain)
    norms = [b.pow(2).sum(-1).numpy() for b in books]  # as nearest_entry computes them
    append_search(out / ENCODER_FILE, [b.numpy() for b in books], norms)
    example = torch.zeros(1, model.max_n_q, 7, dtype=torch.long)
    _export(DecoderGraph(plain), example, "codes", "wav", {1: n, 2: frames} if n else {2: frames}, out / DECODER_FILE)
    convs_as_2d_file(out / DECODER_FILE)  # onnxruntime's blocked conv kernels (the encoder's: append_search)
    table, table_shape = codebooks_file(books)
    np.save(out / CODEBOOKS_FILE, table)
    config = {
        "format": "telucodec-onnx", "version": EXPORT_VERSION, "model_id": model.model_id,
        "sample_rate": model.sample_rate, "hop_length": hop, "frame_rate": model.frame_rate,
        "n_q": model.max_n_q, "codebook_size": model.config.quantizer.codebook_size,
        "codebook_bits": model.codebook_bits, "latent_dim": model.config.model.latent_dim,
        "codebook_sizes": model.config.quantizer.stage_sizes, "stage_bits": model.stage_bits,
        "causal": model.config.model.causal, "encoder_causal": encoder_is_causal(model), "opset": OPSET,
        "windows": window_frames(model),
        "amplitude": {"kind": model.amplitude.kind, "options": model.amplitude.options(),
                      "level_match": bool(model.config.model.level_match),
                      "note": "applied outside the graphs; see telucodec/deploy/onnx_runtime.py"},
        "encoder": {"file": ENCODER_FILE, "input": "wav [1, 1, T] float32, amplitude-normalized, T a multiple of hop_length (zero-pad the end)",
                    "optional_input": f"{' / '.join(KEEP_INPUTS)}: int64 [1], the frames to search (default: all)",
                    "output": "codes [1, n_q, T / hop] int64 (keep the first n for fewer kbps: "
                              "onnx_search.prefix_search cuts the graph to search only those)"},
        "decoder": {"file": DECODER_FILE, "input": "codes [1, n, F] int64, 1 <= n <= n_q",
                    "output": "wav [1, 1, F * hop] float32, normalized (restore amplitude, trim to num_samples)"},
        "codebooks": {"file": CODEBOOKS_FILE, "shape": table_shape},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    on_cpu = next(model.parameters()).device.type == "cpu"
    config["parity"] = parity_check(model if on_cpu else plain, out, wav)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if not config["parity"]["passed"]:
        raise TelucodecError(f"ONNX parity check failed: {json.dumps(config['parity'])}")
    return config


def run_from_args(args: argparse.Namespace) -> int:
    from telucodec.model.loading import load_model

    model = load_model(args.model)
    config = export_onnx(model, args.out, getattr(args, "parity_clip", None))
    p = config["parity"]
    print(f"{args.out}: {ENCODER_FILE}, {DECODER_FILE}, {CODEBOOKS_FILE}, config.json (model {config['model_id']})")
    codes = ("encoder codes identical" if p["encoder_codes_identical"] else
             f"encoder codes identical but for {p['encoder_codes_mismatched']} float near-ties of the nearest-entry search")
    line = (f"parity on a {p['clip_seconds']} s clip: {codes}, "
            f"decoder max abs diff {p['decoder_max_abs_diff']:.2e} (limit {DECODER_TOLERANCE:g})")
    if "end_to_end_max_abs_diff" in p:
        line += f"; end to end with the numpy amplitude reference {p['end_to_end_max_abs_diff']:.2e}"
    print(line)
    return 0
