"""`telucodec demo` (what `make demo` runs): what the project is for, in a few minutes on a laptop.

1. A real Telugu clip through the shipped default model at 1.5, 3 and 6 kbps: the real bitrate
   of each .tcd file, the delivered level (RMS ratio) and PESQ-WB/STOI, next to Opus on the
   same clip (when opusenc/opusdec are installed), and a spectrogram PNG of input vs decoded.
2. A short training run of the tiny preset on the example clips, through the real
   `telucodec train` in a child process (its command line is printed, to copy), with a recipe
   whose level is carried by the bitstream (`rms` amplitude, `level_match`) and one sentence,
   printed before, on what a run this short does and does not show.
3. The clip round-tripped through the model that run made.

Everything lands in `--out` (default runs/demo), with `demo.json` holding the numbers.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from telucodec.api import load_model
from telucodec.config import get_config
from telucodec.errors import TelucodecError
from telucodec.evaluation import baselines as bl
from telucodec.evaluation import metrics
from telucodec.evaluation.plots import save_spectrograms
from telucodec.formats.audio import load_audio, write_audio
from telucodec.formats.bitstream import read_bitstream, write_bitstream
from telucodec.formats.rate import encode_to_rate
from telucodec.model.codec import Codec
from telucodec.model.loading import default_model_dir

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "te_cv"
DEFAULT_CLIP = EXAMPLES / "cv_ce579334" / "common_voice_te_43406797.flac"
DEMO_KBPS = (1.5, 3.0, 6.0)
EXPERIMENT = "train"
MARKER = "demo.json"
TRAIN_EPOCHS = 40
TRAIN_BATCH = 8
TRAIN_LR = 1e-3
EXPECT = ("What to expect: a run this short checks that training works; it does not make a codec. PESQ "
          "stays near 1.2, and the decoder's own output is quieter than its input (the RMS ratio column, "
          "0.3-0.7). Decode raises each second toward the level the bitstream carries, but by at most "
          "{limit:g} dB ({gain:.1f}x), so that a decoder failing on a second is not amplified into noise: "
          "the level in step 3 stays below 1 until the decoder has learned more (step 1 shows the shipped "
          "model's). The monitor judges level only after 500 steps and codebook use after 100, so "
          "this run shows its table without those warnings; a usable model takes hours of CPU (see the "
          "shipped model's MODEL_CARD.md).")


def level_match_limit_db() -> float:
    """How far `level_match` may raise or lower a second at decode (the rms strategy's limit)."""
    import inspect

    from telucodec.model.amplitude.rms import RmsAmplitude

    return float(inspect.signature(RmsAmplitude.match_level).parameters["max_db"].default)


def level_words(ratio: float) -> str:
    """What the delivered level of step 3 means, in the words its number calls for."""
    limit = level_match_limit_db()
    if 0.9 <= ratio <= 1.1:
        return f"level {ratio:.2f}x the input (each second set to its sent level at decode)"
    return (f"level {ratio:.2f}x the input (decode moved each second toward its sent level, by at most "
            f"{limit:g} dB: this decoder's own output is {'quieter' if ratio < 1 else 'louder'} still)")


def demo_config() -> Any:
    """The tiny preset, with the level carried by the bitstream (per-second RMS as side info,
    decode sets each second to its sent level) and a level loss that does not vanish for quiet
    speech; samples and PESQ less often, so a few minutes write little."""
    cfg = get_config("tiny")
    return replace(cfg, name="demo",
                   model=replace(cfg.model, amplitude="rms", level_match=True),
                   loss=replace(cfg.loss, log_rms=1.0),
                   train=replace(cfg.train, samples_every=10, pesq_every=4))


def score(ref: np.ndarray, out: np.ndarray, n_bytes: int, sample_rate: int) -> dict[str, float]:
    """Real kbps (bytes × 8 / duration), level (RMS ratio) and PESQ-WB / STOI of one decoded clip."""
    deg = np.clip(out[: ref.size], -1.0, 1.0)
    return {"kbps_actual": n_bytes * 8 / (ref.size / sample_rate) / 1000, "rms_ratio": metrics.rms_ratio(ref, deg),
            "pesq_wb": metrics.pesq_wb(ref, deg, sample_rate), "stoi": metrics.stoi(ref, deg, sample_rate)}


def round_trip(model: Codec, wav: np.ndarray, kbps: float | None, stem: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """wav -> STEM.tcd -> STEM.wav through `model`; returns the decoded audio and its scores.
    `kbps`: the file's actual rate, as `telucodec encode --kbps` writes it (None: every codebook)."""
    data = (write_bitstream(model.encode(wav, model.sample_rate)) if kbps is None
            else encode_to_rate(model, wav, model.sample_rate, kbps).data)
    stem.with_name(stem.name + ".tcd").write_bytes(data)
    codes = read_bitstream(data, expected_model_id=model.model_id)
    out = model.decode(codes).numpy()
    write_audio(stem.with_name(stem.name + ".wav"), out, model.sample_rate)
    return out, {"n_q": codes.n_q, "kbps_nominal": model.nominal_kbps(codes.n_q), "bytes": len(data),
                 **score(wav, out, len(data), model.sample_rate)}


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = f"  {'system':<10} {'setting':>8} {'kbps actual':>12} {'level (RMS ratio)':>18} {'PESQ-WB':>8} {'STOI':>6}"
    lines = [head]
    for r in rows:
        lines.append(f"  {r['system']:<10} {r['setting']:>8} {r['kbps_actual']:>12.2f} {r['rms_ratio']:>18.2f} "
                     f"{r['pesq_wb']:>8.2f} {r['stoi']:>6.3f}")
    return "\n".join(lines)


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise TelucodecError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file() and not force:
        raise TelucodecError(f"--out {out}: folder is not empty and not an earlier demo's; use --force to write into it")
    out.mkdir(parents=True, exist_ok=True)


def shipped_round_trip(out: Path, clip: Path, log=print) -> dict[str, Any]:
    """Step 1: the shipped model at DEMO_KBPS next to Opus on `clip`."""
    model = load_model()
    wav = load_audio(clip, model.sample_rate)
    top = model.nominal_kbps()
    log(f"1. the shipped model {default_model_dir().name} (id {model.model_id}) on {clip} "
        f"({wav.size / model.sample_rate:.1f} s of Telugu speech)")
    write_audio(out / "example_input.wav", wav, model.sample_rate)
    rows, signals = [], {"input": wav}
    for kbps in [k for k in DEMO_KBPS if k <= top + 1e-9]:
        decoded, r = round_trip(model, wav, kbps, out / f"example_{kbps:g}kbps")
        rows.append({"system": "telucodec", "setting": f"{kbps:g}", **r})
        signals[f"telucodec {kbps:g} kbps (decoded)"] = decoded
    available, missing = bl.available_baselines(["opus"])
    if available:
        for i, setting in enumerate(bl.default_settings("opus")):
            res = bl.run_baseline("opus", setting, wav, sample_rate=model.sample_rate)
            write_audio(out / f"example_opus_{setting}kbps.wav", res.audio, model.sample_rate)
            rows.append({"system": "opus", "setting": setting, "n_q": None, "kbps_nominal": res.kbps_nominal,
                         "bytes": res.bytes, **score(wav, res.audio, res.bytes, model.sample_rate)})
            if i == 0:
                signals[f"opus {setting} kbps (its lowest)"] = res.audio
    log(format_rows(rows))
    if missing:
        log(f"   Opus column skipped: {missing[0].split(': ', 1)[-1]} (`make install` as root installs opus-tools)")
    else:
        log("   (Opus cannot go below 6 kbps; its kbps include the Ogg container, as telucodec's include the .tcd header)")
    png = save_spectrograms(out / "example_spectrogram.png", signals, model.sample_rate)
    log(f"   spectrograms, input vs decoded: {png}")
    log(f"   listen: {out / 'example_input.wav'} and {out}/example_*kbps.wav")
    return {"model": default_model_dir().name, "model_id": model.model_id, "clip": str(clip),
            "duration_s": wav.size / model.sample_rate, "rows": rows, "opus": bool(available),
            "spectrogram": str(png)}


def train_command(out: Path, data_dir: Path, config: Path, minutes: float, max_steps: int | None) -> list[str]:
    cmd = ["train", "--data_dir", str(data_dir), "--checkpoint_dir", str(out), "--experiment_name", EXPERIMENT,
           "--config", str(config), "--batch_size", str(TRAIN_BATCH), "--num_epochs", str(TRAIN_EPOCHS),
           "--learning_rate", f"{TRAIN_LR:g}", "--max_minutes", f"{minutes:g}", "--overwrite", "--quiet"]
    return cmd + (["--max_steps", str(max_steps)] if max_steps else [])


def short_training(out: Path, data_dir: Path, clip: Path, minutes: float, max_steps: int | None,
                   threads: int | None = None, log=print) -> dict[str, Any]:
    """Steps 2 and 3: a few minutes of the tiny recipe, then the clip through what it made."""
    config = out / "demo_config.json"
    cfg = demo_config()
    cfg.save(config)
    n_clips = sum(1 for p in data_dir.rglob("*") if p.suffix.lower() in (".flac", ".wav", ".mp3", ".ogg"))
    log(f"\n2. {minutes:g} minutes of training: the tiny preset ({cfg.quantizer.n_q} codebooks of "
        f"{cfg.quantizer.codebook_size}) on the {n_clips} clips of {data_dir}.")
    limit = level_match_limit_db()
    log(textwrap.fill(EXPECT.format(limit=limit, gain=10 ** (limit / 20)), width=100, initial_indent="   ",
                      subsequent_indent="   "))
    argv = train_command(out, data_dir, config, minutes, max_steps) + (["--threads", str(threads)] if threads else [])
    log("   $ telucodec " + shlex.join(argv))
    sys.stdout.flush()
    rc = subprocess.run([sys.executable, "-m", "telucodec.cli", *argv]).returncode
    root = out / EXPERIMENT
    if rc != 0:
        raise TelucodecError(f"the demo's training run failed (exit {rc}); its folder is {root}")
    model = load_model(root)
    wav = load_audio(clip, model.sample_rate)
    _, r = round_trip(model, wav, None, out / "trained_example")
    log(f"\n3. the clip through the model this run made ({r['kbps_nominal']:g} kbps, all {r['n_q']} codebooks): "
        f"{r['kbps_actual']:.2f} kbps actual, {level_words(r['rms_ratio'])}, PESQ-WB {r['pesq_wb']:.2f} "
        f"-> {out / 'trained_example.wav'}")
    return {"experiment": str(root), "command": ["telucodec", *argv], "trained_example": r}


def how_to_run() -> str:
    """Where the commands are: this interpreter's folder, which `source .../activate` puts first."""
    bin_dir = Path(sys.executable).parent
    try:
        shown = bin_dir.relative_to(Path.cwd())
    except ValueError:
        shown = bin_dir
    if not (bin_dir / "activate").is_file():
        return "the commands: telucodec --help, python train_codec.py --help"
    return (f"the commands are in {shown}/: run {shown}/telucodec --help, or once per shell "
            f"`source {shown}/activate` and then telucodec --help")


def run_demo(out: str | Path, clip: str | Path | None = None, data_dir: str | Path | None = None,
             minutes: float = 3.0, max_steps: int | None = None, force: bool = False, threads: int | None = None,
             log=print) -> dict[str, Any]:
    out = Path(out)
    clip = Path(clip) if clip else DEFAULT_CLIP
    data_dir = Path(data_dir) if data_dir else EXAMPLES
    if not clip.is_file():
        raise TelucodecError(f"{clip}: no such clip (the example clips come with the repository; pass --clip)")
    if minutes > 0 and not data_dir.is_dir():
        raise TelucodecError(f"{data_dir}: no such folder of training clips (pass --data_dir, or --minutes 0)")
    _prepare_out(out, force)
    result = shipped_round_trip(out, clip, log)
    if minutes > 0:
        result["training"] = short_training(out, data_dir, clip, minutes, max_steps, threads, log)
    (out / MARKER).write_text(json.dumps(result, indent=2) + "\n")
    log(f"\neverything is in {out}/ (numbers: {out / MARKER})")
    log(how_to_run())
    return result


def run_from_args(args: argparse.Namespace) -> int:
    run_demo(args.out, args.clip, args.data_dir, args.minutes, args.max_steps, args.force, args.threads)
    return 0
