#!/usr/bin/env python
"""Give a trained model a new (e.g. frame-domain `stft`) encoder by distilling the old one.

    python scripts/distill_encoder.py --teacher telucodec/pretrained/telugu-v2 \
        --config docs/trials/stftenc.json --data_dir state/train_manifest.tsv \
        --val_speakers dev_te:cv_ce579334,... --cpu_minutes 5 --out state/trials/stftenc-init

The student (built from --config) takes over the teacher's quantizer and decoder, and its encoder
learns to reproduce the teacher's latent on random 1 s training crops (held-out speakers are left
out as in training). Writes a model folder that `train_codec.py --init_from` continues from, and
prints the relative latent error on validation crops before and after.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import torch

from telucodec.config import CodecConfig
from telucodec.errors import TelucodecError
from telucodec.formats.dataset import load_dataset
from telucodec.model.codec import Codec
from telucodec.model.loading import load_model
from telucodec.train.crops import CropDataset, RankBatches, crop_batches
from telucodec.train.distill import distill_encoder, latent_error, take_over


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, help="model folder, checkpoint or shipped model name")
    ap.add_argument("--config", required=True, help="the student's config JSON (its encoder is trained)")
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--val_speakers", default="", help="comma-separated speakers to leave out")
    ap.add_argument("--out", required=True, help="model folder to write")
    ap.add_argument("--cpu_minutes", type=float, default=5.0)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--learning_rate", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        return run(args)
    except TelucodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    teacher = load_model(args.teacher)
    config = CodecConfig.load(args.config)
    student = Codec(config)
    fresh = [k for k in take_over(student, teacher) if not k.startswith("encoder.")]
    if fresh:
        raise TelucodecError(f"{args.config}: the student's quantizer/decoder differ from the teacher's ({fresh[0]}, ...)")
    speakers = tuple(s for s in args.val_speakers.split(",") if s)
    data = load_dataset(args.data_dir, config.model.sample_rate, config.train.val_fraction, speakers)
    segment = config.model.sample_rate
    crops = CropDataset(data.train, segment, 10 ** 7, args.seed)
    steps = RankBatches(len(crops), rank=0, world=1, batch_size=args.batch_size,
                        steps=len(crops) // args.batch_size, start=0)
    batches = crop_batches(crops, steps, workers=0)
    held_out = CropDataset(data.val, segment, 32, args.seed + 1)
    check = torch.stack([held_out[i] for i in range(len(held_out))])
    before = latent_error(student, teacher, check)
    errors = distill_encoder(student, teacher, batches, args.learning_rate, args.cpu_minutes * 60)
    after = latent_error(student, teacher, check)
    student.save_pretrained(args.out)
    print(f"{len(errors)} steps; relative latent error on 32 validation crops {before:.4f} -> {after:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
