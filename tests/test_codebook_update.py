"""`quantizer.update: decoder`: the decoder's gradient reaches the codebook entries a batch used
(and only those), the forward value is the quantized sum, and the encoder still gets the
straight-through gradient. With EMA updates the entries get no gradient at all."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from telucodec.config import get_config
from telucodec.model.codec import Codec


def _model(update: str, seed: int) -> Codec:
    torch.manual_seed(seed)
    cfg = get_config("tiny")
    cfg = replace(cfg, quantizer=replace(cfg.quantizer, update=update, kmeans_init=False, dead_code_steps=0,
                                         quantizer_dropout=False))
    return Codec(cfg).train()


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3))
def test_the_decoders_gradient_reaches_exactly_the_entries_used(seed: int, batch: int) -> None:
    model = _model("decoder", seed)
    wav = torch.randn(batch, 1, 3200, generator=torch.Generator().manual_seed(seed)) * 0.1
    out = model(wav)
    quantized = model.quantizer.decode(out.quantizer.codes)
    latent = model.encoder(model.amplitude.normalize(wav)[0])
    # the forward value is the quantized sum, not the latent
    torch.testing.assert_close(model.quantizer(latent).quantized, quantized, rtol=0, atol=1e-5)
    out.wav.pow(2).mean().backward()
    for stage, layer in enumerate(model.quantizer.layers):
        used = torch.zeros(layer.codebook.shape[0], dtype=torch.bool)
        used[out.quantizer.codes[:, stage].reshape(-1)] = True
        grad_norm = layer.codebook.grad.norm(dim=1)
        assert torch.all(grad_norm[~used] == 0)
        assert torch.any(grad_norm[used] > 0)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


@pytest.mark.parametrize("update", ["ema"])
def test_ema_entries_take_no_gradient(update: str) -> None:
    model = _model(update, 0)
    model(torch.randn(2, 1, 3200) * 0.1).wav.pow(2).mean().backward()
    assert all(layer.codebook.grad is None and not layer.codebook.requires_grad for layer in model.quantizer.layers)
