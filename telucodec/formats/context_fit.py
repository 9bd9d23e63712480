"""Fitting a model's context tables (`context_tables.py`) on codes it produced.

Per stage: (1) the previous frame's codes are clustered into `prev_classes` classes, and (2) the
previous stage's codes into `stage_classes`, each by merging codes whose next-code distributions
are alike (k-means under the KL divergence, weighted by counts: the clustering that loses the
least training likelihood); the "no previous frame" state is a class of its own. (3) The pairs of
classes are clustered the same way into `contexts` contexts. (4) Each context gets the
distribution of the codes that follow it, smoothed toward the stage's marginal (`alpha` pseudo
counts, chosen per stage on a held-out tenth of the clips), the probability that the previous
frame's code repeats, and both are rounded to integers summing to the stage's total (2**16, or
2**21 for a stage of more than 4096 codes; every code >= 1).

Stages of different sizes (`bits` a list): each stage is fitted on its own alphabet. A count matrix
of a large alphabet (a 15-bit stage's previous codes against its next codes: 32768 x 32768) is
kept sparse (scipy; it has at most one entry per training frame), so the same clustering runs in
memory and time that grow with the frames, not the square of the alphabet; a large stage keeps
at most LARGE_MAX_CONTEXTS contexts (the coder holds K x (V + 1) cumulative frequencies), and at
most as many previous-frame classes as contexts (on 15-bit k-means codes of telugu-v7 latents,
both stages: 64 classes merged into 32 contexts 24.02 bits a frame, 48: 23.92, 32: 23.86. Those
books had been fitted on frames that included the measured clips, which flatters every figure; on
unseen speakers the two stages of `state/v8-fit` cost 26.7 bits of their 30, and the class and
context counts barely matter there: 26.36-26.68, docs/training-log.md session 15). The previous
codes' classes are learnt from the codes alone: classes of the codebook's geometry (k-means of its
entries) code stage 0 no better.

Fitting uses floats; only its integer result is stored and coded with, so the fit need not be
reproducible across machines for files to decode everywhere (it is deterministic on one machine).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from telucodec.errors import ModelError
from telucodec.formats.context_tables import (
    MAX_BITS,
    SMALL_MAX_BITS,
    ContextTables,
    StageTables,
    freq_dtype,
    total_bits_for,
)

ALPHAS = (16.0, 64.0, 256.0, 1024.0)
LARGE_MAX_CONTEXTS = 32  # contexts of a stage of more than 2**SMALL_MAX_BITS codes
_DENSE_MAX = 1 << 24  # count matrices of more cells than this are kept sparse


def _counts(ctx: np.ndarray, y: np.ndarray, rows: int, v: int):
    """Count matrix [rows, v] of the events (ctx, y): dense float64, or a scipy CSR matrix when
    dense would be large (every matrix of tables of stages of up to 4096 codes stays dense)."""
    if rows * v > _DENSE_MAX:
        from scipy.sparse import csr_matrix

        return csr_matrix((np.ones(ctx.size), (ctx, y)), shape=(rows, v), dtype=np.float64)
    return np.bincount(ctx * v + y, minlength=rows * v).reshape(rows, v).astype(np.float64)


def _cluster_sums(n, assign: np.ndarray, k: int) -> np.ndarray:
    """Dense [k, V]: the rows of `n` summed by cluster."""
    if isinstance(n, np.ndarray):
        sums = np.zeros((k, n.shape[1]))
        np.add.at(sums, assign, n)
        return sums
    from scipy.sparse import csr_matrix

    onehot = csr_matrix((np.ones(assign.size), (assign, np.arange(assign.size))), shape=(k, assign.size))
    return (onehot @ n).toarray()


def _smooth(n: np.ndarray, marginal: np.ndarray, alpha: float) -> np.ndarray:
    return (n + alpha * marginal) / (n.sum(-1, keepdims=True) + alpha)


def kl_kmeans(n: np.ndarray, k: int, marginal: np.ndarray, iters: int = 20) -> np.ndarray:
    """Cluster the rows of a count matrix n [R, V] into <= k clusters minimizing the code length
    of the counts under each cluster's smoothed distribution; returns the cluster of each row.
    Rows without counts join the heaviest cluster. `n` may be a scipy sparse matrix (a large
    alphabet): the same clustering."""
    dense = isinstance(n, np.ndarray)
    rows = n.sum(1) if dense else np.asarray(n.sum(1)).ravel()
    k = max(1, min(k, int(np.count_nonzero(rows))))
    assign = np.zeros(n.shape[0], dtype=np.int64)
    seeds = np.argsort(-rows, kind="stable")[:k]
    logp = np.log(_smooth(n[seeds] if dense else n[seeds].toarray(), marginal, 0.5 * n.shape[1]))
    for _ in range(iters):
        cost = -n @ logp.T if dense else -np.asarray(n @ logp.T)
        new = np.argmin(cost, 1)
        sums = _cluster_sums(n, new, k)
        empty = np.flatnonzero(sums.sum(1) == 0)
        if empty.size:  # re-seed an empty cluster with the row its cluster codes worst
            worst = np.argsort(-cost[np.arange(len(new)), new], kind="stable")
            new[worst[: empty.size]] = empty
            sums = _cluster_sums(n, new, k)
        if np.array_equal(new, assign):
            break
        assign = new
        logp = np.log(_smooth(sums, marginal, 0.5 * n.shape[1]))
    heaviest = int(np.argmax(np.bincount(assign, weights=rows, minlength=k)))
    assign[rows == 0] = heaviest
    return _renumber(assign)


def _renumber(assign: np.ndarray) -> np.ndarray:
    """Cluster ids 0..m-1 in order of first appearance (empty ids dropped)."""
    _, first, inverse = np.unique(assign, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first, kind="stable"), kind="stable")
    return order[inverse].astype(np.int64)


class _Stage:
    """One stage's training events: code y, previous frame's code p (V: none), previous stage's s."""

    def __init__(self, clips: Sequence[np.ndarray], q: int, v: int):  # v: this stage's size
        self.y = np.concatenate([c[q] for c in clips]).astype(np.int64)
        self.p = np.concatenate([np.concatenate(([v], c[q, :-1])) for c in clips]).astype(np.int64)
        self.s = (np.concatenate([c[q - 1] for c in clips]).astype(np.int64) if q
                  else np.zeros(self.y.size, dtype=np.int64))


def _cluster_stage(ev: _Stage, q: int, v: int, v_before: int, prev_classes: int, stage_classes: int,
                   contexts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prev class map [V + 1], stage class map [V'] (the previous stage's size; stage 0: V),
    context map [A * B]) of one stage."""
    marginal = _marginal(ev, v)
    moved = ev.y != ev.p  # the repeat events are modelled by the repeat mass, not the tables
    known = moved & (ev.p < v)
    a_map = np.empty(v + 1, dtype=np.int64)
    a_map[:v] = kl_kmeans(_counts(ev.p[known], ev.y[known], v, v), prev_classes, marginal)
    a_map[v] = a_map[:v].max() + 1  # "no previous frame" is a class of its own
    if q:
        b_map = kl_kmeans(_counts(ev.s[moved], ev.y[moved], v_before, v), stage_classes, marginal)
    else:
        b_map = np.zeros(v, dtype=np.int64)
    na, nb = int(a_map.max()) + 1, int(b_map.max()) + 1
    if na * nb <= contexts:
        return a_map, b_map, np.arange(na * nb, dtype=np.int64)
    pair = a_map[ev.p] * nb + b_map[ev.s]
    return a_map, b_map, kl_kmeans(_counts(pair[moved], ev.y[moved], na * nb, v), contexts, marginal)


def _marginal(ev: _Stage, v: int) -> np.ndarray:
    marginal = np.bincount(ev.y, minlength=v) + 0.5
    return marginal / marginal.sum()


def _stage_tables(ev: _Stage, v: int, maps: tuple[np.ndarray, np.ndarray, np.ndarray], alpha: float) -> StageTables:
    """The integer tables of one stage for the given class maps and smoothing."""
    a_map, b_map, j_map = maps
    na, nb = int(a_map.max()) + 1, int(b_map.max()) + 1
    moved = ev.y != ev.p
    ctx = j_map[a_map[ev.p] * nb + b_map[ev.s]]
    nk = int(j_map.max()) + 1
    n = _counts(ctx[moved], ev.y[moved], nk, v)
    seen = np.bincount(ctx[ev.p < v], minlength=nk).astype(np.float64)
    repeats = np.bincount(ctx[~moved], minlength=nk).astype(np.float64)
    rho = (repeats + 0.5) / (seen + 1.0)
    total = 1 << total_bits_for(v)
    repeat = np.minimum(np.floor(rho * total), total - 4 * v).astype(np.int64)
    freq = _quantize(_smooth(n, _marginal(ev, v), alpha), total - repeat)
    wide = freq_dtype(v)
    return StageTables(prev_class=a_map.astype(np.uint8), stage_class=b_map.astype(np.uint8),
                       context=j_map.reshape(na, nb).astype(np.uint8), freq=freq.astype(wide),
                       repeat=repeat.astype(wide))


def _quantize(p: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Integer frequencies >= 1 from probabilities p [K, V], row k summing to totals[k] exactly."""
    v = p.shape[1]
    f = np.floor(p * (totals[:, None] - v)).astype(np.int64) + 1
    top = np.argmax(p, 1)
    f[np.arange(p.shape[0]), top] += totals - f.sum(1)
    return f


def stage_cost_bits(tables: ContextTables, clips: Sequence[np.ndarray], n_q: int) -> np.ndarray:
    """Ideal code length in bits of each stage 0..n_q-1 of `clips` under `tables` (what the range
    coder spends up to a few bytes per file): [n_q] totals."""
    from telucodec.formats.context_coder import code_bits

    total = np.zeros(n_q)
    for c in clips:
        if c.shape[1] == 0:
            continue
        total += code_bits(tables, c[:n_q].astype(np.int64)).sum(1)
    return total


def _stage_bits(clips: list[np.ndarray], bits: int | Sequence[int]) -> list[int]:
    """Each stage's width, checked against the clips' stage count and code values."""
    n_stages = clips[0].shape[0]
    widths = [int(bits)] * n_stages if np.ndim(bits) == 0 else [int(b) for b in bits]
    if len(widths) != n_stages:
        raise ModelError(f"fit_tables: the codes have {n_stages} stages, bits gives {len(widths)} widths")
    if not all(1 <= b <= MAX_BITS for b in widths):
        raise ModelError(f"fit_tables: stage bits must be in 1..{MAX_BITS}, got {widths}")
    low = np.min([c.min(1) for c in clips], axis=0)
    high = np.max([c.max(1) for c in clips], axis=0)
    for q, b in enumerate(widths):
        if low[q] < 0 or high[q] >= 1 << b:
            if np.ndim(bits) == 0:
                raise ModelError(f"fit_tables: codes must be in 0..{(1 << b) - 1}")
            raise ModelError(f"fit_tables: stage {q}'s codes must be in 0..{(1 << b) - 1}, got {low[q]}..{high[q]}")
    return widths


def fit_tables(clips: Sequence[np.ndarray], bits: int | Sequence[int], prev_classes_first: int = 64,
               prev_classes: int = 16, stage_classes: int = 16, contexts: int = 32,
               alphas: Sequence[float] = ALPHAS) -> ContextTables:
    """Tables fitted on `clips` (each [n_stages, F_i] int codes) whose stages are `bits` wide: one
    width for all, or one per stage. Stage 0 uses `prev_classes_first` classes (it has no
    previous stage, so its previous frame carries all the context); the smoothing of each stage
    is the one of `alphas` that codes a held-out tenth of the clips (every tenth clip) best. A
    stage of more than 4096 codes keeps at most LARGE_MAX_CONTEXTS contexts."""
    clips = [np.asarray(c, dtype=np.int64) for c in clips if np.shape(c)[-1] > 0]
    if not clips or len({c.shape[0] for c in clips}) != 1:
        raise ModelError("fit_tables: give one or more clips of codes, all with the same number of stages")
    sizes = [1 << b for b in _stage_bits(clips, bits)]
    for name, value in (("prev_classes_first", prev_classes_first), ("prev_classes", prev_classes),
                        ("stage_classes", stage_classes), ("contexts", contexts)):
        if not 1 <= value <= 255:
            raise ModelError(f"fit_tables: {name} must be in 1..255, got {value}")
    n_stages = clips[0].shape[0]
    held = [c for i, c in enumerate(clips) if i % 10 == 9]
    fit = [c for i, c in enumerate(clips) if i % 10 != 9]
    stages: list[StageTables] = []
    for q in range(n_stages):
        v, large = sizes[q], sizes[q] > 1 << SMALL_MAX_BITS
        k = min(contexts, LARGE_MAX_CONTEXTS) if large else contexts
        a = prev_classes_first if q == 0 else prev_classes
        args = (q, v, sizes[q - 1] if q else v, min(a, k) if large else a, stage_classes, k)
        alpha = alphas[0]
        if held and fit and len(alphas) > 1:
            ev = _Stage(fit, q, v)
            maps = _cluster_stage(ev, *args)
            costs = [stage_cost_bits(ContextTables(stages + [_stage_tables(ev, v, maps, al)]), held, q + 1)[q]
                     for al in alphas]
            alpha = alphas[int(np.argmin(costs))]
        ev = _Stage(clips, q, v)
        stages.append(_stage_tables(ev, v, _cluster_stage(ev, *args), alpha))
    return ContextTables(stages, "fitted entropy tables")
