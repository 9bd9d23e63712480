"""Where a training run lives: the device(s) it runs on and the experiment folder it owns.

An existing experiment is never replaced without `--overwrite`; `--resume` needs a checkpoint;
after a crash (kill -9, power loss) the folder is tidied before the run continues; a fresh run that
fails before its first checkpoint takes back the folder it made (`undo_failed_start`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    # device-mapped: CUDA tensors over NCCL, CPU ones (the stop flag, every rank's RNG state) over gloo
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def wrap_ddp(module: torch.nn.Module | None, device: torch.device, world: int,
             find_unused_parameters: bool) -> torch.nn.Module | None:
    """`module` under DDP when there are several processes (else itself; None stays None).

    Buffers are not broadcast every step (`broadcast_buffers=False`): the quantizer keeps its
    statistics identical on every rank by itself (all-reduced EMA sums, rank 0's k-means and
    dead-code picks) and the other buffers are constants; DDP syncs every parameter and buffer
    from rank 0 once, when it wraps the module."""
    if module is None or world <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=False, find_unused_parameters=find_unused_parameters)


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


@contextmanager
def undo_failed_start(root: Path, resume: bool, overwrite: bool) -> Iterator[Callable[[], bool]]:
    """Around a run's start: when a fresh run fails (raises, or the caller calls the yielded
    `undo()`) before its first checkpoint exists, remove what it made, so the corrected command is
    not told the experiment "already exists" (nor `--resume` that there is no checkpoint).

    Only what this run created goes: the experiment folder (and the parent folders it created),
    or, when the folder was there empty (or `--overwrite` emptied it), what it put inside. A
    `--resume`, an existing experiment without `--overwrite` (refused by `prepare_experiment`),
    another DDP rank than 0, and a run with a checkpoint are never touched."""
    top = root
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    existed = root.exists()
    occupied = existed and root.is_dir() and any(root.iterdir())
    allowed = not resume and (not occupied or overwrite) and int(os.environ.get("RANK", "0")) == 0

    def undo() -> bool:
        if not allowed or not root.is_dir() or (root / "checkpoints" / "last.pt").exists():
            return False
        if not existed:
            shutil.rmtree(top, ignore_errors=True)
            return True
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        return True

    try:
        yield undo
    except BaseException:
        undo()
        raise


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
