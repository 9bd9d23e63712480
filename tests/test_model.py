"""Unit tests: config, presets, conv stacks, quantizer, spectral iSTFT, losses."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from telucodec import losses as L
from telucodec.config import PRESETS, CodecConfig, QuantizerConfig, get_config
from telucodec.errors import TelucodecError
from telucodec.model.clustering import kmeans
from telucodec.model.codec import Codec, load_matching_state
from telucodec.model.quantizer import ResidualVQ, VectorQuantizer
from telucodec.model.seanet import SEANetDecoder, SEANetEncoder
from telucodec.model.spectral import InverseSTFT


def test_config_json_round_trip(tmp_path):
    for name in PRESETS:
        cfg = get_config(name)
        cfg.save(tmp_path / f"{name}.json")
        assert CodecConfig.load(tmp_path / f"{name}.json") == cfg
        assert get_config(str(tmp_path / f"{name}.json")) == cfg


def test_config_rejects_unknown_keys_and_presets(tmp_path):
    bad = get_config("tiny").to_dict()
    bad["model"]["output_scale"] = 1.0
    with pytest.raises(TelucodecError, match="unknown model keys"):
        CodecConfig.from_dict(bad)
    with pytest.raises(TelucodecError, match="not a preset"):
        get_config("huge")


def test_presets_sizes_and_bitrates():
    tiny, small, base = (Codec(get_config(n)) for n in ("tiny", "small", "base"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(tiny) < 1_000_000 < count(small) < count(base)
    assert base.config.model.decoder_hidden == 1024  # the seed's TeluguDecoder(hidden_dim=1024)
    assert small.frame_rate == 50 and small.kbps_per_codebook() == 0.5
    assert [small.n_q_for_kbps(k) for k in (1.5, 3, 6, 6.2, 100)] == [3, 6, 12, 12, 12]


def test_decoder_ends_in_plain_conv_without_tanh_or_scale():
    dec = SEANetDecoder(get_config("base").model)
    assert isinstance(dec.output, torch.nn.Conv1d)
    assert dec.output.kernel_size == (7,) and dec.output.padding == (3,)
    names = [n for n, _ in dec.named_parameters()] + [type(m).__name__ for m in dec.modules()]
    assert not any("scale" in n.lower() or "tanh" in n.lower() for n in names)


@pytest.mark.parametrize("causal", [False, True])
def test_encoder_decoder_shapes(causal):
    cfg = replace(get_config("tiny").model, causal=causal)
    enc, dec = SEANetEncoder(cfg), SEANetDecoder(cfg)
    x = torch.randn(2, 1, 320 * 7)
    z = enc(x)
    assert z.shape == (2, cfg.latent_dim, 7)
    assert dec(z).shape == (2, 1, 320 * 7)


def test_causal_encoder_ignores_the_future():
    cfg = replace(get_config("tiny").model, causal=True)
    enc = SEANetEncoder(cfg).eval()
    x = torch.randn(1, 1, 320 * 10)
    y = x.clone()
    y[..., 320 * 6:] = torch.randn(1, 1, 320 * 4)
    with torch.no_grad():
        assert torch.allclose(enc(x)[..., :6], enc(y)[..., :6], atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel, stride, dilation", [(7, 1, 1), (3, 1, 3), (1, 1, 1), (10, 5, 1), (16, 8, 1)])
def test_padded_conv_equals_explicit_zero_padding(causal, kernel, stride, dilation):
    """The conv pads its symmetric part itself; the result must be F.pad(left, right) + conv."""
    from torch.nn import functional as F

    from telucodec.model.seanet import PaddedConv1d

    torch.manual_seed(0)
    layer = PaddedConv1d(4, 6, kernel, stride=stride, dilation=dilation, causal=causal)
    x = torch.randn(2, 4, 8 * stride * 5)
    right = layer.total_pad - layer.left_pad
    conv = layer.conv
    reference = F.conv1d(F.pad(x, (layer.left_pad, right)), conv.weight, conv.bias, stride=stride, dilation=dilation)
    out = layer(x)
    assert out.shape == (2, 6, x.shape[-1] // stride)
    assert torch.allclose(out, reference, atol=1e-6)


def test_inverse_stft_is_a_perfect_inverse():
    n_fft, hop, frames = 1280, 320, 40
    ist = InverseSTFT(n_fft, hop)
    x = torch.randn(2, hop * frames)
    pad = (n_fft - hop) // 2
    windows = torch.nn.functional.pad(x, (pad, pad + hop)).unfold(-1, n_fft, hop)[:, :frames]
    spec = torch.fft.rfft(windows * torch.hann_window(n_fft), dim=-1).transpose(1, 2)
    y = ist(spec.real, spec.imag)
    assert y.shape == (2, 1, hop * frames)
    assert (y[:, 0] - x).abs().max() < 1e-4


def test_inverse_stft_fft_path_equals_the_onnx_matmul_bases():
    """Eager decoding inverts by FFT, ONNX graphs by the stored DFT bases: both are the windowed
    inverse DFT (checked against numpy in float64)."""
    ist = InverseSTFT(1280, 320)
    real, imag = torch.randn(2, 641, 12), torch.randn(2, 641, 12)
    spec = real.double().numpy() + 1j * imag.double().numpy()
    reference = np.fft.irfft(spec, n=1280, axis=1) * np.hanning(1281)[:1280, None]
    by_fft, by_bases = ist.frames(real, imag, by_fft=True), ist.frames(real, imag, by_fft=False)
    scale = np.abs(reference).max()
    assert np.abs(by_fft.double().numpy() - reference).max() < 1e-6 * scale
    assert np.abs(by_bases.double().numpy() - reference).max() < 1e-5 * scale
    # and forward uses it: the overlap-added result of those frames
    frames = ist._overlap_add(by_bases)
    env = ist._overlap_add(ist.window_sq.expand(1, 1280, 12))
    start = (1280 - 320) // 2
    expected = frames[..., start: start + 12 * 320] / env[..., start: start + 12 * 320].clamp_min(1e-3)
    assert torch.allclose(ist(real, imag), expected, atol=1e-5)


def test_kmeans_finds_clusters():
    centers = torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]])
    pts = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centers])
    found = kmeans(pts, 3, 10)
    assert torch.cdist(centers, found).min(dim=1).values.max() < 0.5


def test_quantizer_straight_through_and_commitment():
    torch.manual_seed(0)
    rvq = ResidualVQ(8, QuantizerConfig(n_q=4, codebook_size=16, dead_code_steps=0))
    x = torch.randn(2, 8, 30, requires_grad=True)
    out = rvq(x)
    assert out.codes.shape == (2, 4, 30) and out.codes.dtype == torch.int64
    assert out.commitment_loss > 0
    out.quantized.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))  # straight-through: identity gradient
    rvq.eval()
    with torch.no_grad():
        again = rvq(x.detach())
        assert torch.allclose(rvq.decode(again.codes), again.quantized, atol=1e-5)


def test_residual_stages_reduce_error():
    torch.manual_seed(0)
    rvq = ResidualVQ(8, QuantizerConfig(n_q=6, codebook_size=64, dead_code_steps=0))
    x = torch.randn(4, 8, 100)
    rvq(x)  # k-means initialisation on this batch
    rvq.eval()
    with torch.no_grad():
        errors = [float((rvq(x, n_q=n).quantized - x).pow(2).mean()) for n in range(1, 7)]
    assert all(b < a for a, b in zip(errors, errors[1:]))


def test_quantizer_encode_gives_the_codes_of_forward():
    torch.manual_seed(0)
    rvq = ResidualVQ(8, QuantizerConfig(n_q=5, codebook_size=32, dead_code_steps=0))
    x = torch.randn(3, 8, 40)
    rvq(x)  # k-means initialisation
    rvq.eval()
    with torch.no_grad():
        for n in (1, 3, 5):
            assert torch.equal(rvq.encode(x, n), rvq(x, n).codes)


def test_factorized_stages_search_by_cosine_and_train_their_projections():
    """DAC's low-dimensional codes: encode/decode agree with forward, more stages lower the
    error, and the decoder's gradient reaches every stage's projections and the encoder."""
    torch.manual_seed(0)
    rvq = ResidualVQ(16, QuantizerConfig(n_q=4, codebook_size=32, codebook_dim=4, update="loss", dead_code_steps=0))
    x = torch.randn(3, 16, 60, requires_grad=True)
    out = rvq(x)  # first batch: principal directions + k-means
    (out.quantized.pow(2).sum() + out.commitment_loss + out.codebook_loss).backward()
    for layer in rvq.layers:
        assert layer.in_proj.weight.grad.abs().sum() > 0 and layer.out_proj.weight.grad.abs().sum() > 0
        assert layer.codebook.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0
    rvq.eval()
    with torch.no_grad():
        z = rvq.layers[0].in_proj(x.detach().transpose(1, 2)).reshape(-1, 4)
        cosine = torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(rvq.layers[0].codebook, dim=1).t()
        assert torch.equal(rvq.encode(x.detach(), 1)[:, 0].reshape(-1), cosine.argmax(dim=1))
        errors = []
        for n in (1, 2, 4):
            codes = rvq.encode(x.detach(), n)
            assert torch.equal(codes, rvq(x.detach(), n).codes)
            assert torch.allclose(rvq.decode(codes), rvq(x.detach(), n).quantized, atol=1e-5)
            errors.append(float((rvq.decode(codes) - x).pow(2).mean()))
    assert errors[0] > errors[1] > errors[2]


def test_fresh_codebooks_keep_their_whole_stage_fresh_on_a_partial_load():
    """Warm-starting factorized codes from a plain model: the old `initialized` flags must not
    come along, or the new stages would skip their k-means start."""
    plain = Codec(get_config("tiny"))
    plain(0.1 * torch.randn(11, 1, 16000))  # k-means on 550 vectors (>= 2 per entry): every stage initialized
    assert all(bool(layer.initialized) for layer in plain.quantizer.layers)
    cfg = get_config("tiny")
    cfg.quantizer.codebook_dim = 4
    factorized = Codec(cfg)
    fresh = load_matching_state(factorized, plain.state_dict(), strict=False, source="plain")
    assert "quantizer.layers.0.initialized" in fresh
    assert not any(bool(layer.initialized) for layer in factorized.quantizer.layers)
    assert torch.equal(factorized.encoder.state_dict()[next(iter(factorized.encoder.state_dict()))],
                       plain.encoder.state_dict()[next(iter(plain.encoder.state_dict()))])


def test_factorized_stages_adopt_a_plain_models_entries():
    """With as many dimensions as the latent, the adopted stages hold the plain entries exactly
    (projection and its inverse); with fewer, the codes still lower the error stage by stage."""
    torch.manual_seed(0)
    plain = Codec(get_config("tiny"))
    plain(0.1 * torch.randn(16, 1, 16000))  # k-means on 800 frames: more than the 256 entries
    state = plain.state_dict()
    for dim, exact in ((32, True), (4, False)):
        cfg = get_config("tiny")
        cfg.quantizer.codebook_dim = dim
        factorized = Codec(cfg)
        load_matching_state(factorized, state, strict=False, source="plain")
        assert factorized.quantizer.adopt_plain_codebooks(state) == list(range(8))
        assert all(bool(layer.initialized) for layer in factorized.quantizer.layers)
        book = factorized.quantizer.layers[1].latent_codebook()
        assert torch.allclose(book, state["quantizer.layers.1.codebook"], atol=1e-4) == exact
        latent = plain.encoder(0.1 * torch.randn(1, 1, 8000))
        with torch.no_grad():
            errors = [float((factorized.quantizer.decode(factorized.quantizer.encode(latent, n)) - latent).pow(2).mean())
                      for n in (1, 4, 8)]
        assert errors[0] > errors[1] > errors[2]


def test_unquantized_forward_decodes_the_continuous_latent():
    torch.manual_seed(0)
    model = Codec(get_config("tiny")).eval()
    x = 0.1 * torch.randn(1, 1, 4000)
    with torch.no_grad():
        bypass, quantized = model(x, quantize=False), model(x)
        x_norm, _ = model.amplitude.normalize(x)
        latent = model.encoder(torch.nn.functional.pad(x_norm, (0, (-x.shape[-1]) % model.hop)))
        assert torch.allclose(bypass.wav_normalized, model.decoder(latent)[..., : x.shape[-1]], atol=1e-6)
        assert not torch.allclose(bypass.wav_normalized, quantized.wav_normalized, atol=1e-4)
        assert torch.equal(bypass.quantizer.codes, quantized.quantizer.codes)


def test_dead_codes_are_replaced():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, QuantizerConfig(codebook_size=32, dead_code_steps=2, kmeans_init=False))
    vq.codebook.data += 100.0  # every entry far away: only the nearest one gets used
    x = torch.randn(1, 4, 200)
    for _ in range(3):
        vq(x)
    _, codes, _, _ = vq(x)
    assert codes.unique().numel() > 16


def test_quantizer_dropout_samples_prefixes():
    rvq = ResidualVQ(8, QuantizerConfig(n_q=12))
    g = torch.Generator().manual_seed(0)
    picks = {rvq.sample_n_q(g) for _ in range(200)}
    assert 12 in picks and min(picks) >= 1 and len(picks) > 6


def test_losses_zero_on_identical_and_positive_otherwise():
    x = 0.1 * torch.randn(2, 1, 8000)
    y = 0.05 * torch.randn(2, 1, 8000)
    assert float(L.rms_loss(x, x)) == 0.0 and float(L.rms_loss(x, y)) > 0
    assert float(L.mel_loss(x, x, (512, 1024), 64, 16000)) == 0.0
    assert float(L.mel_loss(x, y, (512, 1024), 64, 16000)) > 0
    assert float(L.stft_loss(x, y, (512,))) > 0
    silent = torch.zeros(2, 1, 8000)
    assert torch.isfinite(L.stft_loss(x, silent, (512, 1024)))


def test_codec_forward_keeps_length_and_model_id_tracks_weights():
    model = Codec(get_config("tiny"))
    x = 0.1 * torch.randn(2, 1, 5000)
    out = model(x, n_q=3)
    assert out.wav.shape == x.shape and out.quantizer.codes.shape[1] == 3
    first = model.model_id
    assert len(first) == 16 and first == model.model_id
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert model.model_id != first


def test_save_and_load_pretrained(tmp_path):
    model = Codec(get_config("tiny"))
    model.save_pretrained(tmp_path / "m")
    again = Codec.from_pretrained(tmp_path / "m")
    assert again.model_id == model.model_id
    model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    half = Codec.from_pretrained(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in half.parameters())


def test_log_rms_loss_is_level_invariant():
    x = 0.1 * torch.randn(2, 1, 16000)
    half_loud = float(L.log_rms_loss(0.5 * x, x))
    half_quiet = float(L.log_rms_loss(0.005 * x, 0.01 * x))
    assert abs(half_loud - 0.30103) < 1e-3 and abs(half_quiet - half_loud) < 1e-3
    assert float(L.log_rms_loss(x, x)) == 0.0
    assert float(L.log_rms_loss(x, torch.zeros_like(x))) == 0.0  # silent target frames are ignored


def test_model_id_is_cached_but_follows_training_updates():
    model = Codec(get_config("tiny"))
    first = model.model_id
    assert model.__dict__["_model_id_cache"][1] == first
    model(0.1 * torch.randn(2, 1, 3200))  # train mode: k-means init and EMA codebook updates
    assert model.model_id != first


def test_phase_aware_losses_see_what_magnitude_losses_miss():
    """A polarity flip keeps every STFT magnitude: the magnitude loss does not move, the
    phase-aware ones must; the phase loss ignores level; both stay finite (with finite
    gradients) on a silent output."""
    t = torch.arange(16000) / 16000
    y = (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.1 * torch.sin(2 * torch.pi * 1330 * t)).view(1, 1, -1)
    windows = (512, 1024)
    flipped = -y
    assert float(L.stft_loss(flipped, y, windows)) < 1e-3
    assert float(L.complex_stft_loss(flipped, y, windows)) > 0.1
    assert abs(float(L.phase_loss(flipped, y, windows)) - torch.pi) < 0.05  # every bin half a turn off
    assert float(L.phase_loss(0.5 * y, y, windows)) < 1e-3
    assert float(L.complex_stft_loss(y, y, windows)) < 1e-6 and float(L.phase_loss(y, y, windows)) < 1e-3
    silent = torch.zeros(1, 1, 16000, requires_grad=True)
    total = L.complex_stft_loss(silent, y, windows) + L.phase_loss(silent, y, windows)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(silent.grad).all()


def test_discriminator_set_follows_the_config():
    from telucodec.train.discriminators import Discriminators

    wav = 0.1 * torch.randn(2, 1, 4000)
    logits, feats = Discriminators(periods=(2, 3), stft_sizes=(512,), channels=4)(wav)
    assert len(logits) == len(feats) == 3 and all(torch.isfinite(x).all() for x in logits)
    assert get_config("spectral").train.disc_periods == (2, 3, 5, 7, 11)  # old checkpoints keep their set
    with pytest.raises(ValueError, match="at least one"):
        Discriminators(periods=(), stft_sizes=())
