"""Run under torchrun by tests/test_gpu_path.py: train through telucodec's own Trainer, then save
what this rank holds (generator weights, its quantizer statistics, the discriminators, its random
state) to OUT/rank{RANK}.pt, so the test can compare the ranks.

    torchrun --nproc_per_node 2 tests/ddp_worker.py OUT [telucodec train flags]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from telucodec.cli import build_parser
from telucodec.model.training_state import training_state
from telucodec.train.loop import Trainer


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    trainer = Trainer(build_parser().parse_args(["train", *argv[1:]]))
    trainer.setup()
    rc = trainer.run()
    stats = {k: v for k, v in training_state(trainer.model).items() if not k.endswith("kmeans_samples")}
    torch.save({"rc": rc, "model": trainer.model.state_dict(), "stats": stats,
                "discriminators": trainer.discs.state_dict() if trainer.discs is not None else {},
                "rng_cpu": torch.get_rng_state()}, out / f"rank{trainer.rank}.pt")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
