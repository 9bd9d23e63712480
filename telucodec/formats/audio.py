"""Audio in and out: any file soundfile (or ffmpeg, for mp3 it cannot read) knows, any rate,
to float32 mono at the codec's rate in [-1, 1]; and back to 16-bit WAV (or FLAC, Ogg Vorbis) with
a clip count."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from telucodec.errors import AudioError, StorageError
from telucodec.formats.os_errors import read_error

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
MAX_INPUT_SAMPLE_RATE = 384_000
MIN_INPUT_SAMPLE_RATE = 4_000
MAX_INPUT_SECONDS = 4 * 3600  # refuse longer inputs by default (resource limit)


def _read_with_ffmpeg(label: str | Path, sample_rate: int, data: bytes | None = None) -> np.ndarray:
    """Decode with ffmpeg: the file `label`, or `data` (held in memory) through a pipe."""
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{label}: soundfile cannot read it and ffmpeg is not installed")
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", "pipe:0" if data is not None else str(label),
           "-t", str(MAX_INPUT_SECONDS + 1), "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"]
    if data is not None:
        cmd.remove("-nostdin")
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        raise AudioError(f"{label}: ffmpeg timed out decoding it") from exc
    except OSError as exc:  # no pipe or process could be made: out of descriptors or memory
        raise StorageError(f"{label}: cannot start ffmpeg to decode it ({exc.strerror or exc})") from exc
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{label}: not decodable audio ({msg[-1] if msg else 'ffmpeg failed'})")
    wav = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if wav.size > MAX_INPUT_SECONDS * sample_rate:
        raise AudioError(f"{label}: longer than the {MAX_INPUT_SECONDS} s limit")
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
    if "\x00" in str(path):  # a manifest may name anything; the OS takes no NUL in a name
        raise AudioError(f"{str(path)!r}: not a usable file name (it holds a NUL character)")
    try:
        if not path.exists():
            loop = path.is_symlink()
            raise AudioError(f"{path}: {'broken symlink or symlink loop' if loop else 'no such file'}")
        if not path.is_file():
            raise AudioError(f"{path}: not a regular file")
        with path.open("rb") as f:
            first = f.read(1)
    except OSError as exc:  # its own permissions skip the clip; too many open files stops the run
        raise read_error(exc, path) from exc
    if not first:
        raise AudioError(f"{path}: empty file (0 bytes)")


def load_audio(path: str | Path, sample_rate: int = 16000, start: int = 0, frames: int = -1) -> np.ndarray:
    """Read `path` as float32 mono at `sample_rate`, clipped to [-1, 1]. Raises AudioError.
    `start`/`frames` (samples at `sample_rate`) read only that part: straight from the file when
    it is already at `sample_rate` (a crop of a long recording), else cut from the whole."""
    path = Path(path)
    _check_readable(path)
    return _decode(lambda: os.fsencode(path), path, path.suffix, sample_rate, start, frames)


def load_audio_bytes(data: bytes, name: str, sample_rate: int = 16000, start: int = 0,
                     frames: int = -1) -> np.ndarray:
    """`load_audio` for a file held in memory (a tar shard's member, a Parquet cell); `name`
    labels errors and its suffix picks the ffmpeg fallback, as a file name would."""
    if not data:
        raise AudioError(f"{name}: empty file (0 bytes)")
    return _decode(lambda: io.BytesIO(data), name, os.path.splitext(name)[1], sample_rate, start, frames,
                   data)


FFMPEG_SUFFIXES = (".mp3", ".ogg", ".opus", ".m4a")  # what ffmpeg decodes when soundfile cannot
EXACT_SEEK_FORMATS = ("WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64")


def audio_seconds(path: str | Path) -> float:
    """The duration a file's header states, without decoding an ordinary file (ffmpeg decodes
    what soundfile cannot place; `_check_body` reads the end and scans float samples). Raises
    AudioError, as `load_audio` would for the file: no samples, cut short, NaN or infinity."""
    path = Path(path)
    _check_readable(path)
    return _probe(lambda: os.fsencode(path), path, path.suffix, lambda: None)


def audio_seconds_in(open_source: Callable[[], Any], name: str, read_all: Callable[[], bytes]) -> float:
    """`audio_seconds` for audio inside an archive: `open_source()` is a seekable view of it (only
    its header is read), `read_all()` its bytes for the ffmpeg fallback."""
    return _probe(open_source, name, os.path.splitext(name)[1], read_all)


def _probe(open_source: Callable[[], Any], label: str | Path, suffix: str,
           read_all: Callable[[], bytes | None]) -> float:
    info = _header(open_source, label)
    if info is None:
        if suffix.lower() in FFMPEG_SUFFIXES:
            return _read_with_ffmpeg(label, 16000, read_all()).size / 16000
        raise AudioError(f"{label}: not a readable audio file (format not recognised or header corrupt)")
    if info.frames == 0:
        raise AudioError(f"{label}: no audio samples")
    _check_body(open_source, label, info)
    return info.frames / info.samplerate


FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # the only sample formats that can hold NaN or infinity
SCAN_BLOCK = 1 << 16


def _check_body(open_source: Callable[[], Any], label: str | Path, info: Any) -> None:
    """What the header cannot vouch for, checked without decoding the whole of an ordinary file:
    the last samples of a seekable format must be readable (a FLAC cut short fails here), and a
    float-sample file is scanned block by block for NaN or infinite samples (an integer or
    compressed file cannot hold them). Raises AudioError with `load_audio`'s reasons."""
    try:
        with _native_stderr_silenced(), sf.SoundFile(open_source()) as f:
            if info.subtype in FLOAT_SUBTYPES:
                for block in f.blocks(SCAN_BLOCK, dtype="float32"):
                    if not np.all(np.isfinite(block)):
                        raise AudioError(f"{label}: contains NaN or infinite samples")
            elif info.format in EXACT_SEEK_FORMATS:
                f.seek(max(0, info.frames - 1))
                f.read(1, dtype="float32")
    except AudioError:
        raise
    except OSError as exc:  # ours (os.dup), not libsndfile's
        raise read_error(exc, label) from exc
    except Exception as exc:  # libsndfile errors are plain RuntimeError/LibsndfileError
        _raise_system_fault(exc, label)
        raise AudioError(f"{label}: truncated or corrupt audio ({exc})") from exc


SF_ERR_SYSTEM = 2  # libsndfile's code for a failed system call (it keeps no errno)


def _raise_system_fault(exc: Exception, label: str | Path) -> None:
    """libsndfile opens a file by path itself and reports any failed system call as "System error"
    (too many open files and a vanished file alike): ask the OS what is wrong, so that the machine's
    fault stops the run instead of counting as a corrupt clip."""
    if getattr(exc, "code", None) != SF_ERR_SYSTEM or not isinstance(label, Path):
        return
    try:
        with open(label, "rb") as f:
            f.read(1)
    except OSError as os_exc:
        raise read_error(os_exc, label) from exc
    raise StorageError(f"{label}: the system failed reading it ({exc})") from exc


def _header(open_source: Callable[[], Any], label: str | Path) -> Any:
    """soundfile's view of the header (None: it cannot place the format), rate and length checked."""
    try:
        with _native_stderr_silenced():
            info = sf.info(open_source())
    except OSError as exc:  # ours (os.dup), not libsndfile's
        raise read_error(exc, label) from exc
    except Exception as exc:
        _raise_system_fault(exc, label)
        return None
    if not MIN_INPUT_SAMPLE_RATE <= info.samplerate <= MAX_INPUT_SAMPLE_RATE:
        raise AudioError(f"{label}: sample rate {info.samplerate} Hz outside the accepted "
                         f"{MIN_INPUT_SAMPLE_RATE}-{MAX_INPUT_SAMPLE_RATE} Hz")
    if info.frames > MAX_INPUT_SECONDS * info.samplerate:
        raise AudioError(f"{label}: {info.frames / info.samplerate:.0f} s is longer than the "
                         f"{MAX_INPUT_SECONDS} s limit")
    return info


def _decode(open_source: Callable[[], Any], label: str | Path, suffix: str, sample_rate: int, start: int,
            frames: int, data: bytes | None = None) -> np.ndarray:
    info = _header(open_source, label)
    if info is None:
        if suffix.lower() in FFMPEG_SUFFIXES:
            wav = _read_with_ffmpeg(label, sample_rate, data)
            return _finish(label, _part(wav, start, frames))
        raise AudioError(f"{label}: not a readable audio file (format not recognised or header corrupt)")
    # a part is read straight from the file only where seeking is sample-exact, so it equals
    # the same part cut from the whole decode
    direct = info.samplerate == sample_rate and (start > 0 or frames >= 0) and info.format in EXACT_SEEK_FORMATS
    try:
        with _native_stderr_silenced():
            samples, sr = sf.read(open_source(), dtype="float32", always_2d=True,
                                **({"start": start, "frames": frames} if direct else {}))
    except OSError as exc:  # ours (os.dup), not libsndfile's
        raise read_error(exc, label) from exc
    except Exception as exc:  # libsndfile errors are plain RuntimeError/LibsndfileError
        _raise_system_fault(exc, label)
        raise AudioError(f"{label}: truncated or corrupt audio ({exc})") from exc
    wav = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    if sr != sample_rate and wav.size:
        wav = soxr.resample(wav, sr, sample_rate).astype(np.float32)
    return _finish(label, wav if direct else _part(wav, start, frames))


def _part(wav: np.ndarray, start: int, frames: int) -> np.ndarray:
    if start <= 0 and frames < 0:
        return wav
    return wav[start: start + frames if frames >= 0 else None].copy()


def _finish(path: str | Path, wav: np.ndarray) -> np.ndarray:
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
