#!/usr/bin/env python
"""Ship a trained experiment as the package's default model (fp16 safetensors + config + card).

    python scripts/ship_model.py state/runs/telugu-spectral-v3 --eval docs/eval-telugu-v2 --name telugu-v2 \
        --previous state/runs/telugu-spectral-v1 --previous state/runs/telugu-spectral-v2 --notes NOTES.md

A lineage whose first runs' folders are gone names them with `--earlier_run NAME=STEPS:MINUTES`
(the figures an earlier card recorded). Writes telucodec/pretrained/NAME/{config.json, model.safetensors, MODEL_CARD.md}. The card's
numbers are read from the experiment's metrics.jsonl and the eval folder's results.md, and the
eval command is copied from the eval folder's COMMAND file, so every figure comes with the
command that made it. Links in the --notes file are written relative to that file (so they work
where it sits) and rebased to the card's folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import torch

from telucodec.api import load_model
from telucodec.model.loading import DEFAULT_MODEL, load_checkpoint, resolve

ROOT = Path(__file__).resolve().parents[1]
CARD = """# {name}: {role}

A {params:.2f} M-parameter neural speech codec (preset `{preset}`: {encoder} encoder, residual VQ
{stages}, {decoder} decoder, amplitude strategy `{amplitude}`{level_note}) at 16 kHz,
50 frames/s, serving {kbps_list} kbps from one model (quantizer dropout). Weights: fp16
safetensors, loaded as fp32. Model id `{model_id}`.
{origin}
Trained for {cpu_hours:.2f} hours on one CPU thread of a 2-core machine. Against the targets (same eval run):
{status}
Training continues across sessions (`docs/training-log.md`).

## Training
- Data: {train_minutes:.1f} min of real speech ({train_clips} clips) from the speech sets below (`DATA`), held-out
  validation speakers never trained on: {val_speakers}.
- {steps} optimizer steps of batch {batch} x {segment:g} s ({hours_seen:.1f} h of audio seen), {cpu_minutes:.0f} wall
  minutes on 1 CPU thread, over these runs (commands and configs: `docs/training-log.md`, `config.json`):
{lineage}
- Last validation epoch (held-out speakers, 6 kbps): {val_line}

## Evaluation on held-out Telugu speakers

Made by:

    {eval_command}

{eval_table}

![rate-distortion PESQ](../../../docs/{eval_name}/rd_pesq.png)

## Speed
{speed_line}
{notes}
## Data and licenses
- Mozilla Common Voice Telugu (`dev_te/cv`): CC0-1.0.
- Telugu emotional speech (`dev_te/temd`): research-only, redistribution terms unclear (not redistributed here).
- Hindi radio news (News On Air via AI4Bharat IndicWav2Vec workshop data): rights unclear (not redistributed).
- LJSpeech clips: public domain. IndicTTS ground-truth clips (12 Indian languages): see IndicTTS terms.
  IndicF5 prompts: CC-BY-4.0. CMU ARCTIC: BSD-style. pyannote sample: MIT.
- Malayalam Speech Corpus (smc/msc): CC-BY-SA-4.0.
- LibriSpeech: CC-BY-4.0.

## Intended use and limits
Speech at 16 kHz. Judge it with the eval table, not with SNR: no codec at these bitrates reaches high
SNR. Not for music. Quality on unseen recording conditions is unknown beyond the table.
"""


def stage_text(sizes: list[int]) -> str:
    """"16 x 1024", or "2 x 32768 + 14 x 1024" where the stages differ in size."""
    runs: list[list[int]] = []
    for size in sizes:
        if runs and runs[-1][1] == size:
            runs[-1][0] += 1
        else:
            runs.append([1, size])
    return " + ".join(f"{n} x {size}" for n, size in runs)


def run_totals(exp: Path) -> dict:
    """Steps (from the last checkpoint) and timed wall seconds (complete epochs) of one experiment."""
    rows = [json.loads(x) for x in (exp / "metrics.jsonl").read_text().splitlines()]
    steps = int(load_checkpoint(exp / "checkpoints" / "last.pt")["step"])
    return {"name": exp.name, "steps": steps, "seconds": sum(r["seconds"] for r in rows),
            "untimed_steps": steps - rows[-1]["step"]}


def recorded_run(text: str) -> dict:
    """NAME=STEPS:MINUTES (an earlier card's figures) in `run_totals`' form."""
    name, _, numbers = text.partition("=")
    steps, _, minutes = numbers.partition(":")
    try:
        return {"name": name, "steps": int(steps), "seconds": float(minutes) * 60, "untimed_steps": 0}
    except ValueError:
        raise SystemExit(f"--earlier_run {text!r}: expected NAME=STEPS:MINUTES") from None


def target_status(results: dict) -> str:
    """The issue's required targets, checked against the eval's own numbers."""
    def get(system: str, setting: str) -> dict | None:
        return next((r for r in results["systems"] if r["system"] == system and str(r.get("setting")) == setting), None)

    ours6, ours3, ours15 = get("telucodec", "6"), get("telucodec", "3"), get("telucodec", "1.5")
    opus6, opus8, c2 = get("opus", "6"), get("opus", "8"), get("codec2", "3200")
    lyra6, lyra3 = get("lyra", "6"), get("lyra", "3.2")
    lines = []
    for label, ours, base, keys in (("6 kbps vs Opus 6 kbps", ours6, opus6, ("pesq_wb", "stoi")),
                                    ("6 kbps vs Lyra v2 6 kbps", ours6, lyra6, ("pesq_wb", "stoi")),
                                    ("3 kbps vs Lyra v2 3.2 kbps", ours3, lyra3, ("pesq_wb", "stoi")),
                                    ("1.5 kbps vs Codec2 3200", ours15, c2, ("pesq_wb",)),
                                    ("6 kbps vs Opus 8 kbps (goal)", ours6, opus8, ("pesq_wb", "stoi"))):
        if ours is None or base is None:
            lines.append(f"- {label}: not measured")
            continue
        digits = {"stoi": 3}  # STOI differences live in the third decimal
        parts = [f"{k} {ours[k]:.{digits.get(k, 2)}f} vs {base[k]:.{digits.get(k, 2)}f} "
                 f"({'above' if ours[k] > base[k] else 'below'})" for k in keys]
        lines.append(f"- {label}: " + ", ".join(parts))
    if ours6 is not None and ours15 is not None:
        rise = ours6["pesq_wb"] - ours15["pesq_wb"]
        lines.append(f"- PESQ-WB rise from 1.5 to 6 kbps: {rise:+.2f} (target +0.30)")
    ratios = [e["rms_ratio"] for e in results.get("per_speaker", []) if e["system"] == "telucodec"]
    if ratios:
        inside = all(0.9 <= r <= 1.1 for r in ratios)
        lines.append(f"- RMS ratio per held-out speaker and bitrate: {min(ratios):.2f}-{max(ratios):.2f} "
                     f"({'all within' if inside else 'not all within'} 0.9-1.1)")
    return "\n".join(lines)


def rebase_links(text: str, source: Path, target: Path) -> str:
    """Markdown links of a notes file (relative to `source`, the file's folder) made relative to
    `target`, the card's folder. A link that does not resolve inside the checkout from `source`
    was written for the card already and is kept as it is."""
    import os
    import re

    def fix(m: re.Match) -> str:
        link = m.group(2)
        if re.match(r"[a-z]+:|#|/", link):
            return m.group(0)
        resolved = (source / link).resolve()
        if not resolved.is_relative_to(ROOT.resolve()) or not resolved.exists():
            return m.group(0)
        return f"{m.group(1)}({Path(os.path.relpath(resolved, target.resolve())).as_posix()})"

    return re.sub(r"(!?\[[^\]]*\])\(([^)\s]+)\)", fix, text)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("experiment")
    p.add_argument("--eval", required=True, help="a `telucodec eval` output folder with results.md and COMMAND")
    p.add_argument("--name", required=True, help="folder name under telucodec/pretrained/")
    p.add_argument("--speed", default="", help="one line of measured speed (with its command)")
    p.add_argument("--origin", default=None,
                   help="a markdown file saying which pretrained model this one started from, with its license; "
                        "the starting point's LICENSE and NOTICE (if beside --origin_folder) are copied too")
    p.add_argument("--origin_folder", default=None, help="the pretrained model folder it started from")
    p.add_argument("--model_from", default=None,
                   help="ship this model folder, made from the experiment's last checkpoint (e.g. with more "
                        "stages or entropy tables), instead of the checkpoint itself")
    p.add_argument("--notes", default=None, help="a markdown file appended to the card as its own sections")
    p.add_argument("--previous", action="append", default=[],
                   help="an earlier experiment this one continued (--init_from), oldest first")
    p.add_argument("--earlier_run", action="append", default=[], metavar="NAME=STEPS:MINUTES",
                   help="an earlier run of the lineage whose folder is gone, as an earlier card recorded it "
                        "(steps, timed minutes), oldest first, before --previous")
    args = p.parse_args()
    exp, ev = Path(args.experiment), Path(args.eval)
    model = load_model(args.model_from or exp / "checkpoints" / "last.pt")
    out = ROOT / "telucodec" / "pretrained" / args.name
    weights = out / "model.safetensors"
    before = (load_model(out).model_id, weights.read_bytes()) if weights.is_file() else None
    model.save_pretrained(out, dtype=torch.float16)
    shipped = load_model(out)
    if before is not None and before[0] == shipped.model_id:
        # Same tensors (re-running to refresh the card): keep the committed bytes, since git
        # keeps every version of a binary forever.
        weights.write_bytes(before[1])
    rows = [json.loads(x) for x in (exp / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    cfg = model.config
    runs = [recorded_run(text) for text in args.earlier_run]
    runs += [run_totals(Path(e)) for e in [*args.previous, args.experiment]]
    seconds = sum(r["seconds"] for r in runs)
    steps = sum(r["steps"] for r in runs)
    lineage = "\n".join(f"  - `{r['name']}`: {r['steps']} steps, {r['seconds'] / 60:.0f} min"
                         + (f" (+ {r['untimed_steps']} steps of an unfinished epoch, not timed)" if r["untimed_steps"] else "")
                         for r in runs)
    summary = json.loads((exp / "summary.json").read_text())
    card = CARD.format(
        name=args.name, role=("telucodec's default Telugu speech codec" if args.name == DEFAULT_MODEL
                              else f"a Telugu speech codec shipped with telucodec (`--model {args.name}`)"),
        params=sum(p.numel() for p in model.parameters()) / 1e6, preset=cfg.name,
        encoder=cfg.model.encoder, origin=("\n" + Path(args.origin).read_text().strip() + "\n" if args.origin else ""),
        stages=stage_text(cfg.quantizer.stage_sizes), decoder=cfg.model.decoder,
        amplitude=cfg.model.amplitude,
        level_note=", decoded level matched to the sent chunk RMS" if cfg.model.level_match else "",
        notes=("\n" + rebase_links(Path(args.notes).read_text().strip(), Path(args.notes).parent, out) + "\n"
               if args.notes else ""),
        kbps_list=f"{model.nominal_kbps(1):g}, {model.nominal_kbps(2):g}, ... {model.nominal_kbps():g}",
        model_id=shipped.model_id, cpu_hours=seconds / 3600, train_minutes=summary["train_seconds"] / 60,
        train_clips=summary["train_clips"],
        val_speakers=", ".join(cfg.train.val_speakers) or "hash split", steps=steps, batch=cfg.train.batch_size,
        segment=cfg.train.segment_seconds, hours_seen=steps * cfg.train.batch_size * cfg.train.segment_seconds / 3600,
        cpu_minutes=seconds / 60, lineage=lineage,
        val_line=(f"mel distance {last['mel_distance']:.3f}, RMS ratio {last['rms_ratio']:.3f}, SI-SDR {last['si_sdr_db']:.1f} dB, "
                  f"codebook usage {min(last['codebook_usage']):.2f}-{max(last['codebook_usage']):.2f}"),
        eval_command="\n    ".join((ev / "COMMAND").read_text().strip().splitlines()), eval_table=(ev / "results.md").read_text().strip(),
        eval_name=ev.name, speed_line=args.speed or "see benchmarks/speed.py",
        status=target_status(json.loads((ev / "results.json").read_text())),
    )
    (out / "MODEL_CARD.md").write_text(card)
    origin = resolve(args.origin_folder) if args.origin_folder else None
    for name in ("LICENSE", "NOTICE"):
        if origin is not None and (origin / name).is_file():
            (out / name).write_bytes((origin / name).read_bytes())
    size = (out / "model.safetensors").stat().st_size
    print(f"shipped {out} ({size / 1e6:.1f} MB, model id {shipped.model_id})")


if __name__ == "__main__":
    main()
