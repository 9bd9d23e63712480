"""`telucodec eval`: every clip through telucodec at each bitrate and through each baseline at
its default settings, scored with the same metrics, summarized per system × setting.

    results = evaluate("data/dev_te", "eval_out", model="runs/x/model", kbps=(1.5, 3, 6))

DIR gets results.json (keys in docs/design.md), results.csv (one row per clip × system), results.md,
rd_pesq.png, rd_stoi.png, report.html (which plays the files in audio/ and spectrograms/ beside it:
keep the folder together), and skipped.tsv when clips were skipped: unreadable, silent or too short
(training's own check, `formats.dataset.load_clip`), counted in results.json's `clips_skipped`,
listed in `skipped`, at the end of results.md (so on stdout) and in report.html; never in a table. `reference=DIR2` instead scores files someone else decoded (same relative names as
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
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from telucodec.errors import TelucodecError
from telucodec.evaluation import baselines as bl
from telucodec.evaluation import report
from telucodec.evaluation.plan import System, discover_clips, load_tasks, parse_list, plan_systems
from telucodec.evaluation.runner import run_all
from telucodec.formats.dataset import spread, write_skipped
from telucodec.model.loading import shipped_model_name

if TYPE_CHECKING:
    from telucodec.model.codec import Codec

METRICS = ("pesq_wb", "stoi", "si_sdr_db", "snr_db", "mel_distance", "rms_ratio")
CSV_COLUMNS = ("clip", "system", "setting", "kbps_nominal", "kbps_actual", "bytes", "duration_s",
               *METRICS, "delay", "clipped", "speaker")  # speaker last: added after v1 of the CSV
ALIGN_MODES = ("waveform", "envelope", "none")
OUTPUT_FILES = ("results.json", "results.csv", "results.md", "rd_pesq.png", "rd_stoi.png",
                "report.html", "skipped.tsv")
OUTPUT_DIRS = ("audio", "spectrograms")


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
             log: Callable[[str], None] = _stderr, runtime: Callable[[Codec], Any] | None = None) -> dict[str, Any]:
    """Score telucodec (`model`: a Codec, a model folder / checkpoint path, or None for the shipped
    model) at each of `kbps` and each available baseline on the clips of `data_dir`; write DIR.
    `runtime`: given the model, the engine that runs the telucodec rows (the CLI passes
    `deploy.runtimes.choose_runtime` for `--runtime`); None: the model in PyTorch. results.json's
    `runtime` says which ran.

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
    items = discover_clips(data_dir, out)

    codec = None
    if ref_dir is not None:
        systems, warnings = [System("reference", ref_dir.resolve().name or "reference", None)], []
    else:
        if parse_list(kbps):
            from telucodec.model.loading import load_model

            codec = model if isinstance(model, torch.nn.Module) else load_model(model)
        systems, warnings = plan_systems(codec, kbps, baselines, lyra_models)
        if not systems:
            raise TelucodecError("nothing to evaluate: no telucodec bitrate and no baseline can run")
    for line in warnings:
        log(f"warning: {line}")

    rate = codec.sample_rate if codec is not None else bl.SAMPLE_RATE  # no model: the baselines' rate
    tasks, skipped = load_tasks(data_dir, items, ref_dir, max_clips, log, rate)
    out.mkdir(parents=True, exist_ok=True)
    shown = {id(t) for t in spread(tasks, lambda t: str(Path(t.name).parent))[:max(0, report_clips)]}
    for n, task in enumerate(t for t in tasks if id(t) in shown):
        task.audio_dir = str(out / report.AUDIO_DIR / report.clip_slug(n, task.name))
    lyra = str(lyra_models) if lyra_models is not None else None
    engine = runtime(codec) if runtime is not None and codec is not None else codec
    if engine is not None and getattr(engine, "note", None):
        log(engine.note)
    clip_results = run_all(tasks, engine, systems, lyra, align_mode, workers, progress)

    rows = [row for res in clip_results for row in res.rows]
    failures = [line for res in clip_results for line in res.failures]
    for line in failures:
        log(f"warning: {line}")
    results = _json_safe({
        "systems": summarize(rows, systems),
        "per_speaker": summarize_speakers(rows, systems),
        "data_dir": str(data_dir),
        "model_id": codec.model_id if codec is not None else None,
        "model_name": shipped_model_name(codec.model_id) if codec is not None else None,
        "reference": str(ref_dir) if ref_dir is not None else None,
        "clips": len(tasks),
        "duration_s": sum(t.wav.size for t in tasks) / rate,
        "clips_skipped": len(skipped),
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "warnings": warnings + failures,
        "runtime": None if engine is None else getattr(engine, "name", "torch"),
    })
    (out / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    _write_csv(out / "results.csv", rows)
    if skipped:
        write_skipped(out / "skipped.tsv", skipped)
    table = report.markdown_table(results["systems"])
    speakers = report.speaker_table(results["per_speaker"])
    note = report.speaker_note(results["per_speaker"], str(data_dir))
    dropped = report.skipped_markdown(results["skipped"])
    (out / "results.md").write_text(table + "\n" + (f"\nPer speaker:\n\n{speakers}\n" if speakers else "")
                                    + (f"\n{note}\n" if note else "") + (f"\n{dropped}\n" if dropped else ""))
    report.save_rd_plot(out / "rd_pesq.png", results["systems"], "pesq_wb", "PESQ-WB (MOS-LQO)")
    report.save_rd_plot(out / "rd_stoi.png", results["systems"], "stoi", "STOI")
    shown_clips = [(t.name, t.audio_dir) for t in tasks if t.audio_dir]
    report.write_report(out, results, _json_safe(rows), shown_clips)
    return results


def run_from_args(args: argparse.Namespace, choose_runtime: Callable[..., Any] | None = None) -> int:
    """`telucodec eval …` → evaluate(); the table goes to stdout, warnings to stderr.
    `choose_runtime`: `deploy.runtimes.choose_runtime` (passed down by the CLI, a higher layer)."""
    if not args.data_dir:
        raise TelucodecError("--data_dir is required")
    runtime = None
    if choose_runtime is not None:
        def runtime(codec: Codec) -> Any:
            return choose_runtime(codec, getattr(args, "runtime", None), model_path=args.model, log=_stderr,
                                  beam=getattr(args, "beam", 1))
    evaluate(args.data_dir, args.out, model=args.model, kbps=parse_list(args.kbps),
             baselines=parse_list(args.baselines), lyra_models=args.lyra_models,
             max_clips=args.max_clips, workers=args.workers, reference=args.reference,
             force=args.force, report_clips=getattr(args, "report_clips", 4),
             align_mode=getattr(args, "align", "waveform"), progress=not getattr(args, "quiet", False),
             runtime=runtime)
    print((Path(args.out) / "results.md").read_text(), end="")
    print(f"wrote {Path(args.out) / 'report.html'} (it plays the files in {report.AUDIO_DIR}/ and "
          f"{report.SPECTROGRAM_DIR}/ beside it: share the whole folder)", file=sys.stderr)
    return 0
