"""`telucodec eval`: every clip through telucodec at each bitrate and through each baseline at
its default settings, scored with the same metrics, summarized per system × setting.

    results = evaluate("data/dev_te", "eval_out", model="runs/x/model", kbps=(1.5, 3, 6))

DIR gets results.json (keys in DESIGN.md), results.csv (one row per clip × system), results.md,
rd_pesq.png, rd_stoi.png, report.html with audio/ and spectrograms/, and skipped.tsv when clips
were skipped. `reference=DIR2` instead scores files someone else decoded (same relative names as
the originals, any audio format) as one system called "reference".

Clips are spread over `workers` processes. A clip's numbers depend only on that clip (every
worker runs torch on one thread, Codec2's dither is seeded), so any worker count gives the same
results as a serial run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import shutil
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from telucodec import baselines as bl
from telucodec import report
from telucodec.audio import AUDIO_SUFFIXES, load_audio, write_wav
from telucodec.data import AudioItem, discover, spread, write_skipped
from telucodec.errors import AudioError, TelucodecError
from telucodec.metrics import align, score_all, shift_to

if TYPE_CHECKING:
    from telucodec.model.codec import Codec

SAMPLE_RATE = 16000
METRICS = ("pesq_wb", "stoi", "si_sdr_db", "snr_db", "mel_distance", "rms_ratio")
CSV_COLUMNS = ("clip", "system", "setting", "kbps_nominal", "kbps_actual", "bytes", "duration_s",
               *METRICS, "delay", "clipped", "speaker")  # speaker last: added after v1 of the CSV
REFERENCE_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a")
COMPRESSED_SUFFIXES = (".ogg", ".opus", ".mp3", ".m4a")  # their file size is a real bitrate
REFERENCE_MAX_SHIFT = 1600  # samples (0.1 s) searched either way when aligning --reference files
ALIGN_MODES = ("waveform", "envelope", "none")
OUTPUT_FILES = ("results.json", "results.csv", "results.md", "rd_pesq.png", "rd_stoi.png",
                "report.html", "skipped.tsv")
OUTPUT_DIRS = ("audio", "spectrograms")


@dataclass(frozen=True)
class System:
    """One column of the comparison: a codec at one setting."""

    name: str  # "telucodec" | "opus" | "codec2" | "lyra" | "reference"
    setting: str  # "1.5", "6", "700C", "3.2", or the --reference folder name
    kbps_nominal: float | None

    @property
    def label(self) -> str:
        return f"{self.name} {self.setting}"


@dataclass
class ClipTask:
    """One loaded clip and what to do with it (picklable: it travels to worker processes)."""

    name: str  # path relative to the data folder, with "/"
    wav: np.ndarray  # [T] float32, 16 kHz
    speaker: str = ""  # the manifest's speaker column, else the clip's folder name
    audio_dir: str | None = None  # write decoded WAVs here (report clips only)
    decoded: np.ndarray | None = None  # --reference: the decoded file [T'] float32
    decoded_bytes: int | None = None  # --reference: size of a compressed decoded file


@dataclass
class ClipResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# planning


def parse_list(text: str | Iterable[Any] | None) -> list[str]:
    """"1.5,3,6" or ["1.5", 3] → ["1.5", "3"]; "", "none" or None → []."""
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else [str(p) for p in text]
    parts = [p.strip() for p in parts if p.strip()]
    return [] if [p.lower() for p in parts] == ["none"] else parts


def plan_systems(model: Codec | None, kbps: str | Iterable[Any], baselines: str | Iterable[str],
                 lyra_models: str | Path | None = None) -> tuple[list[System], list[str]]:
    """(systems to run, one warning line per setting or baseline that cannot run here)."""
    systems: list[System] = []
    warnings: list[str] = []
    seen_n_q: set[int] = set()
    values = []
    for text in parse_list(kbps):
        try:
            values.append(float(text))
        except ValueError as exc:
            raise TelucodecError(f"--kbps: {text!r} is not a number") from exc
        if not math.isfinite(values[-1]) or values[-1] <= 0:
            raise TelucodecError(f"--kbps: {text!r} must be a positive number")
    for value in sorted(values):
        top = model.max_n_q * model.kbps_per_codebook()
        try:
            n_q = model.n_q_for_kbps(value)
        except TelucodecError as exc:  # below one codebook
            warnings.append(f"telucodec {value:g} kbps skipped: {exc}")
            continue
        if value > top + 1e-9:
            warnings.append(f"telucodec {value:g} kbps skipped: this model tops out at {top:g} kbps "
                            f"(n_q {model.max_n_q})")
        elif n_q in seen_n_q:
            warnings.append(f"telucodec {value:g} kbps skipped: same n_q ({n_q}) as a lower setting")
        else:
            seen_n_q.add(n_q)
            systems.append(System("telucodec", f"{value:g}", n_q * model.kbps_per_codebook()))
    names, missing = bl.available_baselines(parse_list(baselines), lyra_models)
    warnings += missing
    for name in names:
        for setting in bl.default_settings(name):
            nominal = bl.codec2_kbps(setting) if name == "codec2" else float(setting)
            systems.append(System(name, setting, nominal))
    return systems, warnings


# ----------------------------------------------------------------------------------------------
# running one clip (in this process or a worker)

_WORKER: dict[str, Any] = {}


def _setup_worker(model: Any, systems: list[System], lyra_models: str | None, align_mode: str) -> None:
    torch.set_num_threads(1)
    _WORKER.update(model=model, systems=systems, lyra_models=lyra_models, align=align_mode)


def _init_pool_worker(model_blob: tuple[dict[str, Any], bytes] | None, systems: list[System],
                      lyra_models: str | None, align_mode: str) -> None:
    """Rebuild the model from config + safetensors bytes (no pickled modules cross processes)."""
    model = None
    if model_blob is not None:
        from safetensors.torch import load as load_tensors

        from telucodec.config import CodecConfig
        from telucodec.model.codec import Codec, load_matching_state

        config, weights = model_blob
        model = Codec(CodecConfig.from_dict(config))
        load_matching_state(model, load_tensors(weights), strict=True, source="eval worker")
        model.eval()
    _setup_worker(model, systems, lyra_models, align_mode)


def _model_blob(model: Any) -> tuple[dict[str, Any], bytes] | None:
    if model is None:
        return None
    from safetensors.torch import save as save_tensors

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return model.config.to_dict(), save_tensors(tensors)


def _run_telucodec(system: System, wav: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """(decoded [T] clipped to [-1, 1], bytes of the .tcd file, delay 0, clipped samples)."""
    from telucodec.bitstream import read_bitstream, write_bitstream

    model = _WORKER["model"]
    data = write_bitstream(model.encode(wav, SAMPLE_RATE, float(system.setting)))
    decoded = model.decode(read_bitstream(data, expected_model_id=model.model_id)).numpy()
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
        return _run_telucodec(system, task.wav)
    if system.name == "reference":
        return _run_reference(task)
    res = bl.run_baseline(system.name, system.setting, task.wav, lyra_models=_WORKER["lyra_models"])
    return res.audio, res.bytes, res.delay, 0


def process_clip(task: ClipTask) -> ClipResult:
    """Every planned system on one clip: one row of scores each (and WAVs for report clips)."""
    result = ClipResult()
    duration = task.wav.size / SAMPLE_RATE
    audio_dir = Path(task.audio_dir) if task.audio_dir else None
    if audio_dir is not None:
        audio_dir.mkdir(parents=True, exist_ok=True)
        write_wav(audio_dir / report.ORIGINAL_FILE, task.wav, SAMPLE_RATE)
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
        row.update(score_all(task.wav, deg, SAMPLE_RATE))
        row.update(delay=int(delay), clipped=clipped)
        result.rows.append(row)
        if audio_dir is not None:
            write_wav(audio_dir / report.system_file(system.name, system.setting), deg, SAMPLE_RATE)
    return result


def _run_all(tasks: list[ClipTask], model: Any, systems: list[System], lyra_models: str | None,
             align_mode: str, workers: int, progress: bool) -> list[ClipResult]:
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


# ----------------------------------------------------------------------------------------------
# clips in, summary out


def _clip_name(item: AudioItem, root: Path) -> str:
    try:
        return item.path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return item.path.name


def _speaker(item: AudioItem) -> str:
    return item.speaker or item.path.parent.name


def _find_decoded(reference: Path, name: str) -> Path | None:
    rel = Path(name)
    for suffix in dict.fromkeys((rel.suffix.lower(), *REFERENCE_SUFFIXES)):
        candidate = reference / rel.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _discover(data_dir: Path, out: Path) -> list[AudioItem]:
    """The audio items of a folder or manifest (none of them under --out); none is an error."""
    items = [i for i in discover(data_dir) if not i.path.resolve().is_relative_to(out.resolve())]
    if not items:
        raise TelucodecError(f"{data_dir}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found")
    return items


def _load_tasks(data_dir: Path, items: list[AudioItem], reference: Path | None, max_clips: int | None,
                log: Callable[[str], None]) -> tuple[list[ClipTask], list[tuple[str, str]]]:
    """Load the clips (and --reference files) in discovery order; unusable ones are skipped with
    a reason. With max_clips, clips are taken round-robin over speakers until enough load."""
    root = data_dir.parent if data_dir.is_file() else data_dir
    position = {id(item): n for n, item in enumerate(items)}
    tasks: list[tuple[int, ClipTask]] = []
    skipped: list[tuple[str, str]] = []
    for item in spread(items, _speaker) if max_clips is not None else items:
        if max_clips is not None and len(tasks) >= max_clips:
            break
        name = _clip_name(item, root)
        try:
            task = ClipTask(name, load_audio(item.path, SAMPLE_RATE), speaker=_speaker(item))
            if reference is not None:
                found = _find_decoded(reference, name)
                if found is None:
                    raise AudioError(f"{reference / name}: no decoded file of this name in --reference")
                task.decoded = load_audio(found, SAMPLE_RATE)
                if found.suffix.lower() in COMPRESSED_SUFFIXES:
                    task.decoded_bytes = found.stat().st_size
        except AudioError as exc:
            skipped.append((str(item.path), str(exc).split(": ", 1)[-1]))
            log(f"skipped {name}: {skipped[-1][1]}")
            continue
        tasks.append((position[id(item)], task))
    if not tasks:
        raise TelucodecError(f"{data_dir}: no usable clips ({len(skipped)} skipped, e.g. "
                             f"{skipped[0][0]}: {skipped[0][1]})")
    return [task for _, task in sorted(tasks, key=lambda pair: pair[0])], skipped


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarize(rows: list[dict[str, Any]], systems: list[System]) -> list[dict[str, Any]]:
    """One results.json entry per system × setting: means over clips (NaN-skipping), real kbps
    from total bytes over total duration, PESQ's 10th percentile, and counts of unscored clips."""
    out = []
    for system in systems:
        sel = [r for r in rows if r["system"] == system.name and r["setting"] == system.setting]
        duration = float(sum(r["duration_s"] for r in sel))
        sizes = [r["bytes"] for r in sel]
        known = bool(sel) and all(b is not None for b in sizes)
        entry: dict[str, Any] = {
            "system": system.name, "setting": system.setting,
            "kbps_nominal": system.kbps_nominal,
            "kbps_actual": sum(sizes) * 8 / duration / 1000 if known and duration > 0 else None,
        }
        entry.update({m: _mean([r[m] for r in sel]) for m in METRICS})
        pesq = [r["pesq_wb"] for r in sel if math.isfinite(r["pesq_wb"])]
        entry.update(clips=len(sel), duration_s=duration,
                     pesq_wb_p10=float(np.percentile(pesq, 10)) if pesq else float("nan"),
                     pesq_wb_unscored=len(sel) - len(pesq),
                     stoi_unscored=sum(1 for r in sel if not math.isfinite(r["stoi"])),
                     bytes=sum(sizes) if known else None,
                     clipped_samples=sum(r["clipped"] for r in sel))
        out.append(entry)
    return out


def summarize_speakers(rows: list[dict[str, Any]], systems: list[System]) -> list[dict[str, Any]]:
    """Per system × setting × speaker: clips and mean PESQ-WB, STOI, RMS ratio. A codec can look
    fine on average and still be quiet or broken for one voice; this is where that shows."""
    out = []
    for system in systems:
        sel = [r for r in rows if r["system"] == system.name and r["setting"] == system.setting]
        for speaker in sorted({r["speaker"] for r in sel}):
            mine = [r for r in sel if r["speaker"] == speaker]
            out.append({"system": system.name, "setting": system.setting, "speaker": speaker, "clips": len(mine),
                        **{m: _mean([r[m] for r in mine]) for m in ("pesq_wb", "stoi", "rms_ratio")}})
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise TelucodecError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise TelucodecError(f"--out {out}: folder is not empty; use --force to write into it")
        was_eval = (out / "results.json").is_file()
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
        if was_eval:  # stale players and pictures of an earlier eval would mislead
            for name in OUTPUT_DIRS:
                shutil.rmtree(out / name, ignore_errors=True)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def evaluate(data_dir: str | Path, out: str | Path, model: str | Path | Codec | None = None,
             kbps: str | Iterable[float | str] = (1.5, 3, 6),
             baselines: str | Iterable[str] = ("opus", "codec2", "lyra"),
             lyra_models: str | Path | None = None, max_clips: int | None = None, workers: int = 1,
             reference: str | Path | None = None, force: bool = False, report_clips: int = 4,
             align_mode: str = "waveform", progress: bool = True,
             log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Score telucodec (`model`: a Codec, a model folder / checkpoint path, or None for the shipped
    model) at each of `kbps` and each available baseline on the clips of `data_dir`; write DIR.

    With `reference`, score the decoded files in that folder instead (system "reference"; the
    model, kbps and baselines are not used). Returns the results.json dict.
    """
    data_dir, out = Path(data_dir), Path(out)
    if workers < 1:
        raise TelucodecError(f"--workers must be at least 1, got {workers}")
    if max_clips is not None and max_clips < 1:
        raise TelucodecError(f"--max_clips must be at least 1, got {max_clips}")
    if align_mode not in ALIGN_MODES:
        raise TelucodecError(f"--align must be one of {', '.join(ALIGN_MODES)}, got {align_mode!r}")
    ref_dir = Path(reference) if reference is not None else None
    if ref_dir is not None and not ref_dir.is_dir():
        raise TelucodecError(f"--reference {ref_dir}: no such folder")
    _prepare_out(out, force)
    items = _discover(data_dir, out)

    codec = None
    if ref_dir is not None:
        systems, warnings = [System("reference", ref_dir.resolve().name or "reference", None)], []
    else:
        if parse_list(kbps):
            from telucodec.api import load_model

            codec = model if isinstance(model, torch.nn.Module) else load_model(model)
        systems, warnings = plan_systems(codec, kbps, baselines, lyra_models)
        if not systems:
            raise TelucodecError("nothing to evaluate: no telucodec bitrate and no baseline can run")
    for line in warnings:
        log(f"warning: {line}")

    tasks, skipped = _load_tasks(data_dir, items, ref_dir, max_clips, log)
    out.mkdir(parents=True, exist_ok=True)
    shown = {id(t) for t in spread(tasks, lambda t: str(Path(t.name).parent))[:max(0, report_clips)]}
    for n, task in enumerate(t for t in tasks if id(t) in shown):
        task.audio_dir = str(out / report.AUDIO_DIR / report.clip_slug(n, task.name))
    lyra = str(lyra_models) if lyra_models is not None else None
    clip_results = _run_all(tasks, codec, systems, lyra, align_mode, workers, progress)

    rows = [row for res in clip_results for row in res.rows]
    failures = [line for res in clip_results for line in res.failures]
    for line in failures:
        log(f"warning: {line}")
    results = _json_safe({
        "systems": summarize(rows, systems),
        "per_speaker": summarize_speakers(rows, systems),
        "data_dir": str(data_dir),
        "model_id": codec.model_id if codec is not None else None,
        "reference": str(ref_dir) if ref_dir is not None else None,
        "clips": len(tasks),
        "duration_s": sum(t.wav.size for t in tasks) / SAMPLE_RATE,
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "warnings": warnings + failures,
    })
    (out / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    _write_csv(out / "results.csv", rows)
    if skipped:
        write_skipped(out / "skipped.tsv", skipped)
    table = report.markdown_table(results["systems"])
    speakers = report.speaker_table(results["per_speaker"])
    (out / "results.md").write_text(table + "\n" + (f"\nPer held-out speaker:\n\n{speakers}\n" if speakers else ""))
    report.save_rd_plot(out / "rd_pesq.png", results["systems"], "pesq_wb", "PESQ-WB (MOS-LQO)")
    report.save_rd_plot(out / "rd_stoi.png", results["systems"], "stoi", "STOI")
    shown_clips = [(t.name, t.audio_dir) for t in tasks if t.audio_dir]
    report.write_report(out, results, _json_safe(rows), shown_clips)
    return results


def run_from_args(args: argparse.Namespace) -> int:
    """`telucodec eval …` → evaluate(); the table goes to stdout, warnings to stderr."""
    if not args.data_dir:
        raise TelucodecError("--data_dir is required")
    evaluate(args.data_dir, args.out, model=args.model, kbps=parse_list(args.kbps),
             baselines=parse_list(args.baselines), lyra_models=args.lyra_models,
             max_clips=args.max_clips, workers=args.workers, reference=args.reference,
             force=args.force, report_clips=getattr(args, "report_clips", 4),
             align_mode=getattr(args, "align", "waveform"), progress=not getattr(args, "quiet", False))
    print((Path(args.out) / "results.md").read_text(), end="")
    print(f"wrote {Path(args.out) / 'report.html'}", file=sys.stderr)
    return 0
