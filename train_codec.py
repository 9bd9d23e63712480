#!/usr/bin/env python
"""The seed's entry point, kept verbatim-compatible:

    python train_codec.py --data_dir DATA --checkpoint_dir CKPT --batch_size 16 \
        --num_epochs 100 --learning_rate 1e-5 --experiment_name telucodec_production_unbounded

It runs exactly `telucodec train` with the same flags (works under torchrun for DDP too)."""

import sys

from telucodec.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
