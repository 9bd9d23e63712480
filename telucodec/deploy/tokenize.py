"""`telucodec tokenize`: a dataset -> uint16 codes in a few large shards + index.jsonl, for TTS
and speech-LM training. The folder layout is described in `telucodec.formats.tokens` (the reader).

Crash safety (`telucodec.formats.token_shards`): a shard is renamed into place when full (~256
MB, or after 15 minutes of work) and only then indexed, so a run killed at any moment (kill -9
included) loses at most the shard in progress. A rerun skips every id that is indexed (or listed
in skipped.tsv), deletes its own leftover temporary and unindexed shards, and carries on.

Scale-out: `--shard I/N` takes every N-th item starting at I; its shard files are named with I
and N, so N jobs can write one folder. `--workers K` encodes in K processes; results come back
in input order, so the output equals a serial run's.
"""

from __future__ import annotations

import argparse
import builtins
import hashlib
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

from telucodec.errors import TelucodecError
from telucodec.formats import tokens as T
from telucodec.formats.dataset import discover
from telucodec.formats.token_shards import (
    CODES_DTYPE,
    ShardWriter,
    append_skipped,
    check_meta,
    clean_leftovers,
    skipped_paths,
)
from telucodec.runtime import bound_kernel_cache

if TYPE_CHECKING:
    from telucodec.model.codec import Codec

SHARD_BYTES = 256 * 2**20     # roll to a new shard file past this size ...
SHARD_SECONDS = 15 * 60.0     # ... or after this much wall time (bounds the work a crash loses)


@dataclass
class Job:
    id: str
    path: str


@dataclass
class Result:
    id: str
    path: str
    codes: np.ndarray | None = None      # uint16 [n_q, F]
    num_samples: int = 0
    side: list[int] = field(default_factory=list)
    sha256: str = ""
    error: str = ""


# ---- ids, jobs ------------------------------------------------------------------------------
def item_id(path: Path, root: Path) -> str:
    """The utterance id: the path relative to the dataset root, without its suffix."""
    return PurePath(os.path.relpath(path, root)).with_suffix("").as_posix()


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise TelucodecError(f"--shard {text}: expected I/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise TelucodecError(f"--shard {text}: need 0 <= I < N")
    return index, count


def _select(data_dir: Path, shard: tuple[int, int]) -> tuple[list[Job], list[Result]]:
    """This shard's jobs, and its items whose id repeats an earlier item's (skipped)."""
    items = discover(data_dir)
    if not items:
        raise TelucodecError(f"{data_dir}: no audio files (.wav, .flac, .mp3, .ogg) found")
    root = data_dir if data_dir.is_dir() else data_dir.parent
    index, count = shard
    first: dict[str, int] = {}
    jobs, duplicates = [], []
    for pos, item in enumerate(items):
        uid = item_id(item.path, root)
        first.setdefault(uid, pos)
        if pos % count != index:
            continue
        path = os.path.abspath(item.path)
        if first[uid] != pos:
            duplicates.append(Result(uid, path, error=f"duplicate id (same name as {items[first[uid]].path})"))
        else:
            jobs.append(Job(uid, path))
    return jobs, duplicates


# ---- encoding (in this process or in workers) -----------------------------------------------
def _sha256(path: str) -> str:
    with builtins.open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def encode_job(model: Codec, kbps: float | None, job: Job) -> Result:
    """Load, hash and encode one file; any problem with the file becomes `Result.error`."""
    from telucodec.formats.audio import load_audio

    try:
        digest = _sha256(job.path)
        wav = load_audio(job.path, model.sample_rate)
        codes = model.encode(wav, model.sample_rate, kbps)
    except (TelucodecError, OSError) as exc:
        return Result(job.id, job.path, error=str(exc).replace(f"{job.path}: ", "", 1))
    return Result(job.id, job.path, codes.codes.numpy().astype(CODES_DTYPE), codes.num_samples,
                  list(codes.side), digest)


_worker: dict[str, Any] = {}


def _init_worker(config: dict[str, Any], state: dict[str, np.ndarray], device: str, kbps: float | None) -> None:
    bound_kernel_cache()
    import torch

    from telucodec.config import CodecConfig
    from telucodec.model.codec import Codec

    torch.set_num_threads(1)
    model = Codec(CodecConfig.from_dict(config))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    _worker.update(model=model.to(device).eval(), kbps=kbps)


def _worker_encode(job: Job) -> Result:
    return encode_job(_worker["model"], _worker["kbps"], job)


def _results(jobs: list[Job], model: Codec, kbps: float | None, workers: int) -> Iterator[Result]:
    """Results in job order, from this process or from `workers` spawned processes."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield encode_job(model, kbps, job)
        return
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    device = str(next(model.parameters()).device)
    ctx = mp.get_context("spawn")  # fork after torch has started threads can hang
    with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker,
                  initargs=(model.config.to_dict(), state, device, kbps)) as pool:
        yield from pool.imap(_worker_encode, jobs, chunksize=1)



def _meta(model: Codec, n_q: int, kbps: float | None) -> dict[str, Any]:
    if model.config.quantizer.codebook_size > 2**16:
        raise TelucodecError("codebooks larger than 65536 entries do not fit uint16 tokens")
    return {"format": T.FORMAT, "version": 1, "model_id": model.model_id, "n_q": n_q, "kbps": kbps,
            "sample_rate": model.sample_rate, "frame_rate": model.frame_rate, "hop_length": model.hop,
            "codebook_size": model.config.quantizer.codebook_size, "codebook_bits": model.codebook_bits,
            "side_kind": model.amplitude.kind, "amplitude_options": model.amplitude.options(),
            "dtype": "uint16", "layout": "shards [n_q, frames] Fortran order; index offset/frames in frames"}



# ---- summary -------------------------------------------------------------------------------
def folder_summary(out: Path) -> dict[str, Any]:
    """Totals over every live utterance in a tokens folder (shards read in blocks: flat memory)."""
    reader = T.TokenReader(out)
    seconds, frames, shards = 0.0, 0, set()
    for entry in reader.entries():
        seconds += float(entry["duration"])
        frames += int(entry["frames"])
        shards.add(entry["shard"])
    size = int(reader.meta["codebook_size"])
    counts = np.zeros((reader.n_q, size), dtype=np.int64)
    for name in sorted(shards):
        arr = reader.shard(name)
        for lo in range(0, arr.shape[1], 1 << 20):
            block = np.asarray(arr[:, lo: lo + (1 << 20)])
            for q in range(arr.shape[0]):
                counts[q] += np.bincount(block[q], minlength=size)[:size]
    reader.close()
    probs = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    entropy = -(probs * np.log(np.where(probs > 0, probs, 1.0))).sum(1)
    return {"utterances": len(reader), "hours": seconds / 3600.0, "frames": frames,
            "tokens": frames * reader.n_q, "shards": len(shards),
            "codebook_usage": [round(float(u), 4) for u in (counts > 0).mean(1)],
            "codebook_perplexity": [round(float(p), 1) for p in np.exp(entropy)]}


# ---- the job -------------------------------------------------------------------------------
def tokenize_dataset(data_dir: str | Path, out: str | Path, model: Codec, kbps: float | None = None,
                     workers: int = 1, shard: tuple[int, int] = (0, 1), *,
                     shard_bytes: int = SHARD_BYTES, shard_seconds: float = SHARD_SECONDS,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Tokenize this job's share of `data_dir` into `out`; returns a summary (this run + folder totals)."""
    started = time.monotonic()
    bound_kernel_cache()
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise TelucodecError(f"shard {index}/{count}: need 0 <= I < N")
    data_dir, out = Path(data_dir), Path(out)
    n_q = model.n_q_for_kbps(kbps)
    out.mkdir(parents=True, exist_ok=True)
    check_meta(out, _meta(model, n_q, kbps))
    prefix = f"codes-{index:05d}-of-{count:05d}"
    indexed_shards = clean_leftovers(out, prefix)
    jobs, duplicates = _select(data_dir, shard)
    indexed, skipped_before = set(T.live_entries(out)), skipped_paths(out)
    todo = [j for j in jobs if j.id not in indexed and j.path not in skipped_before]
    duplicates = [d for d in duplicates if d.path not in skipped_before]
    if duplicates:
        append_skipped(out, [(r.path, r.error, r.id) for r in duplicates])

    writer = ShardWriter(out, prefix, n_q, shard_bytes, shard_seconds, indexed_shards)
    skipped, audio_seconds, last_log = len(duplicates), 0.0, time.monotonic()
    try:
        for i, r in enumerate(_results(todo, model, kbps, workers)):
            if r.error:
                append_skipped(out, [(r.path, r.error, r.id)])
                skipped += 1
                continue
            assert r.codes is not None
            duration = r.num_samples / model.sample_rate
            audio_seconds += duration
            writer.add(r.codes, {"id": r.id, "path": r.path, "duration": round(duration, 6),
                           "num_samples": r.num_samples, "frames": int(r.codes.shape[1]), "n_q": n_q,
                           "sha256": r.sha256, "side_kind": model.amplitude.kind, "side": r.side})
            if log is not None and time.monotonic() - last_log > 30:
                last_log = time.monotonic()
                log(f"{i + 1}/{len(todo)} files, {audio_seconds / 3600:.2f} h of audio")
    finally:
        writer.commit()  # whatever is whole is kept, also on Ctrl-C or an unexpected error

    wall = time.monotonic() - started
    summary = {"out": str(out), "shard": f"{index}/{count}", "model_id": model.model_id, "n_q": n_q,
               "kbps": kbps, "items": len(jobs) + len(duplicates), "already_done": len(jobs) - len(todo),
               "tokenized": writer.committed, "skipped": skipped, "audio_seconds": round(audio_seconds, 3),
               "seconds": round(wall, 3), "audio_hours_per_hour": round(audio_seconds / max(wall, 1e-9), 2)}
    summary.update(folder_summary(out))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    usage = " ".join(f"q{i}:{100 * u:.0f}%" for i, u in enumerate(s["codebook_usage"]))
    skipped = f", {s['skipped']} skipped (see {Path(s['out']) / T.SKIPPED_FILE})" if s["skipped"] else ""
    return "\n".join([
        f"shard {s['shard']}: tokenized {s['tokenized']} files ({s['audio_seconds'] / 3600:.3f} h of audio) "
        f"in {s['seconds']:.1f} s = {s['audio_hours_per_hour']:g} audio hours per wall hour; "
        f"{s['already_done']} already done{skipped}",
        f"{s['out']}: {s['utterances']} utterances, {s['hours']:.3f} h of audio, {s['tokens']:,} tokens "
        f"(n_q {s['n_q']}), {s['shards']} shard files",
        f"codebook usage per quantizer: {usage}",
    ])


def run_from_args(args: argparse.Namespace) -> int:
    from telucodec.model.loading import load_model

    shard = parse_shard(args.shard)
    if args.workers < 1:
        raise TelucodecError("--workers must be at least 1")
    model = load_model(args.model)
    note = model.kbps_note(args.kbps)
    if note:
        print(note, file=sys.stderr)
    summary = tokenize_dataset(args.data_dir, args.out, model, kbps=args.kbps, workers=args.workers,
                               shard=shard, log=lambda m: print(m, file=sys.stderr))
    print(format_summary(summary))
    return 0
