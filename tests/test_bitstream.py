"""The .tcd format: round trips, golden files, bit packing, and fuzzing of the parser."""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telucodec.errors import TelucodecError
from telucodec.formats.bitstream import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    BitstreamError,
    BitstreamHeader,
    describe,
    entropy_saving,
    num_frames_for,
    pack_bits,
    read_bitstream,
    read_header,
    unpack_bits,
    write_bitstream,
    write_smallest,
)
from telucodec.formats.codes import Codes
from telucodec.formats.context_tables import ContextTables, register

GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_NAMES = ["v1_plain_n3_b10_none", "v1_plain_n8_b12_rms", "v1_entropy_n3_b10_lufs", "v2_context_n3_b10_rms"]
GOLDEN_TABLES = ContextTables.load(GOLDEN / "v2_context_tables.safetensors")
# what loading the model that wrote the v2 file would do: its tables, under its id
register(json.loads((GOLDEN / "v2_context_n3_b10_rms.json").read_text())["model_id"], GOLDEN_TABLES)
MODEL = "0123456789abcdef"
HEADER_BODY = struct.Struct("<4sBB8sIQBBHBBII")  # the documented layout, spelled out independently

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_codes(
    n_q: int = 3,
    frames: int = 50,
    bits: int = 10,
    seed: int = 0,
    side_kind: str = "none",
    side: list[int] | None = None,
    sample_rate: int = 16000,
    frame_rate: int = 50,
) -> Codes:
    rng = np.random.default_rng(seed)
    hop = sample_rate // frame_rate
    return Codes(
        codes=torch.from_numpy(rng.integers(0, 1 << bits, size=(n_q, frames))),
        num_samples=frames * hop - int(rng.integers(0, hop)),  # partial last frame
        model_id=MODEL,
        sample_rate=sample_rate,
        frame_rate=frame_rate,
        codebook_bits=bits,
        side_kind=side_kind,
        side=side or [],
    )


def assert_same(a: Codes, b: Codes) -> None:
    assert a.codes.dtype == torch.int64 and b.codes.dtype == torch.int64
    assert torch.equal(a.codes, b.codes)
    for name in (
        "num_samples",
        "model_id",
        "sample_rate",
        "frame_rate",
        "codebook_bits",
        "side_kind",
        "side",
    ):
        assert getattr(a, name) == getattr(b, name), name


def forge(payload: bytes = b"", crc: int | None = None, **fields: int) -> bytes:
    """A file with arbitrary header fields and a *valid* CRC: reaches the checks behind the CRC."""
    f = dict(
        magic=MAGIC,
        version=1,  # plain and static-ANS files are version 1
        flags=0,
        model=bytes.fromhex(MODEL),
        sample_rate=16000,
        num_samples=16000,
        n_q=3,
        bits=10,
        frame_rate=50,
        side_kind=0,
        side_bits=8,
        side_count=0,
        payload_length=len(payload),
    )
    f.update(fields)
    body = HEADER_BODY.pack(*f.values())
    if crc is None:
        crc = zlib.crc32(payload, zlib.crc32(body))
    return body + struct.pack("<I", crc) + payload


def refix_crc(data: bytes) -> bytes:
    body, payload = data[: HEADER_SIZE - 4], data[HEADER_SIZE:]
    return body + struct.pack("<I", zlib.crc32(payload, zlib.crc32(body))) + payload


# ---------------------------------------------------------------------------------------------
# bit packing


def test_pack_bits_layout_is_msb_first() -> None:
    assert pack_bits(np.array([1, 2, 3]), 2) == bytes([0b01101100])
    assert pack_bits(np.array([0x3FF, 0]), 10) == bytes([0xFF, 0xC0, 0x00])
    assert pack_bits(np.array([], dtype=np.int64), 7) == b""


@settings(max_examples=160, deadline=None)
@given(bits=st.integers(1, 16), data=st.data())
def test_pack_unpack_round_trip_every_width(bits: int, data: st.DataObject) -> None:
    values = data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=300))
    arr = np.array(values, dtype=np.int64)
    packed = pack_bits(arr, bits)
    assert len(packed) == -(-len(values) * bits // 8)
    out = unpack_bits(packed, bits, len(values))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("bits", range(1, 17))
def test_pack_unpack_extremes_every_width(bits: int) -> None:
    rng = np.random.default_rng(bits)
    arr = np.concatenate([[0, (1 << bits) - 1], rng.integers(0, 1 << bits, size=997)])
    np.testing.assert_array_equal(unpack_bits(pack_bits(arr, bits), bits, arr.size), arr)


def test_pack_rejects_bad_input() -> None:
    for values, bits in [([4], 2), ([-1], 8), ([1 << 16], 16), ([1], 0), ([1], 17)]:
        with pytest.raises(BitstreamError):
            pack_bits(np.array(values), bits)
    with pytest.raises(BitstreamError, match="truncated"):
        unpack_bits(b"\x00", 10, 1)
    with pytest.raises(BitstreamError):
        unpack_bits(b"\x00" * 4, 0, 1)


def test_pack_is_fast_for_one_hour() -> None:
    """180,000 frames x 12 codebooks (1 h at 6 kbps) must pack and unpack in well under a second."""
    arr = np.random.default_rng(0).integers(0, 1024, size=12 * 180_000)
    t0 = time.perf_counter()
    out = unpack_bits(pack_bits(arr, 10), 10, arr.size)
    elapsed = time.perf_counter() - t0
    np.testing.assert_array_equal(out, arr)
    assert elapsed < 3.0, f"pack+unpack took {elapsed:.2f} s"


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("entropy", [False, True])
@pytest.mark.parametrize(
    "side_kind, side", [("none", []), ("rms", [0, 3, 255, 7]), ("rms", [1, 300, 65535]), ("lufs", [120])]
)
def test_round_trip_every_side_kind(side_kind: str, side: list[int], entropy: bool) -> None:
    codes = make_codes(n_q=4, frames=73, side_kind=side_kind, side=side, seed=len(side))
    data = write_bitstream(codes, entropy=entropy)
    assert_same(read_bitstream(data, expected_model_id=MODEL), codes)
    assert read_header(data).side_bits == (16 if side and max(side) > 255 else 8)


@FAST
@given(
    n_q=st.integers(1, 8),
    frames=st.integers(1, 40),
    bits=st.integers(1, 16),
    rates=st.sampled_from([(16000, 50), (8000, 1000), (48000, 1), (24000, 75), (44100, 86)]),
    side_kind=st.sampled_from(["none", "rms", "lufs"]),
    side=st.lists(st.integers(0, 65535), max_size=6),
    entropy=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_property(
    n_q: int,
    frames: int,
    bits: int,
    rates: tuple[int, int],
    side_kind: str,
    side: list[int],
    entropy: bool,
    seed: int,
) -> None:
    sample_rate, frame_rate = rates
    rng = np.random.default_rng(seed)
    # frames = ceil(num_samples * frame_rate / sample_rate): pick num_samples inside that frame
    num_samples = int(
        rng.integers((frames - 1) * sample_rate // frame_rate + 1, frames * sample_rate // frame_rate + 1)
    )
    assert num_frames_for(num_samples, sample_rate, frame_rate) == frames
    # a mix of uniform and skewed rows so both entropy modes are exercised
    high = 1 << bits
    rows = [
        rng.integers(0, high, size=frames) if q % 2 else rng.integers(0, min(high, 3), size=frames)
        for q in range(n_q)
    ]
    codes = Codes(
        codes=torch.from_numpy(np.stack(rows).astype(np.int64)),
        num_samples=num_samples,
        model_id=f"{seed:016x}",
        sample_rate=sample_rate,
        frame_rate=frame_rate,
        codebook_bits=bits,
        side_kind=side_kind,
        side=[] if side_kind == "none" else side,
    )
    data = write_bitstream(codes, entropy=entropy)
    assert_same(read_bitstream(data, expected_model_id=codes.model_id), codes)
    assert read_header(data).entropy_coded == entropy


def test_accepts_bytearray_and_memoryview() -> None:
    codes = make_codes()
    data = write_bitstream(codes)
    assert_same(read_bitstream(bytearray(data)), codes)
    assert_same(read_bitstream(memoryview(data)), codes)
    assert describe(bytearray(data))["bytes"] == len(data)


def test_model_id_is_case_insensitive_and_normalised() -> None:
    codes = make_codes()
    codes.model_id = MODEL.upper()
    out = read_bitstream(write_bitstream(codes), expected_model_id=MODEL.upper())
    assert out.model_id == MODEL


# ---------------------------------------------------------------------------------------------
# header, describe, bitrate


def test_header_fields_and_size() -> None:
    codes = make_codes(n_q=6, frames=100, side_kind="rms", side=[1, 2, 3])
    data = write_bitstream(codes)
    h = read_header(data)
    assert isinstance(h, BitstreamHeader)
    assert HEADER_SIZE == 44 and HEADER_BODY.size + 4 == HEADER_SIZE
    assert (h.format_version, h.model_id, h.n_q, h.codebook_bits, h.frame_rate) == (1, MODEL, 6, 10, 50)
    assert (h.side_kind, h.side_count, h.num_frames, h.entropy_coded) == ("rms", 3, 100, False)
    assert h.payload_length == len(data) - HEADER_SIZE == 3 + 6 * 100 * 10 // 8


def test_describe_has_the_info_json_keys() -> None:
    codes = make_codes(frames=500)
    data = write_bitstream(codes)
    info = describe(data)
    design_keys = {
        "format_version",
        "model_id",
        "sample_rate",
        "num_samples",
        "duration_s",
        "n_q",
        "codebook_bits",
        "frame_rate",
        "kbps_nominal",
        "kbps_actual",
    }
    assert design_keys <= set(info)
    assert info["kbps_nominal"] == pytest.approx(1.5)
    assert info["duration_s"] == pytest.approx(codes.num_samples / 16000)
    assert info["kbps_actual"] == pytest.approx(len(data) * 8 / info["duration_s"] / 1000)
    assert info["bytes"] == len(data) and info["entropy_coded"] is False and info["side_kind"] == "none"
    json.dumps(info)  # plain JSON types only


@pytest.mark.parametrize("n_q", [3, 12])
@pytest.mark.parametrize("side_kind, side", [("none", []), ("lufs", [100])])
def test_actual_kbps_within_3_percent_for_10_s(n_q: int, side_kind: str, side: list[int]) -> None:
    codes = Codes(
        codes=torch.from_numpy(np.random.default_rng(0).integers(0, 1024, size=(n_q, 500))),
        num_samples=160_000,
        model_id=MODEL,
        sample_rate=16000,
        frame_rate=50,
        codebook_bits=10,
        side_kind=side_kind,
        side=side,
    )
    info = describe(write_bitstream(codes))
    assert info["kbps_nominal"] == pytest.approx(n_q * 0.5)
    assert info["kbps_actual"] == pytest.approx(info["kbps_nominal"], rel=0.03)


# ---------------------------------------------------------------------------------------------
# entropy coding


def test_entropy_round_trip_and_saving_on_skewed_codes() -> None:
    rng = np.random.default_rng(5)
    skewed = np.minimum(rng.geometric(0.02, size=(6, 3000)) - 1, 1023)
    codes = Codes(codes=torch.from_numpy(skewed), num_samples=3000 * 320, model_id=MODEL,
                  sample_rate=16000, frame_rate=50, codebook_bits=10)
    data = write_bitstream(codes, entropy=True)
    assert_same(read_bitstream(data), codes)
    assert describe(data)["entropy_coded"] is True
    saving = entropy_saving(codes)
    assert saving == pytest.approx(1 - len(data) / len(write_bitstream(codes)))
    assert saving > 0.1


def test_entropy_never_much_worse_than_plain() -> None:
    """Uniform codes do not compress; the writer falls back to raw segments (+1 byte each)."""
    codes = make_codes(n_q=12, frames=500, seed=9)
    data = write_bitstream(codes, entropy=True)
    assert_same(read_bitstream(data), codes)
    assert len(data) <= len(write_bitstream(codes)) + codes.n_q
    assert entropy_saving(codes) > -0.01


def test_write_smallest_never_keeps_the_bigger_file() -> None:
    """Issue 27: `--entropy` wrote 3998 bytes where the plain file had 3980."""
    short = make_codes(n_q=12, frames=50, seed=3)  # uniform codes, short: the ANS tables cost more than they save
    data, plain, coded = write_smallest(short)
    assert coded > plain and data == write_bitstream(short) and not describe(data)["entropy_coded"]
    assert_same(read_bitstream(data), short)
    rng = np.random.default_rng(5)
    skewed = make_codes(n_q=6, frames=3000)
    skewed.codes = torch.from_numpy(np.minimum(rng.geometric(0.02, size=(6, 3000)) - 1, 1023))
    data, plain, coded = write_smallest(skewed)
    assert coded < plain and data == write_bitstream(skewed, entropy=True) and describe(data)["entropy_coded"]
    assert_same(read_bitstream(data), skewed)


def test_entropy_constant_codebook() -> None:
    codes = make_codes(n_q=2, frames=4000)
    codes.codes[1] = 5  # a collapsed codebook: one symbol, no ANS words at all
    data = write_bitstream(codes, entropy=True)
    assert_same(read_bitstream(data), codes)
    assert len(data) < len(write_bitstream(codes))


def test_entropy_is_fast_for_one_hour() -> None:
    rng = np.random.default_rng(1)
    skewed = np.minimum(rng.geometric(0.005, size=(12, 180_000)) - 1, 1023)
    codes = Codes(codes=torch.from_numpy(skewed), num_samples=180_000 * 320, model_id=MODEL,
                  sample_rate=16000, frame_rate=50, codebook_bits=10)
    t0 = time.perf_counter()
    out = read_bitstream(write_bitstream(codes, entropy=True))
    elapsed = time.perf_counter() - t0
    assert torch.equal(out.codes, codes.codes)
    assert elapsed < 5.0, f"entropy write+read took {elapsed:.2f} s"


# ---------------------------------------------------------------------------------------------
# golden files: bytes written by v1 must decode in every later version


def load_golden(name: str) -> tuple[bytes, dict]:
    return (GOLDEN / f"{name}.tcd").read_bytes(), json.loads((GOLDEN / f"{name}.json").read_text())


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_files_decode(name: str) -> None:
    data, expected = load_golden(name)
    codes = read_bitstream(data, expected_model_id=expected["model_id"])
    assert codes.codes.tolist() == expected["codes"]
    for key in ("num_samples", "model_id", "sample_rate", "frame_rate", "codebook_bits", "side_kind", "side"):
        assert getattr(codes, key) == expected[key], key
    info = describe(data)
    assert info["format_version"] == expected["format_version"]
    assert info["entropy_coded"] == expected["entropy"]
    assert info["coding"] == expected.get("coding", "static_ans" if expected["entropy"] else "plain")


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_files_are_what_this_writer_writes(name: str) -> None:
    """The writer is byte-for-byte stable: version-1 files are still written exactly as version 1
    wrote them (so older readers read them), version-2 files as version 2 did."""
    data, expected = load_golden(name)
    codes = Codes(
        codes=torch.tensor(expected["codes"], dtype=torch.int64),
        **{
            k: expected[k]
            for k in (
                "num_samples",
                "model_id",
                "sample_rate",
                "frame_rate",
                "codebook_bits",
                "side_kind",
                "side",
            )
        },
    )
    if expected.get("coding") == "context":
        assert write_bitstream(codes, tables=GOLDEN_TABLES) == data
    else:
        assert write_bitstream(codes, entropy=expected["entropy"]) == data


# ---------------------------------------------------------------------------------------------
# the parser refuses bad input with BitstreamError, and nothing else, quickly


def small_files() -> list[bytes]:
    return [load_golden(n)[0] for n in GOLDEN_NAMES]


def test_bitstream_error_is_a_telucodec_value_error() -> None:
    assert issubclass(BitstreamError, TelucodecError) and issubclass(BitstreamError, ValueError)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_truncation_at_every_byte(name: str) -> None:
    data = load_golden(name)[0]
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            read_bitstream(data[:n])
    with pytest.raises(BitstreamError, match="truncated"):
        read_bitstream(data[: HEADER_SIZE + 3])
    with pytest.raises(BitstreamError, match="truncated"):
        read_bitstream(b"")


def test_trailing_bytes_refused() -> None:
    data = write_bitstream(make_codes())
    with pytest.raises(BitstreamError, match="trailing"):
        read_bitstream(data + b"\x00")


def test_random_bit_flips() -> None:
    rng = np.random.default_rng(1234)
    files = small_files()
    for i in range(1200):
        data = bytearray(files[i % len(files)])
        for _ in range(1 if i % 2 else int(rng.integers(2, 9))):
            pos = int(rng.integers(0, len(data) * 8))
            data[pos // 8] ^= 1 << (pos % 8)
        with pytest.raises(BitstreamError):
            read_bitstream(bytes(data))


def test_bit_flips_behind_a_valid_crc() -> None:
    """A flip with the CRC recomputed reaches the field and payload checks: decode or refuse."""
    rng = np.random.default_rng(99)
    files = small_files()
    refused = 0
    for i in range(1500):
        data = bytearray(files[i % len(files)])
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(0, (len(data) if i % 3 else HEADER_SIZE - 4) * 8))
            data[pos // 8] ^= 1 << (pos % 8)
        try:
            out = read_bitstream(refix_crc(bytes(data)))
        except BitstreamError:
            refused += 1
            continue
        assert out.codes.shape == (out.n_q, num_frames_for(out.num_samples, out.sample_rate, out.frame_rate))
    assert refused > 300  # most header flips are caught by the field checks


def test_random_garbage() -> None:
    rng = np.random.default_rng(7)
    for n in [0, 1, 3, 4, 5, 8, 43, 44, 45, 64, 100, 1000, 4096] + list(rng.integers(0, 600, 300)):
        blob = rng.integers(0, 256, size=int(n), dtype=np.uint8).tobytes()
        for candidate in (blob, MAGIC + blob, MAGIC + bytes([FORMAT_VERSION]) + blob):
            with pytest.raises(BitstreamError):
                read_bitstream(candidate)
            with pytest.raises(BitstreamError):
                describe(candidate)


def test_named_errors() -> None:
    data = write_bitstream(make_codes())
    with pytest.raises(BitstreamError, match="bad magic"):
        read_bitstream(b"RIFF" + data[4:])
    with pytest.raises(BitstreamError, match="bad magic"):
        read_bitstream(b"RI")
    with pytest.raises(BitstreamError, match=f"unsupported format version {FORMAT_VERSION + 1}.*newer"):
        read_bitstream(refix_crc(data[:4] + bytes([FORMAT_VERSION + 1]) + data[5:]))
    with pytest.raises(BitstreamError, match="unsupported format version 0"):
        read_bitstream(data[:4] + b"\x00" + data[5:])
    with pytest.raises(BitstreamError, match="wrong model"):
        read_bitstream(data, expected_model_id="ffffffffffffffff")
    corrupt = bytearray(data)
    corrupt[-1] ^= 0x01
    with pytest.raises(BitstreamError, match="checksum mismatch"):
        read_bitstream(bytes(corrupt))
    with pytest.raises(BitstreamError, match="checksum mismatch"):
        read_header(bytes(corrupt))


@pytest.mark.parametrize(
    "fields, payload_len, message",
    [
        (dict(num_samples=2**60), 100, "sizes inconsistent"),
        (dict(num_samples=2**64 - 1, n_q=64, frame_rate=1000, sample_rate=8000), 100, "sizes inconsistent"),
        (dict(num_samples=2**60, flags=1), 100, "sizes inconsistent"),
        (dict(num_samples=2**40, flags=1, n_q=64, bits=1, frame_rate=1000, sample_rate=8000), 4000, "sizes"),
        (dict(num_samples=0), 0, "num_samples"),
        (dict(n_q=0), 94, "n_q"),
        (dict(n_q=255), 94, "n_q"),
        (dict(bits=0), 94, "codebook_bits"),
        (dict(bits=17), 94, "codebook_bits"),
        (dict(bits=255), 94, "codebook_bits"),
        (dict(sample_rate=0), 94, "sample_rate"),
        (dict(sample_rate=2**32 - 1), 94, "sample_rate"),
        (dict(frame_rate=0), 94, "frame_rate"),
        (dict(frame_rate=65535), 94, "frame_rate"),
        (dict(flags=0x80), 94, "flags"),
        (dict(side_kind=3), 94, "side-info kind"),
        (dict(side_kind=1, side_bits=12, side_count=1), 95, "side-info bits"),
        (dict(side_count=1), 95, "kind 'none'"),
        (dict(side_kind=1, side_count=2**32 - 1), 94, "sizes inconsistent"),
        (dict(side_kind=2, side_bits=16, side_count=2**31), 94, "sizes inconsistent"),
    ],
)
def test_hostile_headers_refused_cheaply(fields: dict, payload_len: int, message: str) -> None:
    data = forge(bytes(payload_len), **fields)
    t0 = time.perf_counter()
    with pytest.raises(BitstreamError, match=message):
        read_bitstream(data)
    with pytest.raises(BitstreamError, match=message):
        describe(data)
    assert time.perf_counter() - t0 < 0.5


@settings(max_examples=300, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {
            "flags": st.integers(0, 255),
            "sample_rate": st.one_of(st.integers(0, 2**32 - 1), st.integers(7990, 48010)),
            "num_samples": st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 5000)),
            "n_q": st.integers(0, 255),
            "bits": st.integers(0, 255),
            "frame_rate": st.one_of(st.integers(0, 65535), st.integers(0, 1010)),
            "side_kind": st.integers(0, 255),
            "side_bits": st.sampled_from([0, 8, 12, 16, 255]),
            "side_count": st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 8)),
        }
    ),
    payload=st.binary(max_size=300),
)
def test_forged_headers_decode_or_refuse(fields: dict, payload: bytes) -> None:
    """Any header with a valid CRC: a consistent `Codes` or BitstreamError, nothing else."""
    try:
        out = read_bitstream(forge(payload, **fields))
    except BitstreamError:
        return
    assert out.codes.shape == (out.n_q, num_frames_for(out.num_samples, out.sample_rate, out.frame_rate))


def test_forged_default_header_is_valid() -> None:
    """Sanity check of `forge`: 1 s at 1.5 kbps is 3 x 50 x 10 bits = 188 bytes (rounded up)."""
    out = read_bitstream(forge(bytes(188)))
    assert out.codes.shape == (3, 50) and int(out.codes.abs().sum()) == 0


def test_huge_payload_length_is_truncation_not_allocation() -> None:
    data = forge(b"", payload_length=2**32 - 1)
    with pytest.raises(BitstreamError, match="truncated"):
        read_bitstream(data)


def test_nonzero_padding_bits_refused() -> None:
    data = bytearray(forge(bytes(188)))
    data[-1] |= 0x01  # 1500 bits of codes leave 4 padding bits in the last byte
    with pytest.raises(BitstreamError, match="padding"):
        read_bitstream(refix_crc(bytes(data)))


def entropy_file(segments: list[bytes], frames: int = 16, bits: int = 4) -> bytes:
    return forge(b"".join(segments), flags=1, n_q=len(segments), bits=bits, num_samples=frames * 320)


@pytest.mark.parametrize(
    "segment, message",
    [
        (bytes([7]) + bytes(20), "segment mode"),
        (bytes([1, 0]) + bytes(20), "count width"),
        (bytes([1, 33]) + bytes(20), "count width"),
        (bytes([1, 8, 0, 0]) + bytes(20), "bitmap is empty"),
        (bytes([1, 8, 0x80, 0x00, 15]) + bytes(4) + bytes(16), "counts sum"),  # 15 != 16 frames
        (bytes([1, 8, 0x80, 0x00, 16]) + struct.pack("<I", 2**32 - 1), "truncated"),
        (bytes([1, 8, 0x80, 0x00, 16]) + struct.pack("<I", 1) + b"\x01\x00\x00\x00", "one symbol"),
        (bytes([1, 8, 0xC0, 0x00, 8, 8]) + struct.pack("<I", 1) + b"\x00\x00\x00\x00", "quantizer 0"),
        (bytes([1, 8, 0xC0, 0x00, 8, 8]) + struct.pack("<I", 0), "quantizer 0"),
        (bytes([1, 8, 0xC0, 0x00, 0, 16]) + struct.pack("<I", 0), "counts sum"),  # a count of 0
        (bytes([0]) + bytes(7), "truncated"),  # raw segment needs 16 x 4 bits = 8 bytes
    ],
)
def test_hostile_entropy_segments(segment: bytes, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        read_bitstream(entropy_file([segment]))


def test_entropy_unused_bytes_refused() -> None:
    raw = bytes([0]) + bytes(8)
    assert read_bitstream(entropy_file([raw])).codes.shape == (1, 16)
    with pytest.raises(BitstreamError, match="unused bytes"):
        read_bitstream(entropy_file([raw + b"\x00"]))


# ---------------------------------------------------------------------------------------------
# the writer refuses what it cannot write faithfully


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(model_id="xyz"), "model_id"),
        (dict(model_id="0123"), "model_id"),
        (dict(num_samples=10 * 320 * 4), "frames"),
        (dict(codebook_bits=4), "code values"),
        (dict(side_kind="none", side=[1]), "side_kind 'none'"),
        (dict(side_kind="loud", side=[1]), "side_kind"),
        (dict(side_kind="rms", side=[70000]), "side values"),
        (dict(sample_rate=96000, frame_rate=300), "sample_rate"),
        (dict(codes=torch.zeros(3, dtype=torch.int64)), r"\[n_q, F\]"),
        (dict(codes=torch.zeros(3, 10)), "integers"),
        (dict(codes=torch.full((3, 10), -1)), "code values"),
    ],
)
def test_writer_validates(change: dict, message: str) -> None:
    codes = make_codes(frames=10)
    codes.num_samples = 10 * 320
    for key, value in change.items():
        setattr(codes, key, value)
    with pytest.raises(BitstreamError, match=message):
        write_bitstream(codes)
