"""Decode-time level matching of the `rms` side info, solved exactly (numpy; shared by
`RmsAmplitude.match_level` and the ONNX runner, so both give the same gains).

The side info of an `rms` file says each 1 s chunk's RMS. `level_match` scales the decoded audio
by a gain curve that is linear between chunk centres (the curve `RmsAmplitude.gain_curve` uses),
and the gains must make every chunk's RMS *after* that curve equal its sent level. A neighbour's
gain reaches into a chunk: setting each gain from its own chunk alone, with the short last chunk's
knot past the clip's end (where the restore curve keeps it), left a loud 1 s chunk next to a
62 ms quiet one 12 % over its level. So here the last knot sits at the last chunk's own centre. Here the mean square of chunk k after the curve is written as a quadratic form
in the gains of its knots (one pass over the audio collects the sums), and the gains are found by
iterating on that small system, which costs nothing per sample.
"""

from __future__ import annotations

import numpy as np

ITERATIONS = 200     # on the per-chunk system only (S numbers), not on the audio
BLOCK = 1 << 16      # samples per block of the one pass over the audio


def curve_position(start: int, stop: int, chunk: int, num_chunks: int,
                   total: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(left knot index int64, fraction float64) of samples start..stop-1 on the curve whose knots
    sit at chunk centres k * chunk + (chunk - 1) / 2, held before the first and after the last.
    With `total` (the clip's length), a short last chunk's knot sits at its own centre instead
    (level matching, which sees the whole clip; the restore curve must not depend on the length)."""
    t = np.arange(start, stop, dtype=np.float64)
    pos = (t + 0.5) / chunk - 0.5
    if total is not None and num_chunks >= 2 and total < num_chunks * chunk:
        prev = (num_chunks - 2) * chunk + (chunk - 1) / 2
        last = (num_chunks - 1) * chunk + (total - (num_chunks - 1) * chunk - 1) / 2
        pos = np.where(t > prev, num_chunks - 2 + (t - prev) / max(last - prev, 1e-9), pos)
    pos = np.clip(pos, 0.0, float(num_chunks - 1))
    left = np.minimum(np.floor(pos), num_chunks - 2).astype(np.int64)
    return left, pos - left


def curve(gains: np.ndarray, start: int, stop: int, chunk: int, total: int | None = None) -> np.ndarray:
    """float64 values at samples start..stop-1 of the curve of knot `gains` [S >= 2], linear in
    amplitude between knots (`curve_position`; `total`: the last knot at a short last chunk's centre)."""
    left, frac = curve_position(start, stop, chunk, gains.shape[0], total)
    return gains[left] + (gains[left + 1] - gains[left]) * frac


def match_gains(wav: np.ndarray, levels_db: np.ndarray, chunk: int, active: np.ndarray,
                max_db: float = 6.0) -> np.ndarray:
    """float64 [S]: the knot gains that set every active chunk of `wav` [T] (float32, S chunks of
    `chunk` samples, the last maybe shorter) to its level in dBFS after the interpolated curve;
    inactive chunks (the silence floor) keep gain 1, and every gain stays within +-`max_db`."""
    t = wav.shape[0]
    s = levels_db.shape[0]
    if s == 0:
        return np.ones(0)
    counts = np.full(s, float(chunk))
    counts[-1] = t - (s - 1) * chunk
    target_ms = np.power(10.0, levels_db / 10.0)  # mean squares
    limit = 10.0 ** (max_db / 20.0)
    if s == 1:
        ms = float(np.mean(np.square(wav.astype(np.float64))))
        gain = np.clip(np.sqrt(target_ms[0] / max(ms, 1e-24)), 1.0 / limit, limit)
        return np.array([gain if active[0] else 1.0])
    # A_k(g) = sum over the two knot intervals l in {k-1, k} touching chunk k of
    #          (P g_l^2 + Q g_l g_(l+1) + R g_(l+1)^2) / n_k
    moments = np.zeros((3, 2 * s))  # sums of y^2, y^2 f, y^2 f^2 by (chunk, interval) slot
    for lo in range(0, t, BLOCK):
        hi = min(t, lo + BLOCK)
        left, frac = curve_position(lo, hi, chunk, s, t)
        k = np.arange(lo, hi) // chunk
        slot = k * 2 + (left - k + 1)  # interval 0: l = k - 1, 1: l = k
        starts = np.concatenate([[0], np.flatnonzero(np.diff(slot)) + 1])  # runs of one slot
        y2 = np.square(wav[lo:hi].astype(np.float64))
        y2f = y2 * frac
        for row, values in enumerate((y2, y2f, y2f * frac)):
            moments[row, slot[starts]] += np.add.reduceat(values, starts)
    s0, s1, s2 = (m.reshape(s, 2) for m in moments)
    p, q, r = s0 - 2.0 * s1 + s2, 2.0 * (s1 - s2), s2  # (1-f)^2, 2f(1-f), f^2 weights
    ks = np.arange(s)
    lefts = np.stack([np.clip(ks - 1, 0, s - 2), np.minimum(ks, s - 2)], axis=1)  # [S, 2]

    def mean_squares(g: np.ndarray) -> np.ndarray:
        a, b = g[lefts], g[lefts + 1]
        return (p * a * a + q * a * b + r * b * b).sum(1) / counts

    gains = np.ones(s)
    for _ in range(ITERATIONS):
        ms = mean_squares(gains)
        new = np.clip(gains * np.sqrt(target_ms / np.maximum(ms, 1e-24)), 1.0 / limit, limit)
        new = np.where(active, new, 1.0)
        if np.allclose(new, gains, rtol=1e-9, atol=0.0):
            return new
        gains = new
    return gains


def scaled(wav: np.ndarray, gains: np.ndarray, chunk: int) -> np.ndarray:
    """float32 [T] times the curve of knot `gains` [S] (float64 arithmetic, float32 out)."""
    t, s = wav.shape[0], gains.shape[0]
    if s <= 1:
        return (wav * np.float32(gains[0] if s else 1.0)).astype(np.float32, copy=False)
    out = np.empty_like(wav)
    for lo in range(0, t, BLOCK):
        hi = min(t, lo + BLOCK)
        out[lo:hi] = wav[lo:hi] * curve(gains, lo, hi, chunk, t).astype(np.float32)
    return out
