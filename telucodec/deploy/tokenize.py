"""`telucodec tokenize`: a dataset -> uint16 codes in a few large shards + index.jsonl, for TTS
and speech-LM training. The folder layout is described in `telucodec.formats.tokens` (the reader).

Crash safety (`telucodec.formats.token_shards`): a shard is renamed into place when full (~256
MB, or after 15 minutes of work) and only then indexed, so a run killed at any moment (kill -9
included) loses at most the shard in progress. A rerun skips every id that is indexed (or listed
in skipped.tsv), deletes its own leftover temporary and unindexed shards, and carries on.

Scale-out: `--shard I/N` takes every N-th item starting at I; its shard files are named with I
and N, so N jobs can write one folder. `--workers K` encodes in K processes; results come back
in input order, so the output equals a serial run's. `--engine ray` encodes on a Ray cluster
instead (`deploy/tokenize_ray.py`), also in input order. `--format parquet` writes Parquet rows
(`telucodec.formats.token_parquet`) instead of .npy shards, with the same resume rules.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from telucodec.deploy.runtimes import Runtime, choose_runtime
from telucodec.deploy.tokenize_jobs import Job, Result, encode_job
from telucodec.errors import TelucodecError
from telucodec.formats import token_parquet as P
from telucodec.formats import tokens as T
from telucodec.formats.archives import require
from telucodec.formats.dataset import index_audio, item_id
from telucodec.formats.token_shards import (
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
ENGINES = ("local", "ray")
FORMATS = ("shards", "parquet")


# ---- jobs -----------------------------------------------------------------------------------
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
    """This shard's jobs, and its items that cannot be tokenized: an id that repeats an earlier
    item's, and (shard 0) what indexing the archives found damaged."""
    items = index_audio(data_dir)
    if not len(items) and not items.skipped:
        raise TelucodecError(f"{data_dir}: no audio files (.wav, .flac, .mp3, .ogg) found")
    root = data_dir if data_dir.is_dir() else data_dir.parent
    index, count = shard
    first: dict[str, str] = {}
    jobs, duplicates = [], [Result("", name, error=reason) for name, reason in items.skipped if index == 0]
    for pos, item in enumerate(items):
        uid = item_id(item, root)
        item.path = Path(os.path.abspath(item.path))
        first.setdefault(uid, item.name)
        if pos % count != index:
            continue
        if first[uid] != item.name:
            duplicates.append(Result(uid, item.name, error=f"duplicate id (same name as {first[uid]})"))
        else:
            jobs.append(Job(uid, item.name, item))
    return jobs, duplicates


# ---- encoding (in this process or in workers) -----------------------------------------------
_worker: dict[str, Any] = {}


def _init_worker(model_blob: tuple[dict[str, Any], bytes] | Callable[[], Any], device: str, kbps: float | None) -> None:
    """Rebuild the engine: a runtime's `worker_factory` (deploy/runtimes.py), or the model from
    `Codec.to_bytes` (the same model id as the parent's)."""
    bound_kernel_cache()
    import torch

    from telucodec.model.codec import Codec

    torch.set_num_threads(1)
    if callable(model_blob):
        _worker.update(model=model_blob(), kbps=kbps)
        return
    _worker.update(model=Codec.from_bytes(model_blob, source="tokenize worker").to(device), kbps=kbps)


def _worker_encode(job: Job) -> Result:
    return encode_job(_worker["model"], _worker["kbps"], job)


def _results(jobs: list[Job], model: Codec | Runtime, kbps: float | None, workers: int) -> Iterator[Result]:
    """Results in job order, from this process or from `workers` spawned processes. `model`: a
    Codec, or a runtime (deploy/runtimes.py) that encodes for it."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield encode_job(model, kbps, job)
        return
    codec = getattr(model, "model", model)
    device = str(next(codec.parameters()).device)
    factory = getattr(model, "worker_factory", None)
    ctx = mp.get_context("spawn")  # fork after torch has started threads can hang
    with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker,
                  initargs=(factory() if factory is not None else model.to_bytes(), device, kbps)) as pool:
        yield from pool.imap(_worker_encode, jobs, chunksize=1)



def _meta(model: Codec, n_q: int, kbps: float | None) -> dict[str, Any]:
    if model.config.quantizer.codebook_size > 2**16:
        raise TelucodecError("codebooks larger than 65536 entries do not fit uint16 tokens")
    return {"format": T.FORMAT, "version": 1, "model_id": model.model_id, "n_q": n_q, "kbps": kbps,
            "sample_rate": model.sample_rate, "frame_rate": model.frame_rate, "hop_length": model.hop,
            "codebook_size": model.config.quantizer.codebook_size, "codebook_bits": model.codebook_bits,
            "stage_bits": model.stage_bits[:n_q],  # each stage's code width (tokens of stage s < 2**stage_bits[s])
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
    return _totals(len(reader), seconds, frames, len(shards), counts, reader.meta.get("stage_bits"))


def parquet_summary(out: Path, codebook_size: int, stage_bits: list[int] | None = None) -> dict[str, Any]:
    """`folder_summary` for a `--format parquet` folder (one part's codes in memory at a time)."""
    totals, counts = P.folder_counts(out, codebook_size)
    return _totals(totals["utterances"], totals["seconds"], totals["frames"], totals["shards"], counts, stage_bits)


def _totals(utterances: int, seconds: float, frames: int, shards: int, counts: np.ndarray,
            stage_bits: list[int] | None = None) -> dict[str, Any]:
    """`stage_bits`: each stage's code width where the folder says (usage is of each stage's size)."""
    import torch

    from telucodec.model.clustering import code_statistics

    sizes = [1 << int(b) for b in stage_bits][: counts.shape[0]] if stage_bits else None
    usage, perplexity = code_statistics(torch.from_numpy(counts), sizes)
    return {"utterances": utterances, "hours": seconds / 3600.0, "frames": frames,
            "tokens": frames * counts.shape[0], "shards": shards,
            "codebook_usage": [round(float(u), 4) for u in usage],
            "codebook_perplexity": [round(float(p), 1) for p in perplexity]}


# ---- the job -------------------------------------------------------------------------------
def tokenize_dataset(data_dir: str | Path, out: str | Path, model: Codec, kbps: float | None = None,
                     workers: int = 1, shard: tuple[int, int] = (0, 1), *,
                     shard_bytes: int = SHARD_BYTES, shard_seconds: float = SHARD_SECONDS,
                     log: Callable[[str], None] | None = None, engine: str = "local", fmt: str = "shards",
                     ray_address: str | None = None, runtime: str | None = None,
                     model_path: str | Path | None = None) -> dict[str, Any]:
    """Tokenize this job's share of `data_dir` into `out` as .npy shards or Parquet (`fmt`),
    encoding here and in worker processes or on Ray (`engine`) with the engine `runtime` picks
    ("auto", "torch", "onnx"; None: $TELUCODEC_RUNTIME else auto; deploy/runtimes.py; `model_path`:
    where the model was loaded from, for its export); returns a summary (this run + folder totals,
    and `runtime`, `runtime_note`: which engine ran)."""
    started = time.monotonic()
    bound_kernel_cache()
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise TelucodecError(f"shard {index}/{count}: need 0 <= I < N")
    if engine not in ENGINES or fmt not in FORMATS:
        raise TelucodecError(f"--engine {engine} --format {fmt}: choose --engine from {ENGINES}, --format from {FORMATS}")
    data_dir, out = Path(data_dir), Path(out)
    n_q = model.n_q_for_kbps(kbps)
    if engine == "ray":  # join (or start) Ray before anything is written: a wrong address leaves nothing
        from telucodec.deploy.tokenize_ray import start_ray

        start_ray(ray_address)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"codes-{index:05d}-of-{count:05d}"
    if fmt == "parquet":
        require("pyarrow", "--format parquet")
        check_meta(out, {**_meta(model, n_q, kbps), "format": P.FORMAT, "layout": P.LAYOUT})
        P.clean_leftovers(out, prefix)
        indexed: set[str] = P.done_ids(out)
        writer: Any = P.ParquetPartWriter(out, prefix, shard_bytes, shard_seconds)
    else:
        check_meta(out, _meta(model, n_q, kbps))
        indexed_shards = clean_leftovers(out, prefix)
        indexed = set(T.live_entries(out))
        writer = ShardWriter(out, prefix, n_q, shard_bytes, shard_seconds, indexed_shards)
    jobs, duplicates = _select(data_dir, shard)
    skipped_before = skipped_paths(out)
    todo = [j for j in jobs if j.id not in indexed and j.path not in skipped_before]
    duplicates = [d for d in duplicates if d.path not in skipped_before]
    if duplicates:
        append_skipped(out, [(r.path, r.error, r.id) for r in duplicates])

    coder = choose_runtime(model, runtime, model_path=model_path, log=log) if todo else None
    if engine == "ray":
        from telucodec.deploy.tokenize_ray import ray_results

        results = ray_results(todo, coder or model, kbps, workers, ray_address)
    else:
        results = _results(todo, coder or model, kbps, workers)
    skipped, audio_seconds, last_log = len(duplicates), 0.0, time.monotonic()
    try:
        for i, r in enumerate(results):
            if r.error:
                append_skipped(out, [(r.path, r.error, r.id)])
                skipped += 1
                continue
            assert r.codes is not None
            duration = r.num_samples / model.sample_rate
            audio_seconds += duration
            if fmt == "parquet":
                writer.add({"id": r.id, "speaker": r.speaker, "seconds": round(duration, 6), "n_q": n_q,
                            "codes": r.codes, "frames": int(r.codes.shape[1]), "num_samples": r.num_samples,
                            "side": r.side, "source": r.path, "sha256": r.sha256})
            else:
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
               "seconds": round(wall, 3), "audio_hours_per_hour": round(audio_seconds / max(wall, 1e-9), 2),
               "runtime": coder.name if coder is not None else None,
               "runtime_note": coder.note if coder is not None else "runtime: none (nothing to encode)"}
    summary.update(parquet_summary(out, model.config.quantizer.codebook_size, model.stage_bits) if fmt == "parquet"
                   else folder_summary(out))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    usage = " ".join(f"q{i}:{100 * u:.0f}%" for i, u in enumerate(s["codebook_usage"]))
    skipped = f", {s['skipped']} skipped (see {Path(s['out']) / T.SKIPPED_FILE})" if s["skipped"] else ""
    return "\n".join([
        f"shard {s['shard']}: tokenized {s['tokenized']} files ({s['audio_seconds'] / 3600:.3f} h of audio) "
        f"in {s['seconds']:.1f} s = {s['audio_hours_per_hour']:g} audio hours per wall hour; "
        f"{s['already_done']} already done{skipped}",
        f"{s['out']}: {s['utterances']} utterances, {s['hours']:.3f} h of audio, {s['tokens']:,} tokens "
        f"(n_q {s['n_q']}), {s['shards']} shard file{'' if s['shards'] == 1 else 's'}",
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
                               shard=shard, log=lambda m: print(m, file=sys.stderr),
                               engine=getattr(args, "engine", "local"), fmt=getattr(args, "format", "shards"),
                               ray_address=getattr(args, "ray_address", None),
                               runtime=getattr(args, "runtime", None), model_path=args.model)
    print(format_summary(summary))
    print(summary["runtime_note"], file=sys.stderr)
    return 0
