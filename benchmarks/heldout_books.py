"""Codebooks judged on unseen speakers: the first `--stages` stages of each `--books` model folder,
through one model's frozen encoder and decoder, on held-out clips (greedy search, no rate control,
no entropy coding: the books alone, at the raw bits of those stages).

    python benchmarks/heldout_books.py --model telugu-v7 --books telugu-v7:3,state/v8-fit:2 \
        --heldout state/heldout_te.tsv --every 9

Prints PESQ-WB, STOI and the latent's quantization error (dB re its energy) per folder. Session 15
(docs/training-log.md) used it to find that session 14's 2 x 15-bit books had been fitted with the
held-out speakers' frames among their training frames.
"""

from __future__ import annotations

import argparse
import json

import torch
from codebook_size import measure  # benchmarks/, the script's folder, is on sys.path

import telucodec
from telucodec.formats.dataset import index_audio, load_clip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="telugu-v7", help="whose encoder and decoder")
    ap.add_argument("--books", required=True, help="FOLDER:STAGES,... (model folders or shipped names)")
    ap.add_argument("--heldout", required=True, help="held-out speakers' clips (folder or manifest)")
    ap.add_argument("--every", type=int, default=9, help="measure every Nth held-out clip")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = telucodec.load_model(a.model).eval()
    clips = [load_clip(item, model.sample_rate).wav for item in list(index_audio(a.heldout))[:: a.every]]
    for spec in a.books.split(","):
        folder, _, stages = spec.rpartition(":")
        books = [b.float() for b in telucodec.load_model(folder).quantizer.stage_codebooks()[: int(stages)]]
        result = measure(model, clips, books, None)
        print(json.dumps({"books": folder, "stages": int(stages), "bits": sum(b.shape[0].bit_length() - 1 for b in books),
                          "clips": len(clips), **{k: round(v, 4) for k, v in result.items()}}), flush=True)


if __name__ == "__main__":
    main()
