"""Beam search at the encoder (`clustering.beam_search`) and rate control (`formats/rate.py`):
generated codebooks, latents, clips and budgets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from telucodec.config import get_config
from telucodec.errors import TelucodecError
from telucodec.formats.bitstream import read_bitstream, write_smallest
from telucodec.formats.rate import fit_to_rate
from telucodec.model.clustering import beam_search, nearest_entry
from telucodec.model.codec import Codec


def _greedy(x: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
    residual, codes = x.clone(), []
    for book in books:
        c = nearest_entry(residual, book)
        residual = residual - book[c]
        codes.append(c)
    return torch.stack(codes, 1)


def _error(x: torch.Tensor, books: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    total = sum(books[s][codes[:, s]] for s in range(codes.shape[1]))
    return (x - total).pow(2).sum(1)


problems = st.tuples(st.integers(1, 3), st.integers(2, 6), st.integers(1, 5), st.integers(1, 12),
                     st.integers(0, 2**31 - 1))


@settings(max_examples=60, deadline=None)
@given(problems)
def test_beam_one_is_the_greedy_search(problem: tuple[int, int, int, int, int]) -> None:
    stages, k, d, n, seed = problem
    g = torch.Generator().manual_seed(seed)
    books, x = torch.randn(stages, k, d, generator=g), torch.randn(n, d, generator=g)
    assert torch.equal(beam_search(x, books, 1)[-1], _greedy(x, books))


@settings(max_examples=60, deadline=None)
@given(problems)
def test_a_beam_as_wide_as_every_path_finds_the_best_sum_at_every_stage_count(problem) -> None:
    stages, k, d, n, seed = problem
    g = torch.Generator().manual_seed(seed)
    books, x = torch.randn(stages, k, d, generator=g), torch.randn(n, d, generator=g)
    rows = beam_search(x, books, k ** stages)
    for s in range(stages):
        every = torch.tensor(list(itertools.product(range(k), repeat=s + 1)))
        sums = sum(books[i][every[:, i]] for i in range(s + 1))
        best = (x[:, None] - sums[None]).pow(2).sum(-1).min(1).values
        assert torch.allclose(_error(x, books, rows[s][:, : s + 1]), best, atol=1e-4)
        assert torch.all(rows[s][:, s + 1:] == 0)


@settings(max_examples=40, deadline=None)
@given(problems, st.integers(2, 8))
def test_a_beam_stopped_after_n_stages_is_the_beam_search_for_n(problem, beam: int) -> None:
    stages, k, d, n, seed = problem
    g = torch.Generator().manual_seed(seed)
    books, x = torch.randn(stages, k, d, generator=g), torch.randn(n, d, generator=g)
    rows = beam_search(x, books, beam)
    for s in range(stages):
        assert torch.equal(rows[s][:, : s + 1], beam_search(x, books[: s + 1], beam)[-1])


@pytest.fixture(scope="module")
def tiny() -> Codec:
    torch.manual_seed(0)
    model = Codec(get_config("tiny")).eval()
    with torch.no_grad():  # started codebooks (a fresh tiny model's are random, which is fine here)
        model.quantizer.set_codebooks(torch.randn_like(model.quantizer.codebooks()) * 0.1)
    return model


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 24000), st.sampled_from([1, 2, 4]), st.integers(0, 2**31 - 1))
def test_every_stage_count_of_one_pass_is_what_encode_gives(tiny: Codec, length: int, beam: int, seed: int) -> None:
    wav = np.random.default_rng(seed).normal(0, 0.1, length).astype(np.float32)
    prefixes = tiny.encode_prefixes(wav, tiny.sample_rate, tiny.max_n_q, beam)
    assert len(prefixes) == tiny.max_n_q
    for n, codes in enumerate(prefixes, start=1):
        assert torch.equal(codes.codes, tiny.encode(wav, tiny.sample_rate, n * tiny.kbps_per_codebook(), beam).codes)
        assert codes.codes.shape == (n, -(-length // tiny.hop))


@settings(max_examples=25, deadline=None)
@given(st.integers(160, 48000), st.floats(0.2, 12.0), st.sampled_from([1, 4]), st.integers(0, 2**31 - 1))
def test_the_file_fits_the_asked_kbps_with_as_many_codebooks_as_fit(tiny: Codec, length: int, kbps: float,
                                                                    beam: int, seed: int) -> None:
    wav = np.random.default_rng(seed).normal(0, 0.1, length).astype(np.float32)
    candidates = tiny.encode_prefixes(wav, tiny.sample_rate, None, beam)
    choice = fit_to_rate(candidates, kbps, strict=False)
    if not choice.within:  # refused when strict, by name
        with pytest.raises(TelucodecError, match=f"--kbps {kbps:g}"):
            fit_to_rate(candidates, kbps)
    seconds = length / tiny.sample_rate
    assert choice.kbps_actual == pytest.approx(len(choice.data) * 8 / seconds / 1000)
    assert choice.within == (len(choice.data) * 8 <= kbps * 1000 * seconds + 1e-6)
    if choice.within and choice.n_q < tiny.max_n_q:  # one more codebook would not have fit
        more = tiny.encode_prefixes(wav, tiny.sample_rate, tiny.max_n_q, beam)[choice.n_q]
        assert len(write_smallest(more)[0]) * 8 > kbps * 1000 * seconds
    if not choice.within:
        assert choice.n_q == 1
    decoded = read_bitstream(choice.data, expected_model_id=tiny.model_id)
    assert torch.equal(decoded.codes, choice.codes.codes)


@pytest.mark.parametrize("kbps", [0.0, -1.0, float("nan"), float("inf")])
def test_a_budget_that_is_not_a_positive_number_is_refused(tiny: Codec, kbps: float) -> None:
    with pytest.raises(TelucodecError, match="--kbps"):
        fit_to_rate(tiny.encode_prefixes(np.zeros(1600, np.float32) + 0.1, tiny.sample_rate), kbps)
