"""Where a training run lives: the device(s) it runs on and the experiment folder it owns.

An existing experiment is never replaced without `--overwrite`; `--resume` needs a checkpoint;
after a crash (kill -9, power loss) the folder is tidied before the run continues.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from telucodec.errors import TelucodecError


def pick_device(name: str) -> torch.device:
    """`auto` | `cpu` | `cuda` -> a device (under DDP, this process's GPU)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise TelucodecError("--device cuda: no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def setup_distributed(device_name: str) -> tuple[int, int]:
    """Initialise DDP when launched by torchrun (RANK/WORLD_SIZE set); returns (rank, world)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def prepare_experiment(root: Path, resume: bool, overwrite: bool, rank: int) -> Path | None:
    """Return the checkpoint to resume from (or None), after checking the folder is ours to use."""
    last = root / "checkpoints" / "last.pt"
    if resume:
        if not last.is_file():
            raise TelucodecError(f"{root}: --resume but no checkpoint at {last}")
        return last
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise TelucodecError(f"{root} already exists; use --resume to continue it or --overwrite to replace it")
        if rank == 0:
            shutil.rmtree(root)
    return None


def tidy_for_resume(root: Path, epoch: int) -> None:
    """After a crash (kill -9, power loss): delete temp files of atomic writes that never
    finished, and metrics.jsonl rows newer than the checkpoint (or cut short), which the resumed
    run is about to write again."""
    for sub in ("checkpoints", "model"):
        for tmp in (root / sub).glob("*.tmp*") if (root / sub).is_dir() else ():
            tmp.unlink(missing_ok=True)
    metrics = root / "metrics.jsonl"
    if not metrics.is_file():
        return
    kept = []
    for line in metrics.read_text().splitlines():
        try:
            if json.loads(line)["epoch"] <= epoch:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    tmp = metrics.with_name(".metrics.jsonl.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, metrics)
