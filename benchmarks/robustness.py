#!/usr/bin/env python
"""Reliability and security, measured: hostile input, faults, untrusted files, resource limits,
parallel = serial. Every case states what must happen; the report counts the ones that did not.

    nice -n 10 .venv/bin/python benchmarks/robustness.py                      # full, writes docs/robustness.md
    nice -n 10 .venv/bin/python benchmarks/robustness.py --quick --out X.md  # bounded (tests/test_robustness.py)

Sections (see docs/robustness.md for the table and what each row checks):
- audio container fuzz: mutated WAV/FLAC files through load_audio (refused or read, nothing on stderr).
- bitstream fuzz: mutated .tcd files of a real clip encoded by random-weight `tiny` models (plain
  and entropy coded, amplitude none and rms), parsed and decoded in a forked child with a time
  limit per case: rejected (BitstreamError, or ModelError when the model refuses the codes) or
  decoded to exactly num_samples; nothing else, no hang, bounded memory.
- bad audio through `telucodec encode` (real subprocesses; --quick: `cli.main` in a forked child)
  and through a training folder (one train_codec.py run; skip + reason in skipped.tsv). As root,
  the chmod 000 cases run as nobody (setpriv / setuid), else they are reported not testable.
- training faults: kill -9 at random moments and during checkpoint writes, then resume; NaN in a
  batch; a full disk (a real tmpfs when root can mount one, else simulated).
- untrusted files: pickle payloads in checkpoints and model folders, other architectures, other
  models' .tcd, future format versions.
- resource limits (full run only): peak RSS per second of audio at encode/decode.
- concurrency (full run only): eval and tokenize with 2 workers give the serial results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import torch

from benchmarks import robustness_faults as faults
from benchmarks import robustness_fuzz as fuzz
from benchmarks import robustness_input as hostile
from benchmarks import robustness_limits as limits
from benchmarks.robustness_common import EXAMPLES, Row, can_drop_root, make_tiny_model
from telucodec.formats import audio, bitstream

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="bounded version (< 90 s) for the test suite")
    p.add_argument("--out", default=None, help="markdown report (default: docs/robustness.md for a full run)")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    p.add_argument("--fuzz", type=int, default=None, help="mutated .tcd files (default 3000; --quick 240)")
    p.add_argument("--kills", type=int, default=None, help="kill -9 trials (default 24; --quick 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--only", default=None, help="comma-separated parts of section names to run (debugging)")
    args = p.parse_args(argv)
    args.fuzz = args.fuzz if args.fuzz is not None else (240 if args.quick else 3000)
    args.kills = args.kills if args.kills is not None else (2 if args.quick else 24)
    if args.out is None and not args.quick:
        args.out = str(ROOT / "docs" / "robustness.md")
    return args


class Bench:
    """The work folder, the shared inputs, and the rows collected section by section."""

    def __init__(self, args: argparse.Namespace, work: Path):
        self.args, self.work = args, work
        self.rows: list[Row] = []
        self.timings: list[tuple[str, float]] = []
        self.clips = sorted(EXAMPLES.rglob("*.flac"))
        self.clip = self.clips[0]
        self.models = {"tiny-none": make_tiny_model(work / "tiny-none", "none", seed=1),
                       "tiny-rms": make_tiny_model(work / "tiny-rms", "rms", seed=2)}
        self.train_data = work / "train_data"
        self.train_data.mkdir()
        for clip in self.clips[:3]:
            shutil.copy(clip, self.train_data / clip.name)
        self.config = faults.fast_config(work / "fast_tiny.json")
        self.nobody_ok = can_drop_root()
        import torch.utils.tensorboard  # noqa: F401 - imported once here, inherited by every forked case

        import telucodec.cli
        import telucodec.train.loop  # noqa: F401

    def section(self, name: str, fn: Callable[[], list[Row] | Row]) -> None:
        if self.args.only and not any(part in name for part in self.args.only.split(",")):
            return
        start = time.monotonic()
        print(f"[robustness] {name} ...", file=sys.stderr, flush=True)
        out = fn()
        rows = out if isinstance(out, list) else [out]
        self.rows += rows
        took = time.monotonic() - start
        self.timings.append((name, took))
        bad = sum(r.failures for r in rows)
        print(f"[robustness] {name}: {sum(r.tried for r in rows)} cases, {bad} failures, {took:.0f} s",
              file=sys.stderr, flush=True)

    def folder(self, name: str, mode: int = 0o755) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        return path


def run_all(b: Bench) -> None:
    a = b.args
    none_model = b.models["tiny-none"]
    b.section("bitstream fuzz", lambda: fuzz.fuzz_bitstream(b.models, b.clip, a.fuzz, a.seed))
    b.section("audio container fuzz", lambda: fuzz.fuzz_audio(b.work / "audio_fuzz", b.clip, a.fuzz // 5, a.seed))
    bad = b.folder("bad_audio")
    cases = hostile.build_bad_audio(bad, b.clip)
    b.section("bad audio: encode", lambda: hostile.encode_bad_audio(
        cases, bad, b.folder("encoded", 0o777), none_model, subprocesses=not a.quick, nobody_ok=b.nobody_ok))
    b.section("bad audio: training folder", lambda: hostile.dataset_bad_audio(
        cases, bad, b.folder("dataset", 0o777), b.config, b.clips[:2], b.nobody_ok))
    b.section("untrusted files", lambda: hostile.untrusted_files(
        b.work / "untrusted", none_model, b.models["tiny-rms"], b.clip))
    b.section("NaN in a batch", lambda: faults.nan_injection(b.folder("nan"), b.train_data, b.config))
    b.section("disk full", lambda: faults.disk_full(b.folder("disk"), b.train_data, b.config))
    b.section("kill -9", lambda: faults.kill9_training(b.folder("kill"), b.train_data, b.config, a.kills, a.seed))
    if a.quick:
        return
    spectral = make_tiny_model(b.work / "spectral-random", "rms", seed=3, preset="spectral")
    b.section("memory per second", lambda: limits.measure_memory(b.folder("memory"), spectral, b.clip, (10, 60, 180, 600)))
    pair = b.folder("eval_data")
    for clip in b.clips[:2]:
        shutil.copy(clip, pair / clip.name)
    b.section("eval workers", lambda: limits.eval_parallel_equals_serial(b.folder("eval"), pair, none_model))
    b.section("tokenize workers", lambda: limits.tokenize_parallel_equals_serial(
        b.folder("tok"), b.train_data, none_model))


# ---- the report --------------------------------------------------------------------------------

def _cell(text: object) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", str(text)).replace("|", "\\|").replace("\n", " ")


def markdown(b: Bench, command: str, seconds: float) -> str:
    tried = sum(r.tried for r in b.rows)
    failures = sum(r.failures for r in b.rows)
    lines = [
        "# Robustness: hostile input, faults, nothing lost — measured",
        "",
        "Made by (2 shared CPU cores, 1 torch thread):",
        "",
        f"    {command}",
        "",
        f"**{tried} checks, {failures} failures** (0 expected) in {seconds / 60:.1f} min. "
        f"Root: {os.geteuid() == 0}; chmod-000 cases run as nobody: {b.nobody_ok}.",
        "",
        "| Area | Case | Tried | Failures | Result |",
        "|---|---|---:|---:|---|",
    ]
    lines += [f"| {_cell(r.area)} | {_cell(r.case)} | {r.tried} | {r.failures} | {_cell(r.result)} |" for r in b.rows]
    lines += ["", "Section times: " + ", ".join(f"{n} {t:.0f} s" for n, t in b.timings), ""]
    lines += LIMITS.format(max_s=audio.MAX_INPUT_SECONDS, max_h=audio.MAX_INPUT_SECONDS / 3600,
                           min_sr=audio.MIN_INPUT_SAMPLE_RATE, max_sr=audio.MAX_INPUT_SAMPLE_RATE,
                           tcd_sr=bitstream.SAMPLE_RATE_RANGE, n_q=bitstream.N_Q_RANGE,
                           bits=bitstream.CODEBOOK_BITS_RANGE).splitlines()
    lines += NOTES.splitlines()
    return "\n".join(lines) + "\n"


LIMITS = """
## Resource limits (defaults, enforced in `telucodec/formats/audio.py` and `telucodec/formats/bitstream.py`)

- Input duration: at most {max_s} s ({max_h:g} h) per file (`MAX_INPUT_SECONDS`); longer files are
  refused with one line before any sample is decoded. The length is the one libsndfile measures
  from the data actually present, not the header's claim: a WAV header claiming 3 h on a 16 KB file
  is read as the 0.5 s it holds.
- Input sample rate: {min_sr}..{max_sr} Hz (`MIN_INPUT_SAMPLE_RATE`..`MAX_INPUT_SAMPLE_RATE`),
  bounds included: 384 kHz is accepted (resampled to 16 kHz), 400 kHz and 1 kHz are refused.
  Any channel count libsndfile reads is mixed down to mono.
- Reading an input holds it once as float32 at its own rate and channel count (frames × channels
  × 4 bytes: an hour of 16 kHz mono is 230 MB, of 48 kHz stereo 1.4 GB), then the 16 kHz mono
  copy. The model encodes and decodes in 24 s windows (20 s + 2 s context each side), so past one
  window the memory grows only by a few float32 copies of the 16 kHz signal (64 KB/s each):
  0.03-0.2 MB per extra second of audio across runs (rows "peak RSS above the loaded model",
  random-weight `spectral` preset; allocator noise makes single numbers jitter by tens of MB).
- `.tcd` files: sample rate {tcd_sr[0]}..{tcd_sr[1]} Hz, n_q {n_q[0]}..{n_q[1]}, codebook bits
  {bits[0]}..{bits[1]}; every segment holds at most 8 codes per payload byte, so a parser never
  allocates more than a small multiple of the file's size (fuzz row "memory and time per case").
"""

NOTES = """
## How to read the rows

- Audio container fuzz: each mutated file must be refused with `AudioError` or read as a float32
  array in [-1, 1] of at most 10 s, with nothing printed on file descriptor 2, within 10 s.
- Bitstream fuzz: "BitstreamError" = refused by the parser (CRC, sizes, ranges, model id);
  "ModelError" = a well-formed file (CRC recomputed by the fuzzer) that this model refuses with the
  reason (another amplitude side-info kind, sample rate, frame rate or code width than the model's);
  "decoded" = a mutation that left a valid file for this model, decoded to exactly `num_samples`
  finite samples. Anything else (another exception, a wrong length, a hang, a crash) is a failure.
- Bad audio, encode: a refused file must give exit 1 and exactly one stderr line
  `telucodec encode: error: FILE: reason`, never a traceback, within 120 s. Accepted files must
  encode to exactly the number of samples `load_audio` reads.
- A truncated WAV is accepted with the samples present (what libsndfile and ffmpeg do; refusing it
  would also refuse recordings whose writer never finalised the header). A truncated FLAC stops
  with "truncated or corrupt audio".
- Kill -9: every second trial is killed the moment an atomic-write temp file appears (checkpoint,
  best copy or model folder), the others after a random 0.2-10 s (some before the first
  checkpoint exists: the next start is then a fresh `--overwrite` run). A failure is a start that
  exits by itself, a resume at another step than last.pt holds, an unreadable last.pt, or a final
  `--resume` that does not finish.

## Found and fixed by this benchmark

Each of these made a row fail before the fix; `tests/test_robustness.py` pins each one.

- Full disk, checkpoint: on a real full disk `torch.save` raises `RuntimeError("unexpected pos …")`
  with the ENOSPC `OSError` only as its context, so training died with a traceback (the unit test
  had simulated a plain `OSError`). `atomic_torch_save` now finds ENOSPC/EDQUOT anywhere in the
  exception chain (`telucodec/train/checkpoint.py`).
- Full disk, logs: TensorBoard's writer thread printed its own traceback, then training stopped with
  a bare `[Errno 28] No space left on device`. Now one line naming the experiment and the intact
  checkpoint; the thread's report of the same error is silenced (`telucodec/train/loop.py`).
- Forged `.tcd` (valid CRC): n_q 8 × 8 bits rewritten as 4 × 16 bits (same payload size) crashed
  `telucodec decode` with `IndexError`; another sample/frame rate was silently decoded at the
  model's rate; an rms file without side values raised a bare `ValueError`. `Codec.decode` now
  refuses codes whose sample rate, frame rate, code width, value range or side info do not fit the
  model (`telucodec/model/codec.py`).
- Audio messages (`telucodec/formats/audio.py`): chmod 000 said "not a readable audio file" (now
  "permission denied"); a 0-byte file now says "empty file (0 bytes)"; a symlink loop said "no
  such file" (now "broken symlink or symlink loop"); a file in a folder we may not enter raised a
  bare `PermissionError`, which a training run (e.g. from a manifest) did not skip.
- libsndfile's MP3 decoder (libmpg123) prints notes ("Illegal Audio-MPEG-Header", "Trying to
  resync", "Xing stream size off") straight to file descriptor 2: a bad `.mp3` gave 4 stderr
  lines, a merely damaged one printed noise on success, and libsndfile tries the MP3 decoder on
  damaged `.wav` files too (audio container fuzz). File descriptor 2 is now silenced while
  libsndfile reads; its errors still reach us as exceptions. Files decoded by ffmpeg now obey
  `MAX_INPUT_SECONDS` too (they were read whole, whatever their length).
- Pickle checkpoint: torch printed a 2-line `UserWarning` about the pickle protocol before our
  refusal; now only the refusal (`telucodec/model/loading.py`).
- A binary `config.json` gave `'utf-8' codec can't decode …` without the file name; now
  "FILE: not a readable JSON config (…)" (`telucodec/config.py`).
- `Codec.save_pretrained` wrote `model.safetensors` with mode 0600 (safetensors' default), so
  another user could not load a shared model folder (found when the chmod-000 case ran as
  nobody); it now gets the mode `config.json` gets from the umask.
- kill -9 left the killed process's checkpoint temp file behind for good, and a kill between the
  metrics line and the checkpoint repeated that epoch in metrics.jsonl. A resumed run now deletes
  stale temp files in `checkpoints/` and `model/` and drops metrics rows newer than the checkpoint
  or cut short (`tidy_for_resume` in `telucodec/train/experiment.py`).
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    command = "nice -n 10 .venv/bin/python benchmarks/robustness.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="telucodec-robust-"))
    work.chmod(0o755)  # the chmod-000 cases run as nobody, who must reach everything else
    start = time.monotonic()
    try:
        b = Bench(args, work)
        run_all(b)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - start
    failures = sum(r.failures for r in b.rows)
    report = markdown(b, command.strip(), seconds)
    if args.out:
        Path(args.out).write_text(report)
    if args.json:
        Path(args.json).write_text(json.dumps({"failures": failures, "seconds": seconds,
                                               "rows": [r.__dict__ for r in b.rows]}, indent=1))
    print(report)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
