"""`--resume` tells the truth: a changed flag is refused by name or applied and said, the
learning-rate schedule keeps its length, and each rank gets its own random state back."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# ---- issue 33 item 4: a resume on other data, another process count or batch size -------------

FOLDER_FLAGS = ("--config", "tiny", "--batch_size", "4", "--learning_rate", "1e-3", "--warmup_steps", "1", "--quiet",
                "--num_epochs", "1", "--num_workers", "0")


def folder_train(data: Path, ckpt: Path, *flags: str) -> int:
    return main(["train", "--data_dir", str(data), "--checkpoint_dir", str(ckpt), "--experiment_name", "run", *flags])


@pytest.fixture(scope="module")
def stopped_on_a_folder(tmp_path_factory) -> Path:
    """A one-epoch run on a folder of 5 clips (steps per epoch from the data), stopped mid-epoch."""
    base = tmp_path_factory.mktemp("folder")
    data = base / "data"
    data.mkdir()
    for clip in sorted(EXAMPLES.rglob("*.flac"))[:5]:
        shutil.copy(clip, data / clip.name)
    assert folder_train(data, base / "ckpt", *FOLDER_FLAGS, "--max_steps", "2") == 0
    state = load_checkpoint(base / "ckpt" / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 2 and state["epoch"] == 0
    return base


def clone(base: Path, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(base / "data", tmp_path / "data")
    shutil.copytree(base / "ckpt", tmp_path / "ckpt")
    return tmp_path / "data", tmp_path / "ckpt"


def listing(data: Path) -> list[tuple[str, float]]:
    """The data as the crops see it: each file's name and length."""
    from telucodec.formats.audio import audio_seconds

    return sorted((p.name, audio_seconds(p)) for p in data.iterdir())


def _change(data: Path, op: str, k: int, other: Path) -> None:
    files = sorted(data.iterdir())
    victim = files[k % len(files)]
    if op == "remove":
        victim.unlink()
    elif op == "add":
        shutil.copy(other, data / f"added_{k}.flac")
    elif op == "replace":
        shutil.copy(other, victim)
    elif op == "rename":
        victim.rename(victim.with_name("renamed_" + victim.name))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["remove", "add", "replace", "rename", "touch"]), st.integers(0, 9),
                              st.integers(5, 14)), max_size=2),
       moved=st.booleans())
def test_resume_refuses_other_data_by_its_contents_not_its_name(stopped_on_a_folder, tmp_path_factory, ops, moved):
    """The same files (by name and length) under another --data_dir are the run's data; any file
    added, removed, renamed or of another length is refused in one line naming old and new, and
    nothing of the experiment is touched."""
    tmp = tmp_path_factory.mktemp("changed")
    data, ckpt = clone(stopped_on_a_folder, tmp)
    before = listing(data)
    clips = sorted(EXAMPLES.rglob("*.flac"))
    for op, k, other in ops:
        if op == "touch":  # new bytes, same name and length: the same data for the crops
            (data / sorted(p.name for p in data.iterdir())[k % len(list(data.iterdir()))]).touch()
        elif len(list(data.iterdir())) > 2 or op != "remove":
            _change(data, op, k, clips[other])
    if moved:
        data = data.rename(tmp / "elsewhere")
    changed = listing(data) != before
    saved = {p.name: p.read_bytes() for p in (ckpt / "run" / "checkpoints").iterdir()}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = folder_train(data, ckpt, "--resume", "--quiet", "--num_workers", "0")
    if not changed:
        assert rc == 0, err.getvalue()
        return
    assert rc == 1
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "--data_dir" in lines[0] and "--accept_changed_data" in lines[0], lines
    old = load_checkpoint(ckpt / "run" / "checkpoints" / "last.pt")["data"]
    assert old["fingerprint"] in lines[0] and f"{old['clips']} clips" in lines[0]
    assert {p.name: p.read_bytes() for p in (ckpt / "run" / "checkpoints").iterdir()} == saved


def test_accepted_other_data_says_how_the_epoch_and_the_schedule_change(stopped_on_a_folder, tmp_path, capsys):
    data, ckpt = clone(stopped_on_a_folder, tmp_path)
    for clip in sorted(EXAMPLES.rglob("*.flac"))[5:8]:
        shutil.copy(clip, data / clip.name)  # more audio: more steps per epoch
    old = load_checkpoint(ckpt / "run" / "checkpoints" / "last.pt")
    capsys.readouterr()
    assert folder_train(data, ckpt, "--resume", "--quiet", "--num_workers", "0", "--accept_changed_data") == 0
    out = capsys.readouterr().out
    new_steps = json.loads((ckpt / "run" / "summary.json").read_text())["steps_per_epoch"]
    assert new_steps != old["steps_per_epoch"]
    assert f"an epoch is now {new_steps} steps (was {old['steps_per_epoch']})" in out
    end = load_checkpoint(ckpt / "run" / "checkpoints" / "last.pt")
    line = next(x for x in out.splitlines() if "-step schedule" in x)
    assert f"ends at step {end['step']}" in line, line  # the schedule said is the schedule run
    assert end["data"]["fingerprint"] != old["data"]["fingerprint"]
    assert folder_train(data, ckpt, "--resume", "--quiet", "--num_epochs", "2", "--num_workers", "0") == 0  # now its data


def _fake_two_processes(ckpt: Path) -> dict:
    """The checkpoint as a 2-process DDP run would have left it (its world size and its ranks'
    random states; its epoch was half as many steps)."""
    path = ckpt / "run" / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    state["world_size"] = 2
    state["rng_cpu_ranks"] = [state["rng_cpu"], state["rng_cpu"]]
    steps = state.get("steps_per_epoch") or state["schedule_steps"] // state["config"]["train"]["num_epochs"]
    state["steps_per_epoch"] = max(3, steps // 2)
    torch.save(state, path)
    return state


def test_resume_refuses_another_process_count_unless_accepted(stopped_on_a_folder, tmp_path, capsys):
    data, ckpt = clone(stopped_on_a_folder, tmp_path)
    faked = _fake_two_processes(ckpt)
    capsys.readouterr()
    assert folder_train(data, ckpt, "--resume", "--quiet", "--num_workers", "0") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 processes" in err[0] and "1 process" in err[0] and "--accept_changed_data" in err[0]
    assert folder_train(data, ckpt, "--resume", "--quiet", "--num_workers", "0", "--accept_changed_data") == 0
    out = capsys.readouterr().out
    steps = json.loads((ckpt / "run" / "summary.json").read_text())["steps_per_epoch"]
    assert "2 processes -> 1" in out and f"an epoch is now {steps} steps (was {faked['steps_per_epoch']})" in out
    assert f"epoch 1 continues at step {faked['step_in_epoch'] * steps // faked['steps_per_epoch']} of {steps}" in out
    end = load_checkpoint(ckpt / "run" / "checkpoints" / "last.pt")
    line = next(x for x in out.splitlines() if "-step schedule" in x)
    assert f"ends at step {end['step']}" in line and end["world_size"] == 1, line


def test_resume_takes_another_batch_size_only_when_accepted(stopped_on_a_folder, tmp_path, capsys):
    data, ckpt = clone(stopped_on_a_folder, tmp_path)
    capsys.readouterr()
    assert folder_train(data, ckpt, "--resume", "--quiet", "--batch_size", "2", "--num_workers", "0") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batch_size (train.batch_size 4 -> 2)" in err[0] and "--accept_changed_data" in err[0]
    assert folder_train(data, ckpt, "--resume", "--quiet", "--batch_size", "2", "--num_workers", "0",
                        "--accept_changed_data") == 0
    out = capsys.readouterr().out
    assert "resume: --batch_size sets batch_size 2 (was 4) from step 2 on" in out and "an epoch is now" in out
    assert load_checkpoint(ckpt / "run" / "checkpoints" / "last.pt")["config"]["train"]["batch_size"] == 2


@pytest.mark.slow
def test_a_ddp_run_stopped_mid_epoch_resumes_under_ddp_and_refuses_one_process(tmp_path, capsys):
    """Two processes on gloo stop mid-epoch (the checkpoint gathers every rank's state); a start
    with one process is refused naming both counts; under torchrun again the run finishes."""
    import os
    import subprocess
    import sys

    torchrun = Path(sys.executable).parent / "torchrun"
    flags = ["--data_dir", str(EXAMPLES), "--checkpoint_dir", str(tmp_path), "--experiment_name", "ddp",
             "--device", "cpu", "--quiet", "--threads", "1", "--num_workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def ddp(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(torchrun), "--nproc_per_node", "2", str(ROOT / "train_codec.py"), *flags, *extra],
                              capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)

    first = ddp(*BASE, "--num_epochs", "2", "--steps_per_epoch", "3", "--max_steps", "4")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "(under torchrun, with 2 processes as this run)" in first.stdout
    state = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and state["step_in_epoch"] == 1 and state["epoch_sums"]["steps"] == 1
    capsys.readouterr()
    assert main(["train", *flags, "--resume"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the run trained with 2 processes, this start has 1 process" in err[0], err
    second = ddp("--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    assert load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["step"] == 6
    assert [r["epoch"] for r in rows(tmp_path / "ddp")] == [1, 2]
