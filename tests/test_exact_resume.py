"""A run stopped at any step and resumed ends exactly where the uninterrupted run ends, on data
holding an unusable clip (corrupt bytes) and a silent one that are found only when a crop first
reads them: the same weights, the same per-epoch losses and gradients, the same skipped.tsv
(issue 33 items 5 and 15). Crops do not depend on which process read what before, so the same
holds with or without DataLoader workers."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from telucodec.cli import main
from telucodec.config import get_config
from telucodec.model.loading import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"
STEPS, EPOCHS = 3, 2
COLUMNS = ("epoch", "step", "train_loss", "grad_norm", "lr", "val_loss")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """(a manifest folder of 3 training clips, a corrupt and a silent one, 1 validation clip;
    a fast tiny config). The manifest gives each clip's length, so no header is read before
    training: the bad clips are found by the crops, long enough to be drawn often."""
    base = tmp_path_factory.mktemp("exact")
    data = base / "data"
    data.mkdir()
    rows = []
    for i, clip in enumerate(sorted(EXAMPLES.rglob("*.flac"))[:4]):
        shutil.copy(clip, data / clip.name)
        rows.append((clip.name, sf.info(clip).duration, "val" if i == 3 else "a"))
    (data / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 40)
    sf.write(data / "silent.wav", np.zeros(16000 * 8, dtype=np.float32), 16000)
    rows += [("corrupt.flac", 20.0, "a"), ("silent.wav", 20.0, "a")]
    (data / "manifest.tsv").write_text("path\tseconds\tspeaker\n" + "".join(f"{p}\t{s}\t{k}\n" for p, s, k in rows))
    cfg = get_config("tiny")
    cfg.train.pesq_every, cfg.train.samples_every, cfg.train.val_max_clips, cfg.train.val_max_seconds = 0, 1000, 1, 1.0
    cfg.save(base / "fast.json")
    return data, base / "fast.json"


def run(corpus: tuple[Path, Path], ckpt: Path, workers: int, *extra: str) -> None:
    data, config = corpus
    rc = main(["train", "--data_dir", str(data), "--checkpoint_dir", str(ckpt), "--experiment_name", "run",
               "--config", str(config), "--batch_size", "2", "--steps_per_epoch", str(STEPS), "--num_epochs",
               str(EPOCHS), "--warmup_steps", "1", "--val_speakers", "val", "--seed", "3", "--quiet",
               "--num_workers", str(workers), *extra])
    assert rc == 0


def outcome(folder: Path) -> tuple[dict, list[dict], list[str]]:
    """(final weights, the metrics columns a resume must reproduce, skipped.tsv's lines)."""
    state = load_checkpoint(folder / "checkpoints" / "last.pt")
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    kept = [{k: v for k, v in r.items() if k in COLUMNS or k.startswith("loss/")} for r in rows]
    return state["model"], kept, (folder / "skipped.tsv").read_text().splitlines()


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory) -> dict[int, tuple]:
    runs = {}
    for workers in (0, 1):
        ckpt = tmp_path_factory.mktemp(f"whole{workers}")
        run(corpus, ckpt, workers)
        runs[workers] = outcome(ckpt / "run")
    return runs


def same(a: tuple, b: tuple) -> None:
    weights_a, rows_a, skipped_a = a
    weights_b, rows_b, skipped_b = b
    assert weights_a.keys() == weights_b.keys()
    differ = [k for k in weights_a if not torch.equal(weights_a[k], weights_b[k])]
    assert differ == [], differ[:5]
    assert rows_a == rows_b
    assert skipped_a == skipped_b


def test_the_bad_clips_are_found_and_workers_do_not_change_the_crops(uninterrupted):
    _, _, skipped = uninterrupted[0]
    assert {Path(line.split("\t")[0]).name for line in skipped[1:]} == {"corrupt.flac", "silent.wav"}
    same(uninterrupted[0], uninterrupted[1])


@settings(max_examples=5, deadline=None)
@given(kills=st.lists(st.integers(1, STEPS * EPOCHS - 1), min_size=1, max_size=2, unique=True).map(sorted),
       workers=st.sampled_from([0, 1]))
def test_a_run_stopped_anywhere_and_resumed_ends_as_the_uninterrupted_run(corpus, uninterrupted, kills, workers):
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp)
        run(corpus, ckpt, workers, "--max_steps", str(kills[0]))
        for k in kills[1:]:
            run(corpus, ckpt, workers, "--resume", "--max_steps", str(k))
        run(corpus, ckpt, workers, "--resume")
        same(outcome(ckpt / "run"), uninterrupted[workers])
