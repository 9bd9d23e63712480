"""Write the golden `.tcd` files and the codes they must decode to (run once; never casually).

    .venv/bin/python tests/golden/make_golden.py           # writes only files that do not exist
    .venv/bin/python tests/golden/make_golden.py --force   # only when FORMAT_VERSION changes

Golden files are the promise that bytes written today decode in every later version: once
committed they are never regenerated for the same format version. A new format version adds new
files (e.g. `v2_*.tcd`) next to these; the v1 files stay and must keep decoding.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from telucodec.formats.bitstream import FORMAT_VERSION, write_bitstream
from telucodec.formats.codes import Codes

HERE = Path(__file__).resolve().parent


def golden_cases() -> dict[str, tuple[Codes, bool]]:
    """name -> (codes, entropy): small clips from fixed seeds covering every field."""
    cases: dict[str, tuple[Codes, bool]] = {}

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
    return cases


def expected_json(codes: Codes, entropy: bool) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "entropy": entropy,
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
        data = write_bitstream(codes, entropy=entropy)
        tcd.write_bytes(data)
        js.write_text(json.dumps(expected_json(codes, entropy)) + "\n")
        print(f"wrote {tcd.name} ({len(data)} bytes) and {js.name}")


if __name__ == "__main__":
    main()
