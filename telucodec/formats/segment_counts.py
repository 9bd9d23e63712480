"""Per-segment codebook counts: the count block of a version-3 `.tcd` payload, and the checks
that keep "not sent" one representation (`Codes.stage_counts`; the layout is in bitstream.py).

A file's per-frame counts are stored per segment of L frames, L the largest that holds them: the
greatest common divisor of the frames where the count changes. Rate control changes counts only
at its segment starts, so L is its segment length (or a multiple of it).
"""

from __future__ import annotations

import struct

import numpy as np

from telucodec.errors import BitstreamError
from telucodec.formats.bitpack import pack_bits, unpack_bits

_FIXED = struct.Struct("<HB")  # segment length L in frames, base count m
COUNTS_FIXED = _FIXED.size     # 3 bytes before the packed counts
MAX_SEGMENT = 2**16 - 1


def sent_mask(counts: np.ndarray, n_q: int) -> np.ndarray:
    """bool [n_q, F]: True where frame t sends stage s (s < counts[t])."""
    return np.arange(n_q)[:, None] < np.asarray(counts)[None, :]


def stage_counts_of(stage_counts: np.ndarray | None, arr: np.ndarray) -> np.ndarray | None:
    """Validate `Codes.stage_counts` against its codes `arr` [n_q, F] for writing: int64 [F], or
    None when every frame sends every stage (uniform counts are the older versions' files)."""
    if stage_counts is None:
        return None
    n_q, f = arr.shape
    counts = np.asarray(stage_counts)
    if counts.shape != (f,) or counts.dtype.kind not in "iu":
        raise BitstreamError(f"stage counts must be {f} integers (one per frame), got shape "
                             f"{tuple(counts.shape)} of {counts.dtype}")
    counts = counts.astype(np.int64, copy=False)
    if f and (int(counts.min()) < 1 or int(counts.max()) > n_q):
        raise BitstreamError(f"stage counts must be in 1..n_q={n_q}, got {int(counts.min())}..{int(counts.max())}")
    if f == 0 or int(counts.min()) == n_q:
        return None
    if int(counts.max()) != n_q:
        raise BitstreamError(f"codes have n_q={n_q} stages but no frame sends stage {n_q}: drop the unsent stages")
    if np.any(arr[~sent_mask(counts, n_q)]):
        raise BitstreamError("codes of a stage a frame does not send must be 0 (stage counts say what is sent)")
    return counts


def segments(counts: np.ndarray) -> tuple[int, np.ndarray]:
    """(L, the count of each segment of L frames) for per-frame counts that change somewhere."""
    changes = np.flatnonzero(np.diff(counts)) + 1
    seg = int(np.gcd.reduce(changes)) if changes.size else len(counts)
    if seg > MAX_SEGMENT:  # segments over 22 minutes at 50 Hz: any divisor of the gcd holds the counts too
        seg = next(d for d in range(MAX_SEGMENT, 0, -1) if seg % d == 0)
    return seg, counts[::seg]


def pack_counts(counts: np.ndarray, n_q: int) -> bytes:
    """The count block of per-frame `counts` (validated; uniform only in version 4, where the
    block is always there: base n_q and no packed values)."""
    seg, per_segment = segments(counts)
    base = int(per_segment.min())
    width = (n_q - base).bit_length()
    return _FIXED.pack(seg, base) + (pack_bits(per_segment - base, width) if width else b"")


def read_counts(payload: bytes, n_q: int, frames: int, side_bytes: int, bound: int,
                uniform_ok: bool = False) -> tuple[int, bytes, int]:
    """Parse and validate a count block: (L, each segment's count as one byte, block size). The
    block, the side info and the `bound` bytes every code part holds must fit in the payload
    before the counts are unpacked, so a small file cannot make the reader allocate much.
    `uniform_ok` (version 4): the block may say every segment sends n_q (base n_q, no values)."""
    if len(payload) < COUNTS_FIXED:
        raise BitstreamError(f"sizes inconsistent: a version-3 payload starts with a {COUNTS_FIXED}-byte count "
                             f"block, the payload has {len(payload)} bytes")
    seg, base = _FIXED.unpack_from(payload, 0)
    if seg < 1:
        raise BitstreamError("bad field value: segment length 0 frames, must be >= 1")
    top = n_q if uniform_ok else n_q - 1
    if not 1 <= base <= top:
        raise BitstreamError(f"bad field value: base stage count {base}, must be 1..{top} (n_q={n_q})")
    n_seg, width = -(-frames // seg), (n_q - base).bit_length()
    size = COUNTS_FIXED + -(-n_seg * width // 8)
    if size + side_bytes + bound > len(payload):
        raise BitstreamError(f"sizes inconsistent: {n_seg} segment counts of {width} bits, {side_bytes} side bytes "
                             f"and {frames} frames of up to {n_q} codes need at least {size + side_bytes + bound} "
                             f"payload bytes, header says {len(payload)}")
    if not width:  # version 4, every segment sends n_q
        return seg, bytes([n_q]) * n_seg, size
    values = unpack_bits(payload[COUNTS_FIXED:size], width, n_seg) + base
    if n_seg * width % 8 and payload[size - 1] & ((1 << (8 - n_seg * width % 8)) - 1):
        raise BitstreamError("bad field value: nonzero padding bits after the segment counts")
    if int(values.min()) != base or int(values.max()) != n_q:
        raise BitstreamError(f"bad field value: segment stage counts span {int(values.min())}..{int(values.max())}, "
                             f"the header says {base}..{n_q}")
    return seg, values.astype(np.uint8).tobytes(), size
