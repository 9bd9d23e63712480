"""Baselines on a real Telugu clip: lengths, alignment, bitrates, quality ordering, and skipping."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from telucodec.errors import TelucodecError
from telucodec.evaluation import baselines, metrics
from telucodec.formats.audio import load_audio

CLIP = Path(__file__).resolve().parents[1] / "examples/te_cv/cv_9e9a356b/common_voice_te_42974000.flac"
HAVE_OPUS = shutil.which("opusenc") is not None and shutil.which("opusdec") is not None
HAVE_CODEC2 = all(shutil.which(t) for t in ("c2enc", "c2dec", "sox"))
HAVE_LYRA = baselines._lyra_problem(baselines.lyra_model_dir()) is None
OGG_OVERHEAD_BYTES = 1500  # Ogg page headers (~27 B/page) + OpusHead + opusenc's padded OpusTags


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(CLIP)


def _duration(wav: np.ndarray) -> float:
    return wav.size / baselines.SAMPLE_RATE


@pytest.mark.skipif(not HAVE_OPUS, reason="opus-tools not installed")
def test_opus_length_bitrate_and_quality(speech: np.ndarray, tmp_path: Path) -> None:
    low, high = (baselines.run_opus(speech, k, tmp_path) for k in (6, 12))
    for res, nominal in ((low, 6), (high, 12)):
        assert res.system == "opus" and res.setting == str(nominal) and res.kbps_nominal == nominal
        assert res.audio.shape == speech.shape and res.audio.dtype == np.float32
        assert res.bytes == (tmp_path / f"opus_{nominal}k.opus").stat().st_size
        overhead_kbps = OGG_OVERHEAD_BYTES * 8 / _duration(speech) / 1000
        assert 0.9 * nominal <= res.kbps_actual <= 1.1 * nominal + overhead_kbps
        assert abs(metrics.find_delay(speech, res.audio)) <= 2  # opusdec removed the pre-skip
        assert 0.8 < metrics.rms_ratio(speech, res.audio) < 1.25
    assert metrics.pesq_wb(speech, high.audio) > metrics.pesq_wb(speech, low.audio) + 0.3
    assert metrics.stoi(speech, high.audio) > metrics.stoi(speech, low.audio)


@pytest.mark.skipif(not HAVE_CODEC2, reason="codec2 or sox not installed")
def test_codec2_alignment_accounts_for_a_known_delay(speech: np.ndarray) -> None:
    pad = 400
    plain = baselines.run_codec2(speech, "3200")
    padded_input = np.concatenate([np.zeros(pad, dtype=np.float32), speech])
    padded = baselines.run_codec2(padded_input, "3200")
    assert plain.audio.shape == speech.shape and padded.audio.shape == padded_input.shape
    assert 100 <= plain.delay <= 1000  # Codec2's own lag: a few hundred samples at 16 kHz
    # the 400 leading zeros are part of the input, so the codec's delay is unchanged and the
    # aligned output, minus those 400 samples, lines up with the unpadded clip
    assert abs(padded.delay - plain.delay) <= 80
    recovered = padded.audio[pad:]
    assert abs(metrics.find_delay(speech, recovered, envelope=True)) <= 80
    assert np.max(np.abs(padded.audio[:pad - 100])) < 0.01  # silence stays at the start
    # alignment matters: the aligned output beats the raw (unshifted) one on intelligibility
    unaligned = metrics.shift_to(plain.audio, -plain.delay, speech.size)
    stoi_aligned = metrics.stoi(speech, plain.audio)
    assert stoi_aligned > metrics.stoi(speech, unaligned) + 0.05
    assert metrics.stoi(speech, recovered) == pytest.approx(stoi_aligned, abs=0.05)
    # a known delay can be imposed instead of estimated
    forced = baselines.run_codec2(padded_input, "3200", delay=plain.delay + 7)
    assert forced.delay == plain.delay + 7 and forced.audio.shape == padded_input.shape


@pytest.mark.skipif(not HAVE_CODEC2, reason="codec2 or sox not installed")
def test_codec2_is_repeatable(speech: np.ndarray) -> None:
    first, second = (baselines.run_codec2(speech[:32000], "1600") for _ in range(2))
    assert first.delay == second.delay
    np.testing.assert_array_equal(first.audio, second.audio)  # sox -R: seeded dither


@pytest.mark.skipif(not HAVE_CODEC2, reason="codec2 or sox not installed")
@pytest.mark.parametrize("mode", baselines.CODEC2_MODES)
def test_codec2_modes_length_and_bitrate(speech: np.ndarray, mode: str, tmp_path: Path) -> None:
    res = baselines.run_codec2(speech, mode, tmp_path)
    assert res.audio.shape == speech.shape
    assert res.kbps_nominal == baselines.codec2_kbps(mode)
    assert res.bytes == (tmp_path / f"codec2_{mode}.c2").stat().st_size
    assert res.kbps_actual == pytest.approx(res.kbps_nominal, rel=0.2)
    assert 0.5 < metrics.rms_ratio(speech, res.audio) < 2.0


@pytest.mark.skipif(not HAVE_LYRA, reason="Lyra models or ai-edge-litert not available")
def test_lyra_aligned_loudness_kept_quality_rises(speech: np.ndarray) -> None:
    low, high = (baselines.run_lyra(speech, k) for k in (3.2, 9.2))
    frames = -(-speech.size // baselines.LYRA_FRAME)
    for res, nominal, bytes_per_frame in ((low, 3.2, 8), (high, 9.2, 23)):
        assert res.audio.shape == speech.shape and res.delay == 0
        assert res.bytes == frames * bytes_per_frame
        assert res.kbps_actual == pytest.approx(bytes_per_frame * 8 * frames / _duration(speech) / 1000)
        assert res.kbps_actual == pytest.approx(nominal, rel=0.02)  # only the last frame's padding
        assert metrics.find_delay(speech, res.audio) == 0  # waveform correlation peaks at lag 0
        assert 0.5 < metrics.rms_ratio(speech, res.audio) < 2.0
        assert np.max(np.abs(res.audio)) <= 1.0
    assert metrics.pesq_wb(speech, high.audio) > metrics.pesq_wb(speech, low.audio) + 0.2
    assert metrics.stoi(speech, high.audio) > metrics.stoi(speech, low.audio)
    assert metrics.pesq_wb(speech, low.audio) > 1.8


@pytest.mark.skipif(not HAVE_LYRA, reason="Lyra models or ai-edge-litert not available")
def test_lyra_is_deterministic_per_stream(speech: np.ndarray) -> None:
    clip = speech[:16000]
    first, second = baselines.run_lyra(clip, 6.0), baselines.run_lyra(clip, 6.0)
    np.testing.assert_array_equal(first.audio, second.audio)  # fresh state every call


def test_lyra_packet_round_trip() -> None:
    rng = np.random.default_rng(0)
    for stages in (16, 30, 46):
        idx = rng.integers(0, 16, stages)
        packet = baselines._pack_nibbles(idx)
        assert len(packet) == stages * 4 // 8
        assert packet[0] >> 4 == idx[0]  # first stage in the most significant bits
        out = baselines._unpack_nibbles(packet, stages)
        assert out.shape == (46, 1, 1) and out.dtype == np.int32
        np.testing.assert_array_equal(out[:stages, 0, 0], idx)
        assert np.all(out[stages:] == -1)


def test_missing_tools_are_skipped_with_one_warning_each(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no opusenc, c2enc, sox
    available, warnings = baselines.available_baselines(["opus", "codec2", "lyra"],
                                                        lyra_models=tmp_path / "nowhere")
    assert available == []
    assert len(warnings) == 3
    assert "opusenc" in warnings[0] and "c2enc" in warnings[1] and "lyra" in warnings[2]
    assert all("\n" not in w for w in warnings)
    with pytest.raises(TelucodecError, match="opusenc: not found"):
        baselines.run_opus(np.zeros(1600, dtype=np.float32), 6)


def test_lyra_model_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(baselines.LYRA_ENV, str(tmp_path))
    assert baselines.lyra_model_dir() == tmp_path
    assert baselines.lyra_model_dir(tmp_path / "x") == tmp_path / "x"
    available, warnings = baselines.available_baselines(["lyra"])
    assert available == [] and "missing" in warnings[0]
    with pytest.raises(TelucodecError, match="lyra"):
        baselines.run_lyra(np.zeros(640, dtype=np.float32), 3.2)


def test_tool_failure_and_timeout_name_the_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "opusenc"
    fake.write_text("#!/bin/sh\necho 'bad things happened' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(TelucodecError, match=r"opusenc: failed with exit code 3 \(bad things happened\)"):
        baselines.run_opus(np.zeros(1600, dtype=np.float32), 6)
    with pytest.raises(TelucodecError, match="sleep: timed out"):
        baselines._run_tool(["sleep", "5"], timeout=0.2)


def test_bad_requests_are_refused() -> None:
    wav = np.zeros(1600, dtype=np.float32)
    with pytest.raises(TelucodecError, match="unknown baseline"):
        baselines.available_baselines(["mp3"])
    with pytest.raises(TelucodecError, match="unknown mode"):
        baselines.run_codec2(wav, "999")
    with pytest.raises(TelucodecError, match="unsupported bitrate"):
        baselines.run_lyra(wav, 4.0)
    with pytest.raises(TelucodecError, match="non-empty"):
        baselines.run_opus(np.zeros(0, dtype=np.float32), 6)
    assert baselines.default_settings("codec2") == ("3200", "1600", "700C")
    assert baselines.default_settings("lyra") == ("3.2", "6", "9.2")
