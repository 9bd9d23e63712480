"""`Codes`: what an encoder produces and a decoder consumes; the bitstream serializes it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from telucodec.errors import ModelError

if TYPE_CHECKING:  # only for the annotation: importing the format costs no torch import
    import torch

# The amplitude strategies whose side info a `Codes` can carry; the index is the value a .tcd
# header stores, so this order is part of the file format (append only).
SIDE_KINDS: tuple[str, ...] = ("none", "rms", "lufs")

# What a .tcd header can carry, field -> (lowest, highest) (formats/bitstream.py writes these
# fields; token folders store the same rates): a model outside them is refused when it is built
# (`carried_frame_rate`). The order is bitstream.py's names for them.
TCD_RANGES: dict[str, tuple[int, int]] = {"sample rate": (8000, 48000), "n_q": (1, 64), "codebook bits": (1, 16),
                                          "frame rate": (1, 1000)}


def carried_frame_rate(sample_rate: int, hop: int, n_q: int, codebook_bits: int) -> int:
    """The whole frame rate a .tcd header stores for a model of these rates, or a one-line
    ModelError when the format cannot carry the model exactly (a hop that does not divide the
    sample rate, or a field outside its range)."""
    if hop < 1 or sample_rate % hop:
        raise ModelError(f"a hop of {hop} samples at {sample_rate} Hz is {sample_rate / max(hop, 1):g} frames/s: "
                         ".tcd files store a whole frame rate, so the hop must divide the sample rate")
    frame_rate = sample_rate // hop
    values = {"sample rate": sample_rate, "n_q": n_q, "codebook bits": codebook_bits, "frame rate": frame_rate}
    for name, (lo, hi) in TCD_RANGES.items():
        value = values[name]
        if not lo <= value <= hi:
            raise ModelError(f"a model with {name} {value} cannot be written to .tcd files (accepted: {lo}..{hi})")
    return frame_rate


def stage_widths(stage_bits: tuple[int, ...], codebook_bits: int, n_q: int) -> list[int]:
    """Each of n_q stages' code width: `stage_bits` where the stages differ, else `codebook_bits`."""
    return list(stage_bits) if stage_bits else [codebook_bits] * n_q


def mean_sent_bits(widths: list[int], counts: np.ndarray) -> float:
    """Raw code bits a frame, averaged over frames that send `counts[t]` stages of these widths."""
    return float(np.mean(np.concatenate([[0], np.cumsum(widths)])[np.asarray(counts)]))


def widths_text(widths: list[int]) -> str:
    """Stage code widths for a message: '10' when equal, '15,15,10,...' where they differ."""
    return str(widths[0]) if len(set(widths)) == 1 else ",".join(map(str, widths))


@dataclass
class Codes:
    """Discrete codes of one mono clip.

    codes:        int64 tensor [n_q, F] (F frames at `frame_rate`), values in [0, codebook_size).
    side_kind:    amplitude strategy that produced `side` ("none", "rms" or "lufs").
    side:         the amplitude side info as small non-negative integers, already quantized
                  (empty for "none"; one value per chunk for "rms"; one gain for "lufs").
    num_samples:  length of the original clip in samples at `sample_rate`.
    model_id:     16 hex chars identifying the model that made the codes.
    stage_counts: None (every frame sends all n_q stages), or int [F]: how many stages each frame
                  sends, 1..n_q (rate control's per-segment counts, .tcd version 3). The one
                  representation of "not sent": frame t sends stages 0..stage_counts[t]-1, its
                  codes at the other stages are 0 and add nothing to the decoded latent.
    stage_bits:   () when every stage's codes are `codebook_bits` wide, else each stage's width
                  (n_q values, the largest `codebook_bits`: a model whose stages differ in size,
                  .tcd version 4).
    """

    codes: torch.Tensor
    num_samples: int
    model_id: str
    sample_rate: int
    frame_rate: int
    codebook_bits: int
    side_kind: str = "none"
    side: list[int] = field(default_factory=list)
    stage_counts: np.ndarray | None = None
    stage_bits: tuple[int, ...] = ()

    @property
    def widths(self) -> list[int]:
        """Each stage's code width in bits (n_q values)."""
        return stage_widths(self.stage_bits, self.codebook_bits, self.n_q)

    @property
    def n_q(self) -> int:
        return int(self.codes.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[1])

    def prefixes(self) -> list[Codes]:
        """[these codes' first n codebooks, for n = 1 .. n_q], as views: what a greedy search gives
        at every stage count (its codes are prefixes of each other), for rate control."""
        counts, bits = self.stage_counts, self.stage_bits
        return [replace(self, codes=self.codes[:n], stage_counts=None if counts is None else np.minimum(counts, n),
                        stage_bits=bits[:n]) for n in range(1, self.n_q + 1)]

    @property
    def frame_counts(self) -> np.ndarray:
        """int64 [F]: the stages each frame sends (n_q everywhere when `stage_counts` is None)."""
        if self.stage_counts is None:
            return np.full(self.num_frames, self.n_q, dtype=np.int64)
        return np.asarray(self.stage_counts, dtype=np.int64)

    @property
    def uniform(self) -> bool:
        """Every frame sends every one of the n_q stages."""
        return self.stage_counts is None or bool(np.all(np.asarray(self.stage_counts) == self.n_q))

    @property
    def kbps_nominal(self) -> float:
        """Raw code bits per second: the widths of the stages sent x frame rate (n_q x codebook
        bits x frame rate for uniform stages), averaged over frames when they send different counts."""
        counts = self.frame_counts if not self.uniform and self.num_frames else np.array([self.n_q])
        return mean_sent_bits(self.widths, counts) * self.frame_rate / 1000.0
