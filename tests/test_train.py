"""End-to-end training tests on the real example clips (tiny preset, short runs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from telucodec.cli import main
from telucodec.config import get_config
from telucodec.model.codec import Codec
from telucodec.model.loading import load_checkpoint
from telucodec.train.crops import CropDataset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"
DESIGN_KEYS = {"epoch", "step", "train_loss", "val_loss", "output_min", "output_max", "rms_ratio", "snr_db",
               "si_sdr_db", "mel_distance", "codebook_usage", "codebook_perplexity", "grad_norm", "lr", "seconds",
               "warnings"}


def train(data: Path, ckpt: Path, name: str, *extra: str) -> int:
    return main(["train", "--data_dir", str(data), "--checkpoint_dir", str(ckpt), "--experiment_name", name,
                 "--config", "tiny", "--batch_size", "4", "--learning_rate", "1e-3", "--quiet", *extra])


def read_metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_two_epochs_loss_falls_and_metrics_complete(trained_tiny):
    rows = read_metrics(trained_tiny)
    assert len(rows) == 2
    for row in rows:
        assert DESIGN_KEYS <= set(row)
        assert any(k.startswith("loss/") for k in row)
        assert len(row["codebook_usage"]) == 8 and all(0 <= u <= 1 for u in row["codebook_usage"])
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert (trained_tiny / "checkpoints" / "last.pt").is_file()
    assert (trained_tiny / "checkpoints" / "best.pt").is_file()
    assert (trained_tiny / "model" / "model.safetensors").is_file()
    assert list((trained_tiny / "tensorboard").iterdir())
    assert list((trained_tiny / "samples").rglob("*.wav")) and list((trained_tiny / "samples").rglob("*.png"))
    assert rows[-1]["pesq_wb"] is not None  # PESQ/STOI ran on the last epoch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_tiny / "tensorboard")).Reload().Tags()
    assert "val/rms_ratio" in events["scalars"] and "loss/total" in events["scalars"]
    assert any("spectrogram" in t for t in events["images"]) and any("output" in t for t in events["audio"])


def test_seed_learning_rate_is_warned_about(tmp_path, capsys):
    assert train(EXAMPLES, tmp_path, "seedlr", "--num_epochs", "1", "--steps_per_epoch", "2",
                 "--learning_rate", "1e-5") == 0
    out = capsys.readouterr().out
    assert out.count("learning rate 1e-05 is far below") == 1  # said before training, not again after epoch 1
    assert out.count("WARNING: the warm-up") == 1
    assert any("learning rate" in w for w in read_metrics(tmp_path / "seedlr")[0]["warnings"])  # and kept in the log
    assert "beyond any codec" in out  # the truth about SNR, said before training


def test_refuses_to_overwrite_an_experiment(tmp_path, capsys):
    args = ("--num_epochs", "1", "--steps_per_epoch", "2")
    assert train(EXAMPLES, tmp_path, "exp", *args) == 0
    before = (tmp_path / "exp" / "metrics.jsonl").read_text()
    assert train(EXAMPLES, tmp_path, "exp", *args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    assert (tmp_path / "exp" / "metrics.jsonl").read_text() == before
    assert train(EXAMPLES, tmp_path, "exp", *args, "--overwrite") == 0


def test_resume_matches_an_uninterrupted_run(tmp_path):
    args = ("--num_epochs", "2", "--steps_per_epoch", "6", "--seed", "7")
    assert train(EXAMPLES, tmp_path, "whole", *args) == 0
    assert train(EXAMPLES, tmp_path, "split", *args, "--max_steps", "8") == 0  # stops mid-epoch 2
    partial = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert partial["step"] == 8 and partial["step_in_epoch"] == 2
    assert train(EXAMPLES, tmp_path, "split", *args, "--resume") == 0
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    assert [r["epoch"] for r in read_metrics(tmp_path / "split")] == [1, 2]
    # issue 33 item 15: epoch 2's train loss and gradient cover its 6 steps, not the 4 after the resume
    whole, split = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "split")
    columns = [k for k in whole[1] if k in ("train_loss", "grad_norm") or k.startswith("loss/")]
    assert len(columns) > 2 and [split[1][k] for k in columns] == pytest.approx([whole[1][k] for k in columns],
                                                                                  rel=1e-6)
    carried = partial["epoch_sums"]  # the 2 steps before the stop, and their time, counted in the row
    assert carried["steps"] == 2 and split[1]["seconds"] >= carried["seconds"] > 0


def test_old_architecture_checkpoint_is_refused(trained_tiny, tmp_path, capsys):
    state = load_checkpoint(trained_tiny / "checkpoints" / "last.pt")
    state["model"]["decoder.output_scale"] = torch.tensor(1.0)  # the seed's old design
    exp = tmp_path / "old"
    (exp / "checkpoints").mkdir(parents=True)
    torch.save(state, exp / "checkpoints" / "last.pt")
    # the checkpoint's own batch size: a changed flag would be refused first (tests/test_resume.py)
    assert train(EXAMPLES, tmp_path, "old", "--resume", "--num_epochs", "3", "--batch_size", "8") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "decoder.output_scale" in err[0] and "different architecture" in err[0]
    # --init_from loads what matches and names every tensor it did not use, unexpected ones too
    assert train(EXAMPLES, tmp_path, "init", "--init_from", str(exp / "checkpoints" / "last.pt"),
                 "--num_epochs", "1", "--steps_per_epoch", "1") == 0
    out = capsys.readouterr().out
    n = len(state["model"]) - 1  # every tensor of the model, not counting the extra one
    assert f"init_from {exp / 'checkpoints' / 'last.pt'}: loaded {n} of the model's {n} tensors" in out
    assert "ignored, not in this model (1; an older design of this architecture): decoder.output_scale" in out


def test_init_from_another_preset_says_so_instead_of_guessing(tmp_path, capsys):
    """Issue 27: `--init_from telugu-v4` into the tiny preset guessed "an older design?"."""
    from telucodec.model.loading import default_model_dir, init_config

    shipped = default_model_dir().name
    assert train(EXAMPLES, tmp_path, "other", "--init_from", shipped, "--num_epochs", "1",
                 "--steps_per_epoch", "1") == 0
    out = capsys.readouterr().out
    assert "older design" not in out
    source, ours = init_config(shipped).architecture(), get_config("tiny").architecture()
    first = next(k for k in sorted(set(source) | set(ours)) if source.get(k) != ours.get(k))
    assert f"another architecture: {first} {source.get(first, '-')} here {ours.get(first, '-')}" in out


def test_init_from_names_missing_and_misshaped_tensors(trained_tiny, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(trained_tiny / "model" / "model.safetensors"))
    dropped = sorted(weights)[:9]  # more than any short list would show
    for name in dropped:
        del weights[name]
    bent = next(k for k in sorted(weights) if weights[k].ndim == 3)
    weights[bent] = torch.zeros(*weights[bent].shape[:-1], weights[bent].shape[-1] + 1)
    weights["decoder.output_scale"] = torch.tensor(1.0)
    folder = tmp_path / "weights" / "partial"
    shutil.copytree(trained_tiny / "model", folder)
    save_file(weights, str(folder / "model.safetensors"))
    assert train(EXAMPLES, tmp_path, "partial", "--init_from", str(folder), "--num_epochs", "1",
                 "--steps_per_epoch", "1") == 0
    out = capsys.readouterr().out
    total = len(weights) - 1 + len(dropped)
    assert f"loaded {total - len(dropped) - 1} of the model's {total} tensors" in out
    assert f"kept fresh ({len(dropped)}): " + ", ".join(dropped) in out
    shaped = next(line for line in out.splitlines() if "mis-shaped, kept fresh (1" in line)
    assert shaped.endswith(f"): {bent}") and "decoder.output_scale" in out


def test_init_from_a_shallower_spectral_model_starts_new_blocks_as_identity(tmp_path, capsys):
    cfg = get_config("tiny")
    cfg.model.decoder, cfg.model.spectral_layers = "spectral", 2
    Codec(cfg).save_pretrained(tmp_path / "shallow")
    cfg.model.spectral_layers = 3
    cfg.save(tmp_path / "deeper.json")
    assert train(EXAMPLES, tmp_path, "deeper", "--config", str(tmp_path / "deeper.json"), "--init_from",
                 str(tmp_path / "shallow"), "--num_epochs", "1", "--steps_per_epoch", "1") == 0
    out = capsys.readouterr().out
    assert "kept fresh (9): decoder.blocks.2." in out
    assert "new blocks start as identity (layer scale 0): decoder.blocks.2\n" in out


def test_quantizer_warmup_decodes_the_unquantized_latent_first(tmp_path, monkeypatch):
    """train.quantizer_warmup_steps: the first steps decode the continuous latent, then the codes."""
    seen = []
    forward = Codec.forward

    def spy(self, wav, n_q=None, quantize=True):
        if self.training:
            seen.append(quantize)
        return forward(self, wav, n_q, quantize)

    monkeypatch.setattr(Codec, "forward", spy)
    cfg = get_config("tiny")
    cfg.train.quantizer_warmup_steps = 2
    cfg.save(tmp_path / "warm.json")
    assert train(EXAMPLES, tmp_path, "warm", "--config", str(tmp_path / "warm.json"),
                 "--num_epochs", "1", "--steps_per_epoch", "4") == 0
    assert seen == [False, False, True, True]


def test_discriminator_warmup_trains_only_the_critics_first(tmp_path):
    """With disc_warmup_steps the critics learn from the start, the generator gets their terms later."""
    cfg = get_config("tiny")
    cfg.train.adversarial_after, cfg.train.disc_warmup_steps = 0, 2
    cfg.train.disc_periods, cfg.train.disc_stft_sizes, cfg.train.disc_channels = (2,), (256,), 4
    cfg.save(tmp_path / "gan.json")
    assert train(EXAMPLES, tmp_path, "gan", "--config", str(tmp_path / "gan.json"),
                 "--num_epochs", "2", "--steps_per_epoch", "2") == 0
    first, second = read_metrics(tmp_path / "gan")
    assert "loss/discriminator" in first and "loss/adversarial" not in first
    assert "loss/discriminator" in second and "loss/adversarial" in second


def test_every_run_ends_with_a_closing_summary_and_a_complete_run_says_so(tmp_path, capsys):
    args = ("--num_epochs", "2", "--steps_per_epoch", "2")
    assert train(EXAMPLES, tmp_path, "sum", *args, "--max_steps", "3") == 0
    out = capsys.readouterr().out
    root = tmp_path / "sum"
    assert "training stopped: reached the step budget (--max_steps 3), after epoch 1 (epoch 2 partly done" in out
    assert f"best model:   {root / 'model'}  (epoch 1: val loss " in out
    resume = next(line for line in out.splitlines() if line.startswith("continue:"))
    assert f"--checkpoint_dir {tmp_path} --experiment_name sum --resume" in resume
    assert f"encode:       telucodec encode IN.wav OUT.tcd --model {root / 'model'}" in out

    assert train(EXAMPLES, tmp_path, "sum", "--resume") == 0
    out = capsys.readouterr().out
    assert "training done: finished all 2 epochs (--num_epochs), after epoch 2, step 4" in out
    assert "(raise --num_epochs to train further)" in out
    best = min(read_metrics(root), key=lambda r: r["val_loss"])
    assert f"(epoch {best['epoch']}: val loss {best['val_loss']:.4f}" in out

    metrics_before = (root / "metrics.jsonl").read_text()
    assert train(EXAMPLES, tmp_path, "sum", "--resume") == 1  # nothing left to do: not a silent exit 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already complete at epoch 2" in err[0] and "raise --num_epochs" in err[0]
    assert (root / "metrics.jsonl").read_text() == metrics_before
    assert train(EXAMPLES, tmp_path, "sum", "--resume", "--num_epochs", "3") == 0
    assert [r["epoch"] for r in read_metrics(root)] == [1, 2, 3]


def test_warmup_longer_than_the_run_is_said_and_tensorboard_media_are_thinned(tmp_path, capsys):
    assert train(EXAMPLES, tmp_path, "warm", "--num_epochs", "6", "--steps_per_epoch", "2",
                 "--warmup_steps", "200") == 0
    out = capsys.readouterr().out
    assert "WARNING: the warm-up (200 steps) is longer than this run (12 steps)" in out
    assert "12/200 of the requested 0.001" in out  # it never gets near the asked rate
    rows = read_metrics(tmp_path / "warm")
    assert any("warm-up (200 steps) is longer" in w for w in rows[0]["warnings"])
    assert rows[0]["lr"] == pytest.approx(1e-3 * 2 / 200) and rows[-1]["lr"] == pytest.approx(1e-3 * 12 / 200)
    assert "lr 1.0e-05: warm-up, step 2 of 200 (1% of the requested 0.001)" in out
    assert "lr 6.0e-05: warm-up, step 12 of 200 (6% of the requested 0.001)" in out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "warm" / "tensorboard"), size_guidance={"audio": 0, "images": 0}).Reload()
    assert len(events.Scalars("val/val_loss")) == 6  # scalars every epoch
    assert events.Tags()["audio"] == ["sample_0/output"]  # one example ...
    steps = [e.step for e in events.Audio("sample_0/output")]
    assert steps == [2, 4, 8, 12]  # ... at epochs 1, 2, 4 and the last, not all six
    assert all(e.length_frames <= 4 * 16000 for e in events.Audio("sample_0/output"))


def test_bad_files_are_skipped_and_listed(tmp_path, example_clips):
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    for clip in example_clips[:4]:
        shutil.copy(clip, data / clip.name)
    (data / "corrupt.wav").write_bytes(b"RIFF" + os.urandom(200))
    (data / "empty.flac").write_bytes(b"")
    sf.write(data / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    sf.write(data / "short.wav", 0.1 * np.ones(100, dtype=np.float32), 16000)
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(example_clips[5]), str(data / "nested" / "clip.mp3")],
                       check=True)
    (data / "nested" / "loop").symlink_to(data, target_is_directory=True)
    assert train(data, tmp_path, "bad", "--num_epochs", "1", "--steps_per_epoch", "2") == 0
    skipped = (tmp_path / "bad" / "skipped.tsv").read_text().splitlines()[1:]
    reasons = dict(line.split("\t") for line in skipped)
    # headers are read before the first step; a silent clip is found when a crop first reads it
    # (tests/test_corpus.py), so it is listed only if this short run drew it
    assert {"corrupt.wav", "empty.flac", "short.wav"} <= {Path(p).name for p in reasons}
    assert {Path(p).name for p in reasons} <= {"corrupt.wav", "empty.flac", "short.wav", "silent.wav"}
    assert "too short" in reasons[str(data / "short.wav")] and "empty" in reasons[str(data / "empty.flac")]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_a_failed_start_leaves_nothing_in_the_way_of_the_corrected_command(tmp_path, capsys):
    """Issue 27: a failed start left CKPT/NAME/, so the corrected command was told it "already
    exists" (and --resume that there is no checkpoint)."""
    ckpt, empty = tmp_path / "runs" / "ckpt", tmp_path / "empty"
    empty.mkdir()
    args = ("--num_epochs", "1", "--steps_per_epoch", "1")
    for data, extra in ((tmp_path / "nope", ()), (empty, ()), (EXAMPLES, ("--init_from", str(tmp_path / "no.pt")))):
        assert train(data, ckpt, "exp", *args, *extra) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert not (tmp_path / "runs").exists()  # nor the parent folders the run created
    (ckpt / "exp").mkdir(parents=True)  # a folder the user made stays (only what the run put in it goes)
    assert train(tmp_path / "nope", ckpt, "exp", *args) == 1
    assert (ckpt / "exp").is_dir() and _tree(ckpt / "exp") == []
    assert train(EXAMPLES, ckpt, "exp", *args) == 0  # the corrected command just runs
    kept = _tree(ckpt)
    assert "exp/checkpoints/last.pt" in kept
    capsys.readouterr()
    # an experiment with a checkpoint is never touched by a failing start
    assert train(tmp_path / "nope", ckpt, "exp", "--resume", "--num_epochs", "2") == 1
    assert train(tmp_path / "nope", ckpt, "exp", *args) == 1  # refused: already exists
    assert _tree(ckpt) == kept


def test_epoch_table_lines_up_and_samples_start_at_epoch_one(tmp_path, capsys):
    """Issue 27: the table reprinted its heading every epoch with shifting widths; samples/ stayed
    empty until epoch `samples_every`; "1 steps/epoch"."""
    assert train(EXAMPLES, tmp_path, "table", "--num_epochs", "3", "--steps_per_epoch", "1") == 0
    out = capsys.readouterr().out.splitlines()
    heads = [line for line in out if line.startswith("epoch |")]
    rows = [line for line in out if line.split("|")[0].strip().isdigit()]
    assert len(heads) == 1 and len(rows) == 3
    bars = [i for i, ch in enumerate(heads[0]) if ch == "|"]
    assert all([i for i, ch in enumerate(row) if ch == "|"] == bars for row in rows), "\n".join([heads[0], *rows])
    assert any("1 step/epoch x 3 epochs" in line for line in out)
    samples = sorted(p.name for p in (tmp_path / "table" / "samples").iterdir())
    assert samples[0] == "epoch_0001" and "epoch_0003" in samples  # tiny: samples_every 2, the first and the last


def test_folder_without_usable_audio_is_one_line_error(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.wav").write_bytes(b"not audio")
    assert train(tmp_path / "d", tmp_path, "none", "--num_epochs", "1") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no usable audio" in err[0]


def test_nan_stops_at_once_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    assert train(EXAMPLES, tmp_path, "nan", "--num_epochs", "1", "--steps_per_epoch", "3") == 0
    last = tmp_path / "nan" / "checkpoints" / "last.pt"
    good = last.read_bytes()
    original = CropDataset.__getitem__

    def poisoned(self, index):
        x = original(self, index)
        return x * float("nan") if index == 5 else x

    monkeypatch.setattr(CropDataset, "__getitem__", poisoned)
    assert train(EXAMPLES, tmp_path, "nan", "--resume", "--num_epochs", "2") == 3
    err = capsys.readouterr().err
    assert "step 4" in err and "non-finite" in err and "last good checkpoint" in err
    assert last.read_bytes() == good
    assert load_checkpoint(last)["step"] == 3


def overfit(tmp_path: Path, *extra: str) -> int:
    return main(["train", "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(tmp_path), "--experiment_name", "of",
                 "--overfit_check", "--threads", "1", *extra])


def test_overfit_check_reports_a_verdict_and_tells_a_low_rate_from_a_broken_pipeline(tmp_path, capsys):
    rc = overfit(tmp_path, "--config", "tiny", "--learning_rate", "1e-5", "--max_steps", "60")
    out = capsys.readouterr().out
    assert rc == 1 and "overfit check FAILED" in out and "learning rate 1e-05 is too low" in out
    # the same clip, briefly, at the reference rate: it learns there, so the rate is the cause
    assert "trying the same clip at the reference learning rate 0.001" in out
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("overfit check: passes at 0.001 in "), verdict
    assert "your learning rate 1e-05 is the cause" in verdict
    start, end = (float(v) for v in verdict.split("mel distance ")[1].split(",")[0].split(" -> "))
    level = float(verdict.split("level ")[1].split("x")[0])
    assert end <= 0.5 * start and 0.7 <= level <= 1.4
    assert not (tmp_path / "of").exists()  # the check writes no experiment


def test_overfit_check_fails_a_pipeline_whose_decoder_output_is_cut_off(tmp_path, capsys, monkeypatch):
    """A pipeline broken on purpose: the output is detached, so no reconstruction loss reaches the
    decoder (only the quantizer's commitment term trains). It must fail, and say what is stuck."""
    from dataclasses import replace as replace_fields

    forward = Codec.forward

    def cut_off(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        return replace_fields(out, wav=out.wav.detach(), wav_normalized=out.wav_normalized.detach())

    monkeypatch.setattr(Codec, "forward", cut_off)
    rc = overfit(tmp_path, "--config", "tiny", "--learning_rate", "1e-3", "--max_steps", "150")
    out = capsys.readouterr().out
    assert rc == 1, out[-2000:]
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("overfit check FAILED: ") and "the clip's mel distance stays at" in verdict, verdict


@pytest.mark.slow
def test_overfit_check_passes_with_the_default_preset_on_the_example_clips(tmp_path, capsys):
    """Issue 27: with the default preset the check said "loss falls but SNR stays at 0.0 dB" and
    "the pipeline does not learn this clip" of the recipe the shipped models come from."""
    rc = overfit(tmp_path)  # no --config: the default preset, the default budget (3 min)
    out = capsys.readouterr().out
    assert "preset small" in out and rc == 0, out[-3000:]
    assert out.strip().splitlines()[-1] == "overfit check PASSED: the pipeline learns this clip"


@pytest.mark.slow
def test_ddp_two_processes_on_gloo(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", str(ROOT / "train_codec.py"), "--data_dir", str(EXAMPLES),
           "--checkpoint_dir", str(tmp_path), "--experiment_name", "ddp", "--config", "tiny", "--batch_size", "4",
           "--num_epochs", "2", "--steps_per_epoch", "3", "--learning_rate", "1e-3", "--device", "cpu", "--quiet",
           "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DDP x2" in proc.stdout
    rows = read_metrics(tmp_path / "ddp")
    assert [r["epoch"] for r in rows] == [1, 2]  # rank 0 alone writes
    assert load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["step"] == 6


def test_sigterm_saves_a_resumable_checkpoint(tmp_path):
    """A preempted machine (SIGTERM) or Ctrl-C stops after the current step with a checkpoint."""
    import signal
    import time

    cmd = [sys.executable, str(ROOT / "train_codec.py"), "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(tmp_path),
           "--experiment_name", "sig", "--config", "tiny", "--batch_size", "2", "--num_epochs", "1",
           "--steps_per_epoch", "100000", "--learning_rate", "1e-3", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "sig" / "summary.json").exists():
        time.sleep(0.2)
    time.sleep(3)  # some steps
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-1000:]
    assert "SIGTERM: stopping after this step" in out
    assert "training stopped: stopped by SIGTERM (a checkpoint was written first), after epoch 0" in out
    assert "--experiment_name sig --resume" in out and "best model:   none yet" in out
    state = load_checkpoint(tmp_path / "sig" / "checkpoints" / "last.pt")
    assert state["step"] >= 1 and state["step_in_epoch"] == state["step"]


@pytest.mark.parametrize("schedule", ["cosine", "exponential", "constant"])
def test_learning_rate_schedule_warms_up_then_decays_to_its_floor(schedule):
    from dataclasses import replace

    from telucodec.train.optim import decay_factor, lr_factor

    tc = replace(get_config("tiny").train, lr_schedule=schedule, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(step, 110, tc) for step in range(120)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)  # linear warm-up
    after = factors[10:]
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:]))  # never rises after warm-up
    floor = 1.0 if schedule == "constant" else 0.1
    assert after[0] == pytest.approx(1.0) and after[-1] == pytest.approx(floor)
    # the distillation runs the same decay over a fraction of its CPU budget
    assert decay_factor(0.0, tc) == pytest.approx(1.0) and decay_factor(1.5, tc) == pytest.approx(floor)
    assert decay_factor(0.5, tc) == pytest.approx(lr_factor(60, 110, tc))


# ---- issue 33 ----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(warmup=st.integers(2, 100_000), data=st.data(), lr=st.floats(1e-6, 1.0), max_steps=st.booleans())
def test_the_warmup_warning_states_the_fraction_of_the_rate_the_run_reaches(warmup, data, lr, max_steps):
    """Issue 33 item 16: "1/1 of the requested" for a run of 8 steps under a 10-step warm-up."""
    import re
    from dataclasses import replace
    from fractions import Fraction

    from telucodec.train.notes import warmup_notes

    last = data.draw(st.integers(1, warmup - 1), label="steps run")
    tc = replace(get_config("tiny").train, warmup_steps=warmup, learning_rate=lr)
    total, budget = (last + data.draw(st.integers(1, 10**6)), last) if max_steps else (last, None)
    warning = next(n for n in warmup_notes(tc, 0, total, budget) if n.startswith("WARNING"))
    shown = re.search(r"(\d+)/(\d+) of the requested", warning)
    assert shown, warning
    assert Fraction(int(shown[1]), int(shown[2])) == Fraction(last, warmup)  # below 1, exactly the share reached
    reached = float(re.search(r"at most at ([0-9.e+-]+),", warning)[1])
    assert reached == pytest.approx(lr * last / warmup, rel=0.06)


def _teacher_config(tmp_path: Path, precision: str) -> Path:
    cfg = get_config("tiny")
    cfg.train.target, cfg.train.quantizer_warmup_steps, cfg.train.precision = "teacher", 5, precision
    cfg.train.pesq_every, cfg.train.samples_every, cfg.train.val_max_clips, cfg.train.val_max_seconds = 0, 1000, 1, 1.0
    path = tmp_path / f"teacher-{precision}.json"
    cfg.save(path)
    return path


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), level=st.floats(0.01, 0.9))
def test_the_teacher_runs_in_the_student_s_precision(seed, level):
    """Issue 33 item 3: under bf16 the teacher decoded in fp32 and the student in bf16, so the
    step-0 loss of a student identical to its teacher was all rounding. Decoding the same latent,
    with the same weights, in the same precision, the reconstruction terms are zero."""
    from telucodec.train import objective

    cfg = get_config("tiny")
    cfg.train.target = "teacher"
    torch.manual_seed(seed)
    model = Codec(cfg)
    teacher = objective.frozen_teacher(model)
    batch = level * torch.tanh(torch.randn(2, 1, 16000))
    cpu = torch.device("cpu")
    for precision in ("fp32", "bf16"):
        with objective.autocast(cpu, precision):
            out = model(batch, cfg.quantizer.n_q, quantize=False)
            target = objective.teacher_target(teacher, batch)
            terms = objective.reconstruction_losses(out, target, cfg)
        waveform = {k: float(v.detach()) for k, v in terms.items() if k in objective.WAVEFORM_TERMS}
        assert waveform and all(v <= 1e-6 for v in waveform.values()), (precision, waveform)


def test_a_bf16_teacher_run_starts_at_zero_reconstruction_loss(tmp_path):
    """The same through the training loop: with the quantizer warm-up the student decodes the
    latent its teacher decodes, so step 0's reconstruction loss is zero in bf16 as in fp32."""
    for precision in ("fp32", "bf16"):
        assert train(EXAMPLES, tmp_path, precision, "--config", str(_teacher_config(tmp_path, precision)),
                     "--batch_size", "2", "--num_epochs", "1", "--steps_per_epoch", "1") == 0
        row = read_metrics(tmp_path / precision)[0]
        recon = {k: row[k] for k in ("loss/mel", "loss/stft") if k in row}
        assert recon and all(v <= 1e-6 for v in recon.values()), (precision, recon)


def test_num_workers_is_one_thing_the_flag(tmp_path, monkeypatch):
    """Issue 33 item 8: `train.num_workers` in a config did nothing beside --num_workers. The
    workers are the machine's business (like --threads): the flag alone sets them, and a config or
    checkpoint that still holds the old field loads as before."""
    from dataclasses import fields

    from telucodec.config import CodecConfig, TrainConfig
    from telucodec.train import crops

    assert "num_workers" not in {f.name for f in fields(TrainConfig)}
    old = get_config("tiny").to_dict()
    old["train"]["num_workers"] = 3  # written by an older telucodec
    assert CodecConfig.from_dict(old).to_dict() == get_config("tiny").to_dict()
    seen = []
    loader = torch.utils.data.DataLoader

    def spy(*args, **kwargs):
        seen.append(kwargs["num_workers"])
        return loader(*args, **kwargs)

    monkeypatch.setattr(crops.torch.utils.data, "DataLoader", spy)
    assert train(EXAMPLES, tmp_path, "w", "--num_epochs", "1", "--steps_per_epoch", "1", "--num_workers", "0") == 0
    assert seen == [0]
