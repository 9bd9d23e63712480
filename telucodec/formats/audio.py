"""Audio in and out: any file soundfile (or ffmpeg, for mp3 it cannot read) knows, any rate,
to float32 mono at the codec's rate in [-1, 1]; and back to 16-bit WAV (or FLAC, Ogg Vorbis) with
a clip count."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from telucodec.errors import AudioError

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
MAX_INPUT_SAMPLE_RATE = 384_000
MIN_INPUT_SAMPLE_RATE = 4_000
MAX_INPUT_SECONDS = 4 * 3600  # refuse longer inputs by default (resource limit)


def _read_with_ffmpeg(path: Path, sample_rate: int) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{path}: soundfile cannot read it and ffmpeg is not installed")
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-t", str(MAX_INPUT_SECONDS + 1),
           "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        raise AudioError(f"{path}: ffmpeg timed out decoding it") from exc
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path}: not decodable audio ({msg[-1] if msg else 'ffmpeg failed'})")
    wav = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if wav.size > MAX_INPUT_SECONDS * sample_rate:
        raise AudioError(f"{path}: longer than the {MAX_INPUT_SECONDS} s limit")
    return wav


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """libsndfile decodes MP3 with libmpg123 (and tries it on any file it cannot place, a damaged
    .wav too), which prints notes ("Illegal Audio-MPEG-Header", "Trying to resync") straight to
    file descriptor 2. Errors are raised to us anyway; a CLI error must stay one line."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _check_readable(path: Path) -> None:
    """Refuse, with the reason, what is not a non-empty regular file we may read (before any
    decoder sees it: a FIFO or a device would block or never end)."""
    try:
        if not path.exists():
            loop = path.is_symlink()
            raise AudioError(f"{path}: {'broken symlink or symlink loop' if loop else 'no such file'}")
        if not path.is_file():
            raise AudioError(f"{path}: not a regular file")
        with path.open("rb") as f:
            first = f.read(1)
    except PermissionError as exc:
        raise AudioError(f"{path}: permission denied") from exc
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror})") from exc
    if not first:
        raise AudioError(f"{path}: empty file (0 bytes)")


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read `path` as float32 mono at `sample_rate`, clipped to [-1, 1]. Raises AudioError."""
    path = Path(path)
    _check_readable(path)
    try:
        with _native_stderr_silenced():
            info = sf.info(str(path))
    except PermissionError as exc:
        raise AudioError(f"{path}: permission denied") from exc
    except Exception:
        info = None
    if info is None:
        if path.suffix.lower() in (".mp3", ".ogg", ".opus", ".m4a"):
            wav = _read_with_ffmpeg(path, sample_rate)
            return _finish(path, wav)
        raise AudioError(f"{path}: not a readable audio file (format not recognised or header corrupt)")
    if not MIN_INPUT_SAMPLE_RATE <= info.samplerate <= MAX_INPUT_SAMPLE_RATE:
        raise AudioError(f"{path}: sample rate {info.samplerate} Hz outside the accepted "
                         f"{MIN_INPUT_SAMPLE_RATE}-{MAX_INPUT_SAMPLE_RATE} Hz")
    if info.frames > MAX_INPUT_SECONDS * info.samplerate:
        raise AudioError(f"{path}: {info.frames / info.samplerate:.0f} s is longer than the "
                         f"{MAX_INPUT_SECONDS} s limit")
    try:
        with _native_stderr_silenced():
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except PermissionError as exc:
        raise AudioError(f"{path}: permission denied") from exc
    except Exception as exc:  # libsndfile errors are plain RuntimeError/LibsndfileError
        raise AudioError(f"{path}: truncated or corrupt audio ({exc})") from exc
    wav = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if sr != sample_rate and wav.size:
        wav = soxr.resample(wav, sr, sample_rate).astype(np.float32)
    return _finish(path, wav)


def _finish(path: Path, wav: np.ndarray) -> np.ndarray:
    """Check and clip in place (`wav` is a fresh array: an hour of audio is held only once)."""
    if wav.size == 0:
        raise AudioError(f"{path}: no audio samples")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    wav = wav.astype(np.float32, copy=False)
    return np.clip(wav, -1.0, 1.0, out=wav)


# what decoded audio can be written as: extension -> (libsndfile format, subtype)
OUTPUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def output_format(path: str | Path) -> tuple[str, str]:
    """The (format, subtype) an output file's extension asks for; any other extension is refused
    (a file must be what its name says)."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise AudioError(f"{path}: cannot write '{suffix or 'no extension'}' audio; name the output "
                         f"{', '.join(OUTPUT_FORMATS)} (16-bit WAV/FLAC, Ogg Vorbis)")
    return OUTPUT_FORMATS[suffix]


def write_audio(path: str | Path, wav: np.ndarray, sample_rate: int = 16000) -> int:
    """Write mono audio in the format its extension names (.wav, .flac, .ogg); clips to [-1, 1]
    and returns how many samples were clipped."""
    audio_format, subtype = output_format(path)
    return write_wav(path, wav, sample_rate, audio_format=audio_format, subtype=subtype)


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int = 16000, block: int = 1 << 20,
              audio_format: str = "WAV", subtype: str = "PCM_16") -> int:
    """Write 16-bit PCM WAV (or `audio_format`/`subtype`); samples beyond [-1, 1] are clipped
    here and their count returned. Written `block` samples at a time, so a long clip needs no
    full-length copies."""
    wav = np.asarray(wav).reshape(-1)
    clipped = 0
    with sf.SoundFile(str(path), "w", sample_rate, 1, subtype=subtype, format=audio_format) as f:
        for i in range(0, wav.size, block):
            piece = np.nan_to_num(wav[i: i + block].astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
            clipped += int(np.count_nonzero(np.abs(piece) > 1.0))
            f.write(np.clip(piece, -1.0, 1.0))
    return clipped


def rms(wav: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
