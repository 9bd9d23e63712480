"""Model families: name -> module class, one table per part.

A family is an entry here, not a branch elsewhere. `Codec` builds its parts from these tables;
everything else talks to the parts through the small interface every entry implements:

    encoder:   forward(wav [B, 1, T]) -> latent [B, D, T / hop]
               stream_layers() -> the conv stack streaming measures, or None (does not stream)
    decoder:   forward(latent [B, D, F]) -> wav [B, 1, F * hop]
               stream_frames() -> (context, lookahead) frames a streamed frame needs
    quantizer: forward(latent, n_q) -> QuantizerOutput; encode(latent, n_q) -> codes [B, n_q, F];
               decode(codes) -> latent; set_codebooks([n_q, K, D]); codebooks() -> [n_q, K, D]

The names are also listed in `config.py` (ENCODER_NAMES, DECODER_NAMES, QUANTIZER_NAMES), where a
config is validated when it is read (config.py sits below the model layer and cannot import it);
tests/test_families.py checks the two lists agree.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from telucodec.config import ModelConfig, QuantizerConfig
from telucodec.errors import ModelError
from telucodec.model.frame_encoder import STFTEncoder
from telucodec.model.quantizer import ResidualVQ
from telucodec.model.seanet import SEANetDecoder, SEANetEncoder
from telucodec.model.soundstream import SoundStreamDecoder, SoundStreamEncoder
from telucodec.model.spectral import SpectralDecoder

ENCODERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "seanet": SEANetEncoder,            # waveform convs (EnCodec's SEANet)
    "stft": STFTEncoder,                # one STFT + ConvNeXt blocks at the frame rate
    "soundstream": SoundStreamEncoder,  # Lyra v2's causal SoundStream encoder
}
DECODERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "seanet": SEANetDecoder,            # mirror convs, plain Conv1d(k=7) output
    "spectral": SpectralDecoder,        # ConvNeXt at the frame rate + inverse STFT
    "soundstream": SoundStreamDecoder,  # Lyra v2's causal LyraGAN decoder
}
QUANTIZERS: dict[str, Callable[[int, QuantizerConfig], nn.Module]] = {
    "rvq": ResidualVQ,                  # residual VQ (plain or DAC-factorized stages)
}


def _pick(table: dict[str, Callable], kind: str, name: str) -> Callable:
    if name not in table:
        raise ModelError(f"{kind} {name!r}: expected one of {', '.join(sorted(table))}")
    return table[name]


def build_encoder(cfg: ModelConfig) -> nn.Module:
    return _pick(ENCODERS, "encoder", cfg.encoder)(cfg)


def build_decoder(cfg: ModelConfig) -> nn.Module:
    return _pick(DECODERS, "decoder", cfg.decoder)(cfg)


def build_quantizer(dim: int, cfg: QuantizerConfig) -> nn.Module:
    return _pick(QUANTIZERS, "quantizer", cfg.kind)(dim, cfg)
