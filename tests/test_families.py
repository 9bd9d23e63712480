"""Model families are table entries: the tables agree with the names configs are checked against,
every family builds from a config and honours the interface the rest of the package uses."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from telucodec import config as config_module
from telucodec.config import CodecConfig, ModelConfig
from telucodec.errors import TelucodecError
from telucodec.model import families
from telucodec.model.codec import Codec
from telucodec.model.streaming import decoder_frames, encoder_context_frames


def test_tables_and_config_names_agree() -> None:
    assert set(families.ENCODERS) == set(config_module.ENCODER_NAMES)
    assert set(families.DECODERS) == set(config_module.DECODER_NAMES)
    assert set(families.QUANTIZERS) == set(config_module.QUANTIZER_NAMES)


@pytest.mark.parametrize("field,bad", [("encoder", "soundstreem"), ("decoder", "spectrall")])
def test_a_misspelled_family_is_refused_with_the_accepted_names(field: str, bad: str) -> None:
    data = CodecConfig().to_dict()
    data["model"][field] = bad
    with pytest.raises(TelucodecError, match="soundstream"):
        CodecConfig.from_dict(data)


SMALL_SOUNDSTREAM = ModelConfig(encoder="soundstream", decoder="soundstream", channels=8, ratios=(4, 5, 2, 2),
                                latent_dim=16, causal=True, amplitude="none")


@pytest.mark.parametrize("encoder,decoder", [("seanet", "seanet"), ("stft", "spectral"), ("soundstream", "soundstream"),
                                             ("seanet", "soundstream")])
def test_every_family_builds_and_keeps_the_interface(encoder: str, decoder: str) -> None:
    model_cfg = replace(SMALL_SOUNDSTREAM, encoder=encoder, decoder=decoder, channels=8, latent_dim=16,
                        ratios=(4, 5, 2, 2) if "soundstream" in (encoder, decoder) else (8, 5, 4, 2))
    model = Codec(replace(CodecConfig(), model=model_cfg))
    assert type(model.encoder) is families.ENCODERS[encoder]
    assert type(model.decoder) is families.DECODERS[decoder]
    wav = torch.randn(2, 1, model.hop * 7)
    out = model(wav, n_q=3)
    assert out.wav.shape == wav.shape and out.quantizer.codes.shape == (2, 3, 7)
    context, lookahead = decoder_frames(model.decoder)
    assert context >= 0 and lookahead >= 0
    if model.encoder.stream_layers() is not None:
        assert encoder_context_frames(model.encoder, model.hop) >= 0


def test_soundstream_is_causal_frame_by_frame() -> None:
    """Changing the audio after frame f changes no latent up to f, nor decoded samples up to f."""
    model = Codec(replace(CodecConfig(), model=SMALL_SOUNDSTREAM)).eval()
    wav = torch.randn(1, 1, model.hop * 12)
    later = wav.clone()
    later[..., model.hop * 8:] = torch.randn(1, 1, model.hop * 4)
    with torch.no_grad():
        a, b = model.encoder(wav), model.encoder(later)
        assert torch.equal(a[..., :8], b[..., :8]) and not torch.equal(a, b)
        ya, yb = model.decoder(a), model.decoder(b)
    assert torch.equal(ya[..., : model.hop * 8], yb[..., : model.hop * 8])


def test_quantizer_codebooks_round_trip() -> None:
    model = Codec(CodecConfig())
    books = torch.randn(model.max_n_q, model.config.quantizer.codebook_size, model.config.model.latent_dim)
    model.quantizer.set_codebooks(books)
    assert torch.equal(model.quantizer.codebooks(), books)
    with pytest.raises(ValueError, match="do not fit"):
        model.quantizer.set_codebooks(books[:2])
