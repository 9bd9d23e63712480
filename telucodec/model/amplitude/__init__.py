"""Who owns loudness? Three answers behind one interface, so measurement can pick the default.

The seed codec's decoder never learned output amplitude: it had to reproduce absolute level
from codes alone. Each strategy here splits a waveform into a *level* part (side info, a few
integers sent in the bitstream) and a *shape* part (the normalized waveform the encoder sees):

* ``none`` - identity. The decoder owns absolute amplitude (the seed's behaviour, kept as the
  baseline the others must beat).
* ``rms``  - EnCodec-style. Per-chunk RMS (1 s chunks by default), quantized to 8 bits on a
  log scale, sent as side info, divided out before the encoder and multiplied back after the
  decoder.
* ``lufs`` - DAC-style. One integrated loudness (ITU-R BS.1770 via pyloudnorm) per clip; the
  gain to a target loudness is quantized to 8 bits, sent, and undone after the decoder.

Two rules make every strategy exact and cheap to reason about:

1. The *dequantized* side info is what normalizes. ``normalize`` divides by
   ``gain_curve(side, T)`` and ``restore`` multiplies by ``gain_curve(side, T')`` - the same
   function of the same integers - so ``restore(normalize(x))`` equals ``x`` up to float
   rounding, and the side info alone fully describes the restore (nothing the decoder lacks).
2. The gain curve at sample ``t`` depends only on the side info and ``t``, never on the clip
   length. A decoder whose output is a few samples longer or shorter than its input (hop
   padding) therefore restores the common samples exactly.

Side info is a float32 tensor ``[B, S]`` holding non-negative integers, so the bitstream can
store ``side[i].round().long().tolist()`` at ``side_bits()`` bits each and get the same
tensor back. It is computed under ``torch.no_grad``: it is a measurement, not something to
train through. ``restore`` is an ordinary differentiable multiply by a detached curve, so
losses measured on the restored output train the decoder.
"""

from __future__ import annotations

from typing import Any

from telucodec.formats.codes import SIDE_KINDS
from telucodec.model.amplitude.base import Amplitude, NoAmplitude
from telucodec.model.amplitude.lufs import LufsAmplitude
from telucodec.model.amplitude.rms import RmsAmplitude

# One list of strategy names: the side-info kinds a `Codes` (and a .tcd header) can carry.
AMPLITUDE_KINDS: tuple[str, ...] = SIDE_KINDS
_STRATEGIES: dict[str, type[Amplitude]] = {cls.kind: cls for cls in (NoAmplitude, RmsAmplitude, LufsAmplitude)}


def get_amplitude(kind: str, sample_rate: int = 16000, **options: Any) -> Amplitude:
    """Build the strategy named ``kind`` (one of AMPLITUDE_KINDS) with its options.

    Unknown kinds raise ValueError naming the valid ones; unknown options raise TypeError.
    """
    try:
        cls = _STRATEGIES[kind]
    except KeyError:
        raise ValueError(f"unknown amplitude kind {kind!r}; choose one of {', '.join(AMPLITUDE_KINDS)}") from None
    return cls(sample_rate=sample_rate, **options)


__all__ = ["AMPLITUDE_KINDS", "Amplitude", "LufsAmplitude", "NoAmplitude", "RmsAmplitude",
           "get_amplitude"]
