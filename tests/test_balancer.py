"""The loss balancer: a weight is a share of the output gradient, whatever the loss's scale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from telucodec import losses as L
from telucodec.cli import main
from telucodec.config import get_config
from telucodec.model.loading import load_checkpoint
from telucodec.train.balancer import Balancer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "te_cv"


def _grads(scale_mel: float, weights: dict[str, float]) -> list[torch.Tensor]:
    torch.manual_seed(0)
    layer = torch.nn.Conv1d(1, 1, 9, padding=4)
    x = 0.1 * torch.randn(2, 1, 4000)
    target = 0.1 * torch.randn(2, 1, 4000)
    out = layer(x)
    terms = {"mel": scale_mel * L.mel_loss(out, target, (256, 512), 32, 16000), "l1": L.waveform_l1(out, target)}
    others = (layer.weight ** 2).sum()  # not through the output: backpropagated as it is
    Balancer(weights).backward(terms, out, others)
    return [p.grad.clone() for p in layer.parameters()]


def test_scaling_a_loss_does_not_change_the_update():
    weights = {"mel": 1.0, "l1": 3.0}
    for a, b in zip(_grads(1.0, weights), _grads(1000.0, weights)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_weights_set_each_terms_share_of_the_output_gradient():
    out = torch.zeros(1, 1, 100, requires_grad=True)
    big, small = (out * 1000.0).sum(), (out * 0.001).sum()  # gradients 1000 and 0.001 per sample
    balancer = Balancer({"big": 1.0, "small": 3.0}, total_norm=2.0)
    norms = balancer.backward({"big": big, "small": small}, out)
    assert norms["big"] == pytest.approx(10000.0) and norms["small"] == pytest.approx(0.01)
    # each term's unit-norm gradient (0.1 per sample) times its share of total_norm
    torch.testing.assert_close(out.grad, torch.full_like(out, 2.0 * (0.25 + 0.75) * 0.1))
    assert balancer.state_dict()["counts"] == {"big": 1.0, "small": 1.0}


def test_training_with_the_balancer_runs_and_resumes(tmp_path):
    cfg = get_config("tiny")
    cfg.loss.balancer = True
    cfg.save(tmp_path / "tiny_balanced.json")
    args = ["train", "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(tmp_path), "--experiment_name", "bal",
            "--config", str(tmp_path / "tiny_balanced.json"), "--batch_size", "4", "--num_epochs", "2",
            "--steps_per_epoch", "3", "--seed", "3", "--quiet"]
    assert main([*args, "--max_steps", "4"]) == 0
    state = load_checkpoint(tmp_path / "bal" / "checkpoints" / "last.pt")
    assert state["balancer"]["counts"]["mel"] == pytest.approx(sum(0.999 ** k for k in range(4)))
    assert main([*args, "--resume"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "bal" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
