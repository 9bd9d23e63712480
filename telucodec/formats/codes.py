"""`Codes`: what an encoder produces and a decoder consumes; the bitstream serializes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation: importing the format costs no torch import
    import torch

# The amplitude strategies whose side info a `Codes` can carry; the index is the value a .tcd
# header stores, so this order is part of the file format (append only).
SIDE_KINDS: tuple[str, ...] = ("none", "rms", "lufs")


@dataclass
class Codes:
    """Discrete codes of one mono clip.

    codes:        int64 tensor [n_q, F] (F frames at `frame_rate`), values in [0, codebook_size).
    side_kind:    amplitude strategy that produced `side` ("none", "rms" or "lufs").
    side:         the amplitude side info as small non-negative integers, already quantized
                  (empty for "none"; one value per chunk for "rms"; one gain for "lufs").
    num_samples:  length of the original clip in samples at `sample_rate`.
    model_id:     16 hex chars identifying the model that made the codes.
    """

    codes: torch.Tensor
    num_samples: int
    model_id: str
    sample_rate: int = 16000
    frame_rate: int = 50
    codebook_bits: int = 10
    side_kind: str = "none"
    side: list[int] = field(default_factory=list)

    @property
    def n_q(self) -> int:
        return int(self.codes.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[1])

    @property
    def kbps_nominal(self) -> float:
        return self.n_q * self.codebook_bits * self.frame_rate / 1000.0
