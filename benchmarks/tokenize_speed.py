"""Dataset tokenization: throughput on real speech, and peak memory as the input grows 1x/10x/100x.

    nice -n 10 .venv/bin/python benchmarks/tokenize_speed.py                # random-weight `spectral` model
    nice -n 10 .venv/bin/python benchmarks/tokenize_speed.py --model runs/x/model --data_dir DATA/dev_te

Throughput: `tokenize_dataset` over every clip of --data_dir (real Telugu speech), one process,
`--threads` torch threads, reported as audio hours per wall hour (model load excluded).
Memory: the first --unit_clips clips, listed 1, 10 and 100 times under distinct ids (symlinks
rep000/, rep001/, ...), each scale tokenized in a fresh process; peak RSS (ru_maxrss) is
reported with the RSS the process had before tokenizing (imports + model). Codes stream into
shard files and the index is appended per shard, so the peak should not grow with the input.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "examples" / "te_cv"

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
from telucodec.api import load_model
from telucodec.deploy.tokenize import tokenize_dataset
model = load_model(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
summary = tokenize_dataset(sys.argv[1], sys.argv[2], model)
summary["rss_before_mb"] = before
summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(summary))
"""


def random_spectral_model(directory: Path) -> Path:
    import torch

    from telucodec.config import get_config
    from telucodec.model.codec import Codec

    torch.manual_seed(0)
    return Codec(get_config("spectral")).eval().save_pretrained(directory)


def run_child(data: Path, out: Path, model: Path, threads: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(data), str(out), str(model), str(threads)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"tokenize child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def repeated_dataset(root: Path, clips: list[Path], times: int) -> Path:
    """A folder with `clips` linked `times` over (rep000/…, rep001/…): distinct ids, same audio."""
    for rep in range(times):
        folder = root / f"rep{rep:03d}"
        folder.mkdir(parents=True)
        for clip in clips:
            (folder / clip.name).symlink_to(clip.resolve())
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder or checkpoint (default: random-weight spectral preset)")
    ap.add_argument("--data_dir", default=str(DEFAULT_DATA))
    ap.add_argument("--unit_clips", type=int, default=8, help="clips in the 1x input of the memory test")
    ap.add_argument("--scales", default="1,10,100")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", default=None, help="keep files here (default: a temporary folder)")
    args = ap.parse_args()

    from telucodec.formats.dataset import discover

    work = Path(args.workdir or tempfile.mkdtemp(prefix="tokenize_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else random_spectral_model(work / "spectral-random")
    items = discover(args.data_dir)
    print(f"model {model}; data {args.data_dir} ({len(items)} clips); {args.threads} thread(s)")

    started = time.perf_counter()
    full = run_child(Path(args.data_dir), work / "full", model, args.threads)
    print(f"throughput: {full['audio_seconds'] / 60:.1f} min of audio in {full['seconds']:.1f} s = "
          f"{full['audio_hours_per_hour']:.0f} audio hours per wall hour "
          f"({full['tokens']:,} tokens, n_q {full['n_q']}, peak RSS {full['peak_rss_mb']:.0f} MB)")

    unit = [i.path for i in items[: args.unit_clips]]
    rows = []
    for scale in (int(s) for s in args.scales.split(",")):
        data = repeated_dataset(work / f"data_x{scale}", unit, scale)
        s = run_child(data, work / f"tokens_x{scale}", model, args.threads)
        rows.append({"scale": scale, "clips": s["utterances"], "audio_hours": round(s["hours"], 3),
                     "seconds": s["seconds"], "rss_before_mb": round(s["rss_before_mb"], 1),
                     "peak_rss_mb": round(s["peak_rss_mb"], 1)})
        print(f"memory {scale:>4}x: {s['utterances']:>5} clips, {s['hours']:.3f} h audio, {s['seconds']:6.1f} s, "
              f"RSS before {s['rss_before_mb']:.0f} MB, peak {s['peak_rss_mb']:.0f} MB "
              f"(+{s['peak_rss_mb'] - s['rss_before_mb']:.0f} MB while tokenizing)")
    result = {"model": str(model), "data_dir": args.data_dir, "threads": args.threads,
              "throughput_audio_hours_per_hour": full["audio_hours_per_hour"],
              "throughput_audio_minutes": round(full["audio_seconds"] / 60, 2), "memory": rows,
              "total_seconds": round(time.perf_counter() - started, 1)}
    (work / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {work / 'results.json'} ({result['total_seconds']} s in all)")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
