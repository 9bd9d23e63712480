"""Fine-tuning a pretrained model: frozen parts, the teacher target, the init model's own config."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from telucodec.cli import main
from telucodec.config import CodecConfig, get_config
from telucodec.errors import TelucodecError
from telucodec.model.codec import Codec
from telucodec.train import objective
from telucodec.train.optim import freeze_parts

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"


def _tiny_folder(tmp_path: Path, **train: object) -> Path:
    cfg = get_config("tiny")
    cfg = replace(cfg, train=replace(cfg.train, warmup_steps=1, pesq_every=100, **train))
    torch.manual_seed(0)
    return Codec(cfg).save_pretrained(tmp_path / "start")


def _run(tmp_path: Path, source: Path, *extra: str) -> Path:
    rc = main(["train", "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(tmp_path), "--experiment_name", "ft",
               "--init_from", str(source), "--batch_size", "2", "--num_epochs", "1", "--steps_per_epoch", "3",
               "--learning_rate", "1e-3", "--threads", "1", "--quiet", *extra])
    assert rc == 0
    return tmp_path / "ft"


def test_init_from_without_config_takes_the_source_config_and_freezes_what_it_says(tmp_path, capsys) -> None:
    source = _tiny_folder(tmp_path, freeze=("encoder",))
    exp = _run(tmp_path, source)
    out = capsys.readouterr().out
    assert "preset tiny" in out and "frozen: encoder" in out
    assert json.loads((exp / "config.json").read_text())["train"]["freeze"] == ["encoder"]
    start, end = load_file(str(source / "model.safetensors")), load_file(str(exp / "model" / "model.safetensors"))
    assert all(torch.equal(start[k], end[k]) for k in start if k.startswith("encoder."))
    assert any(not torch.equal(start[k], end[k]) for k in start if k.startswith("decoder."))


def test_an_explicit_config_still_wins_over_the_source(tmp_path, capsys) -> None:
    source = _tiny_folder(tmp_path, freeze=("encoder",))
    _run(tmp_path, source, "--config", "tiny")
    assert "frozen:" not in capsys.readouterr().out  # the preset's own train section: nothing frozen


def test_freeze_refuses_an_unknown_part() -> None:
    with pytest.raises(TelucodecError, match="unknown part 'encoderr'"):
        freeze_parts(Codec(get_config("tiny")), ("encoderr",))


def test_a_misspelled_target_is_refused() -> None:
    data = get_config("tiny").to_dict()
    data["train"]["target"] = "teachr"
    with pytest.raises(TelucodecError, match="teacher"):
        CodecConfig.from_dict(data)


def test_teacher_target_is_the_frozen_start_decoding_its_unquantized_latent(tmp_path) -> None:
    torch.manual_seed(0)
    model = Codec(get_config("tiny"))
    teacher = objective.frozen_teacher(model)
    batch = torch.randn(2, 1, model.hop * 10) * 0.1
    with torch.no_grad():
        expected = model(batch, quantize=False).wav
    assert torch.allclose(objective.teacher_target(teacher, batch), expected)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(0.1)  # training the student leaves the teacher as it was
    assert torch.allclose(objective.teacher_target(teacher, batch), expected)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_teacher_training_runs_and_keeps_its_teacher_in_the_checkpoint(tmp_path) -> None:
    source = _tiny_folder(tmp_path, target="teacher", freeze=("encoder",))
    exp = _run(tmp_path, source)
    from telucodec.model.loading import load_checkpoint

    state = load_checkpoint(exp / "checkpoints" / "last.pt")
    start = load_file(str(source / "model.safetensors"))
    assert all(torch.equal(state["teacher"][k], start[k]) for k in start)
    rc = main(["train", "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(tmp_path), "--experiment_name", "ft",
               "--resume", "--num_epochs", "2", "--quiet", "--threads", "1"])
    assert rc == 0


def test_fit_quantizer_gives_a_pretrained_model_a_new_quantizer(tmp_path) -> None:
    """scripts/fit_quantizer.py on the example clips: the new folder keeps lyra-v2's encoder and
    decoder, has the asked-for quantizer, and every stage leaves less of the latent than the last."""
    import subprocess
    import sys

    from telucodec.api import load_model

    out = tmp_path / "rvq"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "fit_quantizer.py"), "--model", "lyra-v2",
                           "--data_dir", str(EXAMPLES), "--val_speakers", "cv_9e9a356b", "--n_q", "3", "--bits", "5",
                           "--kmeans_iters", "3", "--ema_epochs", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    energy = [float(v) for v in proc.stdout.split("residual energy by n_q: ")[1].split()[:3]]
    total = float(proc.stdout.split("latent energy ")[1].split(";")[0])
    assert total > energy[0] > energy[1] > energy[2] > 0
    fitted, source = load_model(out), load_model("lyra-v2")
    assert fitted.max_n_q == 3 and fitted.config.quantizer.codebook_size == 32
    assert all(torch.equal(a, b) for a, b in zip(fitted.decoder.state_dict().values(), source.decoder.state_dict().values()))
    again = subprocess.run([sys.executable, str(ROOT / "scripts" / "fit_quantizer.py"), "--model", "lyra-v2",
                            "--data_dir", str(EXAMPLES), "--out", str(out)], capture_output=True, text=True)
    assert again.returncode != 0 and "already exists" in again.stderr
