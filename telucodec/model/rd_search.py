"""Rate-distortion search at the encoder: codes chosen for their error and their bits together.

Rate control (`formats/rate.py`) fills a file's budget with the codes the search gives it, and
the context coder (`formats/context_coder.py`) makes some codes much cheaper than others in their
context: above all the code the same stage sent one frame earlier, which carries the tables'
repeat mass. A search by squared error alone ignores that. Here a beam search
(`clustering.beam_search`) ranks each path by its squared error plus a weight x its bits in
context (`context_coder.candidate_bits`), so near-ties go to the cheaper code, and the bits saved buy more stages where rate control can spend them. The
bitstream and decoder are unchanged; only the encoder's choice differs.

The previous frame's code, part of every context, comes from a first pass (the plain beam
search): the second pass is then independent per frame and runs in blocks of RD_BLOCK frames,
whatever the clip's length. The costs assume every frame sends every stage; rate control then
measures the real files.

The weight of a bit follows the rate (`rd_weight`): rate control runs once on the plain beam's
codes, and a bit is worth RD_SHARE x the expected error the next stage removes per context-coded
bit at the stage count it reaches (on telugu-v7 about 0.0056 / 0.0031 / 0.0011 of a clip's mean
squared latent frame at 1.5 / 3 / 6 kbps). A fixed weight does not do: 0.0015 of the frame energy
gained at 1.5 kbps and lost 0.06 PESQ-WB at 6.

Measured on telugu-v7, beam 16, rate control, the 71 held-out clips (docs/training-log.md, session
16): PESQ-WB at 1.5 kbps 1.851 at RD_SHARE 0.3 and 1.863 at 0.6 (1.841 for the plain beam in
session 14's eval), at 3 kbps 2.392 plain / 2.399 / 2.394; at 6 kbps (24 clips) 2.747 / 2.747 /
2.755. A sequential greedy variant (beam 1) gained +0.011 at best on 24 clips, so the weighing is
used with beams only (`--beam` > 1, a model with context tables, a rate to fit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from telucodec.formats.codes import Codes
from telucodec.formats.context_coder import candidate_bits
from telucodec.formats.context_tables import ContextTables
from telucodec.formats.rate import fit_to_rate, gains_and_bits
from telucodec.model.clustering import StageCosts

RD_SHARE = 0.6   # a bit's weight: this share of the rate's exchange of error for bits (measured above)
RD_BLOCK = 256   # frames searched at once in the second pass ([RD_BLOCK, beam, K] costs)


def rd_weight(candidates: Sequence[Codes], kbps: float) -> float:
    """What a bit is worth in squared latent error when `candidates` (one clip's codes at n = 1 ..
    N stages) are fitted to `kbps`: RD_SHARE x the expected error the next stage removes per bit
    it costs (`rate.gains_and_bits`: entry energies over context-coded bits, means over frames)
    at the stage count rate control reaches. 0 when every stage fits: nothing to buy with bits."""
    reached = float(np.mean(fit_to_rate(candidates, kbps, strict=False).codes.frame_counts))
    n = int(reached)
    if n >= len(candidates):
        return 0.0
    gains, bits = gains_and_bits(candidates)
    return RD_SHARE * float(gains[n].mean()) / max(float(bits[n].mean()), 1e-9)


def bit_costs(tables: ContextTables, prev: np.ndarray, weight: float) -> StageCosts:
    """`beam_search`'s costs: `weight` x the bits of every entry of stage s in its context, for
    frames whose previous frame sent `prev` [n_q, N] (V_q or more: none)."""
    def costs(s: int, stage_prev: torch.Tensor | None) -> torch.Tensor:
        sp = None if stage_prev is None else stage_prev.cpu().numpy()
        return torch.from_numpy(candidate_bits(tables, s, prev[s], sp) * weight)
    return costs


def rd_prefixes(quantizer: torch.nn.Module, latent: torch.Tensor, first: torch.Tensor, beam: int,
                tables: ContextTables, weight: float) -> list[torch.Tensor]:
    """latent [D, F] of a whole clip and `first` [n_q, F] (the plain search's codes at n_q stages)
    -> [codes [n, F] for n = 1 .. n_q] of the beam search that ranks paths by squared error plus
    `weight` x their bits in context (`rd_weight`)."""
    n_q, f = first.shape
    before = np.concatenate([np.full((n_q, 1), tables.size, dtype=np.int64), first.cpu().numpy()[:, :-1]], axis=1)
    pieces = []
    for lo in range(0, f, RD_BLOCK):
        hi = min(f, lo + RD_BLOCK)
        costs = bit_costs(tables, before[:, lo:hi], weight)
        pieces.append([c[0].cpu() for c in quantizer.encode_prefixes(latent[None, :, lo:hi], n_q, beam, costs)])
    return [torch.cat(per_n, dim=-1) for per_n in zip(*pieces)]
