"""Long files: encode and decode a synthesized 1-hour file through the `telucodec` CLI and report
wall time, real-time factor and peak memory (RSS) of each subprocess.

    nice -n 10 .venv/bin/python benchmarks/long_file.py                 # random-weight `spectral` model
    nice -n 10 .venv/bin/python benchmarks/long_file.py --model runs/x/model --minutes 60 --kbps 6

The audio is the real example clips in examples/te_cv, repeated until the file is long enough.
Target: peak RSS under 1.5 GB for both commands (the codec works on 20 s chunks, so memory
should grow with the file only by the few float copies of the whole signal it must hold).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"
SAMPLE_RATE = 16000
TARGET_GB = 1.5


def example_speech(seconds: float | None = None) -> np.ndarray:
    """The example clips concatenated (float32 mono 16 kHz), repeated or cut to `seconds`."""
    from telucodec.formats.audio import load_audio

    wav = np.concatenate([load_audio(p, SAMPLE_RATE) for p in sorted(EXAMPLES.rglob("*.flac"))])
    if seconds is None:
        return wav
    n = int(seconds * SAMPLE_RATE)
    return np.tile(wav, -(-n // wav.size))[:n]


def write_long_wav(path: Path, seconds: float) -> int:
    """Write `seconds` of repeated example speech as 16-bit WAV, block by block; returns samples."""
    speech = example_speech()
    total = int(seconds * SAMPLE_RATE)
    written = 0
    with sf.SoundFile(str(path), "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
        while written < total:
            block = speech[: total - written]
            f.write(block)
            written += block.size
    return total


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run `cmd`; return (wall seconds, peak RSS in MB of that process, its output)."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child alone
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        out = log.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}")
    return wall, usage.ru_maxrss / 1024.0, out  # ru_maxrss is in KiB on Linux


def default_model(directory: Path) -> Path:
    """A random-weight `spectral` preset model folder (the architecture we ship)."""
    import torch

    from telucodec.config import get_config
    from telucodec.model.codec import Codec

    torch.manual_seed(0)
    return Codec(get_config("spectral")).save_pretrained(directory / "spectral-random")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or checkpoint (default: random `spectral`)")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads of the CLI processes")
    parser.add_argument("--workdir", default=None, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args(argv)

    cli = Path(sys.executable).with_name("telucodec")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="telucodec_long_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = Path(args.model) if args.model else default_model(work)
        src, tcd, out = work / "long.wav", work / "long.tcd", work / "long.decoded.wav"
        seconds = args.minutes * 60
        num_samples = write_long_wav(src, seconds)
        print(f"input: {src} ({seconds / 60:.1f} min, {src.stat().st_size / 1e6:.0f} MB), model: {model}, "
              f"{args.threads} thread(s)")

        rows = []
        for name, cmd in [
            ("encode", [str(cli), "encode", str(src), str(tcd), "--model", str(model), "--kbps", f"{args.kbps:g}", "--force"]),
            ("decode", [str(cli), "decode", str(tcd), str(out), "--model", str(model), "--force"]),
        ]:
            wall, rss_mb, log = run_measured(cmd, env)
            rows.append((name, wall, wall / seconds, rss_mb))
            print(f"  {log.splitlines()[-1]}")

        decoded = sf.info(str(out)).frames
        if decoded != num_samples:
            raise SystemExit(f"decoded {decoded} samples, input had {num_samples}")
        print(f"\n{'step':8s} {'wall s':>8s} {'RTF':>8s} {'peak RSS MB':>12s}")
        for name, wall, rtf, rss in rows:
            print(f"{name:8s} {wall:8.1f} {rtf:8.4f} {rss:12.0f}")
        print(f"bitstream: {tcd.stat().st_size / 1e6:.2f} MB; decoded length matches the input ({num_samples} samples)")
        worst = max(r[3] for r in rows)
        verdict = "OK" if worst < TARGET_GB * 1024 else "OVER"
        print(f"peak RSS {worst:.0f} MB vs target {TARGET_GB * 1024:.0f} MB: {verdict}")
        return 0 if verdict == "OK" else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
