"""What a training run tells its user in words, beyond the per-epoch table: what `--init_from`
loaded, what the warm-up does to the learning rate, and the closing summary every run ends
with (why it stopped, where the best model is, its last validation figures, and the exact
command to continue it or to encode with it)."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

from telucodec.config import TrainConfig
from telucodec.model.codec import StateMatch

# why a run stopped -> how the closing summary says it
STOP_REASONS = {
    "num_epochs": "finished all {num_epochs} epochs (--num_epochs)",
    "max_minutes": "reached the time budget (--max_minutes {max_minutes:g})",
    "max_steps": "reached the step budget (--max_steps {max_steps})",
    "signal": "stopped by {signal} (a checkpoint was written first)",
}


def plural(count: int, noun: str) -> str:
    """"1 validation clip", "2 validation clips": a count and its noun in the right number."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def architecture_difference(source: dict[str, Any], ours: dict[str, Any], limit: int = 6) -> str:
    """"channels 32 here 8, n_q 12 here 8": the architecture fields in which two configs differ."""
    keys = [k for k in sorted(set(source) | set(ours)) if source.get(k) != ours.get(k)]
    shown = ", ".join(f"{k} {source.get(k, '-')} here {ours.get(k, '-')}" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def init_from_report(source: str, match: StateMatch, model_tensors: int,
                     source_architecture: dict[str, Any] | None = None,
                     architecture: dict[str, Any] | None = None) -> str:
    """One paragraph naming every tensor `--init_from` did not use, with correct counts, and why:
    when both architectures are known and differ, the fields in which they do (another preset or
    model family); when they agree, the leftovers come from an older design of the same one."""
    lines = [f"init_from {source}: loaded {len(match.loaded)} of the model's {model_tensors} tensors"]
    why = "an older design?"
    if source_architecture is not None and architecture is not None:
        differ = architecture_difference(source_architecture, architecture)
        why = f"another architecture: {differ}" if differ else "an older design of this architecture"
    if match.unexpected:
        lines.append(f"  ignored, not in this model ({len(match.unexpected)}; {why}): "
                     + ", ".join(match.unexpected))
    if match.missing:
        lines.append(f"  not in {source}, kept fresh ({len(match.missing)}): " + ", ".join(match.missing))
    if match.mismatched:
        known = source_architecture is not None and architecture is not None
        lines.append(f"  mis-shaped, kept fresh ({len(match.mismatched)}{'; ' + why if known else ''}): "
                     + ", ".join(match.mismatched))
    return "\n".join(lines)


def planned_steps(total_steps: int, max_steps: int | None) -> int:
    """The optimizer steps this run will take at most (the schedule's length or --max_steps)."""
    return min(total_steps, max_steps) if max_steps else total_steps


def warmup_notes(tc: TrainConfig, steps_done: int, total_steps: int, max_steps: int | None) -> list[str]:
    """Before training: how the warm-up shapes the learning rate of this run, and a warning when
    the warm-up is longer than the run (it then never reaches the requested rate)."""
    if tc.warmup_steps <= 0 or steps_done >= tc.warmup_steps:
        return []
    last = planned_steps(total_steps, max_steps)
    lr = tc.learning_rate
    notes = [f"lr: warm-up from {lr / tc.warmup_steps:.1e} to {lr:g} over the first {tc.warmup_steps} steps, "
             f"then {tc.lr_schedule}"]
    if last < tc.warmup_steps:
        reached = lr * last / tc.warmup_steps
        notes.append(f"WARNING: the warm-up ({tc.warmup_steps} steps) is longer than this run ({last} steps): it "
                     f"trains at most at {reached:.1e}, {last}/{tc.warmup_steps} of the requested {lr:g}; "
                     "lower it with --warmup_steps or train longer")
    return notes


def warmup_status(tc: TrainConfig, step: int, lr_now: float) -> str | None:
    """For the epoch table: the effective learning rate while the warm-up is still on."""
    if tc.warmup_steps <= 0 or step >= tc.warmup_steps:
        return None
    return (f"lr {lr_now:.1e}: warm-up, step {step} of {tc.warmup_steps} "
            f"({100 * step / tc.warmup_steps:.0f}% of the requested {tc.learning_rate:g})")


def _best_and_last(metrics: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    rows = []
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    scored = [r for r in rows if isinstance(r.get("val_loss"), int | float) and math.isfinite(r["val_loss"])]
    best = min(scored, key=lambda r: r["val_loss"]) if scored else None  # the first of equals, as training
    return best, (rows[-1] if rows else None)


def figures(row: dict[str, Any]) -> str:
    """A metrics row's validation figures in one line."""
    parts = [f"val loss {row['val_loss']:.4f}"]
    for key, name, fmt in (("pesq_wb", "PESQ", ".2f"), ("stoi", "STOI", ".3f"), ("rms_ratio", "RMS ratio", ".2f"),
                           ("snr_db", "SNR", ".1f"), ("mel_distance", "mel distance", ".3f")):
        value = row.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            parts.append(f"{name} {format(value, fmt)}" + (" dB" if key == "snr_db" else ""))
    return ", ".join(parts)


def resume_command(args: Any, num_epochs: int | None = None) -> str:
    """The exact command line that continues this experiment (the config comes from its checkpoint)."""
    cmd = ["telucodec", "train", "--data_dir", str(args.data_dir), "--checkpoint_dir", str(args.checkpoint_dir),
           "--experiment_name", str(args.experiment_name), "--resume"]
    if num_epochs is not None:
        cmd += ["--num_epochs", str(num_epochs)]
    for flag in ("max_minutes", "threads", "device"):
        value = getattr(args, flag, None)
        if value is not None and not (flag == "device" and value == "auto"):
            cmd += [f"--{flag}", f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(cmd)


def closing_summary(root: Path, args: Any, reason: str, epoch: int, step: int, num_epochs: int,
                    mid_epoch: bool, signal_name: str = "", processes: int = 1) -> list[str]:
    """The lines a run ends with. `reason`: a key of STOP_REASONS; `epoch`: epochs completed;
    `processes`: the run's (DDP), which its continuation needs again (--resume refuses another)."""
    why = STOP_REASONS[reason].format(num_epochs=num_epochs, max_minutes=getattr(args, "max_minutes", None) or 0,
                                      max_steps=getattr(args, "max_steps", None) or 0, signal=signal_name)
    where = f"after epoch {epoch}" + (f" (epoch {epoch + 1} partly done, kept in last.pt)" if mid_epoch else "")
    lines = [f"training {'done' if reason == 'num_epochs' else 'stopped'}: {why}, {where}, step {step}"]
    best, last = _best_and_last(root / "metrics.jsonl")
    model = root / "model"
    if best is not None and (model / "model.safetensors").is_file():
        lines.append(f"best model:   {model}  (epoch {best['epoch']}: {figures(best)})")
    else:
        lines.append(f"best model:   none yet (no epoch finished; {root / 'checkpoints' / 'last.pt'} holds the steps so far)")
    if last is not None and last is not best:
        lines.append(f"last epoch:   {last['epoch']}: {figures(last)}")
    more = None if reason != "num_epochs" else num_epochs + max(1, num_epochs // 2)
    lines.append(f"continue:     {resume_command(args, more)}"
                 + (f"   (under torchrun, with {processes} processes as this run)" if processes > 1 else "")
                 + ("   (raise --num_epochs to train further)" if more else ""))
    if best is not None:
        lines.append(f"encode:       telucodec encode IN.wav OUT.tcd --model {shlex.quote(str(model))}")
    return lines
