"""The rate-distortion search (model/rd_search.py): its bit costs are the coder's, its beam ranks
paths by error plus cost (exhaustively checked), and on the shipped model it makes the files
rate control writes cheaper per stage without touching the decoder.

Generated cases: hypothesis draws tables, codes and books (counts in docs/robustness.md)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import mixed_tables, tiny_with_tables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telucodec
from telucodec.deploy.runtimes import TorchRuntime
from telucodec.errors import TelucodecError
from telucodec.formats.bitstream import read_bitstream
from telucodec.formats.codes import Codes
from telucodec.formats.context_coder import candidate_bits, code_bits
from telucodec.formats.dataset import load_audio
from telucodec.formats.rate import encode_to_rate, fit_to_rate
from telucodec.model.clustering import beam_search
from telucodec.model.rd_search import bit_costs, rd_weight


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), widths=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       frames=st.integers(1, 12), alphabet=st.integers(1, 4))
def test_candidate_bits_are_the_coders_code_lengths(seed, widths, frames, alphabet):
    """Every code's candidate cost in its context equals code_bits of the sequence it sits in,
    repeats (the repeat mass) included: codes drawn from few values repeat often."""
    tables = mixed_tables(seed, widths)
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, min(alphabet, 1 << w), frames) for w in widths])
    want = code_bits(tables, codes)
    for q, v in enumerate(tables.stage_sizes):
        prev = np.concatenate(([v], codes[q, :-1]))
        stage_prev = codes[q - 1][:, None] if q else None
        got = candidate_bits(tables, q, prev, stage_prev)
        assert got.shape == (frames, 1, v)
        np.testing.assert_allclose(got[np.arange(frames), 0, codes[q]], want[q], rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), stages=st.integers(1, 3), entries=st.integers(2, 3),
       frames=st.integers(1, 6), scale=st.sampled_from([0.0, 0.1, 1.0, 10.0]))
def test_beam_with_costs_finds_the_cheapest_path_when_exhaustive(seed, stages, entries, frames, scale):
    """With a beam as wide as all paths, the search returns, after every stage count, the path of
    least squared error plus summed costs (costs that depend on the previous stage's code)."""
    g = torch.Generator().manual_seed(seed)
    books = [torch.randn(entries, 3, generator=g, dtype=torch.float64) for _ in range(stages)]
    x = torch.randn(frames, 3, generator=g, dtype=torch.float64)
    table = [scale * torch.rand(frames, entries if s else 1, entries, generator=g, dtype=torch.float64) for s in range(stages)]

    def costs(s, prev):
        rows = table[s][:, 0:1].expand(-1, 1, -1) if prev is None else table[s].gather(1, prev[..., None].expand(-1, -1, entries))
        return rows

    rows = beam_search(x, books, entries**stages, costs)
    for n in range(1, stages + 1):
        for t in range(frames):
            def score(path, t=t):
                err = (x[t] - sum(books[s][c] for s, c in enumerate(path))).pow(2).sum()
                cost = sum(table[s][t, path[s - 1] if s else 0, c] for s, c in enumerate(path))
                return float(err + cost)
            best = min(score(p) for p in itertools.product(range(entries), repeat=n))
            assert score(tuple(rows[n - 1, t, :n].tolist())) <= best + 1e-9


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), beam=st.integers(1, 6))
def test_zero_costs_change_nothing(seed, beam):
    g = torch.Generator().manual_seed(seed)
    books = [torch.randn(8, 4, generator=g) for _ in range(3)]
    x = torch.randn(10, 4, generator=g)
    zero = lambda s, prev: torch.zeros(10, 1 if prev is None else prev.shape[1], 8)  # noqa: E731
    assert torch.equal(beam_search(x, books, beam), beam_search(x, books, beam, zero))


def test_bit_costs_scale_the_candidate_bits():
    tables = mixed_tables(3, [3, 3])
    prev = np.array([[8, 1, 2], [8, 0, 7]])
    got = bit_costs(tables, prev, 0.5)(1, torch.tensor([[1], [4], [2]]))
    np.testing.assert_allclose(got.numpy(), 0.5 * candidate_bits(tables, 1, prev[1], np.array([[1], [4], [2]])))


def _context_bits(codes: Codes) -> float:
    return float(code_bits(telucodec.load_model().entropy_tables, np.asarray(codes.codes)).sum())


def test_shipped_model_rd_beam_spends_fewer_bits(example_clips):
    """On the shipped model (it has context tables), the beam told the rate it is fitted to
    (`fit_kbps`) makes codes that cost fewer context-coded bits than the plain beam's at every
    stage count; rate control sends more stages at 1.5 kbps with them, and the file decodes.
    Without `fit_kbps` (and in `encode`) the beam is the plain one."""
    model = telucodec.load_model()
    wav = load_audio(example_clips[0], model.sample_rate)
    plain = model.encode_prefixes(wav, model.sample_rate, None, 4)
    rd = model.encode_prefixes(wav, model.sample_rate, None, 4, fit_kbps=1.5)
    for a, b in zip(plain, rd):
        assert _context_bits(b) < _context_bits(a)
    fit_plain, fit_rd = fit_to_rate(plain, 1.5), fit_to_rate(rd, 1.5)
    assert fit_rd.within and float(np.mean(fit_rd.codes.frame_counts)) > float(np.mean(fit_plain.codes.frame_counts))
    out, sr = telucodec.decompress(fit_rd.data, model, runtime="torch")
    assert sr == model.sample_rate and out.shape[0] == wav.shape[0] and np.isfinite(out).all()
    assert torch.equal(model.encode(wav, model.sample_rate, beam=4).codes, plain[-1].codes)


def test_a_bit_is_worth_less_at_higher_rates(example_clips):
    """The weight of a bit follows the rate: the next stage removes less error per bit the more
    stages a rate buys, and a budget every stage fits leaves nothing to trade (weight 0: the
    plain beam's codes)."""
    model = telucodec.load_model()
    wav = load_audio(example_clips[1], model.sample_rate)
    plain = model.encode_prefixes(wav, model.sample_rate, None, 2)
    weights = [rd_weight(plain, kbps) for kbps in (1.5, 3, 6, 1000)]
    assert weights[0] > weights[1] > weights[2] > 0 == weights[3]
    same = model.encode_prefixes(wav, model.sample_rate, None, 2, fit_kbps=1000)
    assert all(torch.equal(a.codes, b.codes) for a, b in zip(plain, same))


def test_compress_and_encode_write_the_rd_beams_file(example_clips, tmp_path):
    """`compress(kbps=, beam=)` and `telucodec encode --kbps --beam` write the file of the beam
    told its rate (not the plain beam's): the rate reaches the search on every path to a file."""
    model = telucodec.load_model()
    wav = load_audio(example_clips[2], model.sample_rate)
    rd = fit_to_rate(model.encode_prefixes(wav, model.sample_rate, None, 4, fit_kbps=1.5), 1.5).data
    plain = fit_to_rate(model.encode_prefixes(wav, model.sample_rate, None, 4), 1.5).data
    assert rd != plain
    assert telucodec.compress(wav, model.sample_rate, model, kbps=1.5, beam=4) == rd
    from telucodec.cli import main
    out = tmp_path / "clip.tcd"
    assert main(["encode", str(example_clips[2]), str(out), "--kbps", "1.5", "--beam", "4"]) == 0
    assert out.read_bytes() == rd


@pytest.fixture(scope="module")
def tiny_tables_model():
    return tiny_with_tables(11)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(length=st.integers(1, 40000), kbps=st.floats(0.05, 4.0), seed=st.integers(0, 2**31 - 1),
       beam=st.sampled_from([2, 4]))
def test_rd_files_keep_every_promise_of_rate_control(tiny_tables_model, length, kbps, seed, beam):
    """Off the happy path (clips of one sample to 2.5 s, budgets far too small to generous): the
    beam told its rate writes a file within the budget that decodes to its codes wherever the
    plain beam's codes fit (its bit estimates can miss on a few frames: then the plain codes are
    fitted), and is refused exactly as they are where they do not; every code lies in its
    codebook."""
    model = tiny_tables_model
    wav = np.random.default_rng(seed).normal(0, 0.1, length).astype(np.float32)
    plain = model.encode_prefixes(wav, model.sample_rate, None, beam)
    try:
        want = fit_to_rate(plain, kbps)
    except TelucodecError as plain_error:  # refused exactly as the plain codes are
        with pytest.raises(TelucodecError) as rd_error:
            encode_to_rate(TorchRuntime(model, beam=beam), wav, model.sample_rate, kbps)
        assert str(rd_error.value) == str(plain_error)
        return
    assert want.within
    choice = encode_to_rate(TorchRuntime(model, beam=beam), wav, model.sample_rate, kbps)
    assert choice.within and len(choice.data) * 8 <= kbps * 1000 * length / model.sample_rate + 1e-6
    codes = np.asarray(choice.codes.codes)
    assert codes.min() >= 0 and codes.max() < model.quantizer.codebooks().shape[1]
    back = read_bitstream(choice.data, expected_model_id=model.model_id)
    assert torch.equal(back.codes, choice.codes.codes)
    assert np.isfinite(model.decode(back).numpy()).all()
