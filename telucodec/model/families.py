"""Model families: name -> module class, one table per part.

A family is an entry here, not a branch elsewhere. `Codec` builds its parts from these tables;
everything else talks to the parts through the small interface every entry implements:

    encoder:   forward(wav [B, 1, T]) -> latent [B, D, T / hop]
               stream_layers() -> the conv stack streaming measures, or None (does not stream)
    decoder:   forward(latent [B, D, F]) -> wav [B, 1, F * hop]
               stream_frames() -> (context, lookahead) frames a streamed frame needs
    quantizer: forward(latent, n_q) -> QuantizerOutput; encode(latent, n_q) -> codes [B, n_q, F];
               decode(codes) -> latent; set_codebooks([n_q, K, D] or [K_s, D] each);
               codebooks() -> [n_q, K, D]; stage_codebooks() -> [[K_s, D] per stage]

Each encoder and decoder entry is a `Family`: its builder and its config section (the options it
reads, with their defaults, and the fields it fixes by construction). Assigning an entry registers
its section with the config layer (`config.register_family`), where configs are checked when they
are read (config.py sits below the model layer and cannot import these tables): a new family's
name, options and model id then work everywhere, with no edit outside its module and its entry.
The built-in families' sections are config.py's `FAMILY_SECTIONS` (their options are the flat
`ModelConfig` fields that version-1 files hold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from telucodec.config import (
    FAMILY_SECTIONS,
    FamilySection,
    ModelConfig,
    QuantizerConfig,
    register_family,
    unregister_family,
)
from telucodec.errors import ModelError
from telucodec.model.frame_encoder import STFTEncoder
from telucodec.model.quantizer import ResidualVQ
from telucodec.model.seanet import SEANetDecoder, SEANetEncoder
from telucodec.model.soundstream import SoundStreamDecoder, SoundStreamEncoder
from telucodec.model.spectral import SpectralDecoder


@dataclass(frozen=True)
class Family:
    """One table entry: `build(model_config) -> module`, and the config section it reads:
    `options` (key -> default; a key that is a `ModelConfig` field is read there, any other from
    `model.encoder_options` / `decoder_options`: `config.section_values`) and `implies` (fields it
    fixes by construction, e.g. {"causal": True}) and `names` (the values a name option accepts,
    checked when a config is read)."""

    build: Callable[[ModelConfig], nn.Module]
    options: dict[str, Any] = field(default_factory=dict)
    implies: dict[str, Any] = field(default_factory=dict)
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)


class FamilyTable(dict):
    """name -> `Family` of one part; an entry assigned (or deleted) is registered with (or removed
    from) the config layer's `FAMILY_SECTIONS`, so configs naming it are read and checked."""

    def __init__(self, part: str, builtin: dict[str, Callable[[ModelConfig], nn.Module]]):
        super().__init__()
        self.part = part
        for name, build in builtin.items():
            section = FAMILY_SECTIONS[part, name]
            self[name] = Family(build, dict(section.options), dict(section.implies), dict(section.names))

    def __setitem__(self, name: str, entry: Family) -> None:
        if not isinstance(entry, Family):
            raise TypeError(f"{self.part} family {name!r}: a table entry is a families.Family (builder and section)")
        register_family(self.part, name, FamilySection(dict(entry.options), dict(entry.implies), dict(entry.names)))
        super().__setitem__(name, entry)

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name)
        unregister_family(self.part, name)


ENCODERS = FamilyTable("encoder", {
    "seanet": SEANetEncoder,            # waveform convs (EnCodec's SEANet)
    "stft": STFTEncoder,                # one STFT + ConvNeXt blocks at the frame rate
    "soundstream": SoundStreamEncoder,  # Lyra v2's causal SoundStream encoder
})
DECODERS = FamilyTable("decoder", {
    "seanet": SEANetDecoder,            # mirror convs, plain Conv1d(k=7) output
    "spectral": SpectralDecoder,        # ConvNeXt at the frame rate + inverse STFT
    "soundstream": SoundStreamDecoder,  # Lyra v2's causal LyraGAN decoder
})
QUANTIZERS: dict[str, Callable[[int, QuantizerConfig], nn.Module]] = {
    "rvq": ResidualVQ,                  # residual VQ (plain or DAC-factorized stages)
}


def _pick(table: dict[str, Any], kind: str, name: str) -> Any:
    if name not in table:
        raise ModelError(f"{kind} {name!r}: expected one of {', '.join(sorted(table))}")
    return table[name]


def build_encoder(cfg: ModelConfig) -> nn.Module:
    return _pick(ENCODERS, "encoder", cfg.encoder).build(cfg)


def build_decoder(cfg: ModelConfig) -> nn.Module:
    return _pick(DECODERS, "decoder", cfg.decoder).build(cfg)


def build_quantizer(dim: int, cfg: QuantizerConfig) -> nn.Module:
    return _pick(QUANTIZERS, "quantizer", cfg.kind)(dim, cfg)
