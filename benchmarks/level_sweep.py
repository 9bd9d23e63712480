#!/usr/bin/env python
"""The level promise, measured: how the output level follows the input level, per bitrate.

    python benchmarks/level_sweep.py                                   # the shipped model on examples/
    python benchmarks/level_sweep.py --data_dir MANIFEST.tsv --speakers A,B,C --clips 8 --levels=-45,-25,-5

A few clips (examples/te_cv, or --data_dir with --speakers taken from its manifest's speaker
column), each cut to --seconds and scaled so that its peak sits at each of --levels dBFS, go
through the real path (`telucodec.compress` -> .tcd bytes -> `telucodec.decompress`) at each of
--kbps. One table: the output/input RMS ratio (mean over clips, min-max) per input level and
bitrate, on the decoded audio clipped to [-1, 1] as a WAV would hold it. A model that keeps the
level shows about 1.00 in every cell; a model that codes its level in the network (amplitude
`none`) can drift with the input level and with the bitrate. Read-only: nothing is trained or
written unless --json is given. Silent and too-short clips are skipped as training and eval do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import numpy as np
import torch

import telucodec
from telucodec.errors import AudioError, TelucodecError
from telucodec.evaluation.metrics import pesq_wb, rms_ratio
from telucodec.formats.dataset import index_audio, load_clip, spread

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"


def parse_numbers(text: str, flag: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise TelucodecError(f"{flag}: {text!r} is not a comma-separated list of numbers") from exc


def pick_clips(data_dir: Path, speakers: list[str], n: int, seconds: float, sample_rate: int
               ) -> list[tuple[str, np.ndarray]]:
    """Up to `n` usable clips spread over speakers (only `speakers` when given), each its first
    `seconds` (a clip's first 0.3 s are skipped: a recording's click or breath is not speech)."""
    items = list(index_audio(data_dir))
    if speakers:
        items = [i for i in items if i.speaker in speakers]
        missing = set(speakers) - {i.speaker for i in items}
        if missing:
            raise TelucodecError(f"--speakers: {', '.join(sorted(missing))} not in {data_dir}")
    clips = []
    for item in spread(items, lambda i: i.speaker or str(i.path.parent)):
        if len(clips) >= n:
            break
        try:
            wav = load_clip(item, sample_rate).wav
        except AudioError as exc:
            print(f"skipped {item.name}: {str(exc).split(': ', 1)[-1]}", file=sys.stderr)
            continue
        start = int(0.3 * sample_rate) if wav.size > int((seconds + 0.3) * sample_rate) else 0
        clips.append((item.name, wav[start:start + int(seconds * sample_rate)]))
    if not clips:
        raise TelucodecError(f"{data_dir}: no usable clips")
    return clips


def describe_model(model, name: str | None) -> str:
    """"model ID (NAME; amplitude A, level_match B)": what a level table was measured on."""
    mc = model.config.model
    return (f"model {model.model_id} ({Path(name).name if name else 'shipped default'}; amplitude "
            f"{mc.amplitude}, level_match {str(mc.level_match).lower()})")


def to_peak(wav: np.ndarray, peak_dbfs: float) -> np.ndarray:
    return (wav / max(float(np.abs(wav).max()), 1e-9) * 10 ** (peak_dbfs / 20)).astype(np.float32)


def sweep(model, clips: list[tuple[str, np.ndarray]], levels: list[float], rates: list[float], pesq: bool = False
          ) -> tuple[dict[tuple[float, float], list[float]], dict[tuple[float, float], list[float]]]:
    """(level, kbps) -> one output/input RMS ratio per clip, through compress/decompress; and, with
    `pesq`, one PESQ-WB per clip (else an empty dict)."""
    ratios: dict[tuple[float, float], list[float]] = {}
    scores: dict[tuple[float, float], list[float]] = {}
    for level in levels:
        for _, wav in clips:
            x = to_peak(wav, level)
            for kbps in rates:
                y, _ = telucodec.decompress(telucodec.compress(x, model.sample_rate, model=model, kbps=kbps),
                                            model=model)
                y = np.clip(y[: x.size], -1.0, 1.0)
                ratios.setdefault((level, kbps), []).append(rms_ratio(x, y))
                if pesq:
                    scores.setdefault((level, kbps), []).append(pesq_wb(x, y, model.sample_rate))
    return ratios, scores


def table(results: dict[tuple[float, float], list[float]], levels: list[float], rates: list[float]) -> str:
    lines = ["| input peak dBFS | " + " | ".join(f"{k:g} kbps" for k in rates) + " |",
             "|---|" + "---|" * len(rates)]
    for level in levels:
        cells = [f"{np.mean(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in (results[(level, k)] for k in rates)]
        lines.append(f"| {level:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model folder or shipped name (default: the shipped default model)")
    p.add_argument("--data_dir", default=None, help="folder or manifest (default: examples/te_cv)")
    p.add_argument("--speakers", default="", help="comma-separated speakers of --data_dir's manifest (default: all)")
    p.add_argument("--clips", type=int, default=4, help="clips, spread over speakers (default: 4)")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds of each clip (default: 3)")
    p.add_argument("--levels", default="-45,-35,-25,-15,-5,-1", help="input peak levels in dBFS, given as --levels=-45,-1 (default: %(default)s)")
    p.add_argument("--kbps", default="1.5,3,6", help="bitrates")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--pesq", action="store_true", help="also a table of PESQ-WB by input level (quality, not only level)")
    p.add_argument("--json", default=None, help="also write the per-clip ratios here")
    args = p.parse_args(argv)
    try:
        if args.clips < 1 or args.seconds <= 0:
            raise TelucodecError("--clips must be >= 1 and --seconds > 0")
        levels, rates = parse_numbers(args.levels, "--levels"), parse_numbers(args.kbps, "--kbps")
        if any(level > 0 for level in levels):
            raise TelucodecError("--levels: a peak above 0 dBFS would clip the input itself")
        torch.set_num_threads(args.threads)
        model = telucodec.load_model(args.model)
        speakers = [s.strip() for s in args.speakers.split(",") if s.strip()]
        data_dir = Path(args.data_dir) if args.data_dir else EXAMPLES
        clips = pick_clips(data_dir, speakers, args.clips, args.seconds, model.sample_rate)
        start = time.time()
        results, scores = sweep(model, clips, levels, rates, args.pesq)
    except TelucodecError as exc:
        print(f"level_sweep: error: {exc}", file=sys.stderr)
        return 1
    print(f"{describe_model(model, args.model)}; {len(clips)} clips x {args.seconds:g} s "
          f"from {args.data_dir or 'examples/te_cv'}{' speakers ' + ','.join(speakers) if speakers else ''}; "
          f"{time.time() - start:.0f} s")
    print("output/input RMS ratio, mean over clips (min-max); decoded audio clipped to [-1, 1]\n")
    print(table(results, levels, rates))
    if scores:
        print("\nPESQ-WB, mean over clips (min-max)\n")
        print(table(scores, levels, rates))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model_id": model.model_id, "clips": [name for name, _ in clips], "levels_dbfs_peak": levels,
            "kbps": rates, "rms_ratio": {f"{lv:g}@{k:g}": v for (lv, k), v in results.items()},
            "pesq_wb": {f"{lv:g}@{k:g}": v for (lv, k), v in scores.items()}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
