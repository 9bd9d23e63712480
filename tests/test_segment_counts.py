"""Per-segment codebook counts (.tcd version 3, issue 34 lever 2): a file may send fewer stages in
some segments; round trips are exact in every coding, damage is refused, rate control fills the
budget without going over it, and both runtimes decode an unsent stage as no contribution."""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import tiny_with_tables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_context_coding import random_tables  # the same valid random tables

from telucodec.errors import BitstreamError
from telucodec.formats.bitstream import (
    HEADER_SIZE,
    describe,
    read_arrays,
    read_bitstream,
    read_header,
    write_bitstream,
    write_smallest,
)
from telucodec.formats.codes import Codes
from telucodec.formats.context_coder import decode_codes, encode_codes, intervals
from telucodec.formats.rate import fit_to_rate
from telucodec.model.codec import Codec

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODEL = "00112233aabbccdd"


def segment_codes(seed: int, n_q: int, frames: int, seg: int, bits: int, repeats: bool = False) -> Codes:
    """Codes [n_q, frames] whose segments of `seg` frames send 1..n_q stages (the most somewhere),
    unsent codes 0 (the one representation: `Codes.stage_counts`)."""
    rng = np.random.default_rng(seed)
    n_seg = -(-frames // seg)
    per_seg = rng.integers(max(1, n_q - int(rng.integers(1, n_q + 1))), n_q + 1, n_seg)
    per_seg[int(rng.integers(0, n_seg))] = n_q
    counts = np.repeat(per_seg, seg)[:frames].astype(np.int64)
    arr = rng.integers(0, 1 << bits, (n_q, frames))
    if repeats:  # held codes, as speech makes them: the context coder's repeat mass in play
        arr = np.repeat(arr[:, ::3], 3, axis=1)[:, :frames]
    arr = np.where(np.arange(n_q)[:, None] < counts[None, :], arr, 0)
    return Codes(codes=torch.from_numpy(arr.astype(np.int64)), num_samples=frames * 320 - 11, model_id=MODEL,
                 sample_rate=16000, frame_rate=50, codebook_bits=bits, side_kind="rms",
                 side=[int(v) for v in rng.integers(0, 256, 3)], stage_counts=counts)


def counts_of(codes: Codes) -> np.ndarray:
    return np.asarray(codes.frame_counts)


cases = st.tuples(st.integers(0, 2**31), st.integers(2, 8), st.integers(2, 160), st.integers(1, 30),
                  st.sampled_from([1, 3, 8, 10]), st.booleans())


# ---- (a) exact round trips; every byte flip is refused ----------------------------------------


@PROPERTY
@given(cases)
def test_segment_counts_round_trip_in_every_coding_and_every_byte_flip_is_refused(case) -> None:
    seed, n_q, frames, seg, bits, repeats = case
    codes = segment_codes(seed, n_q, frames, seg, bits, repeats)
    tables = random_tables(seed, bits, n_q)
    uniform = bool(np.all(counts_of(codes) == n_q))
    for data in (write_bitstream(codes), write_bitstream(codes, entropy=True),
                 write_bitstream(codes, tables=tables), write_smallest(codes, tables)[0]):
        assert describe(data)["format_version"] == 3 or uniform
        back = read_bitstream(data, tables=tables)
        assert torch.equal(back.codes, codes.codes)
        np.testing.assert_array_equal(counts_of(back), counts_of(codes))
        assert (back.side, back.num_samples) == (codes.side, codes.num_samples)
        flips = np.random.default_rng(seed).integers(1, 256, len(data))
        for i in range(len(data)):
            damaged = bytearray(data)
            damaged[i] ^= int(flips[i])
            with pytest.raises(BitstreamError):
                read_bitstream(bytes(damaged), tables=tables)


@PROPERTY
@given(cases)
def test_context_coder_codes_only_the_sent_codes(case) -> None:
    """Sent codes round-trip through the range coder whatever the unsent positions hold, and a
    stage the previous frame did not send is coded in the context of a stream's first frame."""
    seed, n_q, frames, seg, bits, _ = case
    codes = segment_codes(seed, n_q, frames, seg, bits)
    tables = random_tables(seed, bits, n_q)
    arr, counts = codes.codes.numpy(), counts_of(codes)
    data = encode_codes(tables, arr, counts)
    np.testing.assert_array_equal(decode_codes(tables, data, n_q, frames, counts), arr)
    junk = np.where(np.arange(n_q)[:, None] < counts[None, :], arr, 1)  # unsent positions are not coded
    assert encode_codes(tables, junk, counts) == data
    starts, freqs = intervals(tables, arr, np.full(n_q, tables.size), counts)
    assert len(starts) == len(freqs) == int(counts.sum())
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for t in range(1, frames):
        for q in range(int(counts[t - 1]), int(counts[t])):
            s1, f1 = intervals(tables, arr[: q + 1, t : t + 1], np.full(q + 1, tables.size))
            assert (starts[offsets[t] + q], freqs[offsets[t] + q]) == (s1[q], f1[q])


def test_uniform_counts_write_the_old_versions_byte_for_byte() -> None:
    codes = segment_codes(3, 4, 120, 10, 10)
    full = Codes(**{**codes.__dict__, "stage_counts": None})
    same = Codes(**{**codes.__dict__, "stage_counts": np.full(120, 4)})
    tables = random_tables(3, 10, 4)
    for kwargs in ({}, {"entropy": True}, {"tables": tables}):
        assert write_bitstream(same, **kwargs) == write_bitstream(full, **kwargs)
        assert describe(write_bitstream(same, **kwargs))["format_version"] in (1, 2)
    assert read_bitstream(write_bitstream(same)).stage_counts is None


def test_writer_refuses_counts_that_are_not_one_representation() -> None:
    codes = segment_codes(5, 4, 60, 10, 10)
    counts = counts_of(codes)
    arr = codes.codes.numpy().copy()
    t = int(np.flatnonzero(counts < 4)[0])
    arr[3, t] = 7
    bad = {"nonzero unsent code": (arr, counts), "count 0": (codes.codes.numpy(), np.where(counts == 4, 4, 0)),
           "count above n_q": (codes.codes.numpy(), np.where(counts == 4, 5, counts)),
           "wrong length": (codes.codes.numpy(), counts[:-1]),
           "n_q above every count": (np.concatenate([codes.codes.numpy(), np.zeros((1, 60), np.int64)]), counts)}
    for _name, (a, c) in bad.items():
        with pytest.raises(BitstreamError, match="stage"):
            write_bitstream(Codes(**{**codes.__dict__, "codes": torch.from_numpy(a), "stage_counts": c}))


# ---- (d) the new header fields under a valid CRC: refused or bounded ---------------------------


def _refix_crc(data: bytes) -> bytes:
    body, payload = data[: HEADER_SIZE - 4], data[HEADER_SIZE:]
    return body + zlib.crc32(payload, zlib.crc32(body)).to_bytes(4, "little") + payload


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases, st.sampled_from(["plain", "entropy", "context"]), st.integers(0, 2**16 - 1), st.integers(0, 255),
       st.binary(max_size=24), st.integers(-8, 8))
def test_count_fields_behind_a_valid_crc_give_bounded_codes_or_a_named_error(case, coding, seg_field, base_field,
                                                                          count_bytes, grow) -> None:
    """Any segment length, base count and packed counts (and a payload grown or cut) under a valid
    CRC: BitstreamError, or codes of the announced shape whose counts are 1..n_q, with no more
    code slots than 32 per payload byte (the v2 bound: a small file never allocates much)."""
    seed, n_q, frames, seg, bits, _ = case
    tables = random_tables(seed, bits, n_q)
    codes = segment_codes(seed, n_q, frames, seg, bits)
    data = {"plain": write_bitstream(codes), "entropy": write_bitstream(codes, entropy=True),
            "context": write_bitstream(codes, tables=tables)}[coding]
    if read_header(data).format_version != 3:
        return
    payload = bytearray(data[HEADER_SIZE:])
    payload[0:2] = seg_field.to_bytes(2, "little")  # the count block: u16 segment length, u8 base count, counts
    payload[2] = base_field
    payload[3:3 + len(count_bytes)] = count_bytes[: max(0, len(payload) - 3)]
    payload = payload + bytes(grow) if grow >= 0 else payload[:grow]
    head = bytearray(data[:HEADER_SIZE])
    head[36:40] = len(payload).to_bytes(4, "little")
    try:
        header, arr, _ = read_arrays(_refix_crc(bytes(head) + bytes(payload)), tables=tables)
    except BitstreamError as exc:
        assert "\n" not in str(exc)
        return
    counts = header.frame_counts()
    assert arr.shape == (header.n_q, header.num_frames) and counts.shape == (header.num_frames,)
    assert int(counts.min()) >= 1 and int(counts.max()) == header.n_q
    assert arr.size <= 32 * max(1, header.payload_length)
    assert not np.any(arr[np.arange(header.n_q)[:, None] >= counts[None, :]])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 2**16 - 1), st.integers(2, 64), st.integers(1, 63), st.integers(1, 2**40))
def test_a_tiny_v3_file_cannot_claim_a_huge_clip(seg, n_q, base, num_samples) -> None:
    """Header and count fields chosen freely, payload tiny: refused before any allocation that
    the payload does not bound."""
    template = write_bitstream(segment_codes(1, 3, 40, 4, 10))
    head = bytearray(template[:HEADER_SIZE])
    head[18:26] = num_samples.to_bytes(8, "little")
    head[26] = n_q
    payload = seg.to_bytes(2, "little") + bytes([base]) + b"\xff" * 16
    head[36:40] = len(payload).to_bytes(4, "little")
    try:
        header, arr, _ = read_arrays(_refix_crc(bytes(head) + payload))
    except BitstreamError:
        return
    assert arr.size <= 32 * header.payload_length


# ---- (b) rate control fills the budget ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> Codec:
    return tiny_with_tables(7)


def uniform_choice(candidates: list[Codes], budget_bits: float) -> tuple[int, bytes]:
    """The old rule, spelled out: the most codebooks for the whole clip whose smallest file fits."""
    best = (0, b"")
    for n, codes in enumerate(candidates, start=1):
        data = write_smallest(codes)[0]
        if len(data) * 8 <= budget_bits + 1e-9:
            best = (n, data)
    return best


def expected_gain(model: Codec, codes: Codes) -> float:
    """Quality proxy: the expected latent error the sent codes remove, sum of |entry|^2 (k-means
    centroids: E[reduction | code] = |entry|^2), from the codebooks, independently of rate.py."""
    books = model.quantizer.codebooks().double()
    arr, counts = codes.codes.numpy(), counts_of(codes)
    total = 0.0
    for s in range(arr.shape[0]):
        sent = counts > s
        total += float(books[s][torch.from_numpy(arr[s][sent])].pow(2).sum())
    return total


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(8000, 64000), st.floats(0.3, 3.0), st.integers(0, 2**31 - 1), st.sampled_from([1, 2]))
def test_rate_control_fills_the_budget_at_least_as_well_as_one_count(tiny: Codec, length: int, kbps: float,
                                                                    seed: int, beam: int) -> None:
    wav = np.random.default_rng(seed).normal(0, 0.1, length).astype(np.float32)
    wav *= np.repeat(np.random.default_rng(seed + 1).uniform(0.05, 1.5, -(-length // 1600)), 1600)[:length]
    candidates = tiny.encode_prefixes(wav, tiny.sample_rate, None, beam)
    seconds = length / tiny.sample_rate
    budget = kbps * 1000 * seconds
    n, uniform = uniform_choice(candidates, budget)
    if n == 0:
        return
    choice = fit_to_rate(candidates, kbps)
    assert choice.within and len(choice.data) * 8 <= budget
    back = read_bitstream(choice.data, expected_model_id=tiny.model_id)
    assert torch.equal(back.codes, choice.codes.codes)
    np.testing.assert_array_equal(counts_of(back), counts_of(choice.codes))
    assert expected_gain(tiny, back) >= expected_gain(tiny, candidates[n - 1]) - 1e-9
    frames = candidates[0].num_frames
    # over half a stage to spare (and >= 4 segments): it is spent. (Greedy codes only: a beam's codes
    # differ per stage count, so there one more stage need not remove more expected error.)
    if beam == 1 and n < len(candidates) and frames >= 4 * 5:
        step = len(write_smallest(candidates[n])[0]) - len(uniform)
        if budget / 8 - len(uniform) >= 0.6 * step + 8:
            assert expected_gain(tiny, back) > expected_gain(tiny, candidates[n - 1]) and not back.uniform


# ---- (c) decoding: an unsent stage adds nothing; torch and ONNX agree -----------------------------


def _reference_decode(model: Codec, codes: Codes) -> torch.Tensor:
    """Frame by frame, the latent of only the sent stages (the existing prefix decode), then the
    decoder: what decoding a file with per-segment counts must give (amplitude 'none', one window)."""
    arr, counts = codes.codes, counts_of(codes)
    latent = torch.cat([model.quantizer.decode(arr[None, : int(counts[t]), t:t + 1]) for t in range(arr.shape[1])], -1)
    return model.decoder(latent)[0, 0, : codes.num_samples]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.integers(4, 120), st.integers(1, 20))
def test_decode_adds_nothing_for_unsent_stages(tiny: Codec, seed: int, frames: int, seg: int) -> None:
    made = segment_codes(seed, tiny.max_n_q, frames, seg, tiny.codebook_bits)
    codes = replace(tiny.make_codes(made.codes, made.num_samples, []), stage_counts=made.stage_counts)
    with torch.no_grad():
        want = _reference_decode(tiny, codes)
    got = tiny.decode(codes)
    assert float((got - want).abs().max()) < 1e-5
    back = read_bitstream(write_smallest(codes)[0], expected_model_id=tiny.model_id)
    assert torch.equal(tiny.decode(back), got)


def test_onnx_runtime_gives_the_same_file_and_audio(tiny: Codec, example_clips, tmp_path) -> None:
    from telucodec.deploy.export import export_onnx
    from telucodec.deploy.runtimes import OnnxRuntime, TorchRuntime
    from telucodec.formats.audio import load_audio

    export_onnx(tiny, tmp_path / "onnx", example_clips[1])
    wav = load_audio(example_clips[2])[:48000]
    torch_rt, onnx_rt = TorchRuntime(tiny), OnnxRuntime(tiny, tmp_path / "onnx")
    kbps = 1.7 * tiny.kbps_per_codebook()  # between one and two stages: segments differ
    data = fit_to_rate(torch_rt.encode_prefixes(wav, 16000), kbps).data
    assert fit_to_rate(onnx_rt.encode_prefixes(wav, 16000), kbps).data == data
    codes = read_bitstream(data, expected_model_id=tiny.model_id)
    assert describe(data)["format_version"] == 3 and len(set(counts_of(codes).tolist())) > 1
    y_torch, y_onnx = torch_rt.decode(codes), onnx_rt.decode(codes)
    assert float(np.abs(y_onnx - y_torch).max()) < 1e-4
