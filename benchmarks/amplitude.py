#!/usr/bin/env python
"""Who owns loudness? Train one model per amplitude strategy on the same data for the same CPU
budget, then measure how each keeps level across inputs from -45 to -1 dBFS peak.

    python benchmarks/amplitude.py --data_dir DATA --val_speakers A,B,C --steps 600 --out docs/amplitude.md

Each strategy trains `--preset` (default small) for the same number of optimizer steps on
`--threads` threads (same seed, same crops: equal compute; the wall time each took is reported). Held-out clips (the validation speakers) are re-leveled to each
peak level, encoded to codes and decoded through the real `encode`/`decode` path (side info
included), and scored: RMS ratio, SI-SDR, PESQ-WB, fraction of clipped samples. Digital silence
and a hard-clipped input are checked too. The winner is the strategy whose worst RMS ratio over
the levels is closest to 1 (ties: higher mean PESQ).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import numpy as np
import torch

from telucodec.api import load_model
from telucodec.evaluation import metrics
from telucodec.formats.dataset import load_dataset
from telucodec.model.loading import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
LEVELS_DBFS = (-45, -35, -26, -16, -6, -1)
STRATEGIES = ("none", "rms", "lufs")


def train(strategy: str, args: argparse.Namespace, work: Path) -> tuple[Path, float]:
    """Train one strategy (or, with --reuse, keep a finished run of the same step count); returns
    the experiment folder and its training wall seconds (sum over epochs, from metrics.jsonl)."""
    exp = work / strategy
    last = exp / "checkpoints" / "last.pt"
    if args.reuse and last.is_file() and load_checkpoint(last)["step"] == args.steps:
        print(f"reusing {exp} ({args.steps} steps)", flush=True)
        return exp, training_seconds(exp)
    cmd = [sys.executable, str(ROOT / "train_codec.py"), "--data_dir", args.data_dir, "--checkpoint_dir", str(work),
           "--experiment_name", strategy, "--config", args.preset, "--amplitude", strategy, "--batch_size",
           str(args.batch_size), "--num_epochs", str(math.ceil(args.steps / args.steps_per_epoch)),
           "--steps_per_epoch", str(args.steps_per_epoch), "--max_steps", str(args.steps),
           "--threads", str(args.threads), "--seed", "1", "--quiet", "--overwrite"]
    if args.val_speakers:
        cmd += ["--val_speakers", args.val_speakers]
    if args.learning_rate:
        cmd += ["--learning_rate", str(args.learning_rate)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return exp, training_seconds(exp)


def training_seconds(exp: Path) -> float:
    return sum(json.loads(line)["seconds"] for line in (exp / "metrics.jsonl").read_text().splitlines())


def peak_normalize(wav: np.ndarray, peak_dbfs: float) -> np.ndarray:
    return (wav / max(np.abs(wav).max(), 1e-9) * 10 ** (peak_dbfs / 20)).astype(np.float32)


def round_trip(model, wav: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.decode(model.encode(wav, model.sample_rate)).numpy()


def score_strategy(model, clips: list[np.ndarray]) -> dict:
    rows = {}
    for level in LEVELS_DBFS:
        ratios, sisdr, pesq, clipped = [], [], [], []
        for clip in clips:
            x = peak_normalize(clip, level)
            y = round_trip(model, x)
            ratios.append(metrics.rms_ratio(x, y))
            sisdr.append(metrics.si_sdr_db(x, y))
            pesq.append(metrics.pesq_wb(x, np.clip(y, -1, 1)))
            clipped.append(float(np.mean(np.abs(y) > 1.0)))
        rows[level] = {"rms_ratio": float(np.mean(ratios)), "rms_ratio_min": float(np.min(ratios)),
                       "rms_ratio_max": float(np.max(ratios)), "si_sdr_db": float(np.mean(sisdr)),
                       "pesq_wb": float(np.nanmean(pesq)), "clipped": float(np.mean(clipped))}
    silence = round_trip(model, np.zeros(32000, dtype=np.float32))
    hot = np.clip(peak_normalize(clips[0], 0) * 10, -1, 1)  # +20 dB into a hard clipper
    y_hot = round_trip(model, hot)
    return {"levels": rows,
            "silence_peak": float(np.abs(silence).max()), "silence_finite": bool(np.isfinite(silence).all()),
            "clipped_input_rms_ratio": metrics.rms_ratio(hot, y_hot),
            "clipped_input_clipped": float(np.mean(np.abs(y_hot) > 1.0))}


def level_spread(result: dict) -> float:
    """How much the RMS ratio moves across input levels, in dB (0 = perfectly level-invariant)."""
    ratios = [max(r["rms_ratio"], 1e-6) for r in result["levels"].values()]
    return 20 * math.log10(max(ratios) / min(ratios))


def worst_ratio_error(result: dict) -> float:
    """How far the worst clip-mean RMS ratio is from 1, in dB."""
    return max(abs(20 * math.log10(max(r["rms_ratio"], 1e-6))) for r in result["levels"].values())


def write_markdown(results: dict, args: argparse.Namespace, command: str, winner: str, cpu: dict) -> str:
    lines = ["# Amplitude: who owns loudness?", "",
             f"Made by: `{command}`", "",
             f"Each strategy trained the `{args.preset}` preset for {args.steps} steps of batch {args.batch_size} x 1 s on "
             f"{args.threads} CPU thread(s) (same data, seed and crops: equal compute; training wall minutes on one thread of a shared 2-core machine below); scored on {args.clips} held-out clips "
             f"(speakers {args.val_speakers or 'from the hash split'}) re-leveled to each peak level, through the real "
             "encode -> bitstream codes -> decode path at full bitrate.", "",
             "| strategy | peak dBFS | RMS ratio (mean, min-max) | SI-SDR dB | PESQ-WB | clipped % |",
             "|---|---|---|---|---|---|"]
    for s, res in results.items():
        for level, r in res["levels"].items():
            lines.append(f"| {s} | {level} | {r['rms_ratio']:.3f} ({r['rms_ratio_min']:.2f}-{r['rms_ratio_max']:.2f}) | "
                         f"{r['si_sdr_db']:.2f} | {r['pesq_wb']:.2f} | {100 * r['clipped']:.3f} |")
    lines += ["", "| strategy | training wall min | digital silence: output peak | finite | clipped input: RMS ratio | "
              "output clipped % | level spread dB | worst level error dB |", "|---|---|---|---|---|---|---|---|"]
    for s, res in results.items():
        minutes = "-" if math.isnan(cpu[s]) else f"{cpu[s] / 60:.1f}"
        lines.append(f"| {s} | {minutes} | {res['silence_peak']:.2e} | {res['silence_finite']} | "
                     f"{res['clipped_input_rms_ratio']:.3f} | {100 * res['clipped_input_clipped']:.2f} | "
                     f"{level_spread(res):.2f} | {worst_ratio_error(res):.2f} |")
    lines += ["", "Level spread = how far the RMS ratio moves between the quietest and loudest input (what the "
              "strategy controls); worst level error = the largest distance of a level's mean RMS ratio from 1 "
              "(also how well the decoder has learned its output level, which improves with training).", "",
              f"**Decision: `{winner}`** — the smallest level spread across -45..-1 dBFS (0.5 dB bins), then the "
              "smallest worst-case level error, then mean PESQ. It is the default amplitude of the presets "
              "trained for use (`small`, `base`, `spectral`) and of the shipped model.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--val_speakers", default=None)
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--steps_per_epoch", type=int, default=100)
    p.add_argument("--learning_rate", type=float, default=None)
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--work", default="/tmp/telucodec-amplitude")
    p.add_argument("--out", default=str(ROOT / "docs" / "amplitude.md"))
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--reuse", action="store_true", help="keep finished runs of the same step count in --work")
    p.add_argument("--also", action="append", default=[], metavar="LABEL=MODEL",
                   help="also score an already trained model (e.g. the shipped one) on the same clips")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])
    work = Path(args.work)
    data = load_dataset(args.data_dir, 16000, 0.1, tuple(args.val_speakers.split(",")) if args.val_speakers else (),
                        log=lambda m: None)
    clips = [c.wav[: 16000 * 6] for c in data.val[: args.clips]]
    results, cpu = {}, {}
    for strategy in args.strategies.split(","):
        t = time.monotonic()
        exp, cpu[strategy] = train(strategy, args, work)
        model = load_model(exp / "checkpoints" / "last.pt")
        results[strategy] = score_strategy(model, clips)
        print(f"{strategy}: trained+scored in {time.monotonic() - t:.0f} s; worst level error "
              f"{worst_ratio_error(results[strategy]):.2f} dB", flush=True)
    winner = min(results, key=lambda s: (round(2 * level_spread(results[s])) / 2, round(worst_ratio_error(results[s]), 1),
                                         -np.mean([r["pesq_wb"] for r in results[s]["levels"].values()])))
    for extra in args.also:
        label, _, path = extra.partition("=")
        results[label] = score_strategy(load_model(path), clips)
        cpu[label] = float("nan")
    text = write_markdown(results, args, command, winner, cpu)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    (Path(args.out).with_suffix(".json")).write_text(json.dumps({"results": results, "winner": winner}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
