"""`--resume` tells the truth: a changed flag is refused by name or applied and said, the
learning-rate schedule keeps its length, and each rank gets its own random state back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from telucodec.cli import main
from telucodec.model.loading import load_checkpoint
from telucodec.train import resume

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"
BASE = ("--config", "tiny", "--batch_size", "2", "--learning_rate", "1e-3", "--warmup_steps", "1",
        "--steps_per_epoch", "4", "--quiet")


def train(ckpt: Path, name: str, *flags: str) -> int:
    return main(["train", "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(ckpt), "--experiment_name", name, *flags])


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    """A tiny run of one epoch (4 steps, a 1-step warm-up then cosine over the 4 steps)."""
    ckpt = tmp_path_factory.mktemp("resume")
    assert train(ckpt, "run", *BASE, "--num_epochs", "1") == 0
    return ckpt / "run"


def copy_of(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / "run")
    return tmp_path


@pytest.mark.parametrize("flags, named", [
    (("--batch_size", "4"), "--batch_size (train.batch_size 2 -> 4)"),
    (("--seed", "9"), "--seed (train.seed 1234 -> 9)"),
    (("--warmup_steps", "5"), "--warmup_steps (train.warmup_steps 1 -> 5)"),
    (("--steps_per_epoch", "3"), "--steps_per_epoch (train.steps_per_epoch 4 -> 3)"),
    (("--val_speakers", "cv_ce579334"), "--val_speakers (train.val_speakers () -> ('cv_ce579334',))"),
    (("--amplitude", "rms"), "--amplitude (model.amplitude 'none' -> 'rms')"),
    (("--init_from", "telugu-v4"), "--init_from telugu-v4 (the weights come from the checkpoint)"),
    (("--config", "small"), "--config small (model.channels 8 -> 16)"),
])
def test_resume_refuses_each_flag_that_would_change_the_run_by_name(one_epoch, tmp_path, capsys, flags, named):
    before = {p.name: p.read_bytes() for p in (one_epoch / "checkpoints").iterdir()}
    config = (one_epoch / "config.json").read_text()
    capsys.readouterr()
    assert train(one_epoch.parent, "run", "--resume", "--num_epochs", "2", *flags) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and "refused" in err[0], err
    assert {p.name: p.read_bytes() for p in (one_epoch / "checkpoints").iterdir()} == before  # nothing touched
    assert (one_epoch / "config.json").read_text() == config


def test_resume_with_the_run_s_own_flags_is_not_a_change(one_epoch, tmp_path):
    ckpt = copy_of(one_epoch, tmp_path)
    assert train(ckpt, "run", *BASE, "--resume", "--num_epochs", "2") == 0  # every flag as the run had it
    assert [r["epoch"] for r in rows(ckpt / "run")] == [1, 2]


def test_resume_applies_the_safe_changes_and_says_each(one_epoch, tmp_path, capsys):
    ckpt = copy_of(one_epoch, tmp_path)
    capsys.readouterr()
    assert train(ckpt, "run", "--resume", "--num_epochs", "2", "--learning_rate", "5e-4", "--precision", "bf16",
                 "--adversarial_after", "0", "--quiet") == 0
    out = capsys.readouterr().out
    assert "resume: --learning_rate sets learning_rate 0.0005 (was 0.001) from step 4 on" in out
    assert "resume: --precision sets precision 'bf16' (was 'fp32') from step 4 on" in out
    assert "resume: --adversarial_after sets adversarial_after 0 (was -1) from step 4 on; the discriminators start fresh" in out
    state = load_checkpoint(ckpt / "run" / "checkpoints" / "last.pt")
    assert state["config"]["train"]["learning_rate"] == 5e-4 and state["config"]["train"]["precision"] == "bf16"
    assert "discriminators" in state and "loss/discriminator" in rows(ckpt / "run")[1]


def test_a_longer_run_stays_at_the_schedule_s_end_instead_of_rising_again(one_epoch, tmp_path, capsys):
    ckpt = copy_of(one_epoch, tmp_path)
    capsys.readouterr()
    assert train(ckpt, "run", *BASE, "--resume", "--num_epochs", "3") == 0
    out = capsys.readouterr().out
    assert "resume: --num_epochs 3 runs 8 steps past the 4-step schedule the run was planned with" in out
    assert "stays at its end value, 1.0e-04" in out
    lrs = [r["lr"] for r in rows(ckpt / "run")]
    # epoch 1 ended 3/4 of the way down the cosine; stretching it to 12 steps would have sent it up
    assert lrs[0] > 1e-4 and lrs[1:] == [pytest.approx(1e-4)] * 2
    assert load_checkpoint(ckpt / "run" / "checkpoints" / "last.pt")["schedule_steps"] == 4


def test_each_rank_gets_its_own_random_state_back():
    states = []
    for seed in (5, 6):
        torch.manual_seed(seed)
        states.append(torch.get_rng_state())
    saved = {"rng_cpu": states[0], "rng_cpu_ranks": states}
    cpu = torch.device("cpu")
    assert resume.restore_rng_states(saved, 1, 2, cpu, seed=1) == []
    assert torch.equal(torch.get_rng_state(), states[1])
    assert resume.restore_rng_states(saved, 0, 2, cpu, seed=1) == []
    assert torch.equal(torch.get_rng_state(), states[0])
    # a checkpoint from before states were kept per rank holds rank 0's: rank 1 restarts from seed + rank, said
    old = {"rng_cpu": states[0]}
    notes = resume.restore_rng_states(old, 1, 2, cpu, seed=1)
    torch.manual_seed(2)
    expected = torch.get_rng_state()
    resume.restore_rng_states(old, 1, 2, cpu, seed=1)
    assert torch.equal(torch.get_rng_state(), expected) and "ranks 1..1 restart" in notes[0]
    gathered = resume.rng_states(cpu, 1)
    assert torch.equal(gathered["rng_cpu_ranks"][0], torch.get_rng_state()) and gathered["rng_cuda_ranks"] is None
