"""Per-epoch validation metrics, health checks and the checklist table.

The seed watched loss, output range, RMS ratio and SNR by eye; here every epoch writes them
(and SI-SDR, mel distance, codebook usage, grad norm) to metrics.jsonl, prints a table, and
turns the symptoms that cost the seed weeks into warnings on the first epochs they appear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from telucodec.evaluation import metrics
from telucodec.formats.dataset import Clip
from telucodec.model.clustering import code_counts, code_statistics
from telucodec.model.codec import Codec

# What codecs reach at speech bitrates; used to tell users the truth before money burns.
MAX_PLAUSIBLE_SNR_DB = 25.0
TYPICAL_LR_RANGE = (5e-5, 3e-3)


@dataclass
class ValidationResult:
    val_loss: float
    output_min: float
    output_max: float
    rms_ratio: float
    rms_ratio_normalized: float
    snr_db: float
    si_sdr_db: float
    mel_distance: float
    clip_fraction: float
    codebook_usage: list[float]
    codebook_perplexity: list[float]
    pesq_wb: float | None = None
    stoi: float | None = None
    examples: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (ref, out) pairs


@torch.no_grad()
def validate(model: Codec, clips: list[Clip], device: torch.device, loss_fn, max_seconds: float,
             with_pesq: bool, pesq_clips: int, keep_examples: int = 2) -> ValidationResult:
    """Run the full-bitrate model on each validation clip (cropped to `max_seconds`)."""
    model.eval()
    sr = model.sample_rate
    size = model.config.quantizer.codebook_size
    counts = torch.zeros(model.max_n_q, size)
    losses, ratios, ratios_norm, snrs, sisdrs, mels, pesqs, stois = [], [], [], [], [], [], [], []
    lo, hi, clipped, total = math.inf, -math.inf, 0, 0
    examples = []
    for i, clip in enumerate(clips):
        ref = clip.wav[: int(max_seconds * sr)]
        x = torch.from_numpy(ref).view(1, 1, -1).to(device)
        out = model(x)
        losses.append(float(loss_fn(out, x)[0]))
        y = out.wav[0, 0].float().cpu().numpy()
        used = code_counts(out.quantizer.codes, size).cpu()
        counts[: used.shape[0]] += used
        lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))
        clipped += int(np.count_nonzero(np.abs(y) > 1.0))
        total += y.size
        ratios.append(metrics.rms_ratio(ref, y))
        ratios_norm.append(metrics.rms_ratio(out.input_normalized[0, 0].cpu().numpy(),
                                             out.wav_normalized[0, 0].float().cpu().numpy()))
        snrs.append(metrics.snr_db(ref, y))
        sisdrs.append(metrics.si_sdr_db(ref, y))
        mels.append(metrics.mel_distance(ref, y, sr))
        if with_pesq and i < pesq_clips:
            pesqs.append(metrics.pesq_wb(ref, np.clip(y, -1, 1), sr))
            stois.append(metrics.stoi(ref, np.clip(y, -1, 1), sr))
        if i < keep_examples:
            examples.append((ref, y))
    usage, perplexity = (s.tolist() for s in code_statistics(counts, model.config.quantizer.stage_sizes))
    model.train()
    return ValidationResult(
        val_loss=float(np.mean(losses)), output_min=lo, output_max=hi,
        rms_ratio=float(np.mean(ratios)), rms_ratio_normalized=float(np.mean(ratios_norm)),
        snr_db=float(np.mean(snrs)), si_sdr_db=float(np.mean(sisdrs)), mel_distance=float(np.mean(mels)),
        clip_fraction=clipped / max(total, 1), codebook_usage=usage, codebook_perplexity=perplexity,
        pesq_wb=_nanmean(pesqs), stoi=_nanmean(stois), examples=examples)


def _nanmean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def learning_rate_advice(lr: float, optimizer: str) -> str | None:
    lo, hi = TYPICAL_LR_RANGE
    if lr < lo:
        return (f"learning rate {lr:g} is far below what codecs train with ({optimizer}: about 1e-4 to 1e-3; "
                f"EnCodec 3e-4, DAC 1e-4): expect loss to fall {lo / lr:.0f}x slower or more, and the output "
                "amplitude to stay low for many epochs")
    if lr > hi:
        return f"learning rate {lr:g} is above the usual codec range (1e-4 to 1e-3): expect instability or NaN"
    return None


def expectation_notes(kbps: float) -> list[str]:
    return [
        f"what to expect at {kbps:g} kbps: SI-SDR/SNR of a few dB (EnCodec 6 kbps ~6 dB SI-SDR); "
        f"SNR above ~{MAX_PLAUSIBLE_SNR_DB:.0f} dB is beyond any codec at speech bitrates. Judge quality "
        "with PESQ/STOI/mel distance, not SNR",
    ]


@dataclass
class HealthMonitor:
    """Stateful checks across epochs; `check` returns this epoch's warnings.

    A symptom is only a warning once the run has had the chance to get past it: level after
    `warmup_epochs` epochs *and* `amplitude_steps` optimizer steps, codebook use after
    `codebook_steps` steps (dead entries are replaced every few dozen), a plateau over at least
    `plateau_epochs` epochs *and* `plateau_steps` steps. On a big dataset an epoch is thousands of
    steps and the epoch counts decide (the seed's amplitude collapse is named on epoch 3); on 15
    clips an epoch is 9 steps, and a 3-minute run is not told it failed where it has barely begun."""

    warmup_epochs: int = 3
    plateau_epochs: int = 5
    amplitude_steps: int = 500
    codebook_steps: int = 100
    plateau_steps: int = 200
    history: list[float] = field(default_factory=list)

    def check(self, epoch: int, train_loss: float, v: ValidationResult, amplitude: str,
              step: int | None = None, steps_per_epoch: int | None = None) -> list[str]:
        """`step`: optimizer steps so far (None: judge by epochs alone, as before steps were known)."""
        warnings = []
        self.history.append(train_loss)
        steps = step if step is not None else math.inf
        if epoch >= self.warmup_epochs and steps >= self.amplitude_steps and not 0.5 <= v.rms_ratio <= 2.0:
            where = "" if amplitude == "none" else f" (normalized-domain ratio {v.rms_ratio_normalized:.2f})"
            warnings.append(f"amplitude: output RMS is {v.rms_ratio:.2f}x the input's after warm-up{where}; "
                            "the decoder is not learning loudness (the seed's failure)")
        if v.clip_fraction > 0.01 or max(abs(v.output_min), abs(v.output_max)) > 2.0:
            warnings.append(f"saturation: {100 * v.clip_fraction:.1f}% of output samples beyond [-1, 1] "
                            f"(range {v.output_min:.2f}..{v.output_max:.2f})")
        low = [i for i, u in enumerate(v.codebook_usage) if u < 0.1]
        if epoch >= 1 and steps >= self.codebook_steps and low:
            warnings.append(f"codebook collapse: codebooks {low} use under 10% of their entries on validation")
        window = self.plateau_epochs
        if steps_per_epoch:
            window = max(window, math.ceil(self.plateau_steps / steps_per_epoch))
        if len(self.history) > window:
            past = min(self.history[:-window])
            if min(self.history[-window:]) > 0.99 * past:
                warnings.append(f"plateau: train loss has not improved 1% in {window} epochs")
        if v.snr_db > MAX_PLAUSIBLE_SNR_DB:
            warnings.append(f"SNR {v.snr_db:.1f} dB on validation is implausible for a codec: check for leakage "
                            "between train and validation")
        return warnings


@dataclass
class EpochSums:
    """An epoch's running sums behind its row's train loss, gradient and time columns. A
    checkpoint written mid-epoch keeps them (`state_dict`), so the row of an epoch resumed in its
    middle covers all its steps, not only those after the resume. Sums are added step by step in
    the same order either way, so a resumed epoch's means equal the uninterrupted run's."""

    terms: dict[str, float] = field(default_factory=dict)
    grad_norm: float = 0.0
    steps: int = 0
    seconds: float = 0.0  # spent on the epoch by earlier starts (a resumed epoch)

    def add(self, logged: dict[str, float], grad_norm: float) -> None:
        for k, v in logged.items():
            self.terms[k] = self.terms.get(k, 0.0) + v
        self.grad_norm += grad_norm
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(1, self.steps) for k, v in self.terms.items()}

    def mean_grad_norm(self) -> float:
        return self.grad_norm / self.steps if self.steps else 0.0

    def state_dict(self, seconds_here: float) -> dict:
        return {"terms": dict(self.terms), "grad_norm": self.grad_norm, "steps": self.steps,
                "seconds": self.seconds + seconds_here}

    @classmethod
    def from_state(cls, state: dict | None) -> EpochSums:
        if not state:
            return cls()
        return cls({k: float(v) for k, v in state["terms"].items()}, float(state["grad_norm"]), int(state["steps"]),
                   float(state["seconds"]))


# the epoch table's columns: (heading, width wide enough for the values a run prints)
TABLE_COLUMNS = (("epoch", 5), ("step", 8), ("train", 8), ("val", 8), ("out range", 12), ("RMS ratio", 9),
                 ("SNR dB", 7), ("SI-SDR dB", 9), ("mel", 6), ("CB use", 9), ("PESQ", 4), ("STOI", 5),
                 ("grad", 7), ("lr", 7), ("s", 5))
TABLE_HEADER_EVERY = 25  # rows between repeats of the heading, so it stays in view on long runs


def table_values(row: dict) -> list[str]:
    """A metrics row as the epoch table's cells ("-" where a figure was not measured this epoch)."""
    def f(key, fmt):
        value = row.get(key)
        return "-" if value is None else format(value, fmt)

    usage = row.get("codebook_usage") or []
    return [str(row["epoch"]), str(row["step"]), f("train_loss", ".4f"), f("val_loss", ".4f"),
            f"{row['output_min']:+.2f}..{row['output_max']:+.2f}", f("rms_ratio", ".3f"), f("snr_db", ".2f"),
            f("si_sdr_db", ".2f"), f("mel_distance", ".3f"), f"{min(usage):.2f}-{max(usage):.2f}" if usage else "-",
            f("pesq_wb", ".2f"), f("stoi", ".3f"), f("grad_norm", ".2f"), f("lr", ".1e"), f("seconds", ".0f")]


def format_table(row: dict, header: bool = True) -> str:
    """The seed's checklist as a console table row in fixed columns (with its heading above it
    when `header`), so rows printed epoch after epoch line up."""
    widths = [max(len(k), w) for k, w in TABLE_COLUMNS]
    vals = " | ".join(v.rjust(w) for v, w in zip(table_values(row), widths))
    if not header:
        return vals
    return " | ".join(k.rjust(w) for (k, _), w in zip(TABLE_COLUMNS, widths)) + "\n" + vals


@dataclass
class EpochTable:
    """The epoch table as a run prints it: the heading once (and again every TABLE_HEADER_EVERY
    rows), then one aligned row per epoch."""

    rows: int = 0

    def format(self, row: dict) -> str:
        header = self.rows % TABLE_HEADER_EVERY == 0
        self.rows += 1
        return format_table(row, header)


def first_nonfinite_grad(model: torch.nn.Module) -> str | None:
    """The name of the first parameter whose gradient holds NaN or Inf (None when all are finite)."""
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return name
    return None
