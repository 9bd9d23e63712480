"""Rate control: `--kbps X` as the file's actual rate, header included.

A model's nominal rate counts raw code bits (n_q x codebook bits x frame rate). The file a user
keeps is what costs: 44 header bytes and the side info on top, and, with entropy coding, fewer
bits per code than raw (about 22 % fewer with a model's context tables). `fit_to_rate` spends
that difference: given the codes of one clip at every stage count (`encode_prefixes` of a
`Codec` or a runtime: one encoder pass and one codebook search), it picks the most codebooks N
whose smallest file (plain, static ANS or context coded: `write_smallest`) fits in X kbps over
the clip's duration, then fills what is left of the budget with extra stages in segments of
SEGMENT_SECONDS (a version-3 file: `Codes.stage_counts`).

The fill adds, one segment-stage at a time, the one that removes the most expected latent error
per estimated bit: a stage's expected error reduction at a frame is |entry|^2 of the code it
sends (k-means entries are the centroids of the residuals they quantize, so given the code the
residual's mean is the entry and the squared error drops by |entry|^2 on average); a model
registers those entry energies under its id (`register_entry_gains`). Its bits come from the
model's context tables (the code lengths in full context), else codebook bits per code. Then the
largest prefix of that order whose actual smallest file fits is found by bisection, and a few
later additions are tried one by one. That fill runs twice: from the uniform N file, and from one
stage everywhere (so a pause may send fewer than N stages and speech more); of the two and the
uniform file, the one that removes the most expected error is written. The file is never larger
than the budget and never removes less expected error than the uniform N file. Filling from one
stage measured +0.05 / +0.08 / +0.00 PESQ-WB at 1.5 / 3 / 6 kbps over filling from N (telugu-v7,
24 held-out clips; docs/training-log.md, session 13).

Segments of 0.1 s (5 frames at 50 Hz): the count block costs 3 bytes and 1 bit per segment
(10 bit/s, 0.7 % of 1.5 kbps, counted in the actual rate), and finer segments leave less of the
budget unspent (one segment's extra stage is about 45 context-coded bits) and put the extra stage
where it removes the most error. Measured on 10 held-out clips with telugu-v6 (relative latent
error of the sent codes; the file's actual kbps): at 1.5 kbps one count per file 0.240 (1.273
kbps), segments of 0.1 s 0.221 (1.437), 0.2 s 0.223 (1.430), 0.5 s 0.225 (1.423), 1 s 0.226
(1.421); at 3 kbps 0.134 (2.849), 0.128 (2.959), 0.128 (2.958), 0.129 (2.947), 0.131 (2.927).
A stage the previous frame did not send is coded without its previous code, which costs a little
at segment starts only; what is left unspent on short clips is less than one segment's stage.

A budget not even one codebook fits (a low X, or a clip so short that the 352 header bits alone
exceed it) is refused by name; eval, which must score every clip, takes one codebook instead and
reports the rate it got.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from telucodec.errors import TelucodecError
from telucodec.formats.bitstream import tables_fit, write_smallest
from telucodec.formats.codes import Codes
from telucodec.formats.context_coder import code_bits
from telucodec.formats.context_tables import tables_for

SEGMENT_SECONDS = 0.1  # rate control's segment: frames of one stage count
LATER_TRIES = 8        # additions tried one by one after the bisection
_GAINS: dict[str, np.ndarray] = {}


def register_entry_gains(model_id: str, gains: np.ndarray) -> None:
    """float64 [n_q, codebook size]: |entry|^2 of every codebook entry of a model (what one code
    is expected to remove from the latent's squared error), for `fit_to_rate`'s fill order."""
    if len(_GAINS) >= 64 and model_id not in _GAINS:
        _GAINS.pop(next(iter(_GAINS)))
    _GAINS[str(model_id).lower()] = np.asarray(gains, dtype=np.float64)


@dataclass(frozen=True)
class RateChoice:
    codes: Codes          # the codes of the file
    data: bytes           # the .tcd file (the smallest coding of `codes`)
    n_q: int              # codebooks used (the most any frame sends)
    kbps_actual: float    # len(data) * 8 / duration / 1000
    within: bool          # kbps_actual <= the asked kbps

    def note(self, kbps: float) -> str:
        """One line for the user: what the budget bought."""
        verdict = "fits" if self.within else "is the least there is, over the budget"
        counts = self.codes.frame_counts
        if not self.codes.uniform:
            return (f"--kbps {kbps:g}: n_q {int(counts.min())}-{self.n_q} by segment (mean {float(np.mean(counts)):.2f}), "
                    f"{verdict}, {self.kbps_actual:.3f} kbps actual (header included)")
        return f"--kbps {kbps:g}: n_q={self.n_q} {verdict}, {self.kbps_actual:.3f} kbps actual (header included)"


def fit_to_rate(candidates: Sequence[Codes], kbps: float, strict: bool = True,
                segment_seconds: float = SEGMENT_SECONDS) -> RateChoice:
    """The file that fits in `kbps` with the most codes where they remove the most error:
    `candidates[n - 1]` holds one clip's codes at n codebooks (n = 1 .. N). A budget not even one
    codebook fits is refused in one line naming --kbps (`strict`), or answered with one codebook
    and `within` False (eval reports the rate). `segment_seconds` <= 0: one count per file."""
    if not candidates:
        raise TelucodecError("rate control: no codes to choose from")
    if not (isinstance(kbps, (int, float)) and math.isfinite(kbps) and kbps > 0):
        raise TelucodecError(f"--kbps {kbps}: must be a positive number")
    first = candidates[0]
    seconds = first.num_samples / first.sample_rate
    budget_bits = kbps * 1000.0 * seconds

    def attempt(n_q: int) -> RateChoice:
        return _choice(candidates[n_q - 1], seconds, budget_bits)

    # every count is tried: a file's size need not grow with its count (a beam's codes differ per
    # count, and so do their context-coded sizes), so the first count that does not fit says nothing
    uniform = [attempt(n) for n in range(1, len(candidates) + 1)]
    best = next((choice for choice in reversed(uniform) if choice.within), uniform[0])
    if not best.within:
        if strict:
            raise TelucodecError(f"--kbps {kbps:g}: too low for this clip: one codebook makes a "
                                 f"{best.kbps_actual:.3f} kbps file ({len(best.data)} bytes, header included)")
        return best
    seg = int(round(segment_seconds * first.frame_rate))
    if seg < 1 or best.n_q >= len(candidates):
        return best
    gains, bits = gains_and_bits(candidates)
    options = [best, _fill(candidates, best, seconds, budget_bits, seg, gains, bits)]
    if best.n_q > 1:  # quiet segments may send fewer than N stages, so that speech gets more
        options.append(_fill(candidates, uniform[0], seconds, budget_bits, seg, gains, bits))
    return max(options, key=lambda choice: expected_gain(choice.codes))  # the first of equals


def encode_to_rate(engine: Any, wav: Any, sample_rate: int | None, kbps: float, strict: bool = True) -> RateChoice:
    """`fit_to_rate` of `engine.encode_prefixes(wav, sample_rate, fit_kbps=kbps)`: the one path
    from audio to a file of an actual rate (encode, compress, eval, demo). `engine`: a Codec or a
    runtime (deploy/runtimes.py); told the rate, a beam search weighs bits against error.

    Its bits are estimates (contexts from a first pass), and on a clip of a few frames its codes'
    smallest file can come out a byte or two larger than the plain codes' (found by
    tests/test_rd_search.py: a 0.16 s clip the plain beam fitted in 2.5 kbps and the weighed one
    did not). So where its file does not fit, the plain codes are fitted as before: the search
    never turns a budget that fitted into a refusal, and a refusal names the plain codes' size."""
    choice = fit_to_rate(engine.encode_prefixes(wav, sample_rate, fit_kbps=kbps), kbps, strict=False)
    if choice.within:
        return choice
    return fit_to_rate(engine.encode_prefixes(wav, sample_rate), kbps, strict)


def expected_gain(codes: Codes) -> float:
    """The expected latent error the sent codes remove: the sum of |entry|^2 of every code sent
    (the model's registered entry energies), or without them the number of codes sent."""
    arr, counts = np.asarray(codes.codes, dtype=np.int64), codes.frame_counts
    sent = np.arange(codes.n_q)[:, None] < counts[None, :]
    entry = _entry_gains(codes, codes.n_q)
    if entry is None:
        return float(sent.sum())
    return float(entry[np.arange(codes.n_q)[:, None], arr][sent].sum())


def _entry_gains(codes: Codes, n_q: int) -> np.ndarray | None:
    """The registered |entry|^2 table of the codes' model when it covers `n_q` stages of codes of
    their width, else None (`register_entry_gains`)."""
    entry = _GAINS.get(codes.model_id.lower())
    if entry is None or entry.shape[0] < n_q or entry.shape[1] < 1 << codes.codebook_bits:
        return None
    return entry


def _choice(codes: Codes, seconds: float, budget_bits: float) -> RateChoice:
    data = write_smallest(codes)[0]
    return RateChoice(codes, data, codes.n_q, len(data) * 8 / seconds / 1000.0, len(data) * 8 <= budget_bits + 1e-9)


def mix(candidates: Sequence[Codes], counts: np.ndarray) -> Codes:
    """One clip's codes with `counts[t]` stages at frame t, each frame's codes from the candidate
    of its count (a beam's differ per count), unsent codes 0 (`Codes.stage_counts`)."""
    top = int(counts.max())
    out = np.zeros((top, len(counts)), dtype=np.int64)
    for n in np.unique(counts):
        frames = counts == n
        out[:n, frames] = np.asarray(candidates[n - 1].codes)[:, frames]
    codes = candidates[top - 1]
    return replace(codes, codes=_like(codes.codes, out), stage_counts=None if int(counts.min()) == top else counts)


def _like(template: object, arr: np.ndarray) -> object:
    """`arr` as the type the candidates' codes have (a torch tensor from a model, else numpy)."""
    if hasattr(template, "detach"):
        import torch

        return torch.from_numpy(arr)
    return arr


def gains_and_bits(candidates: Sequence[Codes]) -> tuple[np.ndarray, np.ndarray]:
    """[N, F] expected error removed by stage s at each frame (from the candidate with s + 1
    stages: its last code), and [N, F] the bits it is estimated to cost."""
    top = candidates[-1]
    n, f = len(candidates), top.num_frames
    entry = _entry_gains(top, n)
    last = np.stack([np.asarray(c.codes)[-1] for c in candidates])  # [N, F]: stage s of candidate s + 1
    if entry is not None:
        gains = entry[np.arange(n)[:, None], last]
    else:  # no energies registered: every code is worth the same, the cheapest go first
        gains = np.ones((n, f))
    tables = tables_for(top.model_id)
    bits = np.repeat(np.asarray(top.widths, dtype=np.float64)[:, None], f, axis=1)
    if tables_fit(tables, top.widths):
        bits = code_bits(tables, np.asarray(top.codes, dtype=np.int64))
    return gains, bits


def _fill(candidates: Sequence[Codes], uniform: RateChoice, seconds: float, budget_bits: float,
          seg: int, gains: np.ndarray, bits: np.ndarray) -> RateChoice:
    """`uniform` (N stages everywhere, fits) plus extra stages in segments of `seg` frames, in the
    order of most expected error removed per bit, as many as the budget holds."""
    base, top = uniform.n_q, len(candidates)
    f = candidates[0].num_frames
    n_seg = -(-f // seg)
    starts = np.arange(n_seg) * seg
    seg_gain = np.add.reduceat(gains, starts, axis=1)  # [N, n_seg]
    seg_bits = np.add.reduceat(bits, starts, axis=1)
    heap = [(-seg_gain[base, j] / seg_bits[base, j], j, base + 1) for j in range(n_seg)]
    heapq.heapify(heap)
    order: list[tuple[int, int]] = []  # (segment, its count after the addition)
    while heap:
        _, j, n = heapq.heappop(heap)
        if seg_gain[n - 1, j] <= 0:
            continue
        order.append((j, n))
        if n < top:
            heapq.heappush(heap, (-seg_gain[n, j] / seg_bits[n, j], j, n + 1))

    def build(additions: Sequence[tuple[int, int]]) -> RateChoice:
        per_seg = np.full(n_seg, base, dtype=np.int64)
        for j, n in additions:
            per_seg[j] = max(per_seg[j], n)
        return _choice(mix(candidates, np.repeat(per_seg, seg)[:f]), seconds, budget_bits)

    lo, hi, best = 0, len(order), uniform  # bisection: the largest prefix of the order that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        trial = build(order[:mid])
        if trial.within:
            lo, best = mid, trial
        else:
            hi = mid - 1
    chosen = list(order[:lo])
    taken = set(chosen)
    for j, n in order[lo + 1: lo + 1 + LATER_TRIES]:  # a cheaper later one may still fit
        if n > base + 1 and (j, n - 1) not in taken:
            continue
        trial = build([*chosen, (j, n)])
        if trial.within:
            chosen.append((j, n))
            taken.add((j, n))
            best = trial
    return best if len(best.data) >= len(uniform.data) else uniform
