"""The GPU path, tested without a GPU: bf16 autocast runs the same code on the CPU, and DDP runs
on gloo with two real processes (torchrun)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from telucodec.config import DECODER_NAMES, ENCODER_NAMES, get_config
from telucodec.model.codec import Codec
from telucodec.model.loading import load_checkpoint
from telucodec.train import objective
from telucodec.train.discriminators import Discriminators

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"

# every encoder with the SEANet decoder, every decoder with the SEANet encoder, and the spectral
# decoder's residual fine path; a factorized quantizer in one of them
FAMILIES = ([(e, "seanet", {}) for e in ENCODER_NAMES] + [("seanet", d, {}) for d in DECODER_NAMES if d != "seanet"]
            + [("seanet", "spectral", {"spectral_upsample": 2, "spectral_fine_mode": "residual"}),
               ("stft", "spectral", {"codebook_dim": 4})])


@pytest.mark.parametrize("encoder, decoder, extra", FAMILIES, ids=lambda v: str(v) if v else "")
def test_one_bf16_step_of_every_family_gives_finite_losses_on_the_cpu(encoder, decoder, extra):
    cfg = get_config("tiny")
    cfg.model.encoder, cfg.model.decoder = encoder, decoder
    for key, value in extra.items():
        setattr(cfg.quantizer if key == "codebook_dim" else cfg.model, key, value)
    cfg.loss.complex_stft = cfg.loss.phase = cfg.loss.l1 = 1.0  # every spectral loss
    torch.manual_seed(0)
    model, discs = Codec(cfg).train(), Discriminators((2,), (256,), 4)
    seen = []
    model.encoder.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = 0.1 * torch.randn(2, 1, 6400)
    with objective.autocast(torch.device("cpu"), "bf16"):
        out = model(x)
        terms = objective.reconstruction_losses(out, x, cfg)
        terms.update(objective.adversarial_terms(discs, out.wav, x, cfg))
        total = objective.weighted_total(terms, cfg)
        d_loss = objective.discriminator_loss(discs, out.wav, x, cfg)
    assert seen == [torch.bfloat16]  # autocast really ran the encoder in bf16 ...
    assert out.quantizer.quantized.dtype == torch.float32  # ... and the quantizer in float32
    assert all(torch.isfinite(v) for v in terms.values()), terms
    assert torch.isfinite(total) and torch.isfinite(d_loss)
    (total + d_loss).backward()
    grads = [p.grad for p in [*model.parameters(), *discs.parameters()] if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_bf16_trains_through_the_cli_on_the_cpu(tmp_path, capsys):
    from telucodec.cli import main

    cfg = get_config("spectral")
    cfg.model.channels, cfg.model.latent_dim, cfg.model.decoder_hidden, cfg.model.spectral_layers = 8, 32, 64, 2
    cfg.train.disc_periods, cfg.train.disc_stft_sizes, cfg.train.disc_channels = (2,), (256,), 4
    cfg.train.pesq_every = cfg.train.samples_every = 0
    cfg.save(tmp_path / "small.json")
    rc = main(["train", "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(tmp_path), "--experiment_name", "bf16",
               "--config", str(tmp_path / "small.json"), "--batch_size", "2", "--num_epochs", "1",
               "--steps_per_epoch", "2", "--precision", "bf16", "--adversarial_after", "0", "--quiet"])
    assert rc == 0
    assert "bf16 on the CPU runs under CPU autocast" in capsys.readouterr().out
    row = json.loads((tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["loss/discriminator"] > 0 and all(row[k] == row[k] for k in row if k.startswith("loss/"))  # finite
    assert load_checkpoint(tmp_path / "bf16" / "checkpoints" / "last.pt")["config"]["train"]["precision"] == "bf16"


def test_ddp_knows_when_a_step_can_leave_parameters_unused():
    cfg = get_config("tiny")
    assert not objective.parameters_may_go_unused(cfg)  # plain EMA stages have no parameters
    cfg.quantizer.codebook_dim = 8  # factorized, per-batch dropout skips later stages' projections
    assert objective.parameters_may_go_unused(cfg)
    cfg.quantizer.quantizer_dropout = False
    assert not objective.parameters_may_go_unused(cfg)
    cfg.train.quantizer_warmup_steps = 10  # the unquantized latent bypasses the out-projections
    assert objective.parameters_may_go_unused(cfg)


@pytest.mark.slow
def test_two_gloo_processes_with_discriminators_and_factorized_codes_keep_identical_weights(tmp_path):
    """The issue's reproduction (a factorized EMA quantizer failed at step 2 under DDP) with the
    discriminators on: every rank ends with the same generator, quantizer statistics and
    discriminators, and the checkpoint holds each rank's own random state."""
    cfg = get_config("tiny")
    cfg.quantizer.codebook_dim = 8
    cfg.train.disc_periods, cfg.train.disc_stft_sizes, cfg.train.disc_channels = (2,), (256,), 4
    cfg.train.pesq_every = cfg.train.samples_every = 0
    cfg.train.val_max_clips = 1
    cfg.save(tmp_path / "ddp.json")
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path),
           "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(tmp_path), "--experiment_name", "ddp",
           "--config", str(tmp_path / "ddp.json"), "--batch_size", "2", "--num_epochs", "1", "--steps_per_epoch", "4",
           "--adversarial_after", "0", "--device", "cpu", "--quiet", "--threads", "1",
           "--seed", "2"]  # per-batch dropout draws n_q 8, 1, 4, 8: steps 2 and 3 skip stages
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for part in ("model", "stats", "discriminators"):
        a, b = ranks[0][part], ranks[1][part]
        assert a.keys() == b.keys() and a
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{part} differs between ranks: {different[:5]}"
    assert any(k.endswith("in_proj.weight") for k in ranks[0]["model"])
    state = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert state["step"] == 4 and "discriminators" in state
    saved = state["rng_cpu_ranks"]
    assert len(saved) == 2 and not torch.equal(saved[0], saved[1])
    for r in (0, 1):  # the state each rank really had when the checkpoint was written (nothing drew since)
        assert torch.equal(saved[r], ranks[r]["rng_cpu"])
