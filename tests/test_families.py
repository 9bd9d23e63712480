"""Model families are table entries: the tables agree with the names configs are checked against,
every family builds from a config and honours the interface the rest of the package uses."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import EXAMPLES

from telucodec import config as config_module
from telucodec.config import CodecConfig, ModelConfig, section_values
from telucodec.errors import TelucodecError
from telucodec.model import families
from telucodec.model.codec import Codec
from telucodec.model.streaming import decoder_frames, encoder_context_frames


def test_tables_and_config_names_agree() -> None:
    """The tables are what configs are checked against: the built-in names, and any family added."""
    assert set(families.ENCODERS) == set(config_module.family_names("encoder")) == set(config_module.ENCODER_NAMES)
    assert set(families.DECODERS) == set(config_module.family_names("decoder")) == set(config_module.DECODER_NAMES)
    assert set(families.QUANTIZERS) == set(config_module.QUANTIZER_NAMES)


@pytest.mark.parametrize("field,bad", [("encoder", "soundstreem"), ("decoder", "spectrall")])
def test_a_misspelled_family_is_refused_with_the_accepted_names(field: str, bad: str) -> None:
    data = CodecConfig().to_dict()
    data["model"][field] = bad
    with pytest.raises(TelucodecError, match="soundstream"):
        CodecConfig.from_dict(data)


SMALL_SOUNDSTREAM = ModelConfig(encoder="soundstream", decoder="soundstream", channels=8, ratios=(4, 5, 2, 2),
                                latent_dim=16, amplitude="none")  # causal by construction: no `causal` to set


@pytest.mark.parametrize("encoder,decoder", [("seanet", "seanet"), ("stft", "spectral"), ("soundstream", "soundstream"),
                                             ("seanet", "soundstream")])
def test_every_family_builds_and_keeps_the_interface(encoder: str, decoder: str) -> None:
    model_cfg = replace(SMALL_SOUNDSTREAM, encoder=encoder, decoder=decoder, channels=8, latent_dim=16, causal=True,
                        ratios=(4, 5, 2, 2) if "soundstream" in (encoder, decoder) else (8, 5, 4, 2))
    model = Codec(replace(CodecConfig(), model=model_cfg))
    assert type(model.encoder) is families.ENCODERS[encoder].build
    assert type(model.decoder) is families.DECODERS[decoder].build
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
    model.quantizer.set_codebooks(books[:2] * 2, first=3)  # some stages only (an extended quantizer's new ones)
    assert torch.equal(model.quantizer.codebooks()[3:5], books[:2] * 2)
    assert torch.equal(model.quantizer.codebooks()[:3], books[:3])
    for wrong, first in ((books[:, :5], 0), (books[:, :, :3], 0), (books[:2], model.max_n_q - 1), (books[:1], -1)):
        with pytest.raises(ValueError, match="do not fit"):
            model.quantizer.set_codebooks(wrong, first)


def test_a_family_causal_by_construction_streams_without_a_causal_flag() -> None:
    """SoundStream has no `causal` option (it is causal by construction): it streams as built, and
    the config it was built with reads causal."""
    torch.manual_seed(0)
    model = Codec(replace(CodecConfig(), model=SMALL_SOUNDSTREAM)).eval()
    assert model.config.model.causal
    wav = 0.1 * torch.randn(model.hop * 9 + 17)
    stream = model.stream_encoder()
    codes = torch.cat([stream.push(wav[:500]), stream.push(wav[500:]), stream.flush()], dim=-1)
    assert torch.equal(codes, model.encode(wav.numpy()).codes)


# ---- a new family: its module and its table entry, nothing else ----------------------------------

class ToyEncoder(torch.nn.Module):
    """One strided conv; `gain` scales the latent (an option that changes no tensor shape)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        options = section_values(cfg, "encoder")
        self.conv = torch.nn.Conv1d(1, cfg.latent_dim, cfg.hop_length, stride=cfg.hop_length)
        self.gain = options["gain"]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.gain * self.conv(wav)

    def stream_layers(self) -> None:
        return None


class ToyDecoder(torch.nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        width = section_values(cfg, "decoder")["width"]
        self.up = torch.nn.ConvTranspose1d(cfg.latent_dim, width, cfg.hop_length, stride=cfg.hop_length)
        self.out = torch.nn.Conv1d(width, 1, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.up(latent)))

    def stream_frames(self) -> tuple[int, int]:
        return 0, 0


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy families, registered the way a new backbone is: one table entry each, its section in it."""
    monkeypatch.setitem(families.ENCODERS, "toy", families.Family(ToyEncoder, options={"gain": 1.0}))
    monkeypatch.setitem(families.DECODERS, "toy", families.Family(ToyDecoder, options={"width": 8}))


def toy_config(**changes) -> dict:
    model = {"sample_rate": 16000, "ratios": [8, 5, 4, 2], "latent_dim": 8, "amplitude": "none",
             "encoder": "toy", "encoder_options": {"gain": 0.5}, "decoder": "toy", "decoder_options": {"width": 6}}
    train = {"batch_size": 2, "pesq_every": 0, "samples_every": 0, "val_max_clips": 2, "warmup_steps": 1,
             "disc_periods": [2], "disc_stft_sizes": [256], "disc_channels": 4}
    return {"name": "toy", "version": 2, "model": {**model, **changes}, "quantizer": {"n_q": 2, "codebook_size": 16},
            "train": train}


def test_a_new_family_builds_trains_codes_and_owns_its_id(toy, tmp_path) -> None:
    from telucodec.cli import main
    from telucodec.model.loading import load_model

    cfg = CodecConfig.from_dict(toy_config())
    assert cfg.model.encoder_options == {"gain": 0.5}  # its section, as read
    torch.manual_seed(0)
    model = Codec(cfg)
    assert type(model.encoder) is ToyEncoder and model.decoder.out.in_channels == 6
    # trains a step through the real training command
    (tmp_path / "toy.json").write_text(json.dumps(toy_config()))
    assert main(["train", "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(tmp_path), "--experiment_name", "toy",
                 "--config", str(tmp_path / "toy.json"), "--num_epochs", "1", "--steps_per_epoch", "1", "--quiet"]) == 0
    trained = load_model(tmp_path / "toy" / "checkpoints" / "last.pt")
    assert type(trained.decoder) is ToyDecoder and trained.config.model.encoder_options == {"gain": 0.5}
    # encodes and decodes, and its folder keeps its id
    wav = 0.1 * torch.randn(16000 + 123)
    codes = trained.encode(wav.numpy())
    assert codes.codes.shape == (2, 51) and trained.decode(codes).shape == wav.shape
    trained.save_pretrained(tmp_path / "folder")
    assert load_model(tmp_path / "folder").model_id == trained.model_id == codes.model_id
    # the id moves with the toy's own options, and with nothing it does not read
    same_weights = lambda c: Codec(c).eval().requires_grad_(False)  # noqa: E731
    ids = {}
    for label, changed in (("gain", toy_config(encoder_options={"gain": 0.25})),
                           ("same", toy_config())):
        m = same_weights(CodecConfig.from_dict(changed))
        m.load_state_dict(model.state_dict())
        ids[label] = m.model_id
    unread = replace(cfg, model=replace(cfg.model, lstm=True, channels=3, spectral_layers=2, causal=True))
    m = same_weights(unread)
    m.load_state_dict(model.state_dict())
    assert ids["same"] == model.model_id == m.model_id != ids["gain"]
    # in a config file, a flat field the toy families do not read is refused by name
    with pytest.raises(TelucodecError, match="model.lstm.*toy encoder.*toy decoder"):
        CodecConfig.from_dict(toy_config(lstm=True))
    with pytest.raises(TelucodecError, match="model.decoder_options.depth.*toy decoder"):
        CodecConfig.from_dict(toy_config(decoder_options={"width": 6, "depth": 2}))
    with pytest.raises(TelucodecError, match="model.encoder_options.gain"):
        CodecConfig.from_dict(toy_config(encoder_options={"gain": "loud"}))


def test_a_family_removed_from_its_table_is_no_longer_a_known_name(toy, monkeypatch) -> None:
    assert "toy" in config_module.family_names("encoder")
    monkeypatch.delitem(families.ENCODERS, "toy")
    assert "toy" not in config_module.family_names("encoder")
    with pytest.raises(TelucodecError, match="model.encoder 'toy' is not a known name"):
        CodecConfig.from_dict(toy_config())
