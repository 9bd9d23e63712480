#!/usr/bin/env python
"""What a stream loses by carrying no level: an `rms` model's streams against its offline files.

    python benchmarks/stream_level.py --model state/v6-rms --data_dir state/heldout_te.tsv --clips 8

A stream has no second ahead to measure, so it sends no level side info: its encoder codes the
input at its own level and its decoder plays the output at gain 1, with no level match
(model/streaming.py). An offline file of the same model sends each second's RMS, normalizes the
input to the level the model was trained at and sets each decoded second to the sent RMS. Clips
are picked as `benchmarks/level_sweep.py` picks them, scaled so their peak sits at each --levels
dBFS, and coded at --kbps (the nominal codebook count, the same for both: `encode(kbps=...)`
through a .tcd, and `stream_encoder(kbps=...)` pushed --chunk_ms at a time). Two tables: the
output/input RMS ratio and PESQ-WB (mean over clips, min-max), decoded audio clipped to [-1, 1].
The last column checks that each stream equals the offline level-less decode
(`decode(encode(..., level=False))`). Read-only unless --json is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from level_sweep import EXAMPLES, describe_model, parse_numbers, pick_clips, to_peak

import telucodec
from telucodec.errors import TelucodecError
from telucodec.evaluation.metrics import pesq_wb, rms_ratio
from telucodec.formats.bitstream import read_bitstream, write_bitstream

MODES = ("offline", "stream")


def streamed(model, x: np.ndarray, kbps: float, chunk: int) -> tuple[np.ndarray, torch.Tensor]:
    """(the stream's audio [len(x)], its codes), pushed `chunk` samples at a time."""
    enc, dec = model.stream_encoder(kbps=kbps), model.stream_decoder()
    pieces = [enc.push(x[i: i + chunk]) for i in range(0, x.size, chunk)] + [enc.flush()]
    audio = [dec.push(c) for c in pieces] + [dec.flush()]
    return torch.cat(audio).numpy()[: x.size], torch.cat(pieces, dim=1)


def measure(model, clips, levels: list[float], kbps: float, chunk: int) -> dict:
    """(mode, level) -> {"rms_ratio": [...], "pesq_wb": [...]} per clip, and the stream check."""
    out: dict = {"max_abs_stream_vs_levelless": 0.0, "codes_equal": True}
    for level in levels:
        for _, wav in clips:
            x = to_peak(wav, level)
            data = write_bitstream(model.encode(x, model.sample_rate, kbps))
            offline = model.decode(read_bitstream(data, expected_model_id=model.model_id)).numpy()
            stream, codes = streamed(model, x, kbps, chunk)
            levelless = model.encode(x, model.sample_rate, kbps, level=False)
            out["codes_equal"] &= bool(torch.equal(levelless.codes, codes))
            diff = float(np.abs(model.decode(levelless).numpy() - stream).max())
            out["max_abs_stream_vs_levelless"] = max(out["max_abs_stream_vs_levelless"], diff)
            for mode, y in zip(MODES, (offline, stream)):
                y = np.clip(y[: x.size], -1.0, 1.0)
                cell = out.setdefault(f"{mode}@{level:g}", {"rms_ratio": [], "pesq_wb": []})
                cell["rms_ratio"].append(rms_ratio(x, y))
                cell["pesq_wb"].append(pesq_wb(x, y, model.sample_rate))
    return out


def table(results: dict, levels: list[float], metric: str) -> str:
    lines = ["| input peak dBFS | " + " | ".join(f"{m} file" if m == "offline" else m for m in MODES) + " |",
             "|---|" + "---|" * len(MODES)]
    for level in levels:
        cells = [results[f"{m}@{level:g}"][metric] for m in MODES]
        lines.append(f"| {level:g} | " + " | ".join(f"{np.mean(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a causal rms model folder or shipped name (default: the shipped default)")
    p.add_argument("--data_dir", default=None, help="folder or manifest (default: examples/te_cv)")
    p.add_argument("--clips", type=int, default=8, help="clips, spread over speakers (default: 8)")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds of each clip (default: 3)")
    p.add_argument("--levels", default="-45,-25,-5", help="input peak levels in dBFS, as --levels=-45,-5 (default: %(default)s)")
    p.add_argument("--kbps", type=float, default=6.0, help="nominal bitrate (default: 6)")
    p.add_argument("--chunk_ms", type=int, default=20, help="stream push size in ms (default: 20)")
    p.add_argument("--json", default=None, help="also write the per-clip figures here")
    args = p.parse_args(argv)
    try:
        if args.clips < 1 or args.seconds <= 0 or args.chunk_ms < 1:
            raise TelucodecError("--clips and --chunk_ms must be >= 1 and --seconds > 0")
        levels = parse_numbers(args.levels, "--levels")
        torch.set_num_threads(1)
        model = telucodec.load_model(args.model)
        data_dir = Path(args.data_dir) if args.data_dir else EXAMPLES
        clips = pick_clips(data_dir, [], args.clips, args.seconds, model.sample_rate)
        start = time.time()
        results = measure(model, clips, levels, args.kbps, model.sample_rate * args.chunk_ms // 1000)
    except TelucodecError as exc:
        print(f"stream_level: error: {exc}", file=sys.stderr)
        return 1
    print(f"{describe_model(model, args.model)}; {len(clips)} clips x {args.seconds:g} s "
          f"from {data_dir}; {args.kbps:g} kbps (n_q {model.n_q_for_kbps(args.kbps)}); streams pushed "
          f"{args.chunk_ms} ms at a time; {time.time() - start:.0f} s")
    print(f"streams equal the offline level-less codes: {results['codes_equal']}; audio max abs diff "
          f"{results['max_abs_stream_vs_levelless']:.2g}\n")
    print("output/input RMS ratio, mean over clips (min-max)\n")
    print(table(results, levels, "rms_ratio"))
    print("\nPESQ-WB, mean over clips (min-max)\n")
    print(table(results, levels, "pesq_wb"))
    if args.json:
        Path(args.json).write_text(json.dumps({"model_id": model.model_id, "clips": [n for n, _ in clips],
                                               "kbps": args.kbps, **results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
