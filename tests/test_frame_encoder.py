"""The frame-domain (`stft`) encoder and encoder distillation (issue 13)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from telucodec.config import get_config
from telucodec.deploy.export import export_onnx
from telucodec.errors import ModelError
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec
from telucodec.model.frame_encoder import COMPRESSION, STFTEncoder
from telucodec.model.spectral import InverseSTFT
from telucodec.train.distill import distill_encoder, latent_error, take_over

ROOT = Path(__file__).resolve().parents[1]


def _config(encoder: str = "stft", **model_changes):
    cfg = get_config("tiny")
    return replace(cfg, model=replace(cfg.model, decoder="spectral", spectral_layers=2, encoder=encoder,
                                      encoder_hidden=32, encoder_layers=1, **model_changes))


def test_the_compressed_spectrum_loses_nothing(example_clips):
    """Undo the compression and invert the analysis: the clip comes back, so every bit of the
    waveform reaches the first learned layer."""
    cfg = _config()
    enc = STFTEncoder(cfg.model)
    wav = torch.from_numpy(load_audio(example_clips[0], 16000)[: 320 * 100]).view(1, 1, -1)
    spec = enc.spectrum(wav)
    real, imag = spec[:, : enc.bins], spec[:, enc.bins:]
    mag = torch.sqrt(real ** 2 + imag ** 2).clamp_min(1e-20) ** (1 / COMPRESSION)
    scale = mag ** (1 - COMPRESSION) * np.sqrt(enc.n_fft)  # the analysis basis is scaled by 1/sqrt(n_fft)
    istft = InverseSTFT(enc.n_fft, enc.hop)
    back = istft(real * scale, imag * scale)
    assert spec.shape == (1, 2 * enc.bins, 100)
    inner = slice(enc.n_fft, -enc.n_fft)  # the edges lack overlapping frames
    err = (back - wav)[..., inner].abs().max()
    assert err < 1e-4 * wav.abs().max(), err


def test_stft_encoder_codec_round_trip_and_refusals():
    model = Codec(_config()).eval()
    assert isinstance(model.encoder, STFTEncoder)
    wav = 0.1 * np.random.default_rng(0).standard_normal(16000 + 123).astype(np.float32)
    codes = model.encode(wav, 16000)
    assert codes.codes.shape[-1] == 51 and model.decode(codes).shape == (16123,)
    with pytest.raises(ModelError, match="streaming needs a causal model"):
        model.stream_encoder()
    causal = Codec(_config(causal=True)).eval()
    with pytest.raises(ModelError, match="streaming encode is not supported by the STFTEncoder"):
        causal.stream_encoder()
    with pytest.raises(ModelError, match="encoder 'wavlm'"):
        Codec(_config(encoder="wavlm"))
    for n_fft in (300, 641):  # shorter than the hop; frames could not be centred
        with pytest.raises(ModelError, match=f"encoder_n_fft {n_fft}"):
            Codec(_config(encoder_n_fft=n_fft))


def test_causal_stft_encoder_does_not_look_ahead():
    model = Codec(_config(causal=True)).eval()
    x = 0.1 * torch.randn(1, 1, 320 * 10)
    y = x.clone()
    y[..., 320 * 6:] += 0.5 * torch.randn(1, 1, 320 * 4)
    with torch.no_grad():
        a, b = model.encoder(x), model.encoder(y)
    assert torch.equal(a[..., :6], b[..., :6]) and not torch.equal(a[..., 6:], b[..., 6:])


def test_new_encoder_fields_keep_old_model_ids():
    arch = _config(encoder="seanet").architecture()
    assert not {"encoder", "encoder_hidden", "encoder_layers", "encoder_n_fft"} & set(arch)
    stft = _config().architecture()
    assert stft["encoder"] == "stft" and stft["encoder_hidden"] == 32


def test_stft_encoder_exports_to_onnx_with_identical_codes(tmp_path, example_clips):
    torch.manual_seed(0)
    model = Codec(_config()).eval()
    config = export_onnx(model, tmp_path, parity_clip=example_clips[2])
    assert config["parity"]["passed"] and config["parity"]["encoder_codes_identical"]


def test_distillation_takes_over_the_decoder_and_learns_the_teacher_latent(example_clips):
    torch.manual_seed(0)
    teacher = Codec(_config(encoder="seanet")).eval()
    student = Codec(_config())
    left = take_over(student, teacher)
    assert left and all(k.startswith("encoder.") for k in left)
    for name, tensor in teacher.decoder.state_dict().items():
        assert torch.equal(student.decoder.state_dict()[name], tensor)
    wav = torch.from_numpy(np.concatenate([load_audio(p, 16000)[:16000] for p in example_clips[:4]]))
    batch = wav[: 4 * 16000].view(4, 1, 16000)
    before = latent_error(student, teacher, batch)
    errors = distill_encoder(student, teacher, [batch] * 150, learning_rate=3e-3, cpu_seconds=600, log=lambda _: None)
    after = latent_error(student, teacher, batch)
    assert len(errors) == 150 and after < 0.5 * before, (before, after)


def test_distill_script_writes_a_model_folder_training_can_start_from(tmp_path, example_clips):
    teacher_dir = tmp_path / "teacher"
    Codec(_config(encoder="seanet")).save_pretrained(teacher_dir)
    student_cfg = tmp_path / "student.json"
    _config().save(student_cfg)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "distill_encoder.py"), "--teacher", str(teacher_dir),
                           "--config", str(student_cfg), "--data_dir", str(example_clips[0].parent),
                           "--cpu_minutes", "0.05", "--batch_size", "2", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "relative latent error on 32 validation crops" in proc.stdout
    student = Codec.from_pretrained(tmp_path / "out")
    assert isinstance(student.encoder, STFTEncoder)
    bad = tmp_path / "bad.json"
    replace(_config(), quantizer=replace(_config().quantizer, codebook_size=128)).save(bad)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "distill_encoder.py"), "--teacher", str(teacher_dir),
                           "--config", str(bad), "--data_dir", str(example_clips[0].parent), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "differ from the teacher's" in proc.stderr
