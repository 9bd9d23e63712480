"""Context tables and coder for RVQ stages of different sizes (issue 34: e.g. 2 x 15-bit then
10-bit stages): exact round trips, streaming equals whole clips, table files and digests, refused
tables, `fits`, fitting on mixed widths, and the tables of stages of up to 4096 codes unchanged
(telugu-v7's digest, model id and the payloads its tables coded before mixed sizes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_pieces_round_trip, mixed_tables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telucodec.errors import BitstreamError, ModelError
from telucodec.formats.context_coder import (
    code_bits,
    decode_codes,
    encode_codes,
)
from telucodec.formats.context_fit import fit_tables, stage_cost_bits
from telucodec.formats.context_tables import (
    LARGE_TOTAL_BITS,
    TOTAL_BITS,
    ContextTables,
    _metadata,
)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "v7_context_payloads.npz"
V7_TABLES = ROOT / "telucodec" / "pretrained" / "telugu-v7" / "entropy_tables.safetensors"
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# widths drawn for generated stages: mostly small alphabets (fast), some past 4096 codes (the
# 2**21 total, uint32 frequencies), 15 bits the largest
WIDTHS = st.sampled_from([1, 2, 3, 4, 5, 7, 10, 12, 13, 15])
KINDS = ("uniform", "repeats", "extremes", "rarest", "likeliest")


def mixed_codes(tables: ContextTables, n_q: int, frames: int, kind: str, seed: int) -> np.ndarray:
    """Codes [n_q, frames], stage q's in 0..V_q-1, of one kind ("rarest" / "likeliest": frame by
    frame the code its context finds least / most likely: the costliest and cheapest streams)."""
    rng = np.random.default_rng(seed)
    sizes = tables.stage_sizes[:n_q]
    if kind == "uniform":
        return np.stack([rng.integers(0, v, frames) for v in sizes])
    if kind == "extremes":
        return np.stack([np.where(rng.random(frames) < 0.5, 0, v - 1) for v in sizes])
    if kind == "repeats":
        out = np.empty((n_q, frames), dtype=np.int64)
        for q, v in enumerate(sizes):
            x = int(rng.integers(0, v))
            for t in range(frames):
                if rng.random() > 0.7:
                    x = int(rng.integers(0, v))
                out[q, t] = x
        return out
    out = np.zeros((n_q, frames), dtype=np.int64)
    for t in range(frames):
        for q, v in enumerate(sizes):
            prev_class, stage_class, context, _, freq, _ = tables.lookups()[q][:6]
            p = out[q, t - 1] if t else v
            kk = context[prev_class[p], stage_class[out[q - 1, t]] if q else 0]
            out[q, t] = int(np.argmin(freq[kk]) if kind == "rarest" else np.argmax(freq[kk]))
    return out


def sent_codes(arr: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
    """`arr` with the codes the counts do not send set to 0 (what the decoder gives back)."""
    if counts is None:
        return arr
    return np.where(np.arange(arr.shape[0])[:, None] < counts[None, :], arr, 0)


def draw_counts(rng: np.random.Generator, n_q: int, frames: int, use: bool) -> np.ndarray | None:
    if not use:
        return None
    return np.repeat(rng.integers(1, n_q + 1, size=-(-frames // 7)), 7)[:frames]


# ---- exact round trips ----------------------------------------------------------------------


@PROPERTY
@given(seed=st.integers(0, 2**31), stage_bits=st.lists(WIDTHS, min_size=1, max_size=6), n_q=st.integers(1, 6),
       frames=st.integers(0, 120), kind=st.sampled_from(KINDS), use_counts=st.booleans(),
       shape=st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 5)))
def test_round_trip_mixed_stage_sizes(seed, stage_bits, n_q, frames, kind, use_counts, shape) -> None:
    """Any codes under any tables of mixed widths decode exactly (per-frame stage counts or not),
    in no more bytes than their ideal length plus the coder's truncation bound: up to
    -log2(1 - 2**(T - 24)) bits a code of total 2**T, and a few bytes a stream."""
    tables = mixed_tables(seed, stage_bits, *shape)
    assert tables.stage_bits == stage_bits and tables.stage_sizes == [1 << b for b in stage_bits]
    assert tables.bits == max(stage_bits) and tables.size == 1 << max(stage_bits)
    n_q = min(n_q, len(stage_bits))
    arr = mixed_codes(tables, n_q, frames, kind, seed)
    counts = draw_counts(np.random.default_rng(seed), n_q, frames, use_counts)
    data = encode_codes(tables, arr, counts)
    np.testing.assert_array_equal(decode_codes(tables, data, n_q, frames, counts), sent_codes(arr, counts))
    ideal = code_bits(tables, arr, counts=counts)
    loss = -np.log2(1 - 2.0 ** (np.asarray(tables.stage_total_bits[:n_q]) - 24))
    sent = np.ones_like(ideal, dtype=bool) if counts is None else np.arange(n_q)[:, None] < counts[None, :]
    assert 8 * len(data) <= ideal.sum() + (loss[:, None] * sent).sum() + 40


@PROPERTY
@given(seed=st.integers(0, 2**31), stage_bits=st.lists(WIDTHS, min_size=1, max_size=5), frames=st.integers(0, 100),
       kind=st.sampled_from(KINDS), cuts=st.lists(st.integers(0, 100), max_size=8),
       byte_cuts=st.lists(st.integers(0, 2000), max_size=10))
def test_push_in_pieces_equals_whole_clip(seed, stage_bits, frames, kind, cuts, byte_cuts) -> None:
    """Frames pushed in any pieces give the whole clip's bytes; those bytes fed in any pieces give
    the frames back, never one the encoder has not taken."""
    tables = mixed_tables(seed, stage_bits)
    assert_pieces_round_trip(tables, mixed_codes(tables, len(stage_bits), frames, kind, seed), cuts, byte_cuts)


@PROPERTY
@given(seed=st.integers(0, 2**31), stage_bits=st.lists(WIDTHS, min_size=1, max_size=4), frames=st.integers(1, 60),
       payload=st.binary(max_size=300), flips=st.lists(st.integers(0, 10**6), max_size=3))
def test_any_payload_decodes_in_range_or_is_refused(seed, stage_bits, frames, payload, flips) -> None:
    """Arbitrary bytes, or a real payload with bits flipped: codes of the asked shape, each stage's
    within its own size, or BitstreamError; nothing else."""
    tables = mixed_tables(seed, stage_bits)
    n_q = len(stage_bits)
    data = bytearray(encode_codes(tables, mixed_codes(tables, n_q, frames, "repeats", seed)) if flips else payload)
    for f in flips:
        if data:
            data[f // 8 % len(data)] ^= 1 << (f % 8)
    try:
        out = decode_codes(tables, bytes(data), n_q, frames)
    except BitstreamError:
        return
    assert out.shape == (n_q, frames)
    assert (out.min(1) >= 0).all() and (out.max(1) < np.asarray(tables.stage_sizes)).all()


def test_codes_past_their_stage_size_are_refused() -> None:
    tables = mixed_tables(1, [4, 2, 15])
    arr = np.zeros((3, 5), dtype=np.int64)
    arr[1, 2] = 4  # a 2-bit stage's code 4: fits the widest stage, not its own
    with pytest.raises(BitstreamError, match=r"stage 1: code values must be in \[0, 4\)"):
        encode_codes(tables, arr)
    arr[1, 2], arr[2, 0] = 3, 32767  # the largest code of the 15-bit stage is fine
    np.testing.assert_array_equal(decode_codes(tables, encode_codes(tables, arr), 3, 5), arr)


# ---- table files, digests, validation ----------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), stage_bits=st.lists(WIDTHS, min_size=1, max_size=5), bump=st.integers(0, 2**31))
def test_tables_bytes_round_trip_and_digest(seed, stage_bits, bump) -> None:
    """to_bytes / from_bytes keeps every array and dtype and the digest; the same draws give the
    same digest; moving one unit of frequency between two codes of any stage changes it."""
    tables = mixed_tables(seed, stage_bits)
    again = ContextTables.from_bytes(tables.to_bytes(), "copy")
    assert again.digest == tables.digest == mixed_tables(seed, stage_bits).digest
    assert again.stage_bits == tables.stage_bits and again.stage_total_bits == tables.stage_total_bits
    for name, a in tables.to_arrays().items():
        b = again.to_arrays()[name]
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert _metadata(tables.to_bytes())["digest"] == tables.digest
    arrays = tables.to_arrays()
    q = bump % len(stage_bits)
    freq = arrays[f"stage{q}.freq"].copy()
    hi, lo = int(np.argmax(freq[0])), int(bump % freq.shape[1])
    if freq[0, hi] > 1 and hi != lo:
        freq[0, hi] -= 1
        freq[0, lo] += 1
        assert ContextTables.from_arrays({**arrays, f"stage{q}.freq": freq}).digest != tables.digest


def test_wide_totals_follow_the_stage_size() -> None:
    tables = mixed_tables(0, [12, 13, 15, 3])
    assert tables.stage_total_bits == [TOTAL_BITS, LARGE_TOTAL_BITS, LARGE_TOTAL_BITS, TOTAL_BITS]
    dtypes = [tables.stages[q].freq.dtype for q in range(4)]
    assert dtypes == [np.uint16, np.uint32, np.uint32, np.uint16]
    sums = [int(s.freq[0].astype(np.int64).sum() + s.repeat[0]) for s in tables.stages]
    assert sums == [1 << t for t in tables.stage_total_bits]


def corruptions(base: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """message -> changed arrays, for tables of stages [3, 15, 10]."""
    big = base["stage1.freq"].copy()
    big[0, 0] += 1
    return {
        rf"stage 1: context 0 sums to \d+, must be {1 << LARGE_TOTAL_BITS}": {"stage1.freq": big},
        r"stage1.freq is uint16, must be uint32 \(a stage of 32768 codes\)": {"stage1.freq": base["stage1.freq"].astype(np.uint16)},
        r"stage2.freq is uint32, must be uint16 \(a stage of 1024 codes\)": {"stage2.freq": base["stage2.freq"].astype(np.uint32)},
        r"stage 2: class maps must have 1025 and 32768 entries, got \(1025,\) and \(1024,\)":
            {"stage2.stage_class": np.zeros(1024, dtype=np.uint8)},
        r"stage 1: class maps must have 32769 and 8 entries": {"stage1.stage_class": np.zeros(32768, dtype=np.uint8)},
        r"stage 0 has 6 codes \(prev_class has 7 entries\), must be a power of two 2..32768":
            {"stage0.prev_class": np.zeros(7, dtype=np.uint8)},
        r"stage 2 has 65536 codes .* must be a power of two 2..32768": {"stage2.prev_class": np.zeros(65537, dtype=np.uint8)},
        r"stage 1: freq must be \[K, 32768\]": {"stage1.freq": base["stage1.freq"][:, :-1]},
        r"stage 0: stage 0 has no previous stage": {"stage0.stage_class": np.ones(8, dtype=np.uint8),
                                                    "stage0.context": np.zeros((3, 2), dtype=np.uint8)},
        r"stage 1: a class or context index is out of range": {"stage1.prev_class": np.full(32769, 9, dtype=np.uint8)},
        r"missing arrays": {"stage3.freq": base["stage2.freq"]},
    }


@pytest.mark.parametrize("case", range(11))
def test_corrupt_tables_are_refused_naming_the_problem(case) -> None:
    base = mixed_tables(7, [3, 15, 10]).to_arrays()
    message, change = list(corruptions(base).items())[case]
    with pytest.raises(ModelError, match=message):
        ContextTables.from_arrays({**base, **change}, "t.safetensors")


@PROPERTY
@given(stage_bits=st.lists(st.integers(1, 15), min_size=1, max_size=8),
       asked=st.lists(st.integers(0, 16), max_size=10), prefix=st.integers(0, 9), change=st.booleans())
def test_fits_is_a_prefix_of_the_stage_widths(stage_bits, asked, prefix, change) -> None:
    """fits(b) iff 1 <= len(b) <= n_stages and b is the tables' widths up to len(b)."""
    tables = mixed_tables(0, stage_bits, 1, 1, 1)
    assert tables.fits(stage_bits) and not tables.fits([]) and not tables.fits(stage_bits + [stage_bits[-1]])
    cut = stage_bits[: max(1, min(prefix, len(stage_bits)))]
    assert tables.fits(cut) and tables.fits(tuple(np.asarray(cut)))
    if change:
        cut = cut[:-1] + [cut[-1] % 15 + 1]
        assert not tables.fits(cut)
    expected = 1 <= len(asked) <= len(stage_bits) and asked == stage_bits[: len(asked)]
    assert tables.fits(asked) == expected


# ---- fitting on mixed widths ----------------------------------------------------------------


def markov_clips(stage_bits: list[int], n: int, seed: int) -> list[np.ndarray]:
    """Clips of codes with structure to fit: held codes, small steps from the last code, and a
    stage's code near the previous stage's (scaled to its size)."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n):
        f = 80 + 5 * i
        out = np.empty((len(stage_bits), f), dtype=np.int64)
        for q, bits in enumerate(stage_bits):
            v = 1 << bits
            step = max(1, v // 32)
            x = int(rng.integers(0, v))
            for t in range(f):
                u = rng.random()
                if u < 0.4:
                    pass
                elif u < 0.8 or not q:
                    x = (x + int(rng.integers(-step, step + 1))) % v
                else:
                    x = ((int(out[q - 1, t]) * v >> stage_bits[q - 1]) + int(rng.integers(-step, step + 1))) % v
                out[q, t] = x
        clips.append(out)
    return clips


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stage_bits=st.lists(st.sampled_from([2, 4, 6, 8, 13]), min_size=1, max_size=4), seed=st.integers(0, 2**31))
def test_fit_on_mixed_widths(stage_bits, seed) -> None:
    """Tables fitted on codes of mixed widths have those widths, code held-out clips of them
    exactly, and beat the raw widths on codes with structure."""
    clips = markov_clips(stage_bits, 12, seed)
    tables = fit_tables(clips[:10], stage_bits, prev_classes_first=8, prev_classes=4, stage_classes=4, contexts=8,
                        alphas=(16.0, 256.0))
    assert tables.stage_bits == stage_bits and tables.stage_sizes == [1 << b for b in stage_bits]
    assert tables.fits(stage_bits) and not tables.fits([b + 1 for b in stage_bits])
    held = clips[10:]
    for arr in held:
        np.testing.assert_array_equal(decode_codes(tables, encode_codes(tables, arr), len(stage_bits), arr.shape[1]), arr)
    raw = sum(arr.shape[1] for arr in held) * sum(stage_bits)
    assert stage_cost_bits(tables, held, len(stage_bits)).sum() < raw


def test_uniform_bits_as_an_int_or_a_list_fit_the_same() -> None:
    clips = markov_clips([6, 6, 6], 10, 1)
    args = dict(prev_classes_first=8, prev_classes=4, stage_classes=4, contexts=8, alphas=(16.0, 256.0))
    assert fit_tables(clips, 6, **args).digest == fit_tables(clips, [6, 6, 6], **args).digest


def test_fit_with_a_real_15_bit_stage() -> None:
    """Two 15-bit stages then a 10-bit one: the sizes, uint32 frequencies summing to 2**21, a round
    trip, and codes with structure coded below 15 bits a code."""
    stage_bits = [15, 15, 10]
    clips = markov_clips(stage_bits, 12, 5)
    tables = fit_tables(clips[:10], stage_bits, prev_classes_first=16, prev_classes=8, stage_classes=8, contexts=16,
                        alphas=(64.0,))
    assert tables.stage_sizes == [32768, 32768, 1024]
    assert tables.stage_total_bits == [LARGE_TOTAL_BITS, LARGE_TOTAL_BITS, TOTAL_BITS]
    assert [s.freq.dtype for s in tables.stages] == [np.uint32, np.uint32, np.uint16]
    for arr in clips[10:]:
        np.testing.assert_array_equal(decode_codes(tables, encode_codes(tables, arr), 3, arr.shape[1]), arr)
    frames = sum(arr.shape[1] for arr in clips[10:])
    assert (stage_cost_bits(tables, clips[10:], 2) / frames < 15).all()


def test_fit_refuses_bad_widths() -> None:
    clips = markov_clips([4, 4], 3, 0)
    for bits, message in (([4], "codes have 2 stages, bits gives 1"), ([4, 16], "stage bits must be in 1..15"),
                          ([4, 3], "stage 1's codes must be in 0..7")):
        with pytest.raises(ModelError, match=message):
            fit_tables(clips, bits)


# ---- tables of stages of up to 4096 codes: unchanged -----------------------------------------


def test_telugu_v7_tables_digest_and_payloads_unchanged() -> None:
    """telugu-v7's tables hash to the digest they were saved with (their file's metadata, and the
    value recorded with the golden payloads), code the golden codes to the bytes the coder wrote
    before stages of different sizes (whole frames, and per-frame stage counts), and decode them."""
    tables = ContextTables.load(V7_TABLES)
    golden = np.load(GOLDEN, allow_pickle=False)
    assert tables.digest == _metadata(V7_TABLES.read_bytes())["digest"] == str(golden["digest"])
    assert tables.stage_total_bits == [TOTAL_BITS] * tables.n_stages
    codes, counts = golden["codes"].astype(np.int64), golden["counts"].astype(np.int64)
    n_q, f = codes.shape
    assert encode_codes(tables, codes) == golden["whole"].tobytes()
    assert encode_codes(tables, sent_codes(codes, counts), counts) == golden["part"].tobytes()
    np.testing.assert_array_equal(decode_codes(tables, golden["whole"].tobytes(), n_q, f), codes)
    np.testing.assert_array_equal(decode_codes(tables, golden["part"].tobytes(), n_q, f, counts),
                                  sent_codes(codes, counts))


def test_telugu_v7_model_id_unchanged() -> None:
    from telucodec import load_model

    model_id = load_model("telugu-v7").model_id
    assert model_id == "35de1e0668a7b581"
    assert model_id in (ROOT / "telucodec" / "pretrained" / "telugu-v7" / "MODEL_CARD.md").read_text()
