"""Reference codecs run the same way for every clip (docs/design.md, "Baselines"): Opus and
Codec2 through their command-line tools, Lyra v2 in-process through ai-edge-litert.

Every runner takes wav [T] float at 16 kHz (`run_baseline` resamples other rates) and returns a
BaselineResult whose audio [T] float32 is aligned to the input and trimmed or zero-padded to
exactly T samples, so the metrics can be computed sample-wise, and whose `bytes` is what the
codec really produced for that clip.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from telucodec.errors import TelucodecError
from telucodec.evaluation.metrics import align, find_delay, shift_to
from telucodec.formats.audio import write_wav

SAMPLE_RATE = 16000
OPUS_KBPS = (6, 8, 12)
CODEC2_MODES = ("3200", "1600", "700C")
LYRA_KBPS = (3.2, 6.0, 9.2)
BASELINE_NAMES = ("opus", "codec2", "lyra")

CODEC2_ALL_MODES = ("3200", "2400", "1600", "1400", "1300", "1200", "700C", "450")
CODEC2_MAX_SHIFT = 1000  # samples at 16 kHz searched either way when aligning Codec2's output
TOOL_TIMEOUT_S = 300.0

LYRA_STAGES = {3.2: 16, 6.0: 30, 9.2: 46}  # residual VQ stages used per bitrate
LYRA_MAX_STAGES = 46
LYRA_FRAME = 320  # samples per frame at 16 kHz: 50 frames/s
LYRA_FILES = ("soundstream_encoder.tflite", "quantizer.tflite", "lyragan.tflite")
LYRA_ENV = "TELUCODEC_LYRA_MODELS"
SHIPPED_LYRA = Path(__file__).resolve().parents[1] / "third_party" / "lyra"  # Apache-2.0, with its LICENSE

_TOOLS = {"opus": ("opusenc", "opusdec"), "codec2": ("c2enc", "c2dec", "sox")}
_INSTALL_HINT = {"opus": "apt-get install opus-tools", "codec2": "apt-get install codec2 sox"}


@dataclass
class BaselineResult:
    """One clip through one baseline at one setting."""

    system: str  # "opus" | "codec2" | "lyra"
    setting: str  # "6", "3200", "700C", "3.2" …
    kbps_nominal: float
    bytes: int  # encoded size of this clip (container/header included where the tool writes one)
    kbps_actual: float  # bytes × 8 / duration / 1000
    audio: np.ndarray  # [T] float32, 16 kHz, aligned to and as long as the input
    delay: int = 0  # samples dropped from the start of the decoded output to align it


# ----------------------------------------------------------------------------------------------
# helpers


def _as_input(wav: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        wav = np.squeeze(wav)
    if wav.ndim != 1 or wav.size == 0:
        raise TelucodecError(f"baselines take one non-empty mono signal [T], got shape {np.shape(wav)}")
    if not np.all(np.isfinite(wav)):
        raise TelucodecError("baselines: input contains NaN or infinite samples")
    return wav


def _kbps(n_bytes: int, n_samples: int) -> float:
    return n_bytes * 8 / (n_samples / SAMPLE_RATE) / 1000


def _run_tool(cmd: list[str], timeout: float = TOOL_TIMEOUT_S) -> None:
    """Run one command; any failure becomes a TelucodecError naming the tool and the problem."""
    tool = cmd[0]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise TelucodecError(f"{tool}: not found on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise TelucodecError(f"{tool}: timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = lines[-1] if lines else "no message"
        raise TelucodecError(f"{tool}: failed with exit code {proc.returncode} ({detail})")


def _read_decoded(path: Path, tool: str) -> np.ndarray:
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise TelucodecError(f"{tool}: wrote no readable audio to {path} ({exc})") from exc
    if sr != SAMPLE_RATE:
        raise TelucodecError(f"{tool}: decoded at {sr} Hz, expected {SAMPLE_RATE} Hz")
    return data.mean(axis=1)


class _Workdir:
    """The caller's folder (files are kept there), or a temporary one removed afterwards."""

    def __init__(self, workdir: str | Path | None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="telucodec_baseline_") if workdir is None else None
        self.path = Path(self._tmp.name if self._tmp else workdir)

    def __enter__(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


# ----------------------------------------------------------------------------------------------
# Opus

OPUS_MAX_SHIFT = 40


def run_opus(wav: np.ndarray, kbps: float, workdir: str | Path | None = None) -> BaselineResult:
    """libopus via opus-tools, 20 ms frames. opusdec removes the pre-skip; a residual lag of a
    sample or two is measured and removed (±OPUS_MAX_SHIFT). Output is decoded as float, so
    opusdec's 16-bit dither does not cost Opus PESQ points. `bytes` is the .opus file (Ogg pages
    included: the real cost of a file on disk)."""
    wav = _as_input(wav)
    tag = f"opus_{kbps:g}k"
    with _Workdir(workdir) as wd:
        src, enc, dec = wd / f"{tag}_in.wav", wd / f"{tag}.opus", wd / f"{tag}_dec.wav"
        write_wav(src, wav, SAMPLE_RATE)
        _run_tool(["opusenc", "--quiet", "--bitrate", f"{kbps:g}", "--framesize", "20", str(src), str(enc)])
        _run_tool(["opusdec", "--quiet", "--float", "--rate", str(SAMPLE_RATE), str(enc), str(dec)])
        audio = _read_decoded(dec, "opusdec")
        n_bytes = enc.stat().st_size
    delay = find_delay(wav, audio[: wav.size + OPUS_MAX_SHIFT], max_shift=OPUS_MAX_SHIFT)
    return BaselineResult("opus", f"{kbps:g}", float(kbps), n_bytes, _kbps(n_bytes, wav.size),
                          shift_to(audio, delay, wav.size).astype(np.float32), delay)


# ----------------------------------------------------------------------------------------------
# Codec2


def codec2_kbps(mode: str) -> float:
    """Nominal rate of a Codec2 mode name: "3200" → 3.2, "700C" → 0.7."""
    return int(mode.rstrip("C")) / 1000


def run_codec2(wav: np.ndarray, mode: str, workdir: str | Path | None = None,
               max_shift: int = CODEC2_MAX_SHIFT, delay: int | None = None) -> BaselineResult:
    """Codec2 (8 kHz) via sox + c2enc/c2dec, back to 16 kHz.

    The output lags the input by a mode-dependent few hundred samples; it is found by
    cross-correlating smoothed envelopes within ±max_shift samples (Codec2 is parametric, its
    output phase does not follow the input, so waveform correlation is meaningless), removed,
    and reported as `delay`. The per-clip estimate scatters by about ±100 samples around the
    codec's fixed lag (measured STOI-best on 10 clips: ~310 for 3200, ~330 for 1600, ~500 for
    700C); pass `delay` to apply a known lag instead, e.g. the median over a test set.
    `bytes` is the .c2 file, including c2enc's 7-byte header. sox runs with -R (seeded
    dither): without it, Codec2's output changes from run to run (peak differences near 1.0,
    delay estimates ±25 samples), as its pitch/voicing analysis reacts to the dither noise.
    """
    wav = _as_input(wav)
    mode = str(mode).upper()
    if mode not in CODEC2_ALL_MODES:
        raise TelucodecError(f"codec2: unknown mode {mode!r}; choose from {', '.join(CODEC2_ALL_MODES)}")
    raw = ["-r", "8000", "-b", "16", "-c", "1", "-e", "signed-integer", "-t", "raw"]
    tag = f"codec2_{mode}"
    with _Workdir(workdir) as wd:
        src, in8k, enc = wd / f"{tag}_in.wav", wd / f"{tag}_in8k.raw", wd / f"{tag}.c2"
        dec8k, dec = wd / f"{tag}_dec8k.raw", wd / f"{tag}_dec.wav"
        write_wav(src, wav, SAMPLE_RATE)
        _run_tool(["sox", "-R", str(src), *raw, str(in8k)])
        _run_tool(["c2enc", mode, str(in8k), str(enc)])
        _run_tool(["c2dec", mode, str(enc), str(dec8k)])
        _run_tool(["sox", "-R", *raw, str(dec8k), "-r", str(SAMPLE_RATE), str(dec)])
        decoded = _read_decoded(dec, "c2dec")
        n_bytes = enc.stat().st_size
    if delay is None:
        audio, delay = align(wav, decoded, max_shift=max_shift, envelope=True)
    else:
        audio = shift_to(decoded, delay, wav.size)
    return BaselineResult("codec2", mode, codec2_kbps(mode), n_bytes, _kbps(n_bytes, wav.size),
                          audio.astype(np.float32), delay)


# ----------------------------------------------------------------------------------------------
# Lyra v2


def lyra_model_dir(model_dir: str | Path | None = None) -> Path:
    """Where the Lyra .tflite files are: the argument (`--lyra_models`), else $TELUCODEC_LYRA_MODELS,
    else the copy shipped in the package (`telucodec/third_party/lyra`, google/lyra v1.3.2)."""
    if model_dir is not None:
        return Path(model_dir)
    if os.environ.get(LYRA_ENV):
        return Path(os.environ[LYRA_ENV])
    return SHIPPED_LYRA


def _lyra_problem(model_dir: Path) -> str | None:
    """Why Lyra cannot run (one line), or None when it can."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        return "ai-edge-litert is not installed (pip install 'telucodec[lyra]')"
    missing = [name for name in LYRA_FILES if not (model_dir / name).is_file()]
    if missing:
        return f"{model_dir}: missing {', '.join(missing)}"
    return None


def _pack_nibbles(indices: np.ndarray) -> bytes:
    """Stage indices (0..15) → bytes, first stage in the most significant bits."""
    if len(indices) % 2:
        indices = np.append(indices, 0)
    pairs = np.asarray(indices, dtype=np.uint8).reshape(-1, 2)
    return ((pairs[:, 0] << 4) | pairs[:, 1]).astype(np.uint8).tobytes()


def _unpack_nibbles(packet: bytes, stages: int) -> np.ndarray:
    """Inverse of _pack_nibbles: [LYRA_MAX_STAGES, 1, 1] int32 with -1 for unused stages."""
    data = np.frombuffer(packet, dtype=np.uint8)
    nibbles = np.stack([data >> 4, data & 0x0F], axis=1).reshape(-1)[:stages]
    out = np.full((LYRA_MAX_STAGES, 1, 1), -1, dtype=np.int32)
    out[:stages, 0, 0] = nibbles
    return out


def lyra_reference(wav: np.ndarray, model_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lyra's own encoder and decoder graphs, frame by frame with fresh interpreters and no
    quantizer: (features [frames, 64], audio decoded from those features [frames * 320]).
    `wav` must be a whole number of 320-sample frames. The reference the PyTorch port is held to."""
    from ai_edge_litert.interpreter import Interpreter

    folder = lyra_model_dir(model_dir)
    frames = np.asarray(wav, dtype=np.float32).reshape(-1, LYRA_FRAME)
    encoder = Interpreter(model_path=str(folder / "soundstream_encoder.tflite"), num_threads=1).get_signature_runner()
    decoder = Interpreter(model_path=str(folder / "lyragan.tflite"), num_threads=1).get_signature_runner()
    features = np.stack([encoder(input_audio=f[None])["output_0"].reshape(-1) for f in frames])
    audio = np.concatenate([decoder(input_audio=v[None, None])["output_0"][0] for v in features])
    return features, audio


def run_lyra(wav: np.ndarray, kbps: float, model_dir: str | Path | None = None) -> BaselineResult:
    """Lyra v2 (SoundStream encoder → residual VQ → LyraGAN decoder), 1 thread, in-process.

    Fresh interpreters per call: encoder and decoder keep streaming state inside the model.
    Each frame's indices really go through a byte packet (4 bits per stage, MSB first) and back,
    so `bytes` = packet bytes × frames, no header. Input is rounded to the int16 grid as the
    Lyra library does. Lyra adds no delay beyond the frame, so nothing is shifted.
    """
    wav = _as_input(wav)
    stages = next((s for k, s in LYRA_STAGES.items() if math.isclose(k, float(kbps))), None)
    if stages is None:
        raise TelucodecError(f"lyra: unsupported bitrate {kbps} kbps; choose from {LYRA_KBPS}")
    folder = lyra_model_dir(model_dir)
    problem = _lyra_problem(folder)
    if problem:
        raise TelucodecError(f"lyra: {problem}")
    from ai_edge_litert.interpreter import Interpreter

    def runner(name: str, signature: str | None = None) -> Callable[..., dict[str, np.ndarray]]:
        try:
            interp = Interpreter(model_path=str(folder / name), num_threads=1)
            return interp.get_signature_runner(signature)
        except Exception as exc:
            raise TelucodecError(f"lyra: cannot load {folder / name} ({exc})") from exc

    encoder, decoder = runner("soundstream_encoder.tflite"), runner("lyragan.tflite")
    quant_encode, quant_decode = runner("quantizer.tflite", "encode"), runner("quantizer.tflite", "decode")

    n_frames = -(-wav.size // LYRA_FRAME)
    padded = np.zeros(n_frames * LYRA_FRAME, dtype=np.float32)
    padded[:wav.size] = np.round(np.clip(wav, -1.0, 32767 / 32768) * 32768) / 32768
    out = np.empty_like(padded)
    n_bytes = 0
    bits_per_frame = 0
    num_q = np.array(stages, dtype=np.int32)
    for f in range(n_frames):
        frame = padded[None, f * LYRA_FRAME:(f + 1) * LYRA_FRAME]  # [1, 320]
        features = encoder(input_audio=frame)["output_0"]  # [1, 1, 64]
        coded = quant_encode(input_frames=features, num_quantizers=num_q)
        indices = coded["output_0"][:stages, 0, 0]  # [46, 1, 1] → used stages
        if f == 0:
            bits_per_frame = int(stages * int(np.asarray(coded["output_1"]).reshape(-1)[0]))
            if bits_per_frame != 4 * stages or np.any(indices < 0) or np.any(indices > 15):
                raise TelucodecError(f"lyra: quantizer gave {bits_per_frame} bits per frame for "
                                     f"{stages} stages; expected 4 bits per stage")
        packet = _pack_nibbles(indices)
        n_bytes += len(packet)
        dequantized = quant_decode(encoding_indices=_unpack_nibbles(packet, stages))["output_0"]
        out[f * LYRA_FRAME:(f + 1) * LYRA_FRAME] = decoder(input_audio=dequantized)["output_0"][0]
    kbps_actual = bits_per_frame * n_frames / (wav.size / SAMPLE_RATE) / 1000
    return BaselineResult("lyra", f"{float(kbps):g}", float(kbps), n_bytes, kbps_actual,
                          out[:wav.size].astype(np.float32))


# ----------------------------------------------------------------------------------------------
# selection


def default_settings(system: str) -> tuple[str, ...]:
    """The settings `telucodec eval` runs for each baseline, as strings."""
    table = {"opus": OPUS_KBPS, "codec2": CODEC2_MODES, "lyra": LYRA_KBPS}
    if system not in table:
        raise TelucodecError(f"unknown baseline {system!r}; choose from {', '.join(BASELINE_NAMES)}")
    return tuple(f"{s:g}" if isinstance(s, float | int) else s for s in table[system])


def available_baselines(names: Iterable[str],
                        lyra_models: str | Path | None = None) -> tuple[list[str], list[str]]:
    """(names that can run here, one warning line per name skipped for a missing tool or model).

    An unknown name is a user error and raises TelucodecError.
    """
    available: list[str] = []
    warnings: list[str] = []
    for name in names:
        name = name.strip().lower()
        if name not in BASELINE_NAMES:
            raise TelucodecError(f"unknown baseline {name!r}; choose from {', '.join(BASELINE_NAMES)}")
        if name == "lyra":
            problem = _lyra_problem(lyra_model_dir(lyra_models))
        else:
            missing = [tool for tool in _TOOLS[name] if shutil.which(tool) is None]
            problem = (f"{', '.join(missing)} not found on PATH ({_INSTALL_HINT[name]})"
                       if missing else None)
        if problem:
            warnings.append(f"baseline {name} skipped: {problem}")
        elif name not in available:
            available.append(name)
    return available, warnings


def run_baseline(system: str, setting: str | float, wav: np.ndarray, workdir: str | Path | None = None,
                 lyra_models: str | Path | None = None, sample_rate: int = SAMPLE_RATE) -> BaselineResult:
    """Dispatch by name: ("opus", "6"), ("codec2", "700C"), ("lyra", "3.2").

    `wav` is at `sample_rate` (the evaluated model's); the baselines run at their own 16 kHz, so
    another rate is resampled to it and the result back (audio and delay at `sample_rate`)."""
    if sample_rate == SAMPLE_RATE:
        return _run_at_16k(system, setting, wav, workdir, lyra_models)
    wav = _as_input(wav)
    res = _run_at_16k(system, setting, soxr.resample(wav, sample_rate, SAMPLE_RATE), workdir, lyra_models)
    audio = shift_to(soxr.resample(res.audio, SAMPLE_RATE, sample_rate), 0, wav.size)
    return replace(res, audio=audio.astype(np.float32), delay=round(res.delay * sample_rate / SAMPLE_RATE))


def _run_at_16k(system: str, setting: str | float, wav: np.ndarray, workdir: str | Path | None,
                lyra_models: str | Path | None) -> BaselineResult:
    if system == "opus":
        return run_opus(wav, float(setting), workdir)
    if system == "codec2":
        return run_codec2(wav, str(setting), workdir)
    if system == "lyra":
        return run_lyra(wav, float(setting), lyra_models)
    raise TelucodecError(f"unknown baseline {system!r}; choose from {', '.join(BASELINE_NAMES)}")
