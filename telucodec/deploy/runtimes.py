"""The runtime switch: which engine encodes and decodes for a model, PyTorch or its ONNX export.

    runtime = choose_runtime(model, "auto")     # or "torch", "onnx"; None: $TELUCODEC_RUNTIME, else auto
    codes = runtime.encode(wav, sample_rate, kbps)   # Codes, as Codec.encode gives them
    wav = runtime.decode(codes)                      # float32 numpy [num_samples], as Codec.decode
    print(runtime.note)                              # one line: which runtime runs, and why

Both runtimes take caller audio through the one conversion (`formats/pcm.input_samples`), run
long clips in the same windows and write the same `Codes`, so a .tcd written by either is the same
bytes. "auto" (the default everywhere: `--runtime`, `runtime=`) picks `onnx` when onnxruntime is
installed and the model has, or can make once, an export whose codes equal PyTorch's on the parity
clip; anything else runs `torch`, with a note that says why (onnxruntime missing, a model the
runner cannot run: factorized codebooks, the `lufs` amplitude, a model on a GPU; an export that
failed or whose codes differ). Asking for `onnx` where it cannot run falls back to `torch` the
same way, with the note: never an error.

Exports made here are kept: in the model folder's `onnx/` when the model came from a writable
folder outside the package, else in `cache_dir()/onnx/<model_id>/` ($TELUCODEC_CACHE_DIR, else
~/.cache/telucodec). An export that failed leaves `<model_id>.failed` there (its reason), so it is
not retried on every run; delete it to retry.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from telucodec.deploy.export import EXPORT_VERSION, window_frames
from telucodec.errors import TelucodecError
from telucodec.formats.codes import Codes
from telucodec.model.codec import Codec
from telucodec.runtime import RUNTIMES, cache_dir, default_runtime

EXPORT_SUBDIR = "onnx"          # inside a model folder
ONNX_RUNNER_AMPLITUDES = ("none", "rms")  # what deploy/onnx_runtime.py applies in numpy
_SESSIONS: dict[str, Any] = {}  # export folder -> OnnxCodec (its sessions), a few per process


class _ModelFacts:
    """What both runtimes answer from the PyTorch model they were made for."""

    model: Codec

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate


class TorchRuntime(_ModelFacts):
    """The model itself, in PyTorch."""

    name = "torch"

    def __init__(self, model: Codec, note: str = "runtime: torch", beam: int = 1):
        self.model, self.note, self.beam = model, note, beam  # beam: the encoder's search width

    def encode(self, wav: Any, sample_rate: Any = None, kbps: float | None = None) -> Codes:
        return self.model.encode(wav, sample_rate, kbps, self.beam)

    def encode_prefixes(self, wav: Any, sample_rate: Any = None, fit_kbps: float | None = None) -> list[Codes]:
        """`Codec.encode_prefixes`: the codes at every stage count, for rate control (`fit_kbps`:
        the rate it will fit them to)."""
        return self.model.encode_prefixes(wav, sample_rate, None, self.beam, fit_kbps=fit_kbps)

    def decode(self, codes: Codes, check_model: bool = True) -> np.ndarray:
        return self.model.decode(codes, check_model).numpy()

    def worker_factory(self) -> Callable[[], TorchRuntime]:
        """A picklable function that rebuilds this runtime in a worker process (one thread)."""
        return functools.partial(_torch_in_worker, self.model.to_bytes(), self.beam)


class OnnxRuntime(_ModelFacts):
    """The model's ONNX export through onnxruntime (numpy, `deploy/onnx_runtime.py`); the model
    itself only answers what codes to keep for a bitrate and whether codes are its own."""

    name = "onnx"

    def __init__(self, model: Codec, directory: str | Path, note: str = "runtime: onnx", threads: int = 1):
        self.model, self.directory, self.note, self.threads = model, Path(directory), note, threads
        self.codec = _session(self.directory, threads)

    def encode(self, wav: Any, sample_rate: Any = None, kbps: float | None = None) -> Codes:
        n_q = self.model.n_q_for_kbps(kbps)
        clip = self.codec.encode(wav, n_q, self.model.sample_rate if sample_rate is None else sample_rate)
        codes = torch.from_numpy(np.ascontiguousarray(clip.codes, dtype=np.int64))
        return self.model.make_codes(codes, clip.num_samples, [int(v) for v in clip.side])

    def encode_prefixes(self, wav: Any, sample_rate: Any = None, fit_kbps: float | None = None) -> list[Codes]:
        """The codes at every stage count: the graph searches greedily, so they are prefixes of
        one array (`Codes.prefixes`), whatever rate they will be fitted to (`fit_kbps` changes
        only a beam's choice). Beam search runs in PyTorch (`choose_runtime(beam=...)`)."""
        return self.encode(wav, sample_rate, None).prefixes()

    def decode(self, codes: Codes, check_model: bool = True) -> np.ndarray:
        self.model.check_decodable(codes, check_model)
        return self.codec.decode(codes.codes.numpy(), list(codes.side), codes.num_samples, codes.side_kind,
                                 None if codes.uniform else codes.frame_counts)

    def worker_factory(self) -> Callable[[], OnnxRuntime]:
        return functools.partial(_onnx_in_worker, self.model.to_bytes(), str(self.directory), self.note, self.threads)


Runtime = TorchRuntime | OnnxRuntime


def _torch_in_worker(blob: tuple[dict, bytes], beam: int = 1) -> TorchRuntime:
    torch.set_num_threads(1)
    return TorchRuntime(Codec.from_bytes(blob, source="worker"), beam=beam)


def _onnx_in_worker(blob: tuple[dict, bytes], directory: str, note: str, threads: int) -> OnnxRuntime:
    torch.set_num_threads(1)
    return OnnxRuntime(Codec.from_bytes(blob, source="worker"), directory, note, threads)


def _session(directory: Path, threads: int) -> Any:
    from telucodec.deploy.onnx_runtime import OnnxCodec

    key = f"{directory.resolve()}|{threads}"
    if key not in _SESSIONS:
        if len(_SESSIONS) >= 4:
            _SESSIONS.pop(next(iter(_SESSIONS)))
        _SESSIONS[key] = OnnxCodec(directory, threads=threads)
    return _SESSIONS[key]


# ---- can the ONNX runtime run this model? ---------------------------------------------------
def onnx_obstacle(model: Codec, need_export: bool) -> str | None:
    """Why the ONNX runtime cannot run `model` here (None: it can); `need_export`: no export of it
    exists yet, so the exporter's packages are needed too."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install onnxruntime)"
    if model.config.quantizer.codebook_dim > 0:
        return (f"factorized codebooks (quantizer.codebook_dim={model.config.quantizer.codebook_dim}) do not "
                "export: the ONNX search is the plain nearest-entry one")
    if model.amplitude.kind not in ONNX_RUNNER_AMPLITUDES:
        return f"the ONNX runner applies the amplitudes {', '.join(ONNX_RUNNER_AMPLITUDES)}, not '{model.amplitude.kind}'"
    device = next(model.parameters()).device
    if device.type != "cpu":
        return f"the model is on {device.type}; the ONNX runtime runs on the CPU"
    if need_export:
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            return f"exporting needs {' and '.join(missing)} (pip install {' '.join(missing)})"
    return None


def codes_identical(config: dict[str, Any]) -> bool:
    """The export's parity report says its codes equal PyTorch's on the parity clip, every one."""
    parity = config.get("parity", {})
    return bool(parity.get("passed") and parity.get("encoder_codes_identical")
                and parity.get("end_to_end_codes_identical", True))


def usable_export(directory: Path, model: Codec) -> dict[str, Any] | None:
    """The config.json of an export of exactly `model` in `directory`, made by this code's
    exporter (`EXPORT_VERSION`: an older export is made again, never run), that passed its parity
    check and records the windows the model runs long clips in; None otherwise."""
    config = checked_export_config(directory, "config.json", "telucodec-onnx", EXPORT_VERSION, model)
    return config if config is not None and config.get("windows") == window_frames(model) else None


def checked_export_config(directory: Path, config_file: str, fmt: str, version: int, model: Codec) -> dict[str, Any] | None:
    """`directory`'s `config_file` (JSON) when it describes an export in format `fmt` of exactly
    this `version` and `model`, whose parity check passed and whose encoder and decoder files are
    there; None otherwise (missing, unreadable, another model's or version's: made again)."""
    try:
        config = json.loads((directory / config_file).read_text())
    except (OSError, ValueError):
        return None
    if (not isinstance(config, dict) or config.get("format") != fmt or config.get("version") != version
            or config.get("model_id") != model.model_id or not config.get("parity", {}).get("passed")):
        return None
    files = [config.get(part, {}).get("file", "") for part in ("encoder", "decoder")]
    return config if all(f and (directory / f).is_file() for f in files) else None


def model_folder(model_path: str | Path | None) -> Path | None:
    """The model folder `model_path` (what `--model` was given) loads from, if it is one."""
    if model_path is None:
        return None
    from telucodec.model.loading import resolve

    try:
        folder = resolve(model_path)
    except TelucodecError:
        return None
    return folder if folder.is_dir() and (folder / "model.safetensors").is_file() else None


def export_places(model: Codec, model_path: str | Path | None) -> tuple[list[Path], Path]:
    """(folders an export of `model` may already be in, the folder a new one is written to)."""
    from telucodec.model.loading import PRETRAINED_DIR

    cached = cache_dir() / "onnx" / model.model_id
    folder = model_folder(model_path)
    if folder is None:
        return [cached], cached
    inside = folder / EXPORT_SUBDIR
    in_package = PRETRAINED_DIR.resolve() in folder.resolve().parents
    ours = not inside.exists() or is_export(inside)  # never write over a folder that is not an export
    writable = not in_package and ours and os.access(folder, os.W_OK)
    return [inside, cached], inside if writable else cached


def synthetic_parity_clip(sample_rate: int, seconds: float = 4.0) -> np.ndarray:
    """A fixed speech-like signal (voiced harmonics under a syllable envelope, plus noise) for the
    parity check where no example clip is installed."""
    rng = np.random.default_rng(1234)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)
    x = 0.1 * voiced * envelope + 0.01 * rng.standard_normal(t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def make_export(model: Codec, target: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export `model` into `target` (written beside it, then renamed into place: a crash or a
    second process never leaves half an export there). Raises TelucodecError saying why it failed."""
    from telucodec.deploy.export import export_onnx

    if log is not None:
        log(f"exporting the model to ONNX for the onnx runtime, once: {target}")
    clip = runtime_parity_clip(model)
    return write_export_folder(target, lambda tmp: export_onnx(model, tmp, clip),
                               lambda folder: usable_export(folder, model), "config.json")


def runtime_parity_clip(model: Codec) -> Path | np.ndarray:
    """The clip an export made by a runtime switch checks parity on: the first example clip, or
    where examples/ is not installed a synthetic speech-like one."""
    from telucodec.deploy.export import default_parity_clip

    clip = default_parity_clip()
    return clip if clip is not None else synthetic_parity_clip(model.sample_rate)


def write_export_folder(target: Path, write: Callable[[Path], Any], usable: Callable[[Path], dict[str, Any] | None],
                        config_file: str) -> dict[str, Any]:
    """Run `write(tmp)` into a folder beside `target`, then rename it into place (an export of the
    folder's old weights there is replaced; one that another process just put there and that is
    `usable` is kept). Returns the folder's `config_file` (JSON); raises TelucodecError with the
    exporter's first line when `write` fails, leaving nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
    except Exception as exc:  # whatever the exporter raises for a model it cannot trace
        shutil.rmtree(tmp, ignore_errors=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TelucodecError(f"ONNX export failed: {first[:200]}") from exc
    config = json.loads((tmp / config_file).read_text())
    try:
        os.rename(tmp, target)
    except OSError:
        if usable(target) is not None:  # another process put one there first: keep it
            shutil.rmtree(tmp, ignore_errors=True)
            return json.loads((target / config_file).read_text())
        stale = target.parent / f".{target.name}.stale-{os.getpid()}"  # an export of the folder's old weights
        os.rename(target, stale)
        os.rename(tmp, target)
        shutil.rmtree(stale, ignore_errors=True)
    return config


def make_once(make: Callable[[], dict[str, Any]], failed: Path) -> tuple[dict[str, Any], str] | str:
    """(`make()`'s config, ", made in N s"), or why no export can be had (a str): the failure
    recorded in `failed` by an earlier try, or this try's, then recorded there so that later
    runs do not try again (delete the file to retry)."""
    if failed.is_file():
        return f"{failed.read_text().strip()} (earlier; delete {failed} to try again)"
    started = time.monotonic()
    try:
        config = make()
    except TelucodecError as exc:
        try:
            failed.parent.mkdir(parents=True, exist_ok=True)
            failed.write_text(f"{exc}\n")
        except OSError:
            pass  # a read-only cache: the export is tried again next time
        return str(exc)
    return config, f", made in {time.monotonic() - started:.0f} s"


def is_export(directory: Path) -> bool:
    """`directory` holds an export (of any model): `telucodec export-onnx`'s config.json."""
    try:
        return json.loads((directory / "config.json").read_text()).get("format") == "telucodec-onnx"
    except (OSError, ValueError, AttributeError):
        return False


# ---- the choice ------------------------------------------------------------------------------
def check_runtime_name(requested: str | None) -> str:
    """`requested` (None: the default) as one of RUNTIMES; anything else is refused by name."""
    name = default_runtime() if requested is None else str(requested).strip().lower()
    if name not in RUNTIMES:
        raise TelucodecError(f"runtime {requested if requested is not None else name!r}: choose one of "
                             f"{', '.join(RUNTIMES)}")
    return name


def choose_runtime(model: Codec, requested: str | None = None, *, model_path: str | Path | None = None,
                   log: Callable[[str], None] | None = None, threads: int = 1, beam: int = 1) -> Runtime:
    """The runtime that encodes and decodes for `model`: "torch", "onnx" or "auto" (None: the
    default, $TELUCODEC_RUNTIME else auto). `model_path`: what the model was loaded from (an
    export in its folder is used, and a new one is kept there when that is allowed). `log`
    hears a line when an export is being made. `beam` > 1 (an encoder beam search) runs in
    PyTorch. Never raises for an ONNX runtime that cannot run: the result is then TorchRuntime
    with `note` saying why."""
    name = check_runtime_name(requested)
    if name == "torch":
        return TorchRuntime(model, "runtime: torch (requested)", beam)

    def fallback(why: str) -> TorchRuntime:
        asked = "onnx was asked for but " if name == "onnx" else ""
        return TorchRuntime(model, f"runtime: torch ({asked}{why})", beam)

    if beam != 1:
        return fallback(f"the encoder's beam search (beam {beam}) runs in PyTorch only")

    places, target = export_places(model, model_path)
    found = next(((d, c) for d in places if (c := usable_export(d, model)) is not None), None)
    why = onnx_obstacle(model, need_export=found is None)
    if why:
        return fallback(why)
    made = ""
    if found is None:
        made_now = make_once(lambda: make_export(model, target, log), cache_dir() / "onnx" / f"{model.model_id}.failed")
        if isinstance(made_now, str):
            return fallback(made_now)
        found, made = (target, made_now[0]), made_now[1]
    directory, config = found
    if not codes_identical(config):
        parity = config.get("parity", {})
        differs = (f"the ONNX export's codes differ from PyTorch's on {parity.get('encoder_codes_mismatched', '?')} "
                   "codes of the parity clip (float near-ties)")
        if name == "auto":
            return fallback(differs)
        return OnnxRuntime(model, directory, f"runtime: onnx (requested; {differs}: bitstreams may differ "
                                             f"from torch's; export {directory})", threads)
    return OnnxRuntime(model, directory, f"runtime: onnx (onnxruntime, export {directory}{made})", threads)
