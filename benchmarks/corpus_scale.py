"""Corpus scale: training memory and start-up at 3 h vs 300 h of listed audio, steps/s of the
streaming loader vs the old in-memory one, and tokenize throughput with Ray vs --workers 2.

    nice -n 19 .venv/bin/python benchmarks/corpus_scale.py --data_dir DATA [--part train|tokenize|all]

The 3 h set is every clip of --data_dir's manifests (real speech), listed once; the 300 h set
lists the same clips --repeat (100) times under their own speakers, as a manifest with
`seconds` (a fair stand-in for a corpus of that size: nothing reads the audio before it is drawn).

train: (1) `telucodec train` (tiny preset, batch 16, one DataLoader worker, one torch thread)
in a fresh process per set: wall time of a `--max_steps 1` run (an upper bound on the time to
the first step: it includes writing a checkpoint and exiting), and the peak memory of a
`--max_steps STEPS` run: the training process's RSS and the process tree's PSS (workers
included, shared pages counted once). (2) In one process, the same Trainer step fed by the
streaming loader (crops decoded by one worker) and by the old loader (every clip decoded up
front, crops cut in the training loop), in alternating blocks on the 3 h set; steps/s of each.

tokenize: the shipped model over the same ~1 h of audio (a manifest of the first clips of the
3 h list), `--workers 2` vs `--engine ray` on a local 2-CPU Ray (2 actors), each in a fresh
process: audio hours per wall hour (from the command's start, Ray's start-up included) and
the process tree's peak PSS.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


# ---- data --------------------------------------------------------------------------------------
def manifest_rows(data_dir: Path) -> list[tuple[str, float, str]]:
    rows = []
    for manifest in sorted(data_dir.rglob("manifest.tsv")):
        with manifest.open(newline="") as f:
            for r in csv.DictReader(f, delimiter="\t"):
                rows.append((str((manifest.parent / r["path"]).resolve()), float(r["seconds"]), r["speaker"]))
    return rows


def write_manifest(path: Path, rows: list[tuple[str, float, str]], repeat: int = 1) -> float:
    with path.open("w") as f:
        f.write("path\tseconds\tspeaker\n")
        for n in range(repeat):
            for p, s, spk in rows:
                f.write(f"{p}\t{s}\t{spk}-r{n}\n" if repeat > 1 else f"{p}\t{s}\t{spk}\n")
    return sum(s for _, s, _ in rows) * repeat / 3600


# ---- memory of a process tree ------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return kids


def tree_memory(root: int) -> tuple[float, float]:
    """(RSS of `root`, PSS summed over `root` and all its descendants), in MB."""
    pids, seen = [root], []
    while pids:
        pid = pids.pop()
        seen.append(pid)
        pids += _children(pid)
    rss = pss = 0.0
    for pid in seen:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) / 1024
                    elif line.startswith("Rss:") and pid == root:
                        rss = int(line.split()[1]) / 1024
        except OSError:
            continue
    return rss, pss


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run `cmd`; its wall time and the peak RSS (its own) and PSS (its tree), polled every 0.2 s."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    peak_rss = peak_pss = 0.0
    while proc.poll() is None:
        rss, pss = tree_memory(proc.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.2)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return {"wall_s": time.monotonic() - start, "peak_rss_mb": peak_rss, "peak_tree_pss_mb": peak_pss, "out": out}


# ---- train ---------------------------------------------------------------------------------------
TRAIN = ["--config", "tiny", "--batch_size", "16", "--num_workers", "1", "--threads", "1", "--quiet",
         "--learning_rate", "1e-3"]


def train_cmd(manifest: Path, work: Path, name: str, steps: int) -> list[str]:
    return [PY, str(ROOT / "train_codec.py"), "--data_dir", str(manifest), "--checkpoint_dir", str(work),
            "--experiment_name", name, "--max_steps", str(steps), *TRAIN]


def loader_speed(manifest: Path, work: Path, steps: int, blocks: int) -> dict[str, object]:
    """Steps/s of one Trainer fed by the streaming loader and by the old in-memory one."""
    import resource

    import torch

    from telucodec.cli import build_parser
    from telucodec.formats.dataset import load_dataset
    from telucodec.train.crops import CropDataset, RankBatches, crop_batches
    from telucodec.train.loop import Trainer

    torch.set_num_threads(1)
    args = build_parser().parse_args(["train", "--data_dir", str(manifest), "--checkpoint_dir", str(work),
                                      "--experiment_name", "speed", *TRAIN])
    trainer = Trainer(args)
    trainer.setup()
    tc, sr = trainer.config.train, trainer.config.model.sample_rate
    started = time.monotonic()
    old = load_dataset(manifest, sr, tc.val_fraction, tc.val_speakers, log=lambda m: None)
    old_load_s = time.monotonic() - started
    old_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    segment = int(tc.segment_seconds * sr)
    in_memory = CropDataset(old.train, segment, len(trainer.dataset), tc.seed)
    streaming = crop_batches(trainer.dataset, RankBatches(len(trainer.dataset), 0, 1, tc.batch_size,
                                                          trainer.steps_per_epoch), 1)
    position = 0

    def old_batch() -> torch.Tensor:
        nonlocal position
        batch = torch.stack([in_memory[j] for j in range(position, position + tc.batch_size)])
        position += tc.batch_size
        return batch

    def timed(next_batch) -> float:
        t = time.monotonic()
        for _ in range(steps):
            trainer.train_step(next_batch())
        return steps / (time.monotonic() - t)

    timed(lambda: next(streaming))  # warm-up: worker started, caches filled
    timed(old_batch)
    rates: dict[str, list[float]] = {"streaming": [], "in_memory": []}
    for _ in range(blocks):
        rates["streaming"].append(timed(lambda: next(streaming)))
        rates["in_memory"].append(timed(old_batch))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"steps_per_block": steps, "blocks": blocks, "steps_per_s": rates, "median_steps_per_s": med,
            "ratio_streaming_to_in_memory": med["streaming"] / med["in_memory"],
            "old_loader_decode_s": round(old_load_s, 1), "old_loader_peak_rss_mb": round(old_rss)}


def part_train(rows: list[tuple[str, float, str]], work: Path, args: argparse.Namespace) -> dict[str, object]:
    from telucodec.formats.dataset import index_audio

    sets = {"3h": (work / "3h.tsv", 1), "300h": (work / "300h.tsv", args.repeat)}
    result: dict[str, object] = {}
    for name, (manifest, repeat) in sets.items():
        hours = write_manifest(manifest, rows, repeat)
        t = time.monotonic()
        index = index_audio(manifest, durations=True)
        index_s = time.monotonic() - t
        index_mb = sum(a.nbytes for a in (index.names.data, index.names.offsets, index.seconds, index.speaker,
                                          index.container, index.where)) / 2**20
        first = run_measured(train_cmd(manifest, work, f"first-{name}", 1))
        steady = run_measured(train_cmd(manifest, work, f"steady-{name}", args.steps))
        result[name] = {"hours": round(hours, 2), "clips": len(index), "index_s": round(index_s, 2),
                        "index_arrays_mb": round(index_mb, 1), "first_step_run_s": round(first["wall_s"], 1),
                        "peak_rss_mb": round(steady["peak_rss_mb"]), "peak_tree_pss_mb": round(steady["peak_tree_pss_mb"])}
        print(name, json.dumps(result[name]), flush=True)
    result["rss_growth_mb"] = result["300h"]["peak_rss_mb"] - result["3h"]["peak_rss_mb"]
    result["pss_growth_mb"] = result["300h"]["peak_tree_pss_mb"] - result["3h"]["peak_tree_pss_mb"]
    result["loader_speed_3h"] = loader_speed(work / "3h.tsv", work, args.speed_steps, args.blocks)
    print("speed", json.dumps(result["loader_speed_3h"]), flush=True)
    return result


# ---- tokenize ------------------------------------------------------------------------------------
def part_tokenize(rows: list[tuple[str, float, str]], work: Path, args: argparse.Namespace) -> dict[str, object]:
    chosen, total = [], 0.0
    for row in rows:
        if total >= args.tokenize_hours * 3600:
            break
        chosen.append(row)
        total += row[1]
    manifest = work / "tok.tsv"
    write_manifest(manifest, chosen)
    base = [PY, "-m", "telucodec.cli", "tokenize", "--data_dir", str(manifest), "--workers", "2"]
    runs = {"workers_2": base + ["--out", str(work / "tok_local")],
            "ray": base + ["--out", str(work / "tok_ray"), "--engine", "ray"]}
    result: dict[str, object] = {"audio_hours": round(total / 3600, 3), "clips": len(chosen)}
    for name, cmd in runs.items():
        m = run_measured(cmd)
        result[name] = {"wall_s": round(m["wall_s"], 1), "audio_hours_per_hour": round(total / m["wall_s"], 1),
                        "peak_tree_pss_mb": round(m["peak_tree_pss_mb"])}
        print(name, json.dumps(result[name]), flush=True)
    result["ray_to_workers_2"] = result["ray"]["audio_hours_per_hour"] / result["workers_2"]["audio_hours_per_hour"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True, help="a folder whose manifest.tsv files list real clips")
    p.add_argument("--part", default="all", choices=["train", "tokenize", "all"])
    p.add_argument("--repeat", type=int, default=100, help="the large set lists the clips this many times")
    p.add_argument("--steps", type=int, default=30, help="steps of each memory run")
    p.add_argument("--speed_steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=3, help="timed blocks per loader (alternating)")
    p.add_argument("--tokenize_hours", type=float, default=1.0)
    p.add_argument("--out", default=None, help="write the figures here as JSON")
    args = p.parse_args()
    rows = manifest_rows(Path(args.data_dir))
    if not rows:
        raise SystemExit(f"{args.data_dir}: no manifest.tsv with path/seconds/speaker found")
    result: dict[str, object] = {"command": " ".join([Path(PY).name, *sys.argv]), "data_dir": args.data_dir}
    with tempfile.TemporaryDirectory(prefix="corpus_scale_") as tmp:
        if args.part in ("train", "all"):
            result["train"] = part_train(rows, Path(tmp), args)
        if args.part in ("tokenize", "all"):
            result["tokenize"] = part_tokenize(rows, Path(tmp), args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
