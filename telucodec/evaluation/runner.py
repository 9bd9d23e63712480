"""Every planned system on every clip, in this process or in worker processes.

The telucodec rows run on `model`: a Codec, or a runtime of `telucodec.deploy.runtimes` (same
`encode` / `decode` / `model_id`; its `worker_factory` rebuilds it in a worker). A clip's numbers depend only on that clip (every worker runs torch on one thread, Codec2's
dither is seeded), so any worker count gives the same results as a serial run. Workers rebuild
the model from its config and safetensors bytes: no pickled modules cross processes.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from telucodec.errors import TelucodecError
from telucodec.evaluation import baselines as bl
from telucodec.evaluation import report
from telucodec.evaluation.metrics import align, score_all, shift_to
from telucodec.evaluation.plan import ClipTask, System
from telucodec.formats.audio import write_wav
from telucodec.formats.bitstream import read_bitstream
from telucodec.formats.rate import encode_to_rate

REFERENCE_MAX_SHIFT = 1600  # samples (0.1 s at 16 kHz) searched either way when aligning --reference files


@dataclass
class ClipResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)



_WORKER: dict[str, Any] = {}


def _setup_worker(model: Any, systems: list[System], lyra_models: str | None, align_mode: str) -> None:
    torch.set_num_threads(1)
    _WORKER.update(model=model, systems=systems, lyra_models=lyra_models, align=align_mode)


def _init_pool_worker(model_blob: tuple[dict[str, Any], bytes] | None, systems: list[System],
                      lyra_models: str | None, align_mode: str) -> None:
    """Rebuild the model from `Codec.to_bytes` (no pickled modules cross processes)."""
    model = None
    if callable(model_blob):  # a runtime's worker_factory (deploy/runtimes.py): it rebuilds itself
        model = model_blob()
    elif model_blob is not None:
        from telucodec.model.codec import Codec

        model = Codec.from_bytes(model_blob, source="eval worker")
    _setup_worker(model, systems, lyra_models, align_mode)


def _model_blob(model: Any) -> Any:
    """What a worker rebuilds the telucodec engine from: a runtime's picklable factory, or a
    Codec's `to_bytes()`."""
    if model is None:
        return None
    factory = getattr(model, "worker_factory", None)
    return factory() if factory is not None else model.to_bytes()


def _run_telucodec(system: System, task: ClipTask) -> tuple[np.ndarray, int, int, int]:
    """(decoded [T] clipped to [-1, 1], bytes of the .tcd file, delay 0, clipped samples)."""
    model = _WORKER["model"]
    # the setting is the file's actual rate, header included (formats/rate.py), as `encode --kbps` writes
    data = encode_to_rate(model, task.wav, task.sample_rate, float(system.setting), strict=False).data
    decoded = np.asarray(model.decode(read_bitstream(data, expected_model_id=model.model_id)))
    clipped = int(np.count_nonzero(np.abs(decoded) > 1.0))
    return np.clip(decoded, -1.0, 1.0).astype(np.float32), len(data), 0, clipped


def _run_reference(task: ClipTask) -> tuple[np.ndarray, int | None, int, int]:
    mode = _WORKER["align"]
    if mode == "none":
        return shift_to(task.decoded, 0, task.wav.size), task.decoded_bytes, 0, 0
    deg, delay = align(task.wav, task.decoded, max_shift=REFERENCE_MAX_SHIFT, envelope=mode == "envelope")
    return deg.astype(np.float32), task.decoded_bytes, delay, 0


def _run_system(system: System, task: ClipTask) -> tuple[np.ndarray, int | None, int, int]:
    if system.name == "telucodec":
        return _run_telucodec(system, task)
    if system.name == "reference":
        return _run_reference(task)
    res = bl.run_baseline(system.name, system.setting, task.wav, lyra_models=_WORKER["lyra_models"],
                          sample_rate=task.sample_rate)
    return res.audio, res.bytes, res.delay, 0


def process_clip(task: ClipTask) -> ClipResult:
    """Every planned system on one clip: one row of scores each (and WAVs for report clips)."""
    result = ClipResult()
    rate = task.sample_rate
    duration = task.wav.size / rate
    audio_dir = Path(task.audio_dir) if task.audio_dir else None
    if audio_dir is not None:
        audio_dir.mkdir(parents=True, exist_ok=True)
        write_wav(audio_dir / report.ORIGINAL_FILE, task.wav, rate)
    for system in _WORKER["systems"]:
        try:
            deg, n_bytes, delay, clipped = _run_system(system, task)
        except TelucodecError as exc:
            result.failures.append(f"{task.name}: {system.label} failed: {exc}")
            continue
        row: dict[str, Any] = {
            "clip": task.name, "speaker": task.speaker, "system": system.name, "setting": system.setting,
            "kbps_nominal": system.kbps_nominal,
            "kbps_actual": None if n_bytes is None else n_bytes * 8 / duration / 1000,
            "bytes": n_bytes, "duration_s": duration,
        }
        row.update(score_all(task.wav, deg, rate))
        row.update(delay=int(delay), clipped=clipped)
        result.rows.append(row)
        if audio_dir is not None:
            write_wav(audio_dir / report.system_file(system.name, system.setting), deg, rate)
    return result


def run_all(tasks: list[ClipTask], model: Any, systems: list[System], lyra_models: str | None,
            align_mode: str, workers: int, progress: bool) -> list[ClipResult]:
    """`process_clip` on every task, in task order, here or in `workers` spawned processes."""
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="eval", unit="clip", disable=not progress, file=sys.stderr)
    results: list[ClipResult] = []
    try:
        if workers > 1 and len(tasks) > 1:
            ctx = multiprocessing.get_context("spawn")
            init = (_model_blob(model), systems, lyra_models, align_mode)
            with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx,
                                     initializer=_init_pool_worker, initargs=init) as pool:
                for res in pool.map(process_clip, tasks):  # map keeps the clip order
                    results.append(res)
                    bar.update()
        else:
            threads = torch.get_num_threads()
            _setup_worker(model, systems, lyra_models, align_mode)
            try:
                for task in tasks:
                    results.append(process_clip(task))
                    bar.update()
            finally:
                _WORKER.clear()
                torch.set_num_threads(threads)
    finally:
        bar.close()
    return results
