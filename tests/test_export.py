"""ONNX export: parity with PyTorch on real speech, and decoding with onnxruntime without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from telucodec.cli import main
from telucodec.config import get_config
from telucodec.deploy import export as E
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec

ROOT = Path(__file__).resolve().parents[1]


def _small_spectral() -> Codec:
    cfg = get_config("spectral")  # amplitude "rms": exercises the numpy amplitude reference
    cfg.model.channels, cfg.model.latent_dim, cfg.model.decoder_hidden = 8, 32, 64
    cfg.model.spectral_layers = 2
    cfg.model.level_match = True  # and the numpy mirror of decode-time level matching
    cfg.quantizer.n_q, cfg.quantizer.codebook_size = 4, 256
    torch.manual_seed(1)
    return Codec(cfg).eval()


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, example_clips):
    """A random-weight `tiny` (SEANet decoder, amplitude none) exported through the CLI."""
    root = tmp_path_factory.mktemp("onnx_tiny")
    torch.manual_seed(0)
    model = Codec(get_config("tiny")).eval()
    model.save_pretrained(root / "model")
    rc = main(["export-onnx", "--model", str(root / "model"), "--out", str(root / "onnx"),
               "--parity_clip", str(example_clips[1])])
    assert rc == 0
    return Codec.from_pretrained(root / "model"), root / "onnx"


@pytest.fixture(scope="module")
def spectral_export(tmp_path_factory, example_clips):
    out = tmp_path_factory.mktemp("onnx_spectral")
    model = _small_spectral()
    config = E.export_onnx(model, out, parity_clip=example_clips[5])
    return model, out, config


def test_cli_export_files_and_config(tiny_export):
    model, out = tiny_export
    assert {p.name for p in out.iterdir()} >= {"encoder.onnx", "decoder.onnx", "codebooks.npy", "config.json"}
    config = json.loads((out / "config.json").read_text())
    assert config["model_id"] == model.model_id
    assert (config["sample_rate"], config["hop_length"], config["n_q"], config["codebook_bits"]) == (16000, 320, 8, 8)
    assert config["amplitude"]["kind"] == "none"
    parity = config["parity"]
    assert parity["passed"] and parity["encoder_codes_identical"]
    assert parity["decoder_max_abs_diff"] < 1e-4
    assert config["windows"] == E.window_frames(model)  # the runner cuts long clips as Codec.encode/decode do
    books = np.load(out / "codebooks.npy")
    assert books.shape == (8, 256, 32)
    np.testing.assert_array_equal(books[3], model.quantizer.layers[3].codebook.detach().numpy())


def test_spectral_parity_any_length_and_fewer_codebooks(spectral_export, example_clips):
    from telucodec.deploy.onnx_runtime import OnnxCodec

    model, out, config = spectral_export
    parity = config["parity"]
    print("spectral parity:", parity)
    assert parity["passed"] and parity["end_to_end_codes_identical"]
    assert parity["decoder_max_abs_diff"] < 1e-4 and parity["end_to_end_max_abs_diff"] < 1e-4
    assert config["amplitude"] == {**config["amplitude"], "kind": "rms", "options": model.amplitude.options()}

    codec = OnnxCodec(out)
    wav = load_audio(example_clips[8])[: 16000 + 777]     # another clip, another (dynamic) length
    clip = codec.encode(wav, n_q=2)                       # fewer codebooks: a prefix of the codes
    ref = model.encode(wav, 16000, kbps=2 * model.kbps_per_codebook())
    np.testing.assert_array_equal(clip.codes, ref.codes.numpy())
    assert clip.side == ref.side
    y = codec.decode(clip.codes, clip.side, clip.num_samples)
    assert y.shape == (len(wav),)
    assert float(np.abs(y - model.decode(ref).numpy()).max()) < 1e-4


def test_parity_check_reports_a_failure(tiny_export, example_clips, monkeypatch):
    model, out = tiny_export
    monkeypatch.setattr(E, "DECODER_TOLERANCE", 0.0)
    report = E.parity_check(model, out, load_audio(example_clips[0])[:8000])
    assert report["encoder_codes_identical"] and not report["passed"]


def test_onnxruntime_decode_without_torch(tiny_export, example_clips, tmp_path):
    """encode + decode in a fresh interpreter that never imports torch."""
    model, out = tiny_export
    wav = load_audio(example_clips[2])[:20000]
    np.save(tmp_path / "wav.npy", wav)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from telucodec.deploy.onnx_runtime import OnnxCodec
        codec = OnnxCodec({str(out)!r})
        wav = np.load({str(tmp_path / 'wav.npy')!r})
        clip = codec.encode(wav)
        np.save({str(tmp_path / 'codes.npy')!r}, clip.codes)
        np.save({str(tmp_path / 'out.npy')!r}, codec.decode(clip.codes, clip.side, clip.num_samples))
        assert "torch" not in sys.modules, "torch was imported"
        print("torch imported:", "torch" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torch imported: False" in proc.stdout
    codes = model.encode(wav, 16000)
    np.testing.assert_array_equal(np.load(tmp_path / "codes.npy"), codes.codes.numpy())
    assert float(np.abs(np.load(tmp_path / "out.npy") - model.decode(codes).numpy()).max()) < 1e-4


def test_near_ties_are_told_apart_from_real_mismatches():
    """Two codebook entries equally near the residual may flip between engines; anything else fails."""
    model = _small_spectral()
    book = model.quantizer.layers[0].codebook
    with torch.no_grad():
        book[1] = book[0] + 1e-3
        book[2] = book[0] + 5.0
        latent = (book[0] + book[1]).div(2).view(-1, 1).repeat(1, 3)  # equidistant from entries 0 and 1
        out = model.quantizer(latent[None])
    codes = out.codes[0]
    assert int(codes[0, 0]) in (0, 1)
    flipped = codes.numpy().copy()
    flipped[0, 1] = 1 - flipped[0, 1]
    flipped[1:, 1] = (flipped[1:, 1] + 1) % 256  # later stages differ as a consequence: allowed
    assert E.mismatches_are_near_ties(model, latent, codes, flipped)
    wrong = codes.numpy().copy()
    wrong[0, 2] = 2  # far from the residual: a real mismatch
    assert not E.mismatches_are_near_ties(model, latent, codes, wrong)
    assert E.mismatches_are_near_ties(model, latent, codes, codes.numpy())


def test_factorized_codes_are_refused_by_name(tmp_path, example_clips):
    cfg = get_config("tiny")
    cfg.quantizer.codebook_dim = 4
    with pytest.raises(E.TelucodecError, match="codebook_dim=4"):
        E.export_onnx(Codec(cfg).eval(), tmp_path / "onnx", example_clips[0])
    assert not (tmp_path / "onnx").exists()
