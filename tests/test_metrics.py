"""Hand-checked cases for telucodec.evaluation.metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from telucodec.evaluation import metrics
from telucodec.formats.audio import load_audio

CLIP = Path(__file__).resolve().parents[1] / "examples/te_cv/cv_9e9a356b/common_voice_te_42974000.flac"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(CLIP).astype(np.float64)


@pytest.fixture(scope="module")
def tone() -> np.ndarray:
    t = np.arange(16000) / 16000
    return 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1234 * t)


def test_identical_signals_hit_the_cap(tone: np.ndarray) -> None:
    assert metrics.snr_db(tone, tone) == metrics.MAX_DB == 100.0
    assert metrics.si_sdr_db(tone, tone) == 100.0
    assert metrics.rms_ratio(tone, tone) == pytest.approx(1.0)
    assert metrics.mel_distance(tone, tone) == 0.0


@pytest.mark.parametrize("scale", [0.5, 2.0, 0.1])
def test_scaled_copy(tone: np.ndarray, scale: float) -> None:
    # SNR counts the gain error as noise: ||x||^2 / ||x - g x||^2 = 1 / (1 - g)^2
    expected_snr = -20 * math.log10(abs(1 - scale))
    assert metrics.snr_db(tone, scale * tone) == pytest.approx(expected_snr, abs=1e-6)
    assert metrics.si_sdr_db(tone, scale * tone) == 100.0
    assert metrics.rms_ratio(tone, scale * tone) == pytest.approx(scale, rel=1e-6)
    # log10 mel magnitudes shift by log10(scale) in every bin that is far above the 1e-5 floor,
    # which white noise guarantees
    noise = 0.1 * np.random.default_rng(2).standard_normal(16000)
    assert metrics.mel_distance(noise, scale * noise) == pytest.approx(abs(math.log10(scale)), rel=0.01)


def test_sign_flip_keeps_si_sdr(tone: np.ndarray) -> None:
    assert metrics.si_sdr_db(tone, -tone) == 100.0
    assert metrics.snr_db(tone, -tone) == pytest.approx(-20 * math.log10(2), abs=1e-6)


@pytest.mark.parametrize("target_db", [0.0, 10.0, 20.0])
def test_white_noise_at_known_snr(speech: np.ndarray, target_db: float) -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(speech.size)
    noise *= math.sqrt(np.mean(speech**2) / 10 ** (target_db / 10))  # expected power, not exact
    assert metrics.snr_db(speech, speech + noise) == pytest.approx(target_db, abs=0.5)
    # independent noise: SI-SDR agrees with SNR (the projection gain is ~1)
    assert metrics.si_sdr_db(speech, speech + noise) == pytest.approx(target_db, abs=0.5)


@pytest.mark.parametrize("delay", [0, 237, -90, 999])
def test_align_recovers_a_delay(speech: np.ndarray, delay: int) -> None:
    if delay >= 0:
        deg = np.concatenate([np.zeros(delay), speech])
    else:
        deg = speech[-delay:]
    aligned, shift = metrics.align(speech, deg)
    assert shift == delay
    assert aligned.size == speech.size
    assert metrics.snr_db(speech, aligned) > 40  # only the edge samples lost by the shift differ


def test_align_by_envelope(speech: np.ndarray) -> None:
    deg = np.concatenate([np.zeros(400), -0.7 * speech])  # delayed, scaled, inverted
    _, shift = metrics.align(speech, deg, envelope=True)
    assert abs(shift - 400) <= 2


def test_align_pads_and_trims(speech: np.ndarray) -> None:
    aligned, shift = metrics.align(speech, speech[:1000])
    assert shift == 0 and aligned.size == speech.size and not np.any(aligned[1000:])
    aligned, shift = metrics.align(speech[:1000], speech)
    assert shift == 0 and np.array_equal(aligned, speech[:1000])


def test_length_mismatch_is_trimmed(tone: np.ndarray) -> None:
    assert metrics.snr_db(tone, np.concatenate([tone, np.ones(50)])) == 100.0
    assert metrics.rms_ratio(tone[:8000], tone) == pytest.approx(1.0, rel=1e-3)


def test_silence_is_finite_or_nan_as_documented(tone: np.ndarray) -> None:
    zero = np.zeros(16000)
    both = metrics.score_all(zero, zero)
    assert both["snr_db"] == both["si_sdr_db"] == 100.0
    assert both["rms_ratio"] == 1.0 and both["mel_distance"] == 0.0
    assert math.isnan(both["pesq_wb"]) and math.isnan(both["stoi"])
    silent_ref = metrics.score_all(zero, tone)
    assert silent_ref["snr_db"] == silent_ref["si_sdr_db"] == -100.0
    assert math.isfinite(silent_ref["rms_ratio"]) and math.isfinite(silent_ref["mel_distance"])
    silent_deg = metrics.score_all(tone, zero)
    assert silent_deg["snr_db"] == pytest.approx(0.0) and silent_deg["si_sdr_db"] == -100.0
    assert silent_deg["rms_ratio"] < 1e-6


def test_non_finite_input_gives_nan(tone: np.ndarray) -> None:
    bad = tone.copy()
    bad[10] = np.nan
    assert all(math.isnan(v) for v in metrics.score_all(tone, bad).values())


def test_empty_input_is_refused() -> None:
    with pytest.raises(ValueError):
        metrics.snr_db(np.zeros(0), np.zeros(0))


def test_pesq_and_stoi_on_real_speech(speech: np.ndarray) -> None:
    scores = metrics.score_all(speech, speech)
    assert set(scores) == {"pesq_wb", "stoi", "si_sdr_db", "snr_db", "mel_distance", "rms_ratio"}
    assert scores["pesq_wb"] > 4.0
    assert scores["stoi"] == pytest.approx(1.0, abs=1e-3)
    noisy = speech + 0.05 * np.random.default_rng(1).standard_normal(speech.size)
    assert metrics.pesq_wb(speech, noisy) < scores["pesq_wb"] - 1.0
    assert metrics.stoi(speech, noisy) < scores["stoi"]


def test_too_short_for_pesq_and_stoi_is_nan(speech: np.ndarray) -> None:
    assert math.isnan(metrics.pesq_wb(speech[:200], speech[:200]))
    assert math.isnan(metrics.stoi(speech[:200], speech[:200]))


def test_log_mel_shape() -> None:
    assert metrics.log_mel(np.zeros(16000)).shape == (64, 1 + 16000 // 256)
    assert metrics.log_mel(np.zeros(10)).shape == (64, 1)
