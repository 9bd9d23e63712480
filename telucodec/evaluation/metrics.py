"""Objective quality metrics on one clip: ref [T] and deg [T], float, 16 kHz mono.

The same functions score telucodec and every baseline (docs/design.md, "Baselines"), so that the
numbers in one table are comparable.

Conventions, shared by every function here:
- Inputs are 1-D arrays (anything `np.asarray` turns into 1-D); a length mismatch is trimmed to
  the shorter of the two. Sample-wise metrics (SNR, SI-SDR) assume the signals are aligned:
  call `align` first for a codec with a delay.
- Empty input is a caller bug and raises ValueError.
- NaN or infinite samples in either signal: every metric returns nan (nothing is silently
  cleaned up; the training monitor reports non-finite output separately).
- dB metrics are capped to [-MAX_DB, MAX_DB] = [-100, 100] so they are always finite:
  identical signals (including both silent) give +100; a silent reference with a non-silent
  degraded signal, or a silent degraded signal against a non-silent reference, gives -100.
- `rms_ratio` and `mel_distance` are always finite (they use tiny floors, see each function).
- `pesq_wb` and `stoi` return nan where the reference cannot be scored: silent (peak below
  -120 dBFS) or too short / too little speech (PESQ's "no utterances detected", STOI's "not
  enough STFT frames"). Average them with np.nanmean and report how many were nan.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.signal
import soxr

from telucodec.losses import mel_filterbank

MAX_DB = 100.0
EPS_RMS = 1e-8  # floor for rms_ratio: silent/silent = 1.0, normal speech unaffected
MEL_BINS = 64
MEL_N_FFT = 1024
MEL_HOP = 256
MEL_LOG_FLOOR = 1e-5
ENVELOPE_SMOOTH = 80  # samples (5 ms at 16 kHz): smooths out pitch pulses, keeps syllable onsets
SILENCE_PEAK = 1e-6  # a reference whose peak is below this (-120 dBFS) counts as silent


def _prepare(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """1-D float64 copies trimmed to the common length, and whether both are all finite."""
    ref, deg = _to_1d(ref), _to_1d(deg)
    n = min(ref.size, deg.size)
    if n == 0:
        raise ValueError("metrics need non-empty ref and deg signals")
    ref, deg = ref[:n], deg[:n]
    finite = bool(np.all(np.isfinite(ref)) and np.all(np.isfinite(deg)))
    return ref, deg, finite


def _to_1d(x: np.ndarray) -> np.ndarray:
    """float64 [T] from [T], [1, T] or [1, 1, T]; anything holding several clips is refused."""
    x = np.atleast_1d(np.squeeze(np.asarray(x, dtype=np.float64)))
    if x.ndim != 1:
        raise ValueError(f"metrics take 1-D signals (one clip), got shape {np.shape(x)}")
    return x


def _ratio_db(signal_energy: float, noise_energy: float) -> float:
    """10·log10(signal/noise) capped to ±MAX_DB; 0/0 counts as a perfect match (+MAX_DB)."""
    if noise_energy <= 0.0:
        return MAX_DB
    if signal_energy <= 0.0:
        return -MAX_DB
    return float(np.clip(10.0 * math.log10(signal_energy / noise_energy), -MAX_DB, MAX_DB))


def snr_db(ref: np.ndarray, deg: np.ndarray) -> float:
    """Plain SNR: energy of ref over energy of (ref - deg), in dB, capped to ±100.

    A gain error counts as noise: deg = g·ref gives -20·log10(|1 - g|).
    """
    ref, deg, finite = _prepare(ref, deg)
    if not finite:
        return float("nan")
    return _ratio_db(float(np.sum(ref * ref)), float(np.sum((ref - deg) ** 2)))


def si_sdr_db(ref: np.ndarray, deg: np.ndarray) -> float:
    """Scale-invariant SDR (Le Roux et al. 2019) on mean-removed signals, in dB, capped to ±100.

    deg is projected on ref; the projection is the target, the rest is noise. A gain (even a
    sign flip) leaves it unchanged. A silent deg against a non-silent ref gives -100.
    """
    ref, deg, finite = _prepare(ref, deg)
    if not finite:
        return float("nan")
    ref = ref - ref.mean()
    deg = deg - deg.mean()
    ref_energy = float(np.sum(ref * ref))
    deg_energy = float(np.sum(deg * deg))
    if ref_energy <= 0.0 or deg_energy <= 0.0:
        return MAX_DB if ref_energy <= 0.0 and deg_energy <= 0.0 else -MAX_DB
    target = (float(np.dot(deg, ref)) / ref_energy) * ref
    return _ratio_db(float(np.sum(target * target)), float(np.sum((deg - target) ** 2)))


def rms_ratio(ref: np.ndarray, deg: np.ndarray) -> float:
    """(rms(deg) + 1e-8) / (rms(ref) + 1e-8): 1.0 means the codec kept the loudness.

    The floor keeps silent/silent at 1.0 and a silent ref finite (just very large).
    """
    ref, deg, finite = _prepare(ref, deg)
    if not finite:
        return float("nan")
    return float((np.sqrt(np.mean(deg * deg)) + EPS_RMS) / (np.sqrt(np.mean(ref * ref)) + EPS_RMS))


def log_mel(wav: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """log10(mel magnitude + 1e-5) [n_mels, frames] of one signal.

    STFT: periodic Hann window of 1024, hop 256, the signal zero-padded by n_fft/2 on both
    sides (centred frames, works for any length); magnitude (not power) spectra.
    """
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    pad = MEL_N_FFT // 2
    wav = np.pad(wav, (pad, pad))
    n_frames = 1 + (wav.size - MEL_N_FFT) // MEL_HOP
    idx = np.arange(MEL_N_FFT)[None, :] + MEL_HOP * np.arange(n_frames)[:, None]
    window = scipy.signal.get_window("hann", MEL_N_FFT, fftbins=True)
    spec = np.abs(np.fft.rfft(wav[idx] * window, axis=1))  # [frames, n_fft/2+1]
    mel = mel_filterbank(sample_rate, MEL_N_FFT, MEL_BINS) @ spec.T  # [n_mels, frames] (the loss's filterbank)
    return np.log10(mel + MEL_LOG_FLOOR)


def mel_distance(ref: np.ndarray, deg: np.ndarray, sample_rate: int = 16000) -> float:
    """Mean absolute difference of `log_mel` spectra (log10 units; 0 = identical).

    Always finite for finite input: the 1e-5 floor bounds the log of silence at -5.
    """
    ref, deg, finite = _prepare(ref, deg)
    if not finite:
        return float("nan")
    return float(np.mean(np.abs(log_mel(ref, sample_rate) - log_mel(deg, sample_rate))))


def pesq_wb(ref: np.ndarray, deg: np.ndarray, sample_rate: int = 16000) -> float:
    """Wide-band PESQ (ITU-T P.862.2, `pesq` package), MOS-LQO about 1.04 to 4.64.

    Resampled to 16 kHz first if needed. Returns nan (no exception) when PESQ refuses the clip:
    no utterances detected (silence), buffer too short, and the like.
    """
    import pesq as pesq_lib

    ref, deg, finite = _prepare(ref, deg)
    if not finite or np.max(np.abs(ref)) < SILENCE_PEAK:
        return float("nan")
    if sample_rate != 16000:
        ref = soxr.resample(ref, sample_rate, 16000)
        deg = soxr.resample(deg, sample_rate, 16000)
    try:
        return float(pesq_lib.pesq(16000, ref.astype(np.float32), deg.astype(np.float32), "wb"))
    except (pesq_lib.PesqError, ValueError):  # ValueError: the C code met a NaN level
        return float("nan")


def stoi(ref: np.ndarray, deg: np.ndarray, sample_rate: int = 16000) -> float:
    """Short-time objective intelligibility (`pystoi`, classic, not extended), 0 to 1.

    Returns nan for a silent reference (peak below -120 dBFS; pystoi itself would score it 0),
    where pystoi warns "not enough STFT frames" and returns its 1e-5 sentinel (under about
    0.4 s of speech), and where it fails outright on a clip shorter than one of its frames.
    """
    from pystoi import stoi as pystoi_stoi

    ref, deg, finite = _prepare(ref, deg)
    if not finite or np.max(np.abs(ref)) < SILENCE_PEAK:
        return float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(pystoi_stoi(ref, deg, sample_rate, extended=False))
        except ValueError:  # numpy's AxisError: shorter than one of pystoi's frames (~26 ms)
            return float("nan")
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return float("nan")
    return value


def _envelope(x: np.ndarray, smooth: int = ENVELOPE_SMOOTH) -> np.ndarray:
    """Rectified, moving-average-smoothed signal minus its mean (for phase-free alignment)."""
    env = np.convolve(np.abs(x), np.ones(smooth) / smooth, mode="same")
    return env - env.mean()


def find_delay(ref: np.ndarray, deg: np.ndarray, max_shift: int = 1000, envelope: bool = False) -> int:
    """Lag in samples (|lag| <= max_shift) at which deg best matches ref: deg[n + lag] ≈ ref[n].

    Positive = deg lags ref. `envelope=True` correlates smoothed magnitude envelopes instead of
    waveforms: use it for parametric codecs (Codec2) whose output phase does not follow the input.
    Returns 0 when either signal is silent.
    """
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    deg = np.asarray(deg, dtype=np.float64).reshape(-1)
    if ref.size == 0 or deg.size == 0 or not np.any(ref) or not np.any(deg):
        return 0
    a, b = (_envelope(ref), _envelope(deg)) if envelope else (ref, deg)
    corr = scipy.signal.correlate(b, a, mode="full", method="fft")  # index i <-> lag i - (len(a) - 1)
    zero = a.size - 1
    lo = max(0, zero - max_shift)
    hi = min(corr.size, zero + max_shift + 1)
    return int(np.argmax(corr[lo:hi]) + lo - zero)


def shift_to(deg: np.ndarray, shift: int, length: int) -> np.ndarray:
    """deg advanced by `shift` samples (delayed if negative), zero-padded/trimmed to `length`."""
    deg = np.asarray(deg).reshape(-1)
    if shift >= 0:
        out = deg[shift:shift + length]
    else:
        out = np.concatenate([np.zeros(-shift, dtype=deg.dtype), deg[:max(0, length + shift)]])
    if out.size < length:
        out = np.concatenate([out, np.zeros(length - out.size, dtype=deg.dtype)])
    return out


def align(ref: np.ndarray, deg: np.ndarray, max_shift: int = 1000,
          envelope: bool = False) -> tuple[np.ndarray, int]:
    """(deg_aligned [len(ref)], shift): deg moved by the cross-correlation lag, then trimmed or
    zero-padded to len(ref). shift > 0 means deg lagged ref by that many samples."""
    shift = find_delay(ref, deg, max_shift=max_shift, envelope=envelope)
    return shift_to(deg, shift, int(np.asarray(ref).size)), shift


def score_all(ref: np.ndarray, deg: np.ndarray, sample_rate: int = 16000) -> dict[str, float]:
    """Every metric for one (already aligned) clip pair, keyed as in results.json."""
    return {
        "pesq_wb": pesq_wb(ref, deg, sample_rate),
        "stoi": stoi(ref, deg, sample_rate),
        "si_sdr_db": si_sdr_db(ref, deg),
        "snr_db": snr_db(ref, deg),
        "mel_distance": mel_distance(ref, deg, sample_rate),
        "rms_ratio": rms_ratio(ref, deg),
    }
