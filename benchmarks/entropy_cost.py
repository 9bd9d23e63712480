"""Entropy coding cost: encode and decode time of the .tcd codings per second of audio, beside the
codec's own, in one run (one thread), with the file sizes they buy.

    nice -n 5 .venv/bin/python benchmarks/entropy_cost.py --model state/entropy/telugu-v5-ctx
    .venv/bin/python benchmarks/entropy_cost.py --model MODEL_DIR --clips a.flac,b.flac --repeats 5

The model should have entropy tables (scripts/fit_entropy_tables.py writes them); one without
gets tables fitted here on the clips' own codes, which only times the coder (its sizes flatter it).
Audio: --clips (comma-separated), else the example clips concatenated. Times are the best of
`--repeats` runs after one warm-up, in milliseconds of compute per second of audio; "x codec" is
that time over the codec's own encode (for writing) or decode (for reading) time at that n_q.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def rate_lines(model, wav: np.ndarray, seconds: float, tables, n_q: int, repeats: int) -> list[str]:
    """One table row per coding at this n_q: size, write and read time beside the codec's."""
    from telucodec.formats.bitstream import read_bitstream, write_bitstream

    kbps = n_q * model.kbps_per_codebook()
    codes = model.encode(wav, model.sample_rate, kbps)
    enc = best_of(lambda: model.encode(wav, model.sample_rate, kbps), repeats) / seconds
    dec = best_of(lambda: model.decode(codes, check_model=False), repeats) / seconds
    writers = {"plain": lambda: write_bitstream(codes), "static_ans": lambda: write_bitstream(codes, entropy=True),
               "context": lambda: write_bitstream(codes, tables=tables)}
    lines = []
    for i, (name, write) in enumerate(writers.items()):
        data = write()
        w = best_of(write, repeats) / seconds
        r = best_of(partial(read_bitstream, data, tables=tables), repeats) / seconds
        lead = f"{kbps:5g} {n_q:3d} {1000 * enc:9.2f} {1000 * dec:9.2f}" if i == 0 else " " * 29
        lines.append(f"{lead} | {name:>10} {len(data) / seconds:7.1f} {1000 * w:10.3f} {w / enc:7.3f} "
                     f"{1000 * r:9.3f} {r / dec:7.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    from telucodec.formats.audio import load_audio
    from telucodec.formats.context_fit import fit_tables
    from telucodec.model.loading import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--clips", default="", help="audio files (comma-separated); default: examples/te_cv")
    p.add_argument("--n_q", default="3,6,12")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(a.model)
    paths = [Path(x) for x in a.clips.split(",") if x] or sorted((ROOT / "examples" / "te_cv").rglob("*.flac"))
    wav = np.concatenate([load_audio(x, model.sample_rate) for x in paths])
    seconds = wav.size / model.sample_rate
    tables = model.entropy_tables
    note = ""
    if tables is None:
        full = model.encode(wav, model.sample_rate).codes.numpy()
        tables = fit_tables([full], model.codebook_bits, alphas=(64.0,))
        note = " (tables fitted on these clips: sizes are flattered, times are not)"
    print(f"{model.config.name}: {seconds:.1f} s of audio, one thread, best of {a.repeats}{note}")
    print(f"{'kbps':>5} {'n_q':>3} {'codec enc':>9} {'codec dec':>9} | {'coding':>10} {'B/s':>7} "
          f"{'write ms/s':>10} {'x codec':>7} {'read ms/s':>9} {'x codec':>7}")
    for n_q in [int(x) for x in a.n_q.split(",")]:
        for line in rate_lines(model, wav, seconds, tables, n_q, a.repeats):
            print(line)
    print("codec enc / dec: ms of compute per second of audio for Codec.encode / Codec.decode (PyTorch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
