"""Design options of round 3: the upsampled spectral decoder and per-item quantizer dropout."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from telucodec.config import QuantizerConfig, get_config
from telucodec.errors import ModelError
from telucodec.model.codec import Codec
from telucodec.model.quantizer import ResidualVQ
from telucodec.model.spectral import SpectralDecoder


def _spectral(**model_changes):
    cfg = get_config("tiny")
    return replace(cfg, model=replace(cfg.model, decoder="spectral", spectral_layers=2, **model_changes))


def test_upsampled_spectral_decoder_keeps_the_frame_rate_and_synthesises_finer_frames():
    cfg = _spectral(spectral_upsample=4, spectral_n_fft=320, spectral_fine_layers=1, spectral_fine_hidden=32)
    decoder = SpectralDecoder(cfg.model)
    assert decoder.istft.hop == cfg.model.hop_length // 4 and decoder.istft.n_fft == 320
    latent = torch.randn(2, cfg.model.latent_dim, 7)
    assert decoder(latent).shape == (2, 1, 7 * cfg.model.hop_length)
    model = Codec(cfg).eval()
    wav = 0.1 * torch.randn(16000).numpy()
    codes = model.encode(wav, 16000)
    assert codes.frame_rate == 50 and model.decode(codes).shape == (16000,)


def test_upsampled_decoder_refuses_bad_factors_and_streaming():
    with pytest.raises(ModelError, match="divisor of the hop"):
        SpectralDecoder(_spectral(spectral_upsample=3).model)
    with pytest.raises(ModelError, match="does not stream"):
        SpectralDecoder(_spectral(spectral_upsample=4, spectral_n_fft=320, causal=True).model)


def test_new_architecture_fields_at_their_neutral_value_keep_old_model_ids():
    cfg = _spectral()
    arch = cfg.architecture()
    assert "spectral_upsample" not in arch and "spectral_fine_layers" not in arch
    changed = _spectral(spectral_upsample=4, spectral_n_fft=320).architecture()
    assert changed["spectral_upsample"] == 4
    wider = _spectral(spectral_upsample=4, spectral_n_fft=320, spectral_fine_hidden=192).architecture()
    assert wider != changed and wider["spectral_fine_hidden"] == 192


def test_per_item_quantizer_dropout_masks_later_stages_per_item():
    torch.manual_seed(0)
    rvq = ResidualVQ(8, QuantizerConfig(n_q=4, codebook_size=16, dropout_fraction=1.0, update="loss", dead_code_steps=0))
    rvq.train()
    x = torch.randn(64, 8, 5)
    keep = rvq._items_n_q(x)
    assert keep.min() >= 1 and keep.max() <= 4 and len(set(keep.tolist())) > 1
    torch.manual_seed(1)
    out = rvq(x)
    torch.manual_seed(1)
    keep = rvq._items_n_q(x)
    rvq.eval()
    for n in range(1, 5):  # in eval mode a prefix of n stages is the plain decode of n codebooks
        items = keep == n
        if items.any():
            expected = rvq.decode(out.codes[items][:, :n])
            assert torch.allclose(out.quantized[items], expected, atol=1e-5)
    assert rvq.sample_n_q() == 4  # per-item mode: every batch asks for every stage
    rvq.eval()
    assert rvq._items_n_q(x) is None  # never at inference


def test_residual_fine_path_starts_exactly_at_the_plain_decoder_it_is_warm_started_from():
    from telucodec.model.codec import load_matching_state

    plain = Codec(_spectral(amplitude="rms")).eval()
    residual = Codec(_spectral(amplitude="rms", spectral_upsample=4, spectral_fine_mode="residual",
                               spectral_fine_layers=1, spectral_fine_hidden=32)).eval()
    not_loaded = load_matching_state(residual, plain.state_dict(), strict=False, source="plain")
    assert not_loaded and all(".fine_" in name or ".upsample." in name for name in not_loaded)
    wav = 0.1 * torch.randn(1, 1, 8000)
    with torch.no_grad():
        assert torch.equal(plain(wav).wav, residual(wav).wav)
    assert residual.decoder.fine_istft.hop == 80 and residual.decoder.fine_istft.n_fft == 320
    with pytest.raises(ModelError, match="spectral_fine_mode"):
        SpectralDecoder(_spectral(spectral_upsample=4, spectral_fine_mode="sideways").model)


def test_residual_fine_gain_scales_the_correction_and_is_part_of_the_model_id():
    torch.manual_seed(0)
    base = _spectral(spectral_upsample=4, spectral_fine_mode="residual", spectral_fine_layers=1, spectral_fine_hidden=32)
    decoders = {g: SpectralDecoder(replace(base.model, spectral_fine_gain=g)).eval() for g in (0.01, 0.1)}
    decoders[0.1].load_state_dict(decoders[0.01].state_dict())
    for d in decoders.values():  # a trained fine head is not zero
        torch.nn.init.normal_(d.fine_head.weight, std=0.1)
    decoders[0.1].fine_head.load_state_dict(decoders[0.01].fine_head.state_dict())
    latent = torch.randn(1, base.model.latent_dim, 6)
    plain = SpectralDecoder(replace(base.model, spectral_upsample=1)).eval()
    plain.load_state_dict(decoders[0.01].state_dict(), strict=False)
    with torch.no_grad():
        correction = {g: d(latent) - plain(latent) for g, d in decoders.items()}
    assert correction[0.01].abs().max() > 1e-4
    assert torch.allclose(correction[0.1], 10 * correction[0.01], rtol=1e-3, atol=1e-6)
    assert "spectral_fine_gain" not in base.architecture()  # 0.01, the value of every older model
    assert replace(base, model=replace(base.model, spectral_fine_gain=0.1)).architecture()["spectral_fine_gain"] == 0.1


def test_a_deeper_decoder_warm_started_from_a_shallower_one_starts_exactly_where_it_was():
    from telucodec.model.codec import load_matching_state
    from telucodec.model.spectral import start_new_blocks_as_identity

    torch.manual_seed(0)
    shallow = Codec(_spectral()).eval()
    cfg = _spectral()
    deeper = Codec(replace(cfg, model=replace(cfg.model, spectral_layers=4))).eval()
    fresh = load_matching_state(deeper, shallow.state_dict(), strict=False, source="shallow")
    latent = torch.randn(1, shallow.config.model.latent_dim, 9)
    with torch.no_grad():
        assert not torch.allclose(deeper.decoder(latent), shallow.decoder(latent), atol=1e-4)
        assert start_new_blocks_as_identity(deeper, fresh) == ["decoder.blocks.2", "decoder.blocks.3"]
        assert torch.allclose(deeper.decoder(latent), shallow.decoder(latent), atol=1e-6)
    # blocks that were loaded keep their layer scale
    assert torch.equal(deeper.decoder.blocks[1].gamma, shallow.decoder.blocks[1].gamma)
    assert deeper.decoder.blocks[1].gamma.abs().min() > 0
