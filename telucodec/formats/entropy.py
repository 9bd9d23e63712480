"""Entropy coding of one quantizer's codes for the .tcd payload: the smaller of raw bit packing
and a static ANS code (constriction, imported lazily: an optional dependency).

The segment layout is specified in `telucodec.formats.bitstream`'s docstring.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from telucodec.errors import BitstreamError
from telucodec.formats.bitpack import pack_bits, pack_u32, unpack_bits, unpack_u32

_MODE_RAW = 0
_MODE_ANS = 1
_ANS_TOTAL = 1 << 24  # fixed-point total of the categorical frequency table


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


def encode_codebook(row: np.ndarray, bits: int) -> bytes:
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
            pack_u32(used, width),
            struct.pack("<I", len(words) // 4),
            words,
        ]
    )
    ans += bytes(max(0, -(-f // 8) - len(ans)))
    return ans if len(ans) < len(raw) else raw


def decode_codebook(data: bytes, pos: int, f: int, bits: int, q: int) -> tuple[np.ndarray, int]:
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
    used = unpack_u32(take(-(-symbols.size * width // 8), "count table"), width, symbols.size)
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
