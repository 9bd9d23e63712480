"""The codebook arithmetic at the sizes of 15-bit stages: the nearest-entry search in row blocks (a
32,768-entry k-means over 400k frames would otherwise ask for a 52 GB distance matrix) gives the
whole search's indices, and k-means above `KMEANS_PP_MAX` entries (random seeds) still clusters."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from telucodec.model import clustering


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), k=st.integers(1, 64), d=st.integers(1, 8), block=st.integers(1, 500),
       seed=st.integers(0, 2**31 - 1))
def test_search_in_row_blocks_equals_the_whole_search(n, k, d, block, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    x, entries = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    x[: n // 3] = entries[torch.randint(0, k, (n // 3,), generator=g)]  # exact hits and ties too
    whole = clustering.nearest_entry(x, entries)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clustering, "SEARCH_ELEMENTS", block)
        assert torch.equal(clustering.nearest_entry(x, entries), whole)


@settings(max_examples=10, deadline=None)
@given(k=st.integers(9, 40), seed=st.integers(0, 2**31 - 1))
def test_kmeans_with_random_seeds_above_the_limit_clusters(k, seed) -> None:
    torch.manual_seed(seed)
    centres = torch.randn(k, 4) * 10
    samples = centres[torch.randint(0, k, (20 * k,))] + 0.1 * torch.randn(20 * k, 4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clustering, "KMEANS_PP_MAX", 8)
        fitted = clustering.kmeans(samples, k, 10)
    err = (samples - fitted[clustering.nearest_entry(samples, fitted)]).pow(2).sum(1).mean()
    spread = (samples - samples.mean(0)).pow(2).sum(1).mean()
    assert fitted.shape == (k, 4) and torch.isfinite(fitted).all() and err < 0.25 * spread
