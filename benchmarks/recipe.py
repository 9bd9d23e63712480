#!/usr/bin/env python
"""Short measured recipe trials: train each variant for the same CPU minutes, score them side by
side on the same held-out clips.

    python benchmarks/recipe.py --data_dir state/train_manifest.tsv --val_speakers A,B,C \
        --minutes 10 --work state/trials \
        --variant seanet=small --variant spectral=spectral

A variant is NAME=CONFIG[@INIT]: CONFIG is a preset or a config .json, INIT an optional
checkpoint or model folder to start from (`--init_from`); NAME=score@CHECKPOINT scores a
checkpoint or model folder as it is (the starting point of fine-tuning trials, say). Every variant trains on `--threads`
threads with the same seed and data order for `--minutes` wall minutes (`--max_minutes`), or with
`--cpu_budget` for `--minutes` CPU minutes of its own process (fair on a shared machine), one at a
time (never two trainings at once on this machine). Then each last checkpoint encodes and decodes
`--clips` held-out clips (round-robin over the validation speakers) at full bitrate, 3 and
1.5 kbps, and the table shows PESQ-WB, STOI, SI-SDR, mel distance, RMS ratio and steps taken,
with PESQ as a ratio to the first variant. `--reuse` keeps a variant's finished run.

Quality against CPU time: `--cpu_minutes NAME=M` records how many CPU minutes of training
(cumulative over its lineage) a scored checkpoint holds, and `--plot PNG` draws PESQ-WB and STOI
against those minutes, with the baselines of an eval (`--baselines_from results.json`: Opus 6 kbps
and Codec2 3200) as horizontal lines. `--earlier JSON` puts the rows of an earlier `--json` (same
clips) first, so a lineage whose old checkpoints are gone stays on one curve.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import numpy as np
import torch
from bottleneck import held_out_clips  # benchmarks/bottleneck.py: the same clips, round-robin by speaker

from telucodec.api import load_model
from telucodec.evaluation import metrics
from telucodec.model.loading import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("pesq_wb", "stoi", "si_sdr_db", "mel_distance", "rms_ratio")


def parse_variant(text: str) -> tuple[str, str, str | None]:
    name, _, rest = text.partition("=")
    config, _, init = rest.partition("@")
    if not name or not config:
        raise SystemExit(f"--variant {text!r}: expected NAME=CONFIG[@INIT]")
    return name, config, init or None


def train(name: str, config: str, init: str | None, args: argparse.Namespace) -> Path:
    if config == "score":
        return Path(init)
    exp = Path(args.work) / name
    last = exp / "checkpoints" / "last.pt"
    if args.reuse and last.is_file():
        print(f"reusing {exp}", flush=True)
        return last
    cmd = [sys.executable, str(ROOT / "train_codec.py"), "--data_dir", args.data_dir, "--checkpoint_dir", args.work,
           "--experiment_name", name, "--config", config, "--batch_size", str(args.batch_size),
           "--max_minutes", str(args.minutes), "--threads", str(args.threads), "--seed", "1", "--quiet",
           "--overwrite"]
    if init:
        cmd += ["--init_from", init]
    if args.val_speakers:
        cmd += ["--val_speakers", args.val_speakers]
    print("+", " ".join(cmd), flush=True)
    if args.cpu_budget:
        cmd[cmd.index("--max_minutes") + 1] = str(3 * args.minutes)  # the CPU budget stops it first
        run_with_cpu_budget(cmd, args.minutes * 60)
    else:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return last


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_with_cpu_budget(cmd: list[str], cpu_seconds: float) -> None:
    """Run a training until its own process has used `cpu_seconds` of CPU, then SIGINT it (it
    finishes the step and writes a resumable checkpoint). On a shared machine wall minutes hand
    a trial whatever the other processes leave it; CPU seconds are the same budget for every trial."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    stopped = False
    while proc.poll() is None:
        try:
            if process_cpu_seconds(proc.pid) >= cpu_seconds:
                proc.send_signal(signal.SIGINT)
                stopped = True
                break
        except OSError:
            break
        time.sleep(2)
    # a training stopped by SIGINT saves its checkpoint and exits 130 (128 + SIGINT), as asked
    if proc.wait() not in ((0, 128 + signal.SIGINT) if stopped else (0,)):
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def score(model: torch.nn.Module, clips: list[np.ndarray], kbps: float | None) -> dict[str, float]:
    rows = []
    with torch.no_grad():
        for wav in clips:
            decoded = np.clip(model.decode(model.encode(wav, 16000, kbps)).numpy(), -1, 1)
            rows.append(metrics.score_all(wav, decoded[: wav.size]))
    return {key: float(np.mean([r[key] for r in rows])) for key in METRICS}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--val_speakers", required=True)
    p.add_argument("--variant", action="append", required=True, help="NAME=CONFIG[@INIT]")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--cpu_budget", action="store_true",
                   help="--minutes are CPU minutes of each training process (SIGINT at the budget), not wall minutes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--work", default="state/trials")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--json", default=None, help="also write the table as JSON here")
    p.add_argument("--cpu_minutes", action="append", default=[], help="NAME=MINUTES of training a variant holds")
    p.add_argument("--plot", default=None, help="PNG: PESQ-WB and STOI against --cpu_minutes")
    p.add_argument("--earlier", default=None,
                   help="a --json of an earlier run on the same clips: its rows come first in the table, "
                        "JSON and plot (checkpoints gone since can stay on the curve)")
    p.add_argument("--baselines_from", default=None, help="an eval's results.json for reference lines on --plot")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    variants = [parse_variant(v) for v in args.variant]
    checkpoints = {name: train(name, config, init, args) for name, config, init in variants}
    clips = held_out_clips(args.data_dir, args.val_speakers, args.clips, 16000)
    print(f"scoring on {len(clips)} held-out clips ({sum(c.size for c in clips) / 16000:.0f} s)", flush=True)
    results = []
    for name, config, init in variants:
        ckpt = checkpoints[name]
        steps = int(load_checkpoint(ckpt)["step"]) if ckpt.is_file() else -1
        row = {"variant": name, "config": config, "init": init, "steps": steps}
        start = time.perf_counter()
        model = load_model(ckpt)
        for label, kbps in (("full", None), ("3", 3.0), ("1.5", 1.5)):
            row[label] = score(model, clips, kbps)
        row["score_seconds"] = time.perf_counter() - start
        results.append(row)
    minutes = {name: float(m) for name, _, m in (item.partition("=") for item in args.cpu_minutes)}
    for r in results:
        r["cpu_minutes"] = minutes.get(r["variant"])
    if args.earlier:
        results = json.loads(Path(args.earlier).read_text()) + results
    base = results[0]["full"]["pesq_wb"]
    trained = any(config != "score" for _, config, _ in variants)
    clock = "CPU" if args.cpu_budget else "wall"
    budget = f"{args.minutes:g} {clock} minutes of training each on {args.threads} thread(s); " if trained else ""
    print(f"\n{budget}full bitrate (all codebooks) | 3 kbps | 1.5 kbps")
    print("| variant | steps | PESQ-WB | PESQ / first | STOI | SI-SDR dB | mel dist | RMS ratio | PESQ @3 | STOI @3 "
          "| PESQ @1.5 | STOI @1.5 |")
    print("|---" * 12 + "|")
    for r in results:
        f, low = r["full"], r["1.5"]
        mid = r.get("3")  # rows of earlier runs may not have scored 3 kbps
        at3 = f"{mid['pesq_wb']:.3f} | {mid['stoi']:.3f}" if mid else "- | -"
        print(f"| {r['variant']} | {r['steps']} | {f['pesq_wb']:.3f} | {f['pesq_wb'] / base:.3f} | {f['stoi']:.3f} | "
              f"{f['si_sdr_db']:.1f} | {f['mel_distance']:.3f} | {f['rms_ratio']:.3f} | {at3} | "
              f"{low['pesq_wb']:.3f} | {low['stoi']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot_against_minutes(results, Path(args.plot), args.baselines_from)
    return 0


def plot_against_minutes(results: list[dict], path: Path, baselines_from: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted((r for r in results if r.get("cpu_minutes") is not None), key=lambda r: r["cpu_minutes"])
    systems = json.loads(Path(baselines_from).read_text())["systems"] if baselines_from else []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in zip(axes, ("pesq_wb", "stoi"), ("PESQ-WB", "STOI")):
        hours = [r["cpu_minutes"] / 60 for r in points]
        ax.plot(hours, [r["full"][key] for r in points], "o-", color="#1f77b4", label="telucodec 6 kbps")
        ax.plot(hours, [r["1.5"][key] for r in points], "s--", color="#6baed6", label="telucodec 1.5 kbps")
        for name, setting, colour in (("opus", "6", "#d62728"), ("codec2", "3200", "#2ca02c"), ("lyra", "6", "#9467bd")):
            ref = next((e for e in systems if e["system"] == name and e["setting"] == setting), None)
            if ref and ref.get(key) is not None:
                ax.axhline(ref[key], color=colour, linestyle=":", label=f"{name} {setting}")
        ax.set_xlabel("CPU hours of training (1 thread)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
