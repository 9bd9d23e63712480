#!/usr/bin/env python
"""Convert Lyra v2's TFLite graphs into a telucodec model folder.

    python scripts/import_lyra.py LYRA_DIR OUT [--fp32]

LYRA_DIR holds soundstream_encoder.tflite, lyragan.tflite, quantizer.tflite and LICENSE (google/lyra
v1.3.2, lyra/model_coeffs/; a copy ships in telucodec/third_party/lyra). OUT becomes an ordinary
model folder (config.json + model.safetensors + LICENSE + NOTICE) that `--model OUT` encodes,
decodes, evaluates, streams and exports, and that `train_codec.py --init_from OUT` fine-tunes.
The shipped `telucodec/pretrained/lyra-v2` was made by this script (fp16 weights).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import torch

from telucodec.errors import TelucodecError
from telucodec.model.lyra_import import import_lyra


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Convert Lyra v2's TFLite graphs into a telucodec model folder.")
    p.add_argument("lyra_dir", help="folder with the three .tflite files and LICENSE")
    p.add_argument("out", help="model folder to write (must not exist)")
    p.add_argument("--fp32", action="store_true", help="store float32 weights (default: fp16, half the size)")
    a = p.parse_args(argv)
    if Path(a.out).exists():
        print(f"error: {a.out}: already exists; choose another folder", file=sys.stderr)
        return 2
    try:
        model = import_lyra(a.lyra_dir, a.out, torch.float32 if a.fp32 else torch.float16)
    except TelucodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: model id {model.model_id}, {sum(t.numel() for t in model.parameters()) / 1e6:.2f} M parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
