"""Rate control: `--kbps X` as the file's actual rate, header included.

A model's nominal rate counts raw code bits (n_q x codebook bits x frame rate). The file a user
keeps is what costs: 44 header bytes and the side info on top, and, with entropy coding, fewer
bits per code than raw (about 22 % fewer with a model's context tables). `fit_to_rate` spends
that difference: given the codes of one clip at every stage count (`encode_prefixes` of a
`Codec` or a runtime: one encoder pass and one codebook search), it picks the most codebooks
whose smallest file (plain, static ANS or context coded: `write_smallest`) fits in X kbps over
the clip's duration.

A budget not even one codebook fits (a low X, or a clip so short that the 352 header bits alone
exceed it) is refused by name; eval, which must score every clip, takes one codebook instead and
reports the rate it got.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from telucodec.errors import TelucodecError
from telucodec.formats.bitstream import write_smallest
from telucodec.formats.codes import Codes


@dataclass(frozen=True)
class RateChoice:
    codes: Codes          # the codes of the file
    data: bytes           # the .tcd file (the smallest coding of `codes`)
    n_q: int              # codebooks used
    kbps_actual: float    # len(data) * 8 / duration / 1000
    within: bool          # kbps_actual <= the asked kbps

    def note(self, kbps: float) -> str:
        """One line for the user: what the budget bought."""
        verdict = "fits" if self.within else "is the least there is, over the budget"
        return f"--kbps {kbps:g}: n_q={self.n_q} {verdict}, {self.kbps_actual:.3f} kbps actual (header included)"


def fit_to_rate(candidates: Sequence[Codes], kbps: float, strict: bool = True) -> RateChoice:
    """The most codebooks whose file fits in `kbps`: `candidates[n - 1]` holds one clip's codes at
    n codebooks (n = 1 .. N). A budget not even one codebook fits is refused in one line naming
    --kbps (`strict`), or answered with one codebook and `within` False (eval reports the rate)."""
    if not candidates:
        raise TelucodecError("rate control: no codes to choose from")
    if not (isinstance(kbps, (int, float)) and math.isfinite(kbps) and kbps > 0):
        raise TelucodecError(f"--kbps {kbps}: must be a positive number")
    first = candidates[0]
    seconds = first.num_samples / first.sample_rate
    budget_bits = kbps * 1000.0 * seconds

    def attempt(n_q: int) -> RateChoice:
        data = write_smallest(candidates[n_q - 1])[0]
        return RateChoice(candidates[n_q - 1], data, n_q, len(data) * 8 / seconds / 1000.0,
                          len(data) * 8 <= budget_bits + 1e-9)

    # start at the nominal count (raw bits alone), then climb while the next one fits, or descend
    nominal = kbps / (first.codebook_bits * first.frame_rate / 1000.0)
    best = attempt(min(len(candidates), max(1, int(math.floor(nominal + 1e-9)))))
    if best.within:
        while best.n_q < len(candidates):
            bigger = attempt(best.n_q + 1)
            if not bigger.within:
                break
            best = bigger
        return best
    while best.n_q > 1 and not best.within:
        best = attempt(best.n_q - 1)
    if strict and not best.within:
        raise TelucodecError(f"--kbps {kbps:g}: too low for this clip: one codebook makes a "
                             f"{best.kbps_actual:.3f} kbps file ({len(best.data)} bytes, header included)")
    return best
