"""Write the golden `.tcd` files and the codes they must decode to (run once; never casually).

    .venv/bin/python tests/golden/make_golden.py           # writes only files that do not exist
    .venv/bin/python tests/golden/make_golden.py --force   # only when FORMAT_VERSION changes

Golden files are the promise that bytes written today decode in every later version: once
committed they are never regenerated for the same format version. A new format version adds new
files (e.g. `v2_*.tcd`) next to these; the v1 files stay and must keep decoding. The version-2
(context-coded) file needs its entropy tables: `v2_context_tables.safetensors`, made here from
integer draws only (`golden_tables`), is committed beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from telucodec.formats.bitstream import write_bitstream
from telucodec.formats.codes import Codes
from telucodec.formats.context_tables import TOTAL, ContextTables, StageTables

HERE = Path(__file__).resolve().parent
TABLES = HERE / "v2_context_tables.safetensors"
CONTEXT_MODEL = "5eed5eed0c0de002"


def golden_tables() -> ContextTables:
    """3 stages of 10-bit tables from a fixed seed, integer arithmetic only (machine-independent)."""
    rng = np.random.default_rng(4)
    stages = []
    for q in range(3):
        a, b, k = 5, (3 if q else 1), 6
        repeat = rng.integers(0, TOTAL // 4, size=k)
        weights = rng.integers(1, 200, size=(k, 1024)) ** 2
        tot = TOTAL - repeat
        freq = 1 + weights * (tot - 1024)[:, None] // weights.sum(1, keepdims=True)
        freq[np.arange(k), np.argmax(weights, 1)] += tot - freq.sum(1)
        stages.append(StageTables(prev_class=rng.integers(0, a, 1025).astype(np.uint8),
                                  stage_class=rng.integers(0, b, 1024).astype(np.uint8),
                                  context=rng.integers(0, k, (a, b)).astype(np.uint8),
                                  freq=freq.astype(np.uint16), repeat=repeat.astype(np.uint16)))
    return ContextTables(stages, str(TABLES))


def golden_cases() -> dict[str, tuple[Codes, bool | str]]:
    """name -> (codes, entropy: False, True (static ANS) or "context"): small clips from fixed seeds
    covering every field."""
    cases: dict[str, tuple[Codes, bool | str]] = {}

    # 1 s + 123 samples at 16 kHz, 50 Hz: F = ceil(16123 / 320) = 51; the 1.5 kbps setting.
    rng = np.random.default_rng(1)
    cases["v1_plain_n3_b10_none"] = (
        Codes(
            codes=torch.from_numpy(rng.integers(0, 1024, size=(3, 51))),
            num_samples=16123,
            model_id="0123456789abcdef",
            sample_rate=16000,
            frame_rate=50,
            codebook_bits=10,
        ),
        False,
    )

    # Odd widths and rates: 12-bit codes, 24 kHz at 75 Hz, RMS side info with 16-bit values.
    rng = np.random.default_rng(2)
    cases["v1_plain_n8_b12_rms"] = (
        Codes(
            codes=torch.from_numpy(rng.integers(0, 4096, size=(8, 40))),
            num_samples=12800,
            model_id="fedcba9876543210",
            sample_rate=24000,
            frame_rate=75,
            codebook_bits=12,
            side_kind="rms",
            side=[int(v) for v in rng.integers(0, 1000, size=5)],
        ),
        False,
    )

    # Entropy coded, LUFS gain: quantizer 0 skewed (ANS segment), 1 constant (single-symbol ANS
    # segment), 2 uniform (raw segment), so every segment mode is on disk.
    rng = np.random.default_rng(3)
    f = 200
    skewed = np.minimum(rng.geometric(0.3, size=f) - 1, 1023)
    constant = np.full(f, 17)
    uniform = rng.integers(0, 1024, size=f)
    cases["v1_entropy_n3_b10_lufs"] = (
        Codes(
            codes=torch.from_numpy(np.stack([skewed, constant, uniform]).astype(np.int64)),
            num_samples=f * 320,
            model_id="a1b2c3d4e5f60718",
            sample_rate=16000,
            frame_rate=50,
            codebook_bits=10,
            side_kind="lufs",
            side=[143],
        ),
        True,
    )

    # Context coded (version 2), RMS side info: held codes, codes near the last one and jumps, so
    # the repeat mass, the context tables and the range coder's carries are all on disk.
    rng = np.random.default_rng(5)
    f = 240
    rows = np.empty((3, f), dtype=np.int64)
    for q in range(3):
        x = int(rng.integers(0, 1024))
        for t in range(f):
            u = rng.random()
            x = x if u < 0.3 else (x // 64 * 64 + int(rng.integers(0, 64))) if u < 0.8 else int(rng.integers(0, 1024))
            rows[q, t] = x
    cases["v2_context_n3_b10_rms"] = (
        Codes(
            codes=torch.from_numpy(rows),
            num_samples=f * 320 - 100,
            model_id=CONTEXT_MODEL,
            sample_rate=16000,
            frame_rate=50,
            codebook_bits=10,
            side_kind="rms",
            side=[int(v) for v in rng.integers(0, 256, size=8)],
        ),
        "context",
    )
    return cases


def expected_json(codes: Codes, entropy: bool | str, data: bytes) -> dict:
    return {
        "format_version": data[4],
        "entropy": bool(entropy),
        "coding": {False: "plain", True: "static_ans", "context": "context"}[entropy],
        "codes": codes.codes.tolist(),
        "num_samples": codes.num_samples,
        "model_id": codes.model_id,
        "sample_rate": codes.sample_rate,
        "frame_rate": codes.frame_rate,
        "codebook_bits": codes.codebook_bits,
        "side_kind": codes.side_kind,
        "side": codes.side,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite existing golden files")
    args = parser.parse_args()
    for name, (codes, entropy) in golden_cases().items():
        tcd, js = HERE / f"{name}.tcd", HERE / f"{name}.json"
        if (tcd.exists() or js.exists()) and not args.force:
            print(f"keep  {tcd.name} (exists; --force to overwrite)")
            continue
        if entropy == "context":
            if not TABLES.exists():
                golden_tables().save(TABLES)
            data = write_bitstream(codes, tables=ContextTables.load(TABLES))
        else:
            data = write_bitstream(codes, entropy=entropy)
        tcd.write_bytes(data)
        js.write_text(json.dumps(expected_json(codes, entropy, data)) + "\n")
        print(f"wrote {tcd.name} ({len(data)} bytes) and {js.name}")


if __name__ == "__main__":
    main()
