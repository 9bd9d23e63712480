"""The `.tcd` file format: one clip's `Codes` as bytes, and back.

A file is a fixed 44-byte little-endian header followed by the payload::

    offset size  field
     0      4    magic b"TLCD"
     4      1    format version (u8, FORMAT_VERSION)
     5      1    flags (u8): bit 0 = codes are entropy coded; other bits must be 0
     6      8    model id (the 16 hex chars of `Codes.model_id` as 8 raw bytes)
    14      4    sample rate (u32, 8000..48000)
    18      8    number of samples of the original clip (u64, >= 1)
    26      1    n_q, number of codebooks (u8, 1..64)
    27      1    codebook bits (u8, 1..16)
    28      2    frame rate in Hz (u16, 1..1000)
    30      1    side-info kind (u8: 0 none, 1 rms, 2 lufs)
    31      1    bits per side-info value (u8: 8 or 16)
    32      4    side-info value count (u32; 0 for kind "none")
    36      4    payload length in bytes (u32)
    40      4    CRC32 (zlib.crc32) of header bytes 0..39 followed by the payload

The frame count is not stored: F = ceil(num_samples * frame_rate / sample_rate), so the header
and the payload length must agree exactly.

Payload, plain (flag bit 0 clear): the side-info values packed at `side bits` each, then the
codes [n_q, F] packed at exactly `codebook bits` each in codebook-major order (all frames of
quantizer 0, then quantizer 1, ...) as one bit string, zero-padded to a whole byte.

Payload, entropy coded (flag bit 0 set): the same side info, then one segment per quantizer:

    u8 mode 0: raw   -- the F codes packed at `codebook bits` (zero-padded to a whole byte)
    u8 mode 1: ANS   -- u8 count width w (1..32); a bitmap of 2**bits bits, bit s set when
                        symbol s occurs (zero-padded to a whole byte); the counts of the symbols
                        that occur, in symbol order, packed at w bits (zero-padded to a whole
                        byte; each >= 1, summing to F); u32 number of 32-bit words n; n
                        little-endian u32 words from constriction's AnsCoder holding each code's
                        index among the occurring symbols, coded with a static Categorical model
                        built from the counts (see `_ans_probabilities`; n = 0 when only one
                        symbol occurs); then zero bytes until
                        the segment is at least ceil(F / 8) bytes long.

The zero padding bounds what a parser may allocate: no segment holds more than 8 codes per
payload byte, entropy coded or not, so a small hostile file can never claim a huge frame count.
The writer picks, per quantizer, whichever mode is smaller.

Bits are packed most significant bit first (numpy's default `bitorder="big"`).
No pickle anywhere: every field is a fixed-size integer written with `struct`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from telucodec.codes import Codes
from telucodec.errors import TelucodecError

MAGIC = b"TLCD"
FORMAT_VERSION = 1

FLAG_ENTROPY = 1
KNOWN_FLAGS = FLAG_ENTROPY

SIDE_KINDS = ("none", "rms", "lufs")  # index = the value stored in the header

# Everything except the CRC; the CRC is the last header field and covers the bytes before it.
_HEADER_BODY = struct.Struct("<4sBB8sIQBBHBBII")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER_BODY.size + _CRC.size  # 44

SAMPLE_RATE_RANGE = (8000, 48000)
N_Q_RANGE = (1, 64)
CODEBOOK_BITS_RANGE = (1, 16)
FRAME_RATE_RANGE = (1, 1000)
MAX_U32 = 2**32 - 1
MAX_U64 = 2**64 - 1

_MODE_RAW = 0
_MODE_ANS = 1
_ANS_TOTAL = 1 << 24  # fixed-point total of the categorical frequency table


class BitstreamError(TelucodecError, ValueError):
    """A `.tcd` file (or a `Codes` to be written) that is malformed; the message says what."""


@dataclass(frozen=True)
class BitstreamHeader:
    """The validated header of a `.tcd` file (see the module docstring for the byte layout)."""

    format_version: int
    flags: int
    model_id: str
    sample_rate: int
    num_samples: int
    n_q: int
    codebook_bits: int
    frame_rate: int
    side_kind: str
    side_bits: int
    side_count: int
    payload_length: int
    crc32: int

    @property
    def entropy_coded(self) -> bool:
        return bool(self.flags & FLAG_ENTROPY)

    @property
    def num_frames(self) -> int:
        return num_frames_for(self.num_samples, self.sample_rate, self.frame_rate)

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def side_bytes(self) -> int:
        return self.side_count * self.side_bits // 8


def num_frames_for(num_samples: int, sample_rate: int, frame_rate: int) -> int:
    """F = ceil(num_samples / (sample_rate / frame_rate)), in exact integer arithmetic."""
    return -(-num_samples * frame_rate // sample_rate)


# ---------------------------------------------------------------------------------------------
# Bit packing


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers < 2**bits at exactly `bits` each, MSB first, zero-padded."""
    if not 1 <= bits <= 16:
        raise BitstreamError(f"bit width must be 1..16, got {bits}")
    values = np.asarray(values).reshape(-1)
    if values.size == 0:
        return b""
    if values.dtype.kind not in "iub":
        raise BitstreamError(f"can only pack integers, got dtype {values.dtype}")
    if int(values.min()) < 0 or int(values.max()) >= 1 << bits:
        raise BitstreamError(
            f"values must be in [0, {1 << bits}) to pack at {bits} bits, "
            f"got range [{int(values.min())}, {int(values.max())}]"
        )
    # Each value as two big-endian bytes -> 16 bits per row; keep the low `bits` columns.
    as_bytes = values.astype(">u2").view(np.uint8)
    bit_rows = np.unpackbits(as_bytes).reshape(-1, 16)[:, 16 - bits :]
    return np.packbits(bit_rows.reshape(-1)).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_bits`: the first `count` values of `bits` each, as int64 [count]."""
    if not 1 <= bits <= 16:
        raise BitstreamError(f"bit width must be 1..16, got {bits}")
    if count < 0:
        raise BitstreamError(f"value count must be >= 0, got {count}")
    need = -(-count * bits // 8)
    if len(data) < need:
        raise BitstreamError(f"truncated: {count} values of {bits} bits need {need} bytes, got {len(data)}")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    raw = np.frombuffer(data, dtype=np.uint8, count=need)
    bit_rows = np.unpackbits(raw, count=count * bits).reshape(count, bits)
    padded = np.zeros((count, 16), dtype=np.uint8)
    padded[:, 16 - bits :] = bit_rows
    return np.packbits(padded, axis=1).view(">u2").reshape(count).astype(np.int64)


def _unpack_u32(data: bytes, bits: int, count: int) -> np.ndarray:
    """Like `unpack_bits` for widths 1..32 (only the small count tables use > 16 bits)."""
    if bits <= 16:
        return unpack_bits(data, bits, count)
    need = -(-count * bits // 8)
    if len(data) < need:
        raise BitstreamError(f"truncated: {count} values of {bits} bits need {need} bytes, got {len(data)}")
    raw = np.frombuffer(data, dtype=np.uint8, count=need)
    bit_rows = np.unpackbits(raw, count=count * bits).reshape(count, bits).astype(np.int64)
    weights = np.left_shift(np.int64(1), np.arange(bits - 1, -1, -1, dtype=np.int64))
    return bit_rows @ weights


def _pack_u32(values: np.ndarray, bits: int) -> bytes:
    if bits <= 16:
        return pack_bits(values, bits)
    values = np.asarray(values, dtype=np.int64)
    bit_rows = (values[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.int64)) & 1
    return np.packbits(bit_rows.astype(np.uint8).reshape(-1)).tobytes()


# ---------------------------------------------------------------------------------------------
# Header


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise BitstreamError(f"bad field value: {name} = {value}, must be in {lo}..{hi}")


def _validate_fields(
    sample_rate: int, num_samples: int, n_q: int, codebook_bits: int, frame_rate: int
) -> None:
    _check_range("sample_rate", sample_rate, *SAMPLE_RATE_RANGE)
    _check_range("n_q", n_q, *N_Q_RANGE)
    _check_range("codebook_bits", codebook_bits, *CODEBOOK_BITS_RANGE)
    _check_range("frame_rate", frame_rate, *FRAME_RATE_RANGE)
    _check_range("num_samples", num_samples, 1, MAX_U64)


def _min_payload(h: BitstreamHeader) -> int:
    """Smallest payload the header allows; for plain files also the exact size."""
    f = h.num_frames
    if h.entropy_coded:
        # every segment is >= ceil(F/8) bytes (and >= 2: a mode byte plus data)
        return h.side_bytes + h.n_q * max(2, -(-f // 8))
    return h.side_bytes + -(-h.n_q * f * h.codebook_bits // 8)


def read_header(data: bytes) -> BitstreamHeader:
    """Parse and fully validate the header of a `.tcd` file, including its CRC.

    Checks the header against the payload length (truncation, trailing bytes, sizes implied by
    n_q, F, codebook bits and the side info) without decoding the codes.
    """
    data = bytes(data) if not isinstance(data, bytes) else data
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data):
            raise BitstreamError(f"truncated: {len(data)} bytes is too short for a .tcd file")
        raise BitstreamError(f"bad magic: expected {MAGIC!r}, got {data[:4]!r} (not a .tcd file)")
    if data[:4] != MAGIC:
        raise BitstreamError(f"bad magic: expected {MAGIC!r}, got {data[:4]!r} (not a .tcd file)")
    if len(data) > 4 and data[4] != FORMAT_VERSION:
        hint = "; the file is newer than this telucodec, upgrade it" if data[4] > FORMAT_VERSION else ""
        raise BitstreamError(
            f"unsupported format version {data[4]} (this telucodec reads version {FORMAT_VERSION}){hint}"
        )
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"truncated: header needs {HEADER_SIZE} bytes, file has {len(data)}")
    (
        _magic,
        version,
        flags,
        model_raw,
        sample_rate,
        num_samples,
        n_q,
        codebook_bits,
        frame_rate,
        side_kind_i,
        side_bits,
        side_count,
        payload_length,
    ) = _HEADER_BODY.unpack_from(data, 0)
    (crc_stored,) = _CRC.unpack_from(data, _HEADER_BODY.size)
    actual_payload = len(data) - HEADER_SIZE
    if actual_payload < payload_length:
        raise BitstreamError(
            f"truncated: header announces {payload_length} payload bytes, file has {actual_payload}"
        )
    if actual_payload > payload_length:
        raise BitstreamError(
            f"sizes inconsistent: {actual_payload - payload_length} trailing bytes after the "
            f"{payload_length}-byte payload"
        )
    crc = zlib.crc32(memoryview(data)[HEADER_SIZE:], zlib.crc32(memoryview(data)[: _HEADER_BODY.size]))
    if crc != crc_stored:
        raise BitstreamError(
            f"checksum mismatch: stored CRC32 {crc_stored:08x}, computed {crc:08x} (file is corrupt)"
        )
    if flags & ~KNOWN_FLAGS:
        raise BitstreamError(f"bad field value: unknown flags {flags:#04x}")
    _validate_fields(sample_rate, num_samples, n_q, codebook_bits, frame_rate)
    if side_kind_i >= len(SIDE_KINDS):
        raise BitstreamError(
            f"bad field value: side-info kind {side_kind_i}, must be 0 (none), 1 (rms) or 2 (lufs)"
        )
    if side_bits not in (8, 16):
        raise BitstreamError(f"bad field value: side-info bits {side_bits}, must be 8 or 16")
    if side_kind_i == 0 and side_count != 0:
        raise BitstreamError(f"bad field value: side-info kind 'none' with {side_count} values")
    header = BitstreamHeader(
        format_version=version,
        flags=flags,
        model_id=model_raw.hex(),
        sample_rate=sample_rate,
        num_samples=num_samples,
        n_q=n_q,
        codebook_bits=codebook_bits,
        frame_rate=frame_rate,
        side_kind=SIDE_KINDS[side_kind_i],
        side_bits=side_bits,
        side_count=side_count,
        payload_length=payload_length,
        crc32=crc_stored,
    )
    need = _min_payload(header)
    plain_mismatch = not header.entropy_coded and need != payload_length
    if plain_mismatch or need > payload_length:
        raise BitstreamError(
            f"sizes inconsistent: n_q={n_q}, {header.num_frames} frames of {codebook_bits} bits and "
            f"{side_count} side values need {'at least ' if header.entropy_coded else ''}{need} "
            f"payload bytes, header says {payload_length}"
        )
    return header


# ---------------------------------------------------------------------------------------------
# Entropy coding (constriction, imported lazily: an optional dependency)


def _constriction() -> Any:
    try:
        import constriction
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BitstreamError(
            "entropy-coded .tcd needs the 'constriction' package: pip install 'telucodec[entropy]'"
        ) from e
    return constriction


def _ans_probabilities(counts: np.ndarray, total: int) -> np.ndarray:
    """Deterministic float table from counts (all >= 1): each >= 1/2**24, sums to exactly 1.

    Integer arithmetic first so writer and reader build bit-identical models; constriction then
    quantizes it with `perfect=False`, whose semantics its docs promise are fixed.
    """
    k = counts.size
    freq = 1 + counts * (_ANS_TOTAL - k) // total
    freq[int(np.argmax(counts))] += _ANS_TOTAL - int(freq.sum())
    return freq.astype(np.float64) / _ANS_TOTAL


def _encode_codebook(row: np.ndarray, bits: int) -> bytes:
    """One quantizer's segment (mode byte + data); the smaller of raw and ANS."""
    f = row.size
    raw = bytes([_MODE_RAW]) + pack_bits(row, bits)
    constriction = _constriction()
    counts = np.bincount(row, minlength=1 << bits).astype(np.int64)
    present = counts > 0
    used = counts[present]  # counts of the symbols that occur, in symbol order
    width = max(1, int(used.max()).bit_length())
    index = np.cumsum(present) - 1  # symbol -> position among the used symbols
    words = b""  # one symbol only: nothing to code (constriction needs >= 2 symbols)
    if used.size > 1:
        model = constriction.stream.model.Categorical(_ans_probabilities(used, f), perfect=False)
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(index[row].astype(np.int32), model)
        words = coder.get_compressed().astype("<u4").tobytes()
    ans = b"".join(
        [
            bytes([_MODE_ANS, width]),
            np.packbits(present.astype(np.uint8)).tobytes(),
            _pack_u32(used, width),
            struct.pack("<I", len(words) // 4),
            words,
        ]
    )
    ans += bytes(max(0, -(-f // 8) - len(ans)))
    return ans if len(ans) < len(raw) else raw


def _decode_codebook(data: bytes, pos: int, f: int, bits: int, q: int) -> tuple[np.ndarray, int]:
    """Decode quantizer q's segment starting at data[pos]; returns (codes [F], next pos)."""

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise BitstreamError(f"truncated: quantizer {q} {what} needs {n} bytes, {len(data) - pos} left")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    start = pos
    mode = take(1, "mode")[0]
    if mode == _MODE_RAW:
        row = unpack_bits(take(-(-f * bits // 8), "raw codes"), bits, f)
        return row, pos
    if mode != _MODE_ANS:
        raise BitstreamError(f"bad field value: quantizer {q} segment mode {mode}, must be 0 or 1")
    width = take(1, "count width")[0]
    if not 1 <= width <= 32:
        raise BitstreamError(f"bad field value: quantizer {q} count width {width}, must be 1..32")
    k = 1 << bits
    bitmap = np.frombuffer(take(-(-k // 8), "symbol bitmap"), dtype=np.uint8)
    symbols = np.flatnonzero(np.unpackbits(bitmap, count=k))  # the symbols that occur
    if symbols.size == 0:
        raise BitstreamError(f"bad field value: quantizer {q} symbol bitmap is empty")
    used = _unpack_u32(take(-(-symbols.size * width // 8), "count table"), width, symbols.size)
    if int(used.min()) < 1 or int(used.sum()) != f:
        raise BitstreamError(
            f"sizes inconsistent: quantizer {q} symbol counts sum to {int(used.sum())} "
            f"(min {int(used.min())}), expected {f} frames, every count >= 1"
        )
    (n_words,) = struct.unpack("<I", take(4, "word count"))
    if n_words > (len(data) - pos) // 4:
        raise BitstreamError(f"truncated: quantizer {q} announces {n_words} ANS words, data has fewer")
    words = np.frombuffer(take(4 * n_words, "ANS words"), dtype="<u4").astype(np.uint32)
    pad = -(-f // 8) - (pos - start)
    if pad > 0:
        take(pad, "padding")  # keeps every segment >= F/8 bytes, see the module docstring
    if symbols.size == 1:
        if n_words:
            raise BitstreamError(f"bad entropy-coded data in quantizer {q}: one symbol but {n_words} words")
        return np.full(f, symbols[0], dtype=np.int64), pos
    constriction = _constriction()
    try:
        model = constriction.stream.model.Categorical(_ans_probabilities(used, f), perfect=False)
        coder = constriction.stream.stack.AnsCoder(words)
        index = np.asarray(coder.decode(model, f), dtype=np.int64)
        empty = coder.is_empty()
    except Exception as e:  # constriction reports bad words as ValueError/RuntimeError
        raise BitstreamError(f"bad entropy-coded data in quantizer {q}: {e}") from e
    ok = empty and index.size == f and int(index.min()) >= 0 and int(index.max()) < symbols.size
    if not ok or not np.array_equal(np.bincount(index, minlength=symbols.size), used):
        raise BitstreamError(f"bad entropy-coded data in quantizer {q}: symbols do not match the count table")
    return symbols[index].astype(np.int64), pos


# ---------------------------------------------------------------------------------------------
# Public API


def _codes_array(codes: Codes) -> np.ndarray:
    """Validate a `Codes` for writing; returns its codes as int64 numpy [n_q, F]."""
    try:
        model_raw = bytes.fromhex(codes.model_id)
    except (ValueError, TypeError) as e:
        raise BitstreamError(f"model_id must be 16 hex chars, got {codes.model_id!r}") from e
    if len(model_raw) != 8:
        raise BitstreamError(f"model_id must be 16 hex chars, got {codes.model_id!r}")
    arr = (
        codes.codes.detach().cpu().numpy()
        if isinstance(codes.codes, torch.Tensor)
        else np.asarray(codes.codes)
    )
    if arr.ndim != 2:
        raise BitstreamError(f"codes must be [n_q, F], got shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "iu":
        raise BitstreamError(f"codes must be integers, got dtype {arr.dtype}")
    _validate_fields(
        codes.sample_rate, codes.num_samples, arr.shape[0], codes.codebook_bits, codes.frame_rate
    )
    f = num_frames_for(codes.num_samples, codes.sample_rate, codes.frame_rate)
    if arr.shape[1] != f:
        raise BitstreamError(
            f"codes have {arr.shape[1]} frames but {codes.num_samples} samples at {codes.sample_rate} Hz "
            f"and {codes.frame_rate} frames/s imply ceil(...) = {f}"
        )
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 1 << codes.codebook_bits):
        raise BitstreamError(
            f"code values must be in [0, {1 << codes.codebook_bits}), got [{int(arr.min())}, {int(arr.max())}]"
        )
    if codes.side_kind not in SIDE_KINDS:
        raise BitstreamError(f"side_kind must be one of {SIDE_KINDS}, got {codes.side_kind!r}")
    if codes.side_kind == "none" and len(codes.side) > 0:
        raise BitstreamError(f"side_kind 'none' must have no side values, got {len(codes.side)}")
    if any(int(v) < 0 or int(v) > 0xFFFF for v in codes.side):
        raise BitstreamError("side values must be integers in 0..65535")
    return arr.astype(np.int64, copy=False)


def write_bitstream(codes: Codes, entropy: bool = False) -> bytes:
    """Serialize `codes` to the bytes of a `.tcd` file.

    With `entropy=True` the file is flagged entropy coded and each quantizer is stored in the
    smaller of raw and ANS form, so it is never more than n_q bytes larger than a plain file.
    """
    arr = _codes_array(codes)
    side = np.asarray([int(v) for v in codes.side], dtype=np.int64)
    side_bits = 16 if side.size and int(side.max()) > 0xFF else 8
    parts = [pack_bits(side, side_bits)]
    if entropy:
        parts += [_encode_codebook(row, codes.codebook_bits) for row in arr]
    else:
        parts.append(pack_bits(arr, codes.codebook_bits))
    payload = b"".join(parts)
    if len(payload) > MAX_U32 or side.size > MAX_U32:
        raise BitstreamError(f"payload of {len(payload)} bytes is too large for one .tcd file")
    body = _HEADER_BODY.pack(
        MAGIC,
        FORMAT_VERSION,
        FLAG_ENTROPY if entropy else 0,
        bytes.fromhex(codes.model_id),
        codes.sample_rate,
        codes.num_samples,
        arr.shape[0],
        codes.codebook_bits,
        codes.frame_rate,
        SIDE_KINDS.index(codes.side_kind),
        side_bits,
        side.size,
        len(payload),
    )
    crc = zlib.crc32(payload, zlib.crc32(body))
    return body + _CRC.pack(crc) + payload


def read_bitstream(data: bytes, expected_model_id: str | None = None) -> Codes:
    """Parse a `.tcd` file; every problem raises `BitstreamError` naming it.

    `expected_model_id`: refuse a file made by another model rather than decode it to noise.
    """
    data = bytes(data) if not isinstance(data, bytes) else data
    header = read_header(data)
    if expected_model_id is not None and header.model_id != expected_model_id.lower():
        raise BitstreamError(
            f"wrong model: file was encoded by model {header.model_id}, this model is {expected_model_id}"
        )
    payload = data[HEADER_SIZE:]
    side = unpack_bits(payload[: header.side_bytes], header.side_bits, header.side_count)
    f, n_q, bits = header.num_frames, header.n_q, header.codebook_bits
    if header.entropy_coded:
        pos = header.side_bytes
        rows = []
        for q in range(n_q):
            row, pos = _decode_codebook(payload, pos, f, bits, q)
            rows.append(row)
        if pos != len(payload):
            raise BitstreamError(
                f"sizes inconsistent: {len(payload) - pos} unused bytes after the last quantizer"
            )
        arr = np.stack(rows)
    else:
        body = payload[header.side_bytes :]
        arr = unpack_bits(body, bits, n_q * f).reshape(n_q, f)
        used_bits = n_q * f * bits
        if used_bits % 8 and body[-1] & ((1 << (8 - used_bits % 8)) - 1):
            raise BitstreamError("bad field value: nonzero padding bits after the codes")
    return Codes(
        codes=torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64)),
        num_samples=header.num_samples,
        model_id=header.model_id,
        sample_rate=header.sample_rate,
        frame_rate=header.frame_rate,
        codebook_bits=bits,
        side_kind=header.side_kind,
        side=[int(v) for v in side],
    )


def describe(data: bytes) -> dict[str, Any]:
    """The `telucodec info --json` dict of a `.tcd` file (header only; codes not decoded)."""
    h = read_header(data)
    duration = h.duration_s
    return {
        "format_version": h.format_version,
        "model_id": h.model_id,
        "sample_rate": h.sample_rate,
        "num_samples": h.num_samples,
        "duration_s": duration,
        "n_q": h.n_q,
        "codebook_bits": h.codebook_bits,
        "frame_rate": h.frame_rate,
        "kbps_nominal": h.n_q * h.codebook_bits * h.frame_rate / 1000.0,
        "kbps_actual": len(data) * 8 / duration / 1000.0,
        "num_frames": h.num_frames,
        "side_kind": h.side_kind,
        "side_count": h.side_count,
        "entropy_coded": h.entropy_coded,
        "bytes": len(data),
        "header_bytes": HEADER_SIZE,
    }


def entropy_saving(codes: Codes) -> float:
    """Fraction of file bytes saved by `entropy=True` (0.1 = 10 % smaller; may be slightly < 0)."""
    plain = len(write_bitstream(codes, entropy=False))
    coded = len(write_bitstream(codes, entropy=True))
    return 1.0 - coded / plain


__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "BitstreamError",
    "BitstreamHeader",
    "describe",
    "entropy_saving",
    "num_frames_for",
    "pack_bits",
    "read_bitstream",
    "read_header",
    "unpack_bits",
    "write_bitstream",
]
