"""Faults for benchmarks/robustness.py: kill -9 during training, NaN in a batch, a full disk.
Resource limits and parallel = serial are in robustness_limits.py."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.robustness_common import PYTHON, ROOT, Row, Sandbox, child_env
from telucodec.errors import TelucodecError
from telucodec.model.loading import load_checkpoint

TEMP_MARKERS = (".tmp",)  # atomic writes go through names containing this


def fast_config(path: Path) -> Path:
    """`tiny`, made for frequent checkpoints: 2 steps of batch 2 per epoch, no PESQ, no samples."""
    from telucodec.config import get_config, with_overrides

    cfg = with_overrides(get_config("tiny"), pesq_every=0, samples_every=0, val_max_clips=1, val_max_seconds=1.0,
                         segment_seconds=0.5, batch_size=2, steps_per_epoch=2, warmup_steps=0)
    cfg.save(path)
    return path


def train_argv(data: Path, ckpt: Path, name: str, config: Path, *extra: str) -> list[str]:
    return ["--data_dir", str(data), "--checkpoint_dir", str(ckpt), "--experiment_name", name,
            "--config", str(config), "--quiet", "--threads", "1", *extra]


def _temp_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if any(m in p.name for m in TEMP_MARKERS))


# ==== kill -9 ====================================================================================

class KillTrial:
    """One start of train_codec.py (fresh or --resume), killed at a random moment or the moment
    a checkpoint temp file appears."""

    def __init__(self, data: Path, ckpt: Path, config: Path, work: Path):
        self.data, self.ckpt, self.config, self.work = data, ckpt, config, work
        self.root = ckpt / "k"
        self.last = self.root / "checkpoints" / "last.pt"

    def start(self, epochs: int, resume: bool, log: Path) -> subprocess.Popen:
        extra = ["--resume"] if resume else ["--overwrite"]
        cmd = [PYTHON, str(ROOT / "train_codec.py"),
               *train_argv(self.data, self.ckpt, "k", self.config, "--num_epochs", str(epochs), *extra)]
        with open(log, "w") as out:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.work, env=child_env())

    def wait_for_save(self, proc: subprocess.Popen, timeout: float) -> bool:
        """Poll for a temp file of an atomic write (checkpoint, best copy, model folder)."""
        folders = [self.root / "checkpoints", self.root / "model"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            for folder in folders:
                with contextlib.suppress(OSError):
                    if any(".tmp" in name for name in os.listdir(folder)):
                        return True
            time.sleep(0.0005)
        return False


def _resumed_step(log: Path) -> int | None:
    m = re.search(r"^resumed .* step (\d+)$", log.read_text(), re.M)
    return int(m[1]) if m else None


def kill9_training(work: Path, data: Path, config: Path, kills: int, seed: int = 0) -> list[Row]:
    """`kills` starts, each killed with SIGKILL (every second one the moment a checkpoint temp
    file appears, the others after a random 0.2-10 s); each next start resumes from last.pt (a
    fresh --overwrite start when none exists yet). Then a final --resume must finish."""
    rng = random.Random(seed)
    t = KillTrial(data, work / "ckpt", config, work)
    stats: Counter = Counter()
    problems: list[str] = []
    for i in range(kills):
        resume = t.last.is_file()
        step_before = load_checkpoint(t.last)["step"] if resume else None
        log = work / f"trial_{i:02d}.log"
        temps_before = set(_temp_files(t.root)) if t.root.exists() else set()
        proc = t.start(100_000, resume, log)
        during_save = t.wait_for_save(proc, 120) if i % 2 else (time.sleep(rng.uniform(0.2, 10.0)) or False)
        if proc.poll() is not None:
            problems.append(f"trial {i}: exited by itself with {proc.returncode}: {log.read_text()[-200:]}")
            continue
        proc.kill()
        proc.wait()
        new_temps = set(_temp_files(t.root)) - temps_before if t.root.exists() else set()
        stats["killed during an atomic write" if during_save or new_temps else "killed between writes"] += 1
        stats["fresh start (no checkpoint yet)" if not resume else "resumed start"] += 1
        got = _resumed_step(log)
        if resume and got is not None and got != step_before:
            problems.append(f"trial {i}: resumed at step {got}, last.pt had {step_before}")
        if got is not None:
            stats["resume confirmed in log"] += 1
        if t.last.is_file():
            try:
                load_checkpoint(t.last)
            except TelucodecError as exc:
                problems.append(f"trial {i}: last.pt unreadable after kill: {exc}")
    return _finish_after_kills(t, work, kills, stats, problems)


def _finish_after_kills(t: KillTrial, work: Path, kills: int, stats: Counter, problems: list[str]) -> list[Row]:
    stale = _temp_files(t.root) if t.root.exists() else []
    resume = t.last.is_file()
    epoch = load_checkpoint(t.last)["epoch"] if resume else 0
    log = work / "final.log"
    proc = t.start(epoch + 2, resume, log)
    rc = proc.wait(600)
    final = load_checkpoint(t.last) if t.last.is_file() else {}
    finished = rc == 0 and final.get("epoch") == epoch + 2 and final.get("step") == 2 * (epoch + 2)
    if not finished:
        problems.append(f"final run: exit {rc}, checkpoint epoch {final.get('epoch')}: {log.read_text()[-300:]}")
    left = _temp_files(t.root)
    if left:
        problems.append(f"temp files still there after the final resume: {left}")
    metrics, repeated = _metrics_check(t.root / "metrics.jsonl", epoch + 2)
    if repeated:
        problems.append(metrics)
    detail = (", ".join(f"{k} {v}" for k, v in sorted(stats.items()))
              + f"; final --resume from epoch {epoch} finished: {finished}; temp files left by the kills: "
              f"{len(stale)}, after the resume: {len(left)}; " + metrics)
    rows = [Row("training faults", "kill -9 at random moments / during checkpoint writes, then resume",
                kills, len(problems), detail + (f"; problems: {problems[:3]}" if problems else ""))]
    return rows


def _metrics_check(path: Path, epochs: int) -> tuple[str, bool]:
    """A summary of metrics.jsonl, and whether it is wrong (rows must be epochs 1..`epochs`)."""
    if not path.is_file():
        return "no metrics.jsonl", True
    lines = path.read_text().splitlines()
    bad, seen = 0, []
    for line in lines:
        try:
            seen.append(json.loads(line)["epoch"])
        except (ValueError, KeyError):
            bad += 1
    repeated = len(seen) - len(set(seen))
    wrong = bool(bad) or seen != list(range(1, epochs + 1))
    return f"metrics.jsonl: {len(lines)} rows, {repeated} repeated epochs, {bad} unparsable", wrong


# ==== NaN in a batch =============================================================================

def _cli(argv: list[str]) -> tuple[int, str]:
    from telucodec.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def _nan_job(job: dict) -> dict:
    """In the sandbox child: 1 good epoch, then a resumed run whose 2nd crop is NaN (the
    monkeypatch of tests/test_train.py), then a clean resume that must finish."""
    from telucodec.train.crops import CropDataset

    args = train_argv(Path(job["data"]), Path(job["ckpt"]), "nan", Path(job["config"]))
    last = Path(job["ckpt"]) / "nan" / "checkpoints" / "last.pt"
    rc1, _ = _cli(["train", *args, "--num_epochs", "1"])
    good = last.read_bytes()
    original = CropDataset.__getitem__

    def poisoned(self: CropDataset, index: int) -> Any:
        x = original(self, index)
        return x * float("nan") if index == 1 else x

    CropDataset.__getitem__ = poisoned
    try:
        rc2, err = _cli(["train", *args, "--resume", "--num_epochs", "2"])
    finally:
        CropDataset.__getitem__ = original
    intact = last.read_bytes() == good
    rc3, _ = _cli(["train", *args, "--resume", "--num_epochs", "2"])
    return {"outcome": "done", "rc": (rc1, rc2, rc3), "err": err.strip(), "intact": intact,
            "final_step": load_checkpoint(last)["step"]}


def nan_injection(work: Path, data: Path, config: Path) -> Row:
    with Sandbox(_nan_job, 300) as box:
        r = box.run({"data": str(data), "ckpt": str(work), "config": str(config)})
    if r["outcome"] != "done":
        return Row("training faults", "NaN injected into a batch", 1, 1, f"{r['outcome']}: {r.get('detail', '')}")
    lines = r["err"].splitlines()
    ok = (r["rc"] == (0, 3, 0) and r["intact"] and len(lines) == 1 and "non-finite" in lines[0]
          and "last good checkpoint" in lines[0] and r["final_step"] == 4)
    return Row("training faults", "NaN injected into a batch (in-process monkeypatch, as tests/test_train.py)", 1,
               int(not ok), f"exit codes (good epoch, poisoned resume, clean resume) {r['rc']}; last.pt "
               f"{'byte-identical' if r['intact'] else 'CHANGED'}; message: "
               + (lines[0].split(": stopped: ")[-1].replace(str(work) + "/", "") if lines else "none"))


# ==== full disk ==================================================================================

def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system of `folder` until `leave` bytes are free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler"
    with open(filler, "wb") as f:
        if free > leave:
            os.posix_fallocate(f.fileno(), 0, free - leave)
    return filler


def _disk_job(job: dict) -> dict:
    """In the sandbox child: 1 epoch; fill the disk to `leave` bytes (or simulate ENOSPC);
    a resumed epoch must fail with one clear line and last.pt intact; after freeing space the
    resume must finish."""
    import telucodec.train.checkpoint as ck

    ckpt = Path(job["ckpt"])
    args = train_argv(Path(job["data"]), ckpt, job["name"], Path(job["config"]))
    last = ckpt / job["name"] / "checkpoints" / "last.pt"
    rc1, _ = _cli(["train", *args, "--num_epochs", "1"])
    good = last.read_bytes()
    filler, real_save = None, ck.torch.save
    if job["simulate"]:
        def full_disk(obj: Any, f: Any) -> None:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        ck.torch.save = full_disk
    else:
        filler = _fill(ckpt, int(job["leave_fraction"] * len(good)) + job["leave_bytes"])
    try:
        rc2, err = _cli(["train", *args, "--resume", "--num_epochs", "2"])
    finally:
        ck.torch.save = real_save
    intact = last.read_bytes() == good
    temps = _temp_files(last.parent)
    if filler is not None:
        filler.unlink()
    rc3, _ = _cli(["train", *args, "--resume", "--num_epochs", "2"])
    return {"outcome": "done", "rc": (rc1, rc2, rc3), "err": err.strip(), "intact": intact, "temps": temps,
            "final_epoch": load_checkpoint(last)["epoch"]}


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A tmpfs of `size` at `folder` (root only); yields whether it is mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        mounted = proc.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], capture_output=True)


def disk_full(work: Path, data: Path, config: Path) -> list[Row]:
    rows = []
    scenarios = [("room for half a checkpoint", 0.5, 0), ("disk completely full (4 KB left)", 0.0, 4096)]
    with small_disk(work / "tmpfs", "24m") as mounted:
        for i, (label, fraction, extra) in enumerate(scenarios if mounted else scenarios[:1]):
            job = {"data": str(data), "ckpt": str(work / "tmpfs"), "config": str(config), "name": f"full{i}",
                   "simulate": not mounted, "leave_fraction": fraction, "leave_bytes": extra}
            how = "real 24 MB tmpfs" if mounted else "SIMULATED (no tmpfs: torch.save raises ENOSPC)"
            rows.append(_disk_row(f"disk full while saving: {label}" if mounted else "disk full while saving",
                                  how, job, work))
    return rows


def _disk_row(label: str, how: str, job: dict, work: Path) -> Row:
    with Sandbox(_disk_job, 300) as box:
        r = box.run(job)
    if r["outcome"] != "done":
        return Row("training faults", label, 1, 1, f"{how}: {r['outcome']}: {r.get('detail', '')}")
    lines = r["err"].splitlines()
    clear = len(lines) == 1 and ("disk full" in lines[0] or "No space left" in lines[0])
    ok = r["rc"][0] == 0 and r["rc"][1] == 1 and clear and r["intact"] and not r["temps"] and r["rc"][2] == 0
    msg = lines[-1].replace(str(work) + "/", "") if lines else "no message"
    return Row("training faults", f"{label} ({how})", 1, int(not ok),
               f"exit {r['rc'][1]}; last.pt {'byte-identical' if r['intact'] else 'CHANGED'}; temp files left "
               f"{len(r['temps'])}; after freeing space --resume exit {r['rc'][2]}; "
               f"{'one line' if len(lines) == 1 else f'{len(lines)} lines'}: {msg[:220]}")
