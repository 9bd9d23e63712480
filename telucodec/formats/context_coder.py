"""Range coding of RVQ codes with a model's context tables, whole clips or frame by frame.

The codes are coded frame-major (frame 0's stages 0..n_q-1, then frame 1's, ...), each with the
integer distribution `context_tables.py` defines from codes decoded before it, so the coder is
causal in frames: `ContextEncoder.push` takes frames as they come and returns the bytes that are
final so far, `ContextDecoder.feed` takes bytes as they arrive and returns every frame they fully
determine. A whole clip is one `push` and `finish`: the same bytes, however the frames were split.

The coder is the byte-wise range coder of LZMA (32-bit `low` with carry propagation through a
cached byte and a count of pending 0xFF bytes, 32-bit `range` renormalized below 2**24), with a
total of 2**T_q per distribution of stage q: 2**16 for stages of up to 4096 codes (every table
before mixed stage sizes: their files are unchanged), 2**21 for larger ones (`context_tables.py`).
Everything is Python integer arithmetic on integer tables: no float, no platform-dependent
rounding, so decoding is bit-exact on every machine (unlike a coder driven by a float softmax:
facebookresearch/encodec issue 85). LZMA's first output byte is
always 0 and is not written; at the end the encoder picks the value in its final interval with the
most trailing zero bits and drops the trailing zero bytes: the decoder reads missing bytes as 0.
A decoder that meets a value no code maps to (damaged data) raises BitstreamError; it never
reads past what it is given, and never runs longer than the frames it is asked for.

Per-frame stage counts (`counts`, .tcd version 3): frame t codes only its stages
0..counts[t]-1. A stage the previous frame did not send has no previous code: it is coded in the
context of a stream's first frame (previous code V_q, no repeat mass). The previous stage in
the same frame is always sent. The streaming coder keeps uniform counts (None).

Stages of different sizes (V_q = 2**b_q codes): each stage's codes are checked against its own
size, and its "no previous code" is V_q (any value >= V_q given as `prev` means the same).
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import repeat

import numpy as np

from telucodec.errors import BitstreamError
from telucodec.formats.context_tables import TOTAL_BITS, ContextTables

_TOP = 1 << 32
_BOT = 1 << 24
_BLOCK = 4096  # frames the encoder turns into Python ints at once, and the decoder holds as lists


def _check_n_q(tables: ContextTables, n_q: int) -> None:
    if not 1 <= n_q <= tables.n_stages:
        raise BitstreamError(f"context coding: n_q={n_q}, the entropy tables cover 1..{tables.n_stages} codebooks")


def stage_intervals(tables: ContextTables, codes: np.ndarray, prev: np.ndarray,
                    counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(starts, frequencies), int64 [n_q, f] each: the interval of every code of `codes` [n_q, f]
    (values of an unsent code are meaningless), of a total of 2**stage_total_bits[q]; `prev`
    [n_q]: the codes of the frame before (V_q or more where there is none); `counts` [f]: the
    stages each frame sends (None: all)."""
    n_q, f = codes.shape
    starts = np.empty((n_q, f), dtype=np.int64)
    freqs = np.empty((n_q, f), dtype=np.int64)
    for q in range(n_q):
        prev_class, stage_class, context, cdf, freq, repeat = tables.lookup(q)[:6]
        v = tables.stage_sizes[q]
        c = codes[q]
        p = np.concatenate((np.minimum(prev[q : q + 1], v), c[:-1]))
        if counts is not None:  # the frame before did not send stage q: no previous code
            p[1:] = np.where(counts[:-1] > q, p[1:], v)
        b = stage_class[codes[q - 1]] if q else np.zeros(f, dtype=np.int64)
        k = context[prev_class[p], b]
        r = repeat[k]
        starts[q] = cdf[k, c] + np.where(c > p, r, 0)  # p == V_q (no frame before): no repeat
        freqs[q] = freq[k, c] + np.where(c == p, r, 0)
    return starts, freqs


def _sent(n_q: int, counts: np.ndarray) -> np.ndarray:
    """bool [f, n_q]: which codes the frames send, in coding order."""
    return (np.arange(n_q)[:, None] < counts[None, :]).T


def intervals(tables: ContextTables, codes: np.ndarray, prev: np.ndarray,
              counts: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """(start, frequency) of every sent code of `codes` [n_q, f] in coding order (frame-major);
    `prev` [n_q]: the codes of the frame before (V_q, or any larger value such as `tables.size`,
    where there is none); `counts` [f]: the stages each frame sends (None: all). Stage q's
    frequencies are of 2**tables.stage_total_bits[q] (`code_bits` gives the bits directly)."""
    starts, freqs = stage_intervals(tables, codes, prev, counts)
    if counts is None:
        return starts.T.ravel().tolist(), freqs.T.ravel().tolist()
    sent = _sent(codes.shape[0], counts)
    return starts.T[sent].tolist(), freqs.T[sent].tolist()


def code_bits(tables: ContextTables, codes: np.ndarray, prev: np.ndarray | None = None,
              counts: np.ndarray | None = None) -> np.ndarray:
    """float64 [n_q, f]: the ideal code length in bits of each code of `codes` [n_q, f] (what the
    range coder spends, up to a few bytes a file); 0 where `counts` says a code is not sent.
    `prev`: as `intervals` (None: a stream's first frame)."""
    n_q, f = np.shape(codes)
    arr = np.asarray(codes, dtype=np.int64)
    prev = np.asarray(tables.stage_sizes[:n_q], dtype=np.int64) if prev is None else np.asarray(prev, dtype=np.int64)
    _, freqs = stage_intervals(tables, arr, prev, counts)
    bits = np.asarray(tables.stage_total_bits[:n_q], dtype=np.float64)[:, None] - np.log2(freqs.astype(np.float64))
    if counts is not None:
        bits[~_sent(n_q, np.asarray(counts)).T] = 0.0
    return bits


def candidate_bits(tables: ContextTables, q: int, prev: np.ndarray, stage_prev: np.ndarray | None) -> np.ndarray:
    """float64 [N, b, V_q]: the code length in bits of every code of stage q, for N frames whose
    previous frame sent `prev` [N] at stage q (V_q or more: none) and b candidate paths per frame
    whose stage q-1 code is `stage_prev` [N, b] (None for stage 0: b = 1). Entry c equals
    `code_bits` of code c in that context: what an encoder that weighs bits against error
    (`model/rd_search.py`) compares."""
    prev_class, stage_class, context, _, freq, repeat = tables.lookup(q)[:6]
    v = tables.stage_sizes[q]
    p = np.minimum(np.asarray(prev, dtype=np.int64), v)
    n = p.shape[0]
    b_cls = np.zeros((n, 1), dtype=np.int64) if stage_prev is None else stage_class[np.asarray(stage_prev, dtype=np.int64)]
    k = context[prev_class[p][:, None], b_cls]                                  # [N, b]
    total = float(tables.stage_total_bits[q])
    bits = total - np.log2(freq[k].astype(np.float64))                           # [N, b, V_q]
    has = np.nonzero(p < v)[0]
    if has.size:  # the repeat mass sits on the previous frame's code
        ph = p[has]
        bits[has, :, ph] = total - np.log2((freq[k[has], ph[:, None]] + repeat[k[has]]).astype(np.float64))
    return bits


def _as_counts(counts: np.ndarray | None, n_q: int, f: int) -> np.ndarray | None:
    """Per-frame stage counts, checked: int [f], each 1..n_q (None passes through)."""
    if counts is None:
        return None
    c = np.asarray(counts)
    if c.shape != (f,) or c.dtype.kind not in "iu" or (f and (int(c.min()) < 1 or int(c.max()) > n_q)):
        raise BitstreamError(f"context coding: stage counts must be {f} integers in 1..{n_q}")
    return c.astype(np.int64, copy=False)


def _as_codes(codes: np.ndarray, n_q: int, sizes: list[int]) -> np.ndarray:
    """Codes [n_q, f] as int64, stage q's values checked against its size sizes[q]."""
    arr = np.asarray(codes)
    if arr.ndim != 2 or arr.shape[0] != n_q:
        raise BitstreamError(f"context coding: codes must be [{n_q}, frames], got shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "iu":
        raise BitstreamError(f"context coding: codes must be integers, got dtype {arr.dtype}")
    if arr.size:
        low, high = arr.min(1), arr.max(1)
        for q, size in enumerate(sizes[:n_q]):
            if int(low[q]) < 0 or int(high[q]) >= size:
                where = "" if len(set(sizes[:n_q])) == 1 else f"stage {q}: "
                raise BitstreamError(f"context coding: {where}code values must be in [0, {size}), "
                                     f"got [{int(low[q])}, {int(high[q])}]")
    return arr.astype(np.int64, copy=False)


class ContextEncoder:
    """Frames in, final bytes out: `push(codes [n_q, f])` returns the bytes no later frame can
    change; `finish()` returns the rest. Their concatenation is `encode_codes(...)` of all frames.
    Send `frames` (frames taken so far) with each push's bytes: the decoder's `feed` needs it."""

    def __init__(self, tables: ContextTables, n_q: int):
        _check_n_q(tables, n_q)
        self.tables, self.n_q = tables, n_q
        self.frames = 0
        self._sizes = np.asarray(tables.stage_sizes[:n_q], dtype=np.int64)
        self._prev = self._sizes.copy()  # no previous code
        self._shifts = np.asarray(tables.stage_total_bits[:n_q], dtype=np.int64)
        self._uniform = bool(np.all(self._shifts == TOTAL_BITS))  # every table before mixed sizes
        self._low, self._range, self._cache, self._pending, self._started = 0, _TOP - 1, 0, 0, False
        self._finished = False

    def push(self, codes: np.ndarray, counts: np.ndarray | None = None) -> bytes:
        """`counts` [f]: the stages each frame sends (None: all n_q); only sent codes are coded."""
        if self._finished:
            raise BitstreamError("context coding: push after finish")
        arr = _as_codes(codes, self.n_q, self.tables.stage_sizes)
        counts = _as_counts(counts, self.n_q, arr.shape[1])
        out = bytearray()
        for lo in range(0, arr.shape[1], _BLOCK):  # in blocks: a long clip's Python ints stay few
            block = arr[:, lo : lo + _BLOCK]
            sent = None if counts is None else counts[lo : lo + _BLOCK]
            starts, freqs = intervals(self.tables, block, self._prev, sent)
            self._prev = block[:, -1].copy()
            if sent is not None:  # a stage the last frame did not send: no previous code for the next
                self._prev[sent[-1]:] = self._sizes[sent[-1]:]
            low, rng = self._low, self._range
            if self._uniform:  # every code's total is 2**16
                shifts = repeat(TOTAL_BITS)
            else:  # stages of different totals: each code's own
                shifts = np.broadcast_to(self._shifts, (block.shape[1], self.n_q))
                shifts = (shifts.ravel() if sent is None else shifts[_sent(self.n_q, sent)]).tolist()
            for s, f, t in zip(starts, freqs, shifts):
                r = rng >> t
                low += r * s
                rng = r * f
                while rng < _BOT:
                    rng <<= 8
                    low = self._shift_low(low, out)
            self._low, self._range = low, rng
        self.frames += arr.shape[1]
        return bytes(out)

    def _shift_low(self, low: int, out: bytearray) -> int:
        if low < 0xFF000000 or low >= _TOP:
            carry = low >> 32
            if self._started:
                out.append((self._cache + carry) & 0xFF)
            self._started = True  # LZMA's first byte is always 0: not written
            if self._pending:
                out.extend(bytes([(0xFF + carry) & 0xFF]) * self._pending)
                self._pending = 0
            self._cache = (low >> 24) & 0xFF
        else:
            self._pending += 1
        return (low << 8) & 0xFFFFFFFF

    def finish(self) -> bytes:
        """The last bytes: the value of the final interval with the most trailing zero bits,
        without its trailing zero bytes (the decoder reads bytes past the end as 0)."""
        if self._finished:
            raise BitstreamError("context coding: finish called twice")
        self._finished = True
        low, rng = self._low, self._range
        for k in range(32, -1, -1):
            mask = (1 << k) - 1
            value = (low + mask) & ~mask
            if value < low + rng:
                break
        out = bytearray()
        low = value
        for _ in range(5):
            low = self._shift_low(low, out)
        return bytes(out).rstrip(b"\x00")


class _NeedMore(Exception):
    """The next frame needs bytes that have not arrived yet."""


class ContextDecoder:
    """Bytes in, frames out: `feed(data)` returns the frames [n_q, f] the bytes so far determine;
    `finish(n_frames)` decodes up to `n_frames` in all, reading missing bytes as 0, and refuses
    nonzero bytes left after them. Together they return what `decode_codes` returns. `counts`:
    the stages each frame of the whole stream sends (None: all); unsent codes come out as 0."""

    def __init__(self, tables: ContextTables, n_q: int, counts: np.ndarray | None = None):
        _check_n_q(tables, n_q)
        self.tables, self.n_q = tables, n_q
        self._counts = None if counts is None else _as_counts(counts, n_q, len(counts)).tolist()
        self.frames = 0
        self._buf = bytearray()
        self._pos = 0
        self._code: int | None = None
        self._range = _TOP - 1
        self._sizes = tables.stage_sizes[:n_q]
        self._prev = list(self._sizes)  # no previous code
        self._finished = False

    def feed(self, data: bytes, frames: int) -> np.ndarray:
        """Take the next bytes; `frames`: how many frames the encoder had taken when it returned
        them (`ContextEncoder.frames`). Returns the new frames these bytes determine (possibly
        none: a frame's last bits can stay in the encoder until later frames push them out)."""
        if self._finished:
            raise BitstreamError("context coding: feed after finish")
        self._buf += data
        return self._decode(max(0, frames - self.frames), final=False)

    def finish(self, n_frames: int) -> np.ndarray:
        if self._finished:
            raise BitstreamError("context coding: finish called twice")
        if n_frames < self.frames:
            raise BitstreamError(f"context coding: {self.frames} frames already decoded, more than {n_frames}")
        if self._counts is not None and n_frames > len(self._counts):
            raise BitstreamError(f"context coding: stage counts for {len(self._counts)} frames, not {n_frames}")
        self._finished = True
        out = self._decode(n_frames - self.frames, final=True)
        if any(self._buf[self._pos:]):
            raise BitstreamError(f"bad context-coded data: nonzero bytes after the last of {n_frames} frames")
        return out

    def _decode(self, limit: int, final: bool) -> np.ndarray:
        frames: list[list[int]] = []
        blocks = [np.zeros((self.n_q, 0), dtype=np.int64)]
        if self._code is None:
            if len(self._buf) < 4 and not final:
                return blocks[0]
            self._code = int.from_bytes(bytes(self._buf[:4]).ljust(4, b"\x00"), "big")
            self._pos = 4
        buf, n, sizes = self._buf, len(self._buf), self._sizes
        stages = [(*self.tables.lookup(q)[6:], v, t, 1 << t)
                  for q, (v, t) in enumerate(zip(sizes, self.tables.stage_total_bits[: self.n_q]))]
        pos, code, rng, prev = self._pos, self._code, self._range, self._prev
        counts, n_q = self._counts, self.n_q
        if counts is not None:
            limit = min(limit, len(counts) - self.frames)
        while len(frames) < limit:
            saved, frame = (pos, code, rng), []
            sent = stages if counts is None else stages[: counts[self.frames + len(frames)]]
            try:
                for q, (prev_class, stage_class, context, cdf, repeat, size, shift, total) in enumerate(sent):
                    p = prev[q]
                    k = context[prev_class[p]][stage_class[frame[q - 1]] if q else 0]
                    row, rep = cdf[k], repeat[k]
                    r = rng >> shift
                    v = code // r
                    if v >= total:
                        raise BitstreamError(f"bad context-coded data at frame {self.frames + len(frames)}, stage {q}")
                    if p < size and v >= row[p]:
                        hi = row[p + 1] + rep
                        if v < hi:
                            c, start, f = p, row[p], hi - row[p]
                        else:
                            c, start, f = self._find(row, v - rep, size, q, len(frames))
                            start += rep
                    else:
                        c, start, f = self._find(row, v, size, q, len(frames))
                    code -= r * start
                    rng = r * f
                    while rng < _BOT:
                        if pos < n:
                            code = (code << 8) | buf[pos]
                        elif not final:
                            raise _NeedMore
                        else:
                            code <<= 8
                        pos += 1
                        rng <<= 8
                    frame.append(c)
            except _NeedMore:
                pos, code, rng = saved
                break
            if len(frame) < n_q:  # unsent stages: code 0, and no previous code for the next frame
                prev = frame + sizes[len(frame):]
                frame = frame + [0] * (n_q - len(frame))
            else:
                prev = frame
            frames.append(frame)
            if len(frames) == _BLOCK:
                blocks.append(np.asarray(frames, dtype=np.int64).T)
                limit -= _BLOCK
                self.frames += _BLOCK
                frames = []
        self._pos, self._code, self._range, self._prev = pos, code, rng, prev
        self.frames += len(frames)
        if not final and self._pos > 1 << 16:  # drop consumed bytes so a long stream keeps memory flat
            del self._buf[: self._pos]
            self._pos = 0
        if frames:
            blocks.append(np.asarray(frames, dtype=np.int64).T)
        return np.ascontiguousarray(np.concatenate(blocks, axis=1))

    def _find(self, row, v: int, size: int, q: int, done: int) -> tuple[int, int, int]:
        """(code, start, frequency) of the code whose interval of `row` holds v."""
        if v >= row[size]:
            raise BitstreamError(f"bad context-coded data at frame {self.frames + done}, stage {q}")
        c = bisect_right(row, v) - 1
        return c, row[c], row[c + 1] - row[c]


def encode_codes(tables: ContextTables, codes: np.ndarray, counts: np.ndarray | None = None) -> bytes:
    """All frames of `codes` [n_q, F] -> range-coded bytes (one push and finish); `counts` [F]:
    the stages each frame sends (None: all), the others are not coded."""
    enc = ContextEncoder(tables, int(np.shape(codes)[0]))
    return enc.push(codes, counts) + enc.finish()


def decode_codes(tables: ContextTables, data: bytes, n_q: int, n_frames: int,
                 counts: np.ndarray | None = None) -> np.ndarray:
    """Inverse of `encode_codes`: int64 [n_q, n_frames] (unsent codes 0); damaged data raises
    BitstreamError."""
    dec = ContextDecoder(tables, n_q, counts)
    dec._buf += data
    return dec.finish(n_frames)
