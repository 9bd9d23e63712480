"""`telucodec tokenize --engine ray`: the codec as a Ray Data `map_batches` over an actor pool.

Each actor holds one model (rebuilt from `Codec.to_bytes`, the same model id) and runs one torch
thread; the jobs (ids and where to read them: a file, a tar member or a Parquet row) go in as
rows, and codes come back in input order (`preserve_order`) to this process, which writes them
with the same writers, resume rules and skipped.tsv as `--engine local`: the output lands where
the command runs, and no storage needs to be shared for it. The audio is read by the actors, so
on a cluster every node must see --data_dir at the same path (a shared or object-store mount).

Without `--ray_address` a local Ray is started (or the one this process already started is
used); with it, the cluster there (`ray start --head` on one node, `ray start --address HEAD:6379`
on the others). Actors claim a share of a CPU such that one CPU stays free for Ray's own tasks:
on two cores, two actors claiming a whole CPU each starve the pipeline (docs/corpus-scale.md).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from telucodec.deploy.tokenize_jobs import Job, Result, encode_job
from telucodec.errors import TelucodecError
from telucodec.formats.archives import require
from telucodec.formats.audio_index import AudioItem
from telucodec.formats.token_shards import CODES_DTYPE

if TYPE_CHECKING:
    from telucodec.deploy.runtimes import Runtime
    from telucodec.model.codec import Codec

BATCH_ROWS = 4  # utterances per map_batches call


def _rows(jobs: list[Job]) -> list[dict[str, Any]]:
    rows = []
    for job in jobs:
        item = job.item or AudioItem(Path(job.path))
        rows.append({"id": job.id, "path": job.path, "file": str(item.path), "speaker": item.speaker,
                     "member": item.member, "key": item.key, "where0": item.where[0], "where1": item.where[1]})
    return rows


class EncodeActor:
    """One model, one thread; a batch of job rows -> a table of results (codes as raw uint16
    bytes [n_q, frames] in C order, rebuilt by the caller)."""

    def __init__(self, blob: Any, kbps: float | None):
        import ray
        import torch

        from telucodec.model.codec import Codec
        from telucodec.runtime import bound_kernel_cache

        bound_kernel_cache()
        torch.set_num_threads(1)
        blob = ray.get(blob) if isinstance(blob, ray.ObjectRef) else blob
        # a runtime's worker_factory (deploy/runtimes.py) rebuilds that engine; else the model's bytes
        self.model = blob() if callable(blob) else Codec.from_bytes(blob, source="ray actor")
        self.kbps = kbps

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list[Any]] = {k: [] for k in ("id", "path", "speaker", "error", "codes", "n_q",
                                                       "num_samples", "side", "sha256")}
        for n in range(len(batch["id"])):
            item = AudioItem(Path(str(batch["file"][n])), str(batch["speaker"][n]), None, str(batch["member"][n]),
                             str(batch["key"][n]), (int(batch["where0"][n]), int(batch["where1"][n])))
            r = encode_job(self.model, self.kbps, Job(str(batch["id"][n]), str(batch["path"][n]), item))
            out["id"].append(r.id)
            out["path"].append(r.path)
            out["speaker"].append(r.speaker)
            out["error"].append(r.error)
            out["codes"].append(b"" if r.codes is None else np.ascontiguousarray(r.codes, dtype=CODES_DTYPE).tobytes())
            out["n_q"].append(0 if r.codes is None else r.codes.shape[0])
            out["num_samples"].append(r.num_samples)
            out["side"].append(np.asarray(r.side, dtype=np.int64).tobytes())
            out["sha256"].append(r.sha256)
        return {k: np.array(v, dtype=object if k in ("codes", "side") else None) for k, v in out.items()}


def _blob(model: Codec | Runtime) -> Any:
    """What an actor rebuilds its engine from: a runtime's picklable factory, or `Codec.to_bytes()`."""
    factory = getattr(model, "worker_factory", None)
    return factory() if factory is not None else model.to_bytes()


def _reachable(address: str | None, timeout: float = 10.0) -> None:
    """Refuse a HOST:PORT nothing answers on (ray.init would retry it for minutes)."""
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise TelucodecError(f"--ray_address {address}: nothing answers there ({exc.strerror or exc}); "
                             "start the head with `ray start --head` and pass its HOST:6379") from exc


def start_ray(address: str | None) -> None:
    """Join the cluster at `address`, or start a local Ray (nothing when this process has one)."""
    require("ray", "--engine ray")
    import ray

    if not ray.is_initialized():
        _reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise TelucodecError(f"--ray_address {address}: cannot join a Ray cluster there ({exc})") from exc


def ray_results(jobs: list[Job], model: Codec | Runtime, kbps: float | None, workers: int,
                address: str | None = None) -> Iterator[Result]:
    """Results in job order, encoded by a pool of `workers` actors (1: one per CPU of the cluster).
    `model`: a Codec, or a runtime (deploy/runtimes.py) that the actors rebuild."""
    if not jobs:
        return
    start_ray(address)
    import ray

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    actors = min(len(jobs), workers if workers > 1 else max(1, int(cpus)))
    per_actor = min(1.0, max(0.1, (cpus - 1.0) / actors))  # leave one CPU to Ray's read and write tasks
    dataset = ray.data.from_items(_rows(jobs)).map_batches(
        EncodeActor, fn_constructor_args=(ray.put(_blob(model)), kbps), batch_size=BATCH_ROWS,
        concurrency=actors, num_cpus=per_actor, batch_format="numpy")
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        for n in range(len(batch["id"])):
            r = Result(str(batch["id"][n]), str(batch["path"][n]), error=str(batch["error"][n]),
                       speaker=str(batch["speaker"][n]))
            if not r.error:
                n_q = int(batch["n_q"][n])
                r.codes = np.frombuffer(batch["codes"][n], dtype=CODES_DTYPE).reshape(n_q, -1).copy()
                r.num_samples, r.sha256 = int(batch["num_samples"][n]), str(batch["sha256"][n])
                r.side = np.frombuffer(batch["side"][n], dtype=np.int64).tolist()
            yield r
