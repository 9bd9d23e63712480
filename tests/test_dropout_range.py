"""Quantizer dropout's stage counts: `max_n_q_dropout` caps what a dropped batch or item draws (a
fine-tune that trains the low rates more often), and 0 keeps every count up to n_q reachable."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from telucodec.config import QuantizerConfig
from telucodec.model.quantizer import ResidualVQ


@settings(max_examples=40, deadline=None)
@given(n_q=st.integers(1, 8), lo=st.integers(0, 9), hi=st.integers(0, 9), seed=st.integers(0, 2**31 - 1))
def test_dropout_draws_stay_in_range(n_q, lo, hi, seed):
    cfg = QuantizerConfig(n_q=n_q, codebook_size=4, min_n_q_dropout=lo, max_n_q_dropout=hi, kmeans_init=False)
    vq = ResidualVQ(6, cfg)
    want_hi = min(n_q, hi or n_q)
    want_lo = min(max(1, lo), want_hi)
    assert vq.dropout_range() == (want_lo, want_hi)
    g = torch.Generator().manual_seed(seed)
    seen = {vq.sample_n_q(g) for _ in range(200)}
    assert seen <= set(range(want_lo, want_hi + 1)) | {n_q}
    if want_hi > want_lo:
        assert len(seen) >= 2  # the draws spread over the range
    vq.cfg.dropout_fraction = 1.0
    vq.train()
    per_item = vq._items_n_q(torch.zeros(64, 6, 3))
    assert int(per_item.min()) >= want_lo and int(per_item.max()) <= want_hi
