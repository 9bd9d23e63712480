"""Compression end to end: real audio files -> `telucodec encode` -> .tcd -> `telucodec decode` -> wav,
through the CLI (in-process and as a subprocess) and the Python API, with the model trained in
conftest (`trained_tiny`) and random-weight tiny models where only the plumbing matters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import telucodec
from telucodec.cli import main
from telucodec.config import get_config
from telucodec.errors import BitstreamError, ModelError
from telucodec.formats.audio import load_audio, write_wav
from telucodec.formats.bitstream import describe, read_bitstream, write_bitstream
from telucodec.formats.codes import Codes
from telucodec.formats.rate import fit_to_rate
from telucodec.model import codec as codec_module
from telucodec.model import loading
from telucodec.model.codec import Codec
from telucodec.model.streaming import encoder_reach_frames

SR = 16000
INFO_KEYS = {"format_version", "model_id", "sample_rate", "num_samples", "duration_s", "n_q",
             "codebook_bits", "frame_rate", "kbps_nominal", "kbps_actual"}  # docs/design.md
PCM16_STEP = 1 / 32768  # one step of a 16-bit WAV (libsndfile writes x * 32767, reads / 32768)


def cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def forward_output(model: Codec, wav: np.ndarray, n_q: int) -> np.ndarray:
    """The unchunked training-path output `model(wav)` at `n_q`, as float32 [T]."""
    with torch.no_grad():
        return model(torch.from_numpy(wav).view(1, 1, -1), n_q=n_q).wav[0, 0].numpy()


def random_tiny(amplitude: str = "none", seed: int = 0) -> Codec:
    cfg = get_config("tiny")
    torch.manual_seed(seed)
    return Codec(replace(cfg, model=replace(cfg.model, amplitude=amplitude))).eval()


@pytest.fixture(scope="module")
def model_dir(trained_tiny: Path) -> Path:
    return trained_tiny / "model"


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Codec:
    return telucodec.load_model(model_dir)


@pytest.fixture(scope="module")
def speech(example_clips: list[Path]) -> np.ndarray:
    """All example clips concatenated: real speech, float32 mono 16 kHz (about 84 s)."""
    return np.concatenate([load_audio(p, SR) for p in example_clips])


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture as the trained model, different weights."""
    return random_tiny(seed=1).save_pretrained(tmp_path_factory.mktemp("other") / "model")


@pytest.fixture(scope="module")
def encoded(model_dir: Path, example_clips: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .tcd of one real clip made by the trained model."""
    out = tmp_path_factory.mktemp("enc") / "clip.tcd"
    assert main(["encode", str(example_clips[0]), str(out), "--model", str(model_dir), "--kbps", "3"]) == 0
    return out


# ---- round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("kbps", [1.5, 3.0, 6.0])
def test_cli_round_trip_matches_model_output(kbps, model, model_dir, example_clips, tmp_path, capsys):
    src = example_clips[1]
    tcd, out = tmp_path / "x.tcd", tmp_path / "x.wav"
    rc, _, _ = cli(capsys, "encode", src, tcd, "--model", model_dir, "--kbps", kbps)
    assert rc == 0

    rc, text, _ = cli(capsys, "info", tcd, "--json")
    assert rc == 0
    info = json.loads(text)
    assert INFO_KEYS <= set(info)  # docs/design.md's keys; more may be added, never fewer
    wav = load_audio(src, SR)
    # --kbps is the file's actual rate, header included: the most codebooks that fit (formats/rate.py)
    choice = fit_to_rate(model.encode_prefixes(wav, SR), kbps)
    n_q = info["n_q"]
    assert n_q == choice.n_q and tcd.read_bytes() == choice.data and info["kbps_actual"] <= kbps
    assert info["num_samples"] == wav.size and info["sample_rate"] == SR
    assert info["model_id"] == model.model_id
    assert info["kbps_nominal"] == pytest.approx(n_q * model.kbps_per_codebook())
    assert info["duration_s"] == pytest.approx(wav.size / SR)
    assert info["kbps_actual"] == pytest.approx(tcd.stat().st_size * 8 / info["duration_s"] / 1000)

    rc, text, _ = cli(capsys, "decode", tcd, out, "--model", model_dir)
    assert rc == 0 and str(out) in text
    decoded, sr = sf.read(str(out), dtype="float32")
    assert sr == SR and decoded.shape == wav.shape
    expected = np.clip(forward_output(model, wav, n_q), -1, 1)
    np.testing.assert_allclose(decoded, expected, rtol=0, atol=2 * PCM16_STEP)


def test_subprocess_round_trip(model_dir, example_clips, tmp_path):
    exe = Path(sys.executable).with_name("telucodec")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "telucodec.cli"]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def run(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=120)

    src, tcd, out = example_clips[2], tmp_path / "s.tcd", tmp_path / "s.wav"
    assert run("encode", src, tcd, "--model", model_dir, "--kbps", 1.5).returncode == 0
    info = run("info", tcd, "--json")
    assert info.returncode == 0 and INFO_KEYS <= set(json.loads(info.stdout))
    assert run("decode", tcd, out, "--model", model_dir).returncode == 0
    assert sf.info(str(out)).frames == load_audio(src, SR).size and sf.info(str(out)).samplerate == SR

    bad = tmp_path / "bad.tcd"
    data = bytearray(tcd.read_bytes())
    data[-1] ^= 0x55
    bad.write_bytes(bytes(data))
    proc = run("decode", bad, tmp_path / "bad.wav", "--model", model_dir)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and str(bad) in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "bad.wav").exists()


# ---- bitrate ----------------------------------------------------------------------------------

def test_kbps_picks_nearest_n_q_not_above(model, example_clips, model_dir, tmp_path, capsys):
    step = model.kbps_per_codebook()  # tiny: 8-bit codebooks at 50 Hz = 0.4 kbps each, n_q <= 8
    assert model.n_q_for_kbps(step) == 1
    assert model.n_q_for_kbps(3 * step) == 3  # exactly on a step: not rounded down by float error
    assert model.n_q_for_kbps(3.99 * step) == 3
    assert model.n_q_for_kbps(1.5) == 3 and model.n_q_for_kbps(3) == 7
    assert model.n_q_for_kbps(100) == model.n_q_for_kbps(None) == model.max_n_q
    with pytest.raises(ModelError, match="kbps"):
        model.n_q_for_kbps(0.3)
    # a file budget not even one codebook fits is refused in one line, and nothing is written
    rc, _, err = cli(capsys, "encode", example_clips[0], tmp_path / "x.tcd", "--model", model_dir, "--kbps", 0.01)
    assert rc == 1 and err.count("\n") == 1 and "--kbps 0.01" in err
    assert not (tmp_path / "x.tcd").exists()


def test_actual_bitrate_is_within_the_asked_kbps(speech, model, model_dir, tmp_path, capsys):
    src = tmp_path / "long.wav"
    sf.write(str(src), speech[: 20 * SR], SR, subtype="PCM_16")  # >= 10 s of real speech
    for kbps in (1.5, 3, 6):
        tcd = tmp_path / f"{kbps}.tcd"
        assert cli(capsys, "encode", src, tcd, "--model", model_dir, "--kbps", kbps)[0] == 0
        info = describe(tcd.read_bytes())
        assert info["kbps_actual"] <= kbps


# ---- refusals ---------------------------------------------------------------------------------

def test_existing_output_needs_force(encoded, model_dir, example_clips, tmp_path, capsys):
    dst = tmp_path / "exists.tcd"
    dst.write_bytes(b"keep me")
    rc, _, err = cli(capsys, "encode", example_clips[0], dst, "--model", model_dir)
    assert rc == 1 and "--force" in err and dst.read_bytes() == b"keep me"
    assert cli(capsys, "encode", example_clips[0], dst, "--model", model_dir, "--force")[0] == 0
    assert dst.read_bytes()[:4] == b"TLCD"

    wav = tmp_path / "exists.wav"
    wav.write_bytes(b"keep me")
    rc, _, err = cli(capsys, "decode", encoded, wav, "--model", model_dir)
    assert rc == 1 and "--force" in err and wav.read_bytes() == b"keep me"
    assert cli(capsys, "decode", encoded, wav, "--model", model_dir, "--force")[0] == 0
    assert sf.info(str(wav)).samplerate == SR


def test_encode_never_writes_a_bitstream_over_audio(model_dir, example_clips, tmp_path, capsys):
    """Issue 27: `encode te1.wav out.wav` wrote bitstream bytes into a .wav, and `encode same.wav
    same.wav --force` replaced the user's audio with a bitstream."""
    audio = tmp_path / "mine.wav"
    write_wav(audio, load_audio(example_clips[0], SR), SR)
    original = audio.read_bytes()
    for args in ([audio, tmp_path / "out.wav"], [audio, audio, "--force"], [audio, tmp_path / "noext"]):
        rc, out, err = cli(capsys, "encode", *args, "--model", model_dir)
        assert rc == 1 and out == "" and err.count("\n") == 1 and ".tcd" in err, err
    assert not (tmp_path / "out.wav").exists() and not (tmp_path / "noext").exists()
    # the input itself under a .tcd name (a hard link, or the same path), --force or not
    linked = tmp_path / "mine.tcd"
    os.link(audio, linked)
    for force in ([], ["--force"]):
        rc, _, err = cli(capsys, "encode", audio, linked, "--model", model_dir, *force)
        assert rc == 1 and "is the input file" in err and err.count("\n") == 1, err
        rc, _, err = cli(capsys, "encode", linked, linked, "--model", model_dir, *force)
        assert rc == 1 and "is the input file" in err, err
    assert audio.read_bytes() == original and linked.read_bytes() == original
    assert cli(capsys, "encode", audio, tmp_path / "UPPER.TCD", "--model", model_dir)[0] == 0


def test_decode_refuses_to_write_over_its_input(encoded, model_dir, tmp_path, capsys):
    same = tmp_path / "codes.wav"  # a bitstream that happens to be named .wav
    same.write_bytes(encoded.read_bytes())
    rc, _, err = cli(capsys, "decode", same, same, "--model", model_dir, "--force")
    assert rc == 1 and "is the input file" in err and same.read_bytes() == encoded.read_bytes()


def test_wrong_model_is_refused(encoded, other_model_dir, tmp_path, capsys):
    out = tmp_path / "o.wav"
    rc, _, err = cli(capsys, "decode", encoded, out, "--model", other_model_dir)
    assert rc == 1 and err.count("\n") == 1 and "wrong model" in err and str(encoded) in err
    assert not out.exists()
    other = telucodec.load_model(other_model_dir)
    with pytest.raises(ModelError):
        other.decode(read_bitstream(encoded.read_bytes()))  # the model checks too, not just the CLI


@pytest.mark.parametrize("damage", ["flip_payload", "flip_header", "truncate", "garbage", "empty"])
def test_corrupt_file_one_line_error(damage, encoded, model_dir, tmp_path, capsys):
    data = bytearray(encoded.read_bytes())
    if damage == "flip_payload":
        data[len(data) // 2 + 30] ^= 0x10
    elif damage == "flip_header":
        data[20] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) - 7]
    elif damage == "garbage":
        data = bytearray(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    else:
        data = bytearray()
    bad = tmp_path / f"{damage}.tcd"
    bad.write_bytes(bytes(data))
    for args in (["decode", bad, tmp_path / "o.wav", "--model", model_dir], ["info", bad]):
        rc, out, err = cli(capsys, *args)
        assert rc == 1 and out == ""
        assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err
    assert not (tmp_path / "o.wav").exists()


def test_no_shipped_model_is_a_clear_error(monkeypatch, tmp_path, speech, encoded, capsys):
    monkeypatch.setattr(loading, "PRETRAINED_DIR", tmp_path / "nothing-here")
    with pytest.raises(ModelError, match="--model"):
        telucodec.load_model()
    with pytest.raises(ModelError):
        telucodec.compress(speech[:SR], SR)
    rc, _, err = cli(capsys, "decode", encoded, tmp_path / "o.wav")
    assert rc == 1 and err.count("\n") == 1 and "pretrained" in err


# ---- inputs -----------------------------------------------------------------------------------

def _make_input(kind: str, clip: Path, folder: Path) -> Path:
    wav = load_audio(clip, SR)
    if kind == "mp3":
        if shutil.which("ffmpeg") is None:
            pytest.skip("ffmpeg is not installed")
        path = folder / "in.mp3"
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(clip), "-b:a", "64k", str(path)], check=True)
        return path
    rate = {"wav44k": 44100, "wav48k": 48000}.get(kind, SR)
    if rate != SR:
        import soxr

        wav = soxr.resample(wav, SR, rate).astype(np.float32)
    data = np.stack([wav, 0.5 * wav], axis=1) if kind == "stereo" else wav
    subtype = {"pcm24": "PCM_24", "float": "FLOAT", "ogg": "VORBIS"}.get(kind, "PCM_16")
    path = folder / ("in.ogg" if kind == "ogg" else "in.wav")
    sf.write(str(path), data, rate, subtype=subtype)
    return path


@pytest.mark.parametrize("kind", ["pcm16", "pcm24", "float", "wav44k", "wav48k", "stereo", "mp3", "ogg"])
def test_input_formats(kind, model, model_dir, example_clips, tmp_path, capsys):
    src = _make_input(kind, example_clips[3], tmp_path)
    tcd, out = tmp_path / "x.tcd", tmp_path / "x.wav"
    assert cli(capsys, "encode", src, tcd, "--model", model_dir, "--kbps", 3)[0] == 0
    assert cli(capsys, "decode", tcd, out, "--model", model_dir)[0] == 0
    wav = load_audio(src, SR)  # what the encoder saw: 16 kHz mono
    original = sf.info(str(src))
    assert wav.size == pytest.approx(original.frames * SR / original.samplerate, abs=0.06 * SR if kind == "mp3" else 1)
    decoded, sr = sf.read(str(out), dtype="float32")
    assert sr == SR and decoded.shape == wav.shape
    expected = np.clip(forward_output(model, wav, describe(tcd.read_bytes())["n_q"]), -1, 1)  # what --kbps fit
    np.testing.assert_allclose(decoded, expected, rtol=0, atol=2 * PCM16_STEP)


# ---- amplitude, clipping, entropy, Python API -------------------------------------------------

@pytest.mark.parametrize("amplitude", ["none", "rms", "lufs"])
def test_amplitude_side_info_survives_the_bitstream(amplitude, speech):
    model = random_tiny(amplitude)
    wav = (speech[: 7 * SR] * 0.05).astype(np.float32)  # quiet input: the side info has work to do
    data = telucodec.compress(wav, SR, model=model, kbps=2)
    codes = read_bitstream(data, expected_model_id=model.model_id)
    assert codes.side_kind == amplitude
    expected_side = model.amplitude.side_info(torch.from_numpy(wav).view(1, 1, -1))[0].long().tolist()
    assert codes.side == expected_side and len(codes.side) == model.amplitude.num_side_values(wav.size)
    decoded, sr = telucodec.decompress(data, model=model)
    assert sr == SR and decoded.dtype == np.float32 and decoded.shape == wav.shape
    expected = forward_output(model, wav, codes.codes.shape[0])  # the codebooks kbps=2 fit
    np.testing.assert_allclose(decoded, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    entropy_coded = telucodec.compress(wav, SR, model=model, kbps=2, entropy=True)
    np.testing.assert_array_equal(telucodec.decompress(entropy_coded, model=model)[0], decoded)


def test_out_of_range_output_is_clipped_only_when_written(tmp_path, capsys):
    model = random_tiny("rms", seed=3)
    frames = 150
    loud = Codes(codes=torch.randint(0, 256, (4, frames)), num_samples=frames * 320 - 17, model_id=model.model_id,
                 sample_rate=SR, frame_rate=50, codebook_bits=8, side_kind="rms", side=[255, 255, 255])
    y = model.decode(loud).numpy()  # side index 255 = +2 dBFS per chunk: far above full scale
    over = int(np.count_nonzero(np.abs(y) > 1))
    assert over > 0 and np.abs(y).max() > 1  # decode itself is unbounded

    assert write_wav(tmp_path / "direct.wav", y, SR) == over
    folder = model.save_pretrained(tmp_path / "model")
    tcd, out = tmp_path / "loud.tcd", tmp_path / "loud.wav"
    tcd.write_bytes(write_bitstream(loud))
    rc, text, _ = cli(capsys, "decode", tcd, out, "--model", folder)
    assert rc == 0 and f"{over} samples clipped" in text
    written, _ = sf.read(str(out), dtype="float32")
    assert np.abs(written).max() <= 1.0
    np.testing.assert_allclose(written, np.clip(y, -1, 1), atol=2 * PCM16_STEP)


def test_entropy_flag_round_trips_and_reports_saving(model_dir, example_clips, tmp_path, capsys):
    tcd, encoded = tmp_path / "e.tcd", tmp_path / "plain.tcd"  # without --kbps: every codebook
    assert cli(capsys, "encode", example_clips[0], encoded, "--model", model_dir)[0] == 0
    rc, _, err = cli(capsys, "encode", example_clips[0], tcd, "--model", model_dir, "--entropy")
    assert rc == 0
    info = describe(tcd.read_bytes())
    plain = encoded.stat().st_size
    assert info["bytes"] <= plain  # never the bigger file (issue 27: 3998 bytes written vs 3980 plain)
    if info["entropy_coded"]:
        assert "saved" in err and info["bytes"] < plain
    else:
        assert "no saving on this clip, wrote the plain file" in err and info["bytes"] == plain
    assert cli(capsys, "decode", tcd, tmp_path / "e.wav", "--model", model_dir)[0] == 0
    assert cli(capsys, "decode", encoded, tmp_path / "p.wav", "--model", model_dir)[0] == 0
    np.testing.assert_array_equal(sf.read(str(tmp_path / "e.wav"))[0], sf.read(str(tmp_path / "p.wav"))[0])


# ---- long clips: chunk joins ------------------------------------------------------------------

@pytest.mark.parametrize("which", ["trained-tiny", "spectral-rms"])
def test_chunked_encode_decode_matches_one_pass(which, model, speech, monkeypatch):
    """45 s of speech: decoded in 20 s chunks with 2 s context, encoded in 5 s chunks with the
    encoder's exact reach, vs. one unchunked pass of the same model."""
    if which == "spectral-rms":
        torch.manual_seed(0)
        model = Codec(get_config("spectral")).eval()
    wav = speech[: 45 * SR + 123]
    chunked = model.encode(wav, SR)
    y_chunked = model.decode(chunked).numpy()
    assert encoder_reach_frames(model.encoder, model.hop) is not None  # the 5 s path is the one tested
    monkeypatch.setattr(codec_module, "CHUNK_SECONDS", 1e6)
    monkeypatch.setattr(codec_module, "ENCODE_CHUNK_SECONDS", 1e6)
    whole = model.encode(wav, SR)
    y_whole = model.decode(whole).numpy()

    assert torch.equal(chunked.codes, whole.codes) and chunked.side == whole.side
    scale = np.abs(y_whole).max()
    assert np.abs(y_chunked - y_whole).max() <= 1e-5 * scale
    borders = [int(s * SR) for s in (20, 40)]
    for b in borders:  # no step at the joins: the sample-to-sample change is the one-pass one
        assert abs(np.diff(y_chunked[b - 2: b + 2]) - np.diff(y_whole[b - 2: b + 2])).max() <= 1e-5 * scale
    np.testing.assert_allclose(y_whole, forward_output(model, wav, model.max_n_q), rtol=0, atol=1e-5 * scale)


# ---- first-hour rough edges -------------------------------------------------------------------

def test_integer_pcm_is_scaled_by_its_dtype_range(example_clips, tmp_path):
    """What `scipy.io.wavfile.read` returns (int16) must compress like the same audio as floats,
    not as samples 32768x too loud (clipped garbage: RMS 0.09 in, 0.90 out)."""
    from scipy.io import wavfile

    shipped = telucodec.load_model()  # level-matched: the output level is the input's
    path = tmp_path / "in.wav"
    write_wav(path, load_audio(example_clips[2], SR)[: 3 * SR], SR)
    rate, pcm = wavfile.read(path)
    assert pcm.dtype == np.int16 and rate == SR
    as_float = pcm.astype(np.float32) / 32768
    reference, _ = telucodec.decompress(telucodec.compress(as_float, rate, model=shipped), model=shipped)
    rms_in = np.sqrt(np.mean(as_float ** 2))
    for wav in (pcm, torch.from_numpy(pcm), pcm.astype(np.int32) << 16,
                (pcm.astype(np.int32) // 256 + 128).astype(np.uint8)):
        out, _ = telucodec.decompress(telucodec.compress(wav, rate, model=shipped), model=shipped)
        assert 0.8 < np.sqrt(np.mean(out ** 2)) / rms_in < 1.25, wav.dtype
        assert np.mean(np.abs(out) >= 0.999) < 0.001  # not saturated
        if wav.dtype != np.uint8:  # the same samples as floats: the same codes
            np.testing.assert_allclose(out, reference, atol=1e-4)
    for bad, dtype in ((pcm.astype(np.complex64), "complex64"), (pcm > 0, "bool"), (pcm.astype(object), "object")):
        with pytest.raises(ModelError, match=f"float or integer PCM samples, got dtype {dtype}"):
            telucodec.compress(bad, rate, model=shipped)
    with pytest.raises(ModelError, match="must be mono"):
        telucodec.compress(np.stack([as_float, as_float], axis=1), rate, model=shipped)


@pytest.mark.parametrize("suffix,container", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG")])
def test_decode_writes_the_format_its_name_says(suffix, container, encoded, model, model_dir, tmp_path, capsys):
    out = tmp_path / f"x{suffix}"
    assert cli(capsys, "decode", encoded, out, "--model", model_dir)[0] == 0
    info = sf.info(str(out))
    assert info.format == container and info.samplerate == SR and info.channels == 1
    decoded, _ = sf.read(str(out), dtype="float32")
    expected = np.clip(model.decode(read_bitstream(encoded.read_bytes())).numpy(), -1, 1)
    assert decoded.shape == expected.shape
    if container != "OGG":  # lossless: the samples themselves
        np.testing.assert_allclose(decoded, expected, atol=2 * PCM16_STEP)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp file left


@pytest.mark.parametrize("name", ["x.mp3", "x.m4a", "x"])
def test_decode_refuses_an_extension_it_cannot_write(name, encoded, model_dir, tmp_path, capsys):
    rc, out, err = cli(capsys, "decode", encoded, tmp_path / name, "--model", model_dir)
    assert rc == 1 and out == "" and err.count("\n") == 1
    assert "cannot write" in err and ".wav, .flac, .ogg" in err
    assert list(tmp_path.iterdir()) == []


def test_a_folder_as_output_is_refused_and_no_temp_file_is_left(encoded, model_dir, example_clips, tmp_path, capsys):
    folder = tmp_path / "adir"
    folder.mkdir()
    for args in (["encode", example_clips[0], folder, "--model", model_dir, "--force"],
                 ["decode", encoded, folder, "--model", model_dir, "--force"]):
        rc, out, err = cli(capsys, *args)
        assert rc == 1 and out == "" and err.count("\n") == 1, err
        assert f"{folder}: is a folder" in err and "Errno" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["adir"]


def test_kbps_above_the_maximum_says_it_is_capped(model, model_dir, example_clips, tmp_path, capsys):
    top = model.max_n_q * model.kbps_per_codebook()
    rc, _, err = cli(capsys, "encode", example_clips[0], tmp_path / "x.tcd", "--model", model_dir,
                     "--kbps", top * 3)
    assert rc == 0 and f"capped at the maximum, {top:g} kbps (n_q={model.max_n_q}" in err
    assert describe((tmp_path / "x.tcd").read_bytes())["n_q"] == model.max_n_q
    rc, _, err = cli(capsys, "encode", example_clips[0], tmp_path / "y.tcd", "--model", model_dir,
                     "--kbps", top, "--force")
    assert rc == 0 and "capped" not in err and f"n_q={model.max_n_q} fits" in err


def test_entropy_writes_the_plain_file_when_entropy_coding_is_bigger(tmp_path, capsys, monkeypatch):
    """A short clip whose ANS tables cost more than they save: the plain coding is written, and said."""
    folder = tmp_path / "m"
    random_tiny().save_pretrained(folder)
    clip = tmp_path / "short.wav"
    write_wav(clip, np.random.default_rng(0).uniform(-0.5, 0.5, SR // 4).astype(np.float32), SR)
    rc, _, err = cli(capsys, "encode", clip, tmp_path / "p.tcd", "--model", folder)
    plain = (tmp_path / "p.tcd").read_bytes()
    codes = read_bitstream(plain)
    assert len(write_bitstream(codes, entropy=True)) >= len(plain)  # the case of the issue
    rc, _, err = cli(capsys, "encode", clip, tmp_path / "e.tcd", "--model", folder, "--entropy")
    assert rc == 0 and "no saving on this clip, wrote the plain file" in err
    assert (tmp_path / "e.tcd").read_bytes() == plain
    model = telucodec.load_model(folder)
    wav = load_audio(clip, SR)
    assert telucodec.compress(wav, SR, model=model, entropy=True) == telucodec.compress(wav, SR, model=model)


def test_kbps_cap_is_said_the_same_way_by_the_cli_and_the_api(model, model_dir, speech, example_clips, tmp_path,
                                                              capsys):
    """Issue 27: `encode --kbps 100` said it was capped; `compress(kbps=100)` capped silently."""
    top = model.max_n_q * model.kbps_per_codebook()
    _, _, err = cli(capsys, "encode", example_clips[0], tmp_path / "x.tcd", "--model", model_dir, "--kbps", 100)
    with pytest.warns(UserWarning) as caught:
        data = telucodec.compress(speech[:SR], SR, model=model, kbps=100)
    assert len(caught) == 1
    said = str(caught[0].message)
    assert said == f"kbps=100: capped at the maximum, {top:g} kbps (n_q={model.max_n_q}, all codebooks)"
    assert said.split(": ", 1)[1] in err and describe(data)["n_q"] == model.max_n_q
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        telucodec.compress(speech[:SR], SR, model=model, kbps=top)  # at the maximum: nothing to say


def test_info_names_the_shipped_model(speech, tmp_path, capsys):
    name = loading.default_model_dir().name
    tcd = tmp_path / "shipped.tcd"
    tcd.write_bytes(telucodec.compress(speech[: SR], SR))
    rc, out, _ = cli(capsys, "info", tcd, "--json")
    assert rc == 0 and json.loads(out)["model_name"] == name
    rc, out, _ = cli(capsys, "info", tcd)
    assert rc == 0 and any(line.split() == ["model_name", name] for line in out.splitlines())


def test_wrong_model_error_names_the_shipped_model_that_made_the_file(model_dir, speech, tmp_path, capsys):
    name = loading.default_model_dir().name
    tcd = tmp_path / "shipped.tcd"
    tcd.write_bytes(telucodec.compress(speech[: 2 * SR], SR))  # made by the shipped default model
    rc, _, err = cli(capsys, "decode", tcd, tmp_path / "o.wav", "--model", model_dir)
    assert rc == 1 and err.count("\n") == 1 and "wrong model" in err
    assert f"made by the shipped model {name}: decode with --model {name}" in err
    rc, out, _ = cli(capsys, "decode", tcd, tmp_path / "o.wav", "--model", name)  # a shipped model by name
    assert rc == 0 and sf.info(str(tmp_path / "o.wav")).frames == 2 * SR
    with pytest.raises(BitstreamError, match=f"load_model\\('{name}'\\)"):
        telucodec.decompress(tcd.read_bytes(), model=telucodec.load_model(model_dir))
    assert loading.shipped_model_ids()[telucodec.load_model(name).model_id] == name
