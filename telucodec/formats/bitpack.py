"""Bit packing for the .tcd payload: non-negative integers at exactly `bits` bits each, most
significant bit first (numpy's default `bitorder="big"`), zero-padded to a whole byte."""

from __future__ import annotations

import numpy as np

from telucodec.errors import BitstreamError


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


def unpack_u32(data: bytes, bits: int, count: int) -> np.ndarray:
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


def pack_u32(values: np.ndarray, bits: int) -> bytes:
    if bits <= 16:
        return pack_bits(values, bits)
    values = np.asarray(values, dtype=np.int64)
    bit_rows = (values[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.int64)) & 1
    return np.packbits(bit_rows.astype(np.uint8).reshape(-1)).tobytes()


def pack_rows(rows: list[np.ndarray], widths: list[int]) -> bytes:
    """Rows of values, row i at `widths[i]` bits each, as ONE bit string (MSB first, row after
    row), zero-padded to a whole byte: `pack_bits` of their concatenation when the widths agree."""
    parts = []
    for row, bits in zip(rows, widths):
        row = np.asarray(row).reshape(-1)
        if row.size:
            parts.append(np.unpackbits(np.frombuffer(pack_bits(row, bits), dtype=np.uint8), count=row.size * bits))
    return np.packbits(np.concatenate(parts)).tobytes() if parts else b""


def unpack_rows(data: bytes, widths: list[int], counts: list[int]) -> list[np.ndarray]:
    """Inverse of `pack_rows`: row i holds `counts[i]` values of `widths[i]` bits, as int64."""
    total = sum(int(n) * int(b) for n, b in zip(counts, widths))
    need = -(-total // 8)
    if len(data) < need:
        raise BitstreamError(f"truncated: the codes need {need} bytes, got {len(data)}")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=need), count=total)
    rows, pos = [], 0
    for n, b in zip(counts, widths):
        chunk = bits[pos: pos + n * b]
        pos += n * b
        rows.append(unpack_bits(np.packbits(chunk).tobytes(), b, n) if n else np.zeros(0, dtype=np.int64))
    return rows
