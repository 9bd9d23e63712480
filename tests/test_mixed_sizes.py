"""Residual-VQ stages of different codebook sizes (issue 34: e.g. 15, 15, then 10-bit codes):
.tcd version 4 (a width block, an always-present count block, codes at each stage's width)
round-trips in every coding, uniform widths still write versions 1-3, damage and forged width
or count blocks are refused, a mixed model encodes, decodes, fits a rate and tokenizes with
codes within each stage's size, and bad `quantizer.codebook_sizes` are refused in one line."""

from __future__ import annotations

import json
import zlib
from contextlib import nullcontext
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import mixed_tables  # valid tables for stages of given widths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_segment_counts import uniform_choice  # the old rule: the most codebooks whose file fits

from telucodec.config import CodecConfig, get_config
from telucodec.errors import BitstreamError, ModelError, TelucodecError
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
from telucodec.formats.rate import fit_to_rate
from telucodec.model.codec import Codec

QUICK = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODEL = "0123456789abcdef"
SIDE = st.sampled_from(["none", "rms", "lufs"])
COUNTS = st.sampled_from(["none", "full", "segments", "frames"])
MIXED_SIZES = (256, 256, 16, 16, 16, 16, 16, 16)  # 8-bit stages, then 4-bit ones (tiny's n_q = 8)
RISING = (16, 16, 256, 256, 16, 16, 16, 16)  # the first stages narrower than the widest


def mixed(widths: list[int]) -> list[int]:
    """`widths` with the last one changed when they are all equal (a mixed set for n_q >= 2)."""
    widths = list(widths)
    if len(widths) > 1 and len(set(widths)) == 1:
        widths[-1] = widths[-1] % 16 + 1
    return widths


def make_codes(seed: int, widths: list[int], frames: int, counts_mode: str, side_kind: str,
               codebook_bits: int | None = None, stage_bits: tuple[int, ...] | None = None) -> Codes:
    """Codes [n_q, frames], stage s's values in 0..2**widths[s]-1 (extremes included), frames that
    send 1..n_q stages by `counts_mode` (none/full: every frame all; segments: runs of frames; frames:
    any count per frame), unsent codes 0, side info of `side_kind` (lufs: 16-bit values)."""
    rng = np.random.default_rng(seed)
    n_q = len(widths)
    arr = np.stack([np.where(rng.random(frames) < 0.2, (1 << b) - 1, rng.integers(0, 1 << b, frames))
                    for b in widths]).astype(np.int64)
    counts = None
    if counts_mode == "full":
        counts = np.full(frames, n_q, dtype=np.int64)
    elif counts_mode in ("segments", "frames"):
        seg = int(rng.integers(1, 12)) if counts_mode == "segments" else 1
        per_seg = rng.integers(1, n_q + 1, -(-frames // seg))
        per_seg[int(rng.integers(0, per_seg.size))] = n_q
        counts = np.repeat(per_seg, seg)[:frames].astype(np.int64)
        arr = np.where(np.arange(n_q)[:, None] < counts[None, :], arr, 0)
    side = {"none": [], "rms": [int(v) for v in rng.integers(0, 256, 3)],
            "lufs": [int(v) for v in rng.integers(0, 1 << 16, 2)]}[side_kind]
    return Codes(codes=torch.from_numpy(arr), num_samples=frames * 320 - int(rng.integers(0, 320)), model_id=MODEL,
                 sample_rate=16000, frame_rate=50, codebook_bits=codebook_bits or max(widths), side_kind=side_kind,
                 side=side, stage_counts=counts, stage_bits=tuple(widths) if stage_bits is None else stage_bits)


def nominal_kbps(widths: list[int], counts: np.ndarray, frame_rate: int) -> float:
    """The widths of the codes each frame sends, summed over frames, x frame rate / frames."""
    sent = sum(sum(widths[: int(n)]) for n in counts)
    return sent * frame_rate / len(counts) / 1000.0


def refix_crc(data: bytes) -> bytes:
    body, payload = data[: HEADER_SIZE - 4], data[HEADER_SIZE:]
    return body + zlib.crc32(payload, zlib.crc32(body)).to_bytes(4, "little") + payload


def with_payload(data: bytes, payload: bytes, **fields: int) -> bytes:
    """`data`'s header (payload length set, `fields` at their byte offsets) + `payload`, CRC valid."""
    head = bytearray(data[:HEADER_SIZE])
    head[36:40] = len(payload).to_bytes(4, "little")
    for offset, value in fields.items():
        head[int(offset.lstrip("_"))] = value
    return refix_crc(bytes(head) + bytes(payload))


# ---- 1. version 4 round trips --------------------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.lists(st.integers(1, 16), min_size=2, max_size=20), st.integers(1, 90),
       COUNTS, SIDE)
def test_version_4_round_trips_plain_and_static_ans(seed, widths, frames, counts_mode, side_kind) -> None:
    widths = mixed(widths)
    codes = make_codes(seed, widths, frames, counts_mode, side_kind)
    counts = np.asarray(codes.frame_counts)
    want_kbps = nominal_kbps(widths, counts, 50)
    assert codes.kbps_nominal == pytest.approx(want_kbps)
    plain = write_bitstream(codes)
    files = {"plain": plain, "static_ans": write_bitstream(codes, entropy=True)}
    smallest, plain_size, _ = write_smallest(codes)
    assert plain_size == len(plain) and len(smallest) <= len(plain)
    for coding, data in [*files.items(), ("smallest", smallest)]:
        info = describe(data)
        assert info["format_version"] == 4 and info["stage_bits"] == widths
        assert info["codebook_bits"] == max(widths) and info["n_q"] == len(widths)
        assert coding == "smallest" or info["coding"] == coding
        assert info["kbps_nominal"] == pytest.approx(want_kbps)
        back = read_bitstream(data)
        assert torch.equal(back.codes, codes.codes)
        assert back.widths == widths and back.stage_bits == tuple(widths) and back.codebook_bits == max(widths)
        np.testing.assert_array_equal(back.frame_counts, counts)
        assert (back.stage_counts is None) == bool(np.all(counts == len(widths)))
        assert (back.side_kind, back.side, back.num_samples) == (codes.side_kind, codes.side, codes.num_samples)
        assert back.kbps_nominal == pytest.approx(want_kbps)
        assert write_bitstream(back, entropy=coding == "static_ans") == files.get(coding, data) or coding == "smallest"


@QUICK
@given(st.integers(0, 2**31), st.lists(st.integers(1, 16), min_size=1, max_size=20), st.integers(1, 60), COUNTS,
       SIDE, st.integers(0, 16))
def test_uniform_widths_still_write_versions_1_to_3(seed, widths, frames, counts_mode, side_kind, wider) -> None:
    """Equal widths, named per stage or not (and a model's codebook bits above them: a prefix of
    a mixed model's stages that happen to agree): the same bytes as the uniform writer's, version
    <= 3, read back as uniform codes of that width."""
    bits = widths[0]
    n_q = len(widths)
    named = make_codes(seed, [bits] * n_q, frames, counts_mode, side_kind, codebook_bits=max(bits, wider))
    plain_codes = replace(named, stage_bits=(), codebook_bits=bits)
    for kwargs in ({}, {"entropy": True}):
        data = write_bitstream(named, **kwargs)
        assert data == write_bitstream(plain_codes, **kwargs)
        assert describe(data)["format_version"] <= 3 and describe(data)["stage_bits"] == [bits] * n_q
        back = read_bitstream(data)
        assert torch.equal(back.codes, named.codes) and back.stage_bits == () and back.widths == [bits] * n_q


# ---- 1b. context coding of mixed widths (the tables of tests/test_context_mixed.py) -----------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.lists(st.sampled_from([1, 2, 3, 5, 8, 10, 12]), min_size=2, max_size=6),
       st.integers(1, 40), COUNTS, SIDE)
def test_version_4_round_trips_context_coded(seed, widths, frames, counts_mode, side_kind) -> None:
    widths = mixed(widths)
    tables = mixed_tables(seed, widths)
    codes = make_codes(seed, widths, frames, counts_mode, side_kind)
    data = write_bitstream(codes, tables=tables)
    info = describe(data)
    assert (info["format_version"], info["coding"], info["stage_bits"]) == (4, "context", widths)
    back = read_bitstream(data, tables=tables)
    assert torch.equal(back.codes, codes.codes) and back.widths == widths
    np.testing.assert_array_equal(back.frame_counts, codes.frame_counts)
    other = mixed_tables(seed + 1, [*widths[:-1], widths[-1] % 16 + 1])  # the last stage another width
    with pytest.raises(BitstreamError):
        write_bitstream(codes, tables=other)


# ---- 3. damage and forged blocks -------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.lists(st.integers(1, 16), min_size=2, max_size=6), st.integers(1, 24), COUNTS,
       SIDE)
def test_every_byte_change_and_truncation_of_a_version_4_file_is_refused(seed, widths, frames, counts_mode,
                                                                        side_kind) -> None:
    codes = make_codes(seed, mixed(widths), frames, counts_mode, side_kind)
    flips = np.random.default_rng(seed).integers(1, 256, 4096)
    for data in (write_bitstream(codes), write_bitstream(codes, entropy=True)):
        assert read_header(data).format_version == 4
        for i in range(len(data)):
            damaged = bytearray(data)
            damaged[i] ^= int(flips[i % flips.size])
            with pytest.raises(BitstreamError):
                read_bitstream(bytes(damaged))
        for end in range(len(data)):
            with pytest.raises(BitstreamError):
                read_bitstream(data[:end])
        with pytest.raises(BitstreamError):
            read_bitstream(data + b"\x00")


WIDTH_FORGERIES = ("zero", "above codebook bits", "all equal", "max below codebook bits", "header bits")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.lists(st.integers(1, 16), min_size=2, max_size=12), st.integers(1, 30), COUNTS,
       st.sampled_from(WIDTH_FORGERIES), st.integers(0, 255), st.booleans())
def test_a_forged_width_block_behind_a_valid_crc_is_refused_naming_it(seed, widths, frames, counts_mode, forgery,
                                                                     value, entropy) -> None:
    widths = mixed(widths)
    data = write_bitstream(make_codes(seed, widths, frames, counts_mode, "rms"), entropy=entropy)
    n_q, top = len(widths), max(widths)
    payload = bytearray(data[HEADER_SIZE:])
    at = value % n_q
    fields = {}
    if forgery == "zero":
        payload[at] = 0
    elif forgery == "above codebook bits":
        payload[at] = top + 1 + value % (256 - top - 1)
    elif forgery == "all equal":
        payload[:n_q] = bytes([top]) * n_q
    elif forgery == "max below codebook bits":
        payload[:n_q] = bytes(min(b, top - 1) for b in widths)  # the header's bits above every width
    else:  # the header's codebook bits no longer the widest width (still a valid 1..16)
        fields = {"_27": [v for v in range(1, 17) if v != top][value % 15]}
    with pytest.raises(BitstreamError, match="stage widths") as err:
        read_bitstream(with_payload(data, bytes(payload), **fields))
    assert "\n" not in str(err.value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.lists(st.integers(1, 12), min_size=2, max_size=8), st.integers(1, 120), COUNTS,
       st.booleans(), st.integers(1, 12) | st.integers(0, 2**16 - 1), st.integers(1, 8) | st.integers(0, 255),
       st.just(b"") | st.binary(max_size=24), st.just(0) | st.integers(-8, 8), st.sampled_from([4, 4, 3]))
def test_forged_count_blocks_give_bounded_codes_or_a_named_error(seed, widths, frames, counts_mode, entropy,
                                                                seg_field, base_field, count_bytes, grow,
                                                                version) -> None:
    """Any segment length, base count and packed counts of a version-4 file (and a payload grown
    or cut, and the version byte 3 or 4) under a valid CRC: a one-line BitstreamError, or codes of
    the announced shape within each stage's width, counts 1..n_q, unsent codes 0, and no more
    code slots than 32 per payload byte (a small file never allocates much)."""
    widths = mixed(widths)
    n_q = len(widths)
    data = write_bitstream(make_codes(seed, widths, frames, counts_mode, "none"), entropy=entropy)
    payload = bytearray(data[HEADER_SIZE:])
    payload[n_q: n_q + 2] = seg_field.to_bytes(2, "little")  # after the width block: u16 L, u8 base, counts
    payload[n_q + 2] = base_field
    payload[n_q + 3: n_q + 3 + len(count_bytes)] = count_bytes[: max(0, len(payload) - n_q - 3)]
    payload = payload + bytes(grow) if grow >= 0 else payload[:grow]
    try:
        header, arr, _ = read_arrays(with_payload(data, bytes(payload), _4=version))
    except BitstreamError as exc:
        assert "\n" not in str(exc)
        return
    counts = header.frame_counts()
    assert arr.shape == (header.n_q, header.num_frames) and counts.shape == (header.num_frames,)
    assert int(counts.min()) >= 1 and int(counts.max()) == header.n_q
    assert arr.size <= 32 * max(1, header.payload_length)
    assert not np.any(arr[np.arange(header.n_q)[:, None] >= counts[None, :]])
    assert all(int(row.max(initial=0)) < 1 << b for row, b in zip(arr, header.widths))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.integers(0, 2**31), st.lists(st.integers(1, 12), min_size=2, max_size=8),
       st.integers(1, 80), COUNTS, COUNTS, st.booleans())
def test_another_files_count_block_is_refused_or_read_as_that_files_counts(seed, other, widths, frames, mode,
                                                                           other_mode, entropy) -> None:
    """A version-4 file with the count block of another valid file of the same shape spliced in
    (the CRC fixed): a one-line BitstreamError, or codes within each width for exactly the counts
    the block says (the same file where the blocks agree)."""
    widths = mixed(widths)
    n_q = len(widths)
    data = write_bitstream(make_codes(seed, widths, frames, mode, "rms"), entropy=entropy)
    donor_codes = make_codes(other, widths, frames, other_mode, "rms")
    donor = write_bitstream(replace(donor_codes, num_samples=read_header(data).num_samples))
    own, theirs = read_header(data).count_bytes, read_header(donor).count_bytes
    block = donor[HEADER_SIZE + n_q: HEADER_SIZE + n_q + theirs]
    payload = data[HEADER_SIZE: HEADER_SIZE + n_q] + block + data[HEADER_SIZE + n_q + own:]
    try:
        header, arr, _ = read_arrays(with_payload(data, payload))
    except BitstreamError as exc:
        assert "\n" not in str(exc)
        return
    np.testing.assert_array_equal(header.frame_counts(), donor_codes.frame_counts)
    assert all(int(row.max(initial=0)) < 1 << b for row, b in zip(arr, header.widths))
    assert not np.any(arr[np.arange(n_q)[:, None] >= header.frame_counts()[None, :]])
    if block == data[HEADER_SIZE + n_q: HEADER_SIZE + n_q + own]:
        assert with_payload(data, payload) == data


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 2**16 - 1), st.lists(st.integers(1, 16), min_size=2, max_size=64), st.integers(1, 64),
       st.integers(1, 2**40), st.binary(max_size=24), st.booleans())
def test_a_tiny_version_4_file_cannot_claim_a_huge_clip(seg, widths, base, num_samples, tail, entropy) -> None:
    """Header, width and count fields chosen freely (widths valid), payload tiny: refused before
    any allocation the payload does not bound."""
    widths = mixed(widths)
    template = write_bitstream(make_codes(1, [8, 4, 4], 40, "segments", "none"), entropy=entropy)
    payload = bytes(widths) + seg.to_bytes(2, "little") + bytes([min(base, len(widths))]) + tail
    try:
        header, arr, _ = read_arrays(with_payload(template, payload, _26=len(widths), _27=max(widths),
                                                  **{f"_{18 + i}": b for i, b in enumerate(num_samples.to_bytes(8, "little"))}))
    except BitstreamError as exc:
        assert "\n" not in str(exc)
        return
    assert arr.size <= 32 * header.payload_length


# ---- 4. a model whose stages differ in size ---------------------------------------------------------


def mixed_config(sizes: tuple[int, ...] = MIXED_SIZES) -> CodecConfig:
    cfg = get_config("tiny")
    return replace(cfg, quantizer=replace(cfg.quantizer, codebook_size=max(sizes), codebook_sizes=sizes))


def started(sizes: tuple[int, ...] = MIXED_SIZES, tables: bool = True) -> Codec:
    """A mixed tiny model with started codebooks (later stages smaller, as trained RVQ stages are)
    and, with `tables`, context tables for its widths (so rate control codes with them)."""
    torch.manual_seed(0)
    model = Codec(mixed_config(sizes)).eval()
    with torch.no_grad():
        model.quantizer.set_codebooks([torch.randn_like(layer.codebook) * 0.3 * 0.6 ** s
                                       for s, layer in enumerate(model.quantizer.layers)])
    if tables:
            model.entropy_tables = mixed_tables(7, model.stage_bits)
    return model


@pytest.fixture(scope="module", params=[MIXED_SIZES, RISING], ids=["falling", "rising"])
def model(request) -> Codec:
    return started(request.param)


def speech_like(seed: int, length: int) -> np.ndarray:
    """Noise whose level changes every 0.1 s (so rate control has quiet and loud segments)."""
    rng = np.random.default_rng(seed)
    wav = rng.normal(0, 0.1, length).astype(np.float32)
    return wav * np.repeat(rng.uniform(0.05, 1.5, -(-length // 1600)), 1600)[:length].astype(np.float32)


def mixed_expected_gain(model: Codec, codes: Codes) -> float:
    """Expected latent error the sent codes remove: sum of |entry|^2 over the sent codes, each from
    its own stage's codebook (independently of rate.py's registered table)."""
    books = [b.double() for b in model.quantizer.stage_codebooks()]
    arr, counts = np.asarray(codes.codes), np.asarray(codes.frame_counts)
    return sum(float(books[s][torch.from_numpy(arr[s][counts > s])].pow(2).sum()) for s in range(arr.shape[0]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1), st.integers(800, 16000), st.sampled_from([1, 2]))
def test_a_mixed_model_encodes_within_each_stage_and_its_files_decode(model: Codec, seed, length, beam) -> None:
    wav = speech_like(seed, length)
    sizes = model.config.quantizer.stage_sizes
    candidates = model.encode_prefixes(wav, model.sample_rate, None, beam)
    for n, codes in enumerate(candidates, start=1):
        assert codes.widths == model.stage_bits[:n] and codes.n_q == n
        for s, row in enumerate(codes.codes):
            assert 0 <= int(row.min()) and int(row.max()) < sizes[s]
    codes = candidates[-1]
    for data in (write_smallest(codes)[0], write_bitstream(codes), write_bitstream(codes, entropy=True)):
        assert describe(data)["format_version"] == 4 and describe(data)["stage_bits"] == model.stage_bits
        back = read_bitstream(data, expected_model_id=model.model_id)
        assert torch.equal(back.codes, codes.codes)
        assert torch.equal(model.decode(back), model.decode(codes))


def test_compress_and_decompress_with_a_mixed_model(model: Codec) -> None:
    import telucodec.api as api

    wav = speech_like(3, 12000)
    for kwargs in ({}, {"entropy": True}, {"kbps": 1.5}, {"kbps": 100.0}):
        with pytest.warns(UserWarning) if kwargs.get("kbps", 0) > model.nominal_kbps() else nullcontext():
            data = api.compress(wav, model.sample_rate, model=model, runtime="torch", **kwargs)
        audio, rate = api.decompress(data, model=model, runtime="torch")
        assert rate == model.sample_rate and audio.shape == wav.shape and np.isfinite(audio).all()
        if "kbps" in kwargs:
            assert len(data) * 8 <= kwargs["kbps"] * 1000 * wav.size / model.sample_rate
        else:
            assert describe(data)["format_version"] == 4


@QUICK
@given(st.integers(0, 2**31), st.integers(1, 40), st.data())
def test_decode_refuses_a_code_beyond_its_stage_size(model: Codec, seed, frames, data) -> None:
    sizes = model.config.quantizer.stage_sizes
    rng = np.random.default_rng(seed)
    arr = np.stack([rng.integers(0, size, frames) for size in sizes])
    stage = data.draw(st.sampled_from([s for s, size in enumerate(sizes) if size < max(sizes)]))
    arr[stage, data.draw(st.integers(0, frames - 1))] = data.draw(st.integers(sizes[stage], max(sizes) - 1))
    codes = model.make_codes(torch.from_numpy(arr), frames * model.hop, [])
    with pytest.raises(ModelError, match=f"stage {stage}"):
        model.decode(codes)
    with pytest.raises(BitstreamError, match=f"stage {stage}"):  # nor can a file carry it
        write_bitstream(codes)
    wide = replace(codes, stage_bits=())  # every stage claims the widest width: not this model's codes
    with pytest.raises(ModelError, match="codebook bits"):
        model.decode(wide)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(8000, 32000), st.floats(0.3, 2.2), st.integers(0, 2**31 - 1), st.sampled_from([1, 2]))
def test_rate_control_of_a_mixed_model_fits_and_beats_one_count(model: Codec, length, kbps, seed, beam) -> None:
    wav = speech_like(seed, length)
    candidates = model.encode_prefixes(wav, model.sample_rate, None, beam)
    budget = kbps * 1000 * length / model.sample_rate
    n, _ = uniform_choice(candidates, budget)
    if n == 0:
        with pytest.raises(TelucodecError, match="--kbps"):
            fit_to_rate(candidates, kbps)
        return
    choice = fit_to_rate(candidates, kbps)
    assert choice.within and len(choice.data) * 8 <= budget
    back = read_bitstream(choice.data, expected_model_id=model.model_id)
    assert torch.equal(back.codes, choice.codes.codes) and back.widths == model.stage_bits[: back.n_q]
    np.testing.assert_array_equal(back.frame_counts, choice.codes.frame_counts)
    assert mixed_expected_gain(model, back) >= mixed_expected_gain(model, candidates[n - 1]) - 1e-9


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=8, max_size=8), st.floats(0.0, 30.0))
def test_n_q_for_kbps_picks_the_most_stages_whose_widths_fit(bits, kbps) -> None:
    model = Codec(mixed_config(tuple(1 << b for b in bits)))
    widths = model.stage_bits
    assert widths == bits
    fits = [n for n in range(1, 9) if sum(widths[:n]) * model.frame_rate / 1000 <= kbps + 1e-9]
    if not fits:
        with pytest.raises(ModelError, match="--kbps"):
            model.n_q_for_kbps(kbps)
        return
    n = model.n_q_for_kbps(kbps)
    assert n == max(fits) and model.nominal_kbps(n) == pytest.approx(sum(widths[:n]) * model.frame_rate / 1000)
    assert model.n_q_for_kbps(None) == 8 and model.nominal_kbps() == pytest.approx(sum(widths) * model.frame_rate / 1000)
    assert model.nominal_kbps(0) == 0  # no stages, not all of them


BAD_SIZES = {"wrong length": ([256, 16], {}), "not a power of two": ([256, 256, 100, 16, 16, 16, 16, 16], {}),
             "size 1": ([256, 256, 1, 16, 16, 16, 16, 16], {}),
             "codebook_size not the largest": (list(MIXED_SIZES), {"codebook_size": 512}),
             "largest above codebook_size": ([512, *MIXED_SIZES[1:]], {}),
             "factorized": (list(MIXED_SIZES), {"codebook_dim": 8}),
             "not integers": ([256, 256, "16", 16, 16, 16, 16, 16], {}), "not a list": (16, {})}


@pytest.mark.parametrize("name", BAD_SIZES)
def test_bad_codebook_sizes_are_refused_in_one_line(name: str) -> None:
    sizes, more = BAD_SIZES[name]
    data = get_config("tiny").to_dict()
    data["quantizer"] = {**data["quantizer"], "codebook_size": 256, **more, "codebook_sizes": sizes}
    with pytest.raises(TelucodecError, match="quantizer.codebook_sizes") as err:
        CodecConfig.from_dict(data)
    assert "\n" not in str(err.value)


def test_good_codebook_sizes_load_and_keep_uniform_ids() -> None:
    data = get_config("tiny").to_dict()
    data["quantizer"] = {**data["quantizer"], "codebook_size": 256, "codebook_sizes": list(MIXED_SIZES)}
    cfg = CodecConfig.from_dict(json.loads(json.dumps(data)))
    assert cfg.quantizer.stage_sizes == list(MIXED_SIZES) and cfg.quantizer.stage_bits == [8, 8, 4, 4, 4, 4, 4, 4]
    assert CodecConfig.from_dict(cfg.to_dict()) == cfg
    uniform = get_config("tiny")
    assert "codebook_sizes" not in uniform.architecture() and "codebook_sizes" in cfg.architecture()


@settings(max_examples=6, deadline=None)
@given(st.integers(1, 12))
def test_sizes_that_name_one_size_for_every_stage_keep_the_uniform_model_id(bits) -> None:
    """`codebook_sizes` = [K] * n_q is the uniform model of size K: the same weights, codes and
    files, so the same id (`architecture()` hashes the field only where the sizes differ)."""
    ids = []
    for sizes in ((), (1 << bits,) * 8):
        cfg = get_config("tiny")
        torch.manual_seed(bits)
        ids.append(Codec(replace(cfg, quantizer=replace(cfg.quantizer, codebook_size=1 << bits,
                                                        codebook_sizes=sizes))).model_id)
    assert ids[0] == ids[1]


def test_the_shipped_model_id_is_unchanged() -> None:
    import telucodec

    assert telucodec.load_model("telugu-v7").model_id == "35de1e0668a7b581"


# ---- 5. tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes,kbps", [(MIXED_SIZES, None), (MIXED_SIZES, 1.3), (RISING, 0.5), (RISING, 1.3)])
def test_tokenize_writes_stage_bits_and_reads_back_each_width(tmp_path, sizes, kbps) -> None:
    from telucodec.deploy.tokenize import tokenize_dataset
    from telucodec.formats import tokens

    model = started(sizes, tables=False)
    data = tmp_path / "wavs"
    data.mkdir()
    for i, length in enumerate((3200, 5000, 8000)):
        sf.write(data / f"utt{i}.wav", speech_like(i, length), 16000)
    out = tmp_path / "tokens"
    summary = tokenize_dataset(data, out, model, kbps=kbps, runtime="torch")
    assert summary["tokenized"] == 3
    assert len(summary["codebook_usage"]) == model.n_q_for_kbps(kbps)
    assert all(0 < u <= 1 for u in summary["codebook_usage"])  # of each stage's own size
    meta = json.loads((out / "meta.json").read_text())
    n_q = model.n_q_for_kbps(kbps)
    assert meta["stage_bits"] == model.stage_bits[:n_q] and meta["n_q"] == n_q
    for i, length in enumerate((3200, 5000, 8000)):
        codes = tokens.codes_for(out, f"utt{i}", model)
        assert codes.widths == model.stage_bits[:n_q]
        want = model.encode(speech_like(i, length), 16000, kbps)
        assert torch.equal(codes.codes, want.codes)
        assert torch.equal(model.decode(codes), model.decode(want))
        back = read_bitstream(write_smallest(codes)[0], expected_model_id=model.model_id)
        assert back.widths == codes.widths and torch.equal(back.codes, codes.codes)
