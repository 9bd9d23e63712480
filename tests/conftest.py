"""Shared fixtures: real example clips and a tiny model trained here through the real CLI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"

torch.set_num_threads(1)
# `--runtime` / `runtime=` default to "auto", which exports a model to ONNX the first time it is
# used (seconds per model, cached under ~/.cache): the suite runs PyTorch unless a test asks
# for a runtime itself (tests/test_runtime.py).
os.environ.setdefault("TELUCODEC_RUNTIME", "torch")

def as_unprivileged(cmd: list[str]) -> list[str]:
    """`cmd` run so that file permissions apply to it. As root: root without the capabilities that
    override them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a chmod 000 file or folder is refused
    while the checkout stays readable wherever it is cloned (a private folder other users cannot
    enter included); skipped only where setpriv is missing."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: file permissions cannot be tested")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]


@pytest.fixture(scope="session")
def example_clips() -> list[Path]:
    clips = sorted(EXAMPLES.rglob("*.flac"))
    assert len(clips) >= 10, "examples/te_cv should hold the CC0 Common Voice clips"
    return clips


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> Path:
    """A `tiny` codec trained for 2 short epochs on the example clips; returns the experiment folder
    (its `model/` subfolder is a model folder, `checkpoints/last.pt` a training checkpoint)."""
    from telucodec.cli import main

    root = tmp_path_factory.mktemp("tiny_run")
    rc = main(["train", "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(root), "--experiment_name", "tiny",
               "--config", "tiny", "--batch_size", "8", "--num_epochs", "2", "--steps_per_epoch", "15",
               "--learning_rate", "1e-3", "--quiet"])
    assert rc == 0
    return root / "tiny"
