"""What an eval run does: the systems (telucodec at each bitrate, each baseline at its default
settings, or the decoded files of --reference) and the clips, loaded once."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from telucodec.errors import AudioError, TelucodecError
from telucodec.evaluation import baselines as bl
from telucodec.formats.audio import AUDIO_SUFFIXES, load_audio
from telucodec.formats.dataset import AudioItem, discover, load_clip, spread

if TYPE_CHECKING:
    from telucodec.model.codec import Codec

REFERENCE_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a")
COMPRESSED_SUFFIXES = (".ogg", ".opus", ".mp3", ".m4a")  # their file size is a real bitrate


@dataclass(frozen=True)
class System:
    """One column of the comparison: a codec at one setting."""

    name: str  # "telucodec" | "opus" | "codec2" | "lyra" | "reference"
    setting: str  # "1.5", "6", "700C", "3.2", or the --reference folder name
    kbps_nominal: float | None

    @property
    def label(self) -> str:
        return f"{self.name} {self.setting}"


@dataclass
class ClipTask:
    """One loaded clip and what to do with it (picklable: it travels to worker processes)."""

    name: str  # path relative to the data folder, with "/"
    wav: np.ndarray  # [T] float32 at sample_rate
    speaker: str = ""  # the manifest's speaker column, else the clip's subfolder ("" at the top level)
    audio_dir: str | None = None  # write decoded WAVs here (report clips only)
    decoded: np.ndarray | None = None  # --reference: the decoded file [T'] float32
    decoded_bytes: int | None = None  # --reference: size of a compressed decoded file
    sample_rate: int = 16000  # of wav and decoded: the model's rate (16 kHz without a model)



def parse_list(text: str | Iterable[Any] | None) -> list[str]:
    """"1.5,3,6" or ["1.5", 3] → ["1.5", "3"]; "", "none" or None → []."""
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else [str(p) for p in text]
    parts = [p.strip() for p in parts if p.strip()]
    return [] if [p.lower() for p in parts] == ["none"] else parts


def plan_systems(model: Codec | None, kbps: str | Iterable[Any], baselines: str | Iterable[str],
                 lyra_models: str | Path | None = None) -> tuple[list[System], list[str]]:
    """(systems to run, one warning line per setting or baseline that cannot run here)."""
    systems: list[System] = []
    warnings: list[str] = []
    seen_n_q: set[int] = set()
    values = []
    for text in parse_list(kbps):
        try:
            values.append(float(text))
        except ValueError as exc:
            raise TelucodecError(f"--kbps: {text!r} is not a number") from exc
        if not math.isfinite(values[-1]) or values[-1] <= 0:
            raise TelucodecError(f"--kbps: {text!r} must be a positive number")
    for value in sorted(values):
        try:
            n_q = model.n_q_for_kbps(value)
        except TelucodecError as exc:  # below one codebook
            warnings.append(f"telucodec {value:g} kbps skipped: {exc}")
            continue
        capped = model.kbps_cap_note(value)  # the one rule, said as encode and compress() say it
        if n_q in seen_n_q:
            warnings.append(f"{capped}: skipped, a lower setting already runs it" if capped else
                            f"telucodec {value:g} kbps skipped: same n_q ({n_q}) as a lower setting")
        else:
            if capped:
                warnings.append(capped)
            seen_n_q.add(n_q)
            # the setting is a file budget (formats/rate.py), capped at the model's top rate
            systems.append(System("telucodec", f"{value:g}", min(value, model.nominal_kbps())))
    names, missing = bl.available_baselines(parse_list(baselines), lyra_models)
    warnings += missing
    for name in names:
        for setting in bl.default_settings(name):
            nominal = bl.codec2_kbps(setting) if name == "codec2" else float(setting)
            systems.append(System(name, setting, nominal))
    return systems, warnings



def _clip_name(item: AudioItem, root: Path) -> str:
    if item.member:  # inside a tar shard or a Parquet file: its name there
        return item.member
    try:
        return item.path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return item.path.name


def _speaker(item: AudioItem, root: Path) -> str:
    """The manifest's speaker, else the clip's subfolder; "" for a clip sitting directly in the
    data folder (a flat folder of clips says nothing about speakers)."""
    if item.speaker:
        return item.speaker
    if item.member:
        return PurePosixPath(item.member).parent.name
    try:
        inside = item.path.parent.resolve() != root.resolve()
    except OSError:
        inside = True
    return item.path.parent.name if inside else ""


def _find_decoded(reference: Path, name: str) -> Path | None:
    rel = Path(name)
    for suffix in dict.fromkeys((rel.suffix.lower(), *REFERENCE_SUFFIXES)):
        candidate = reference / rel.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def discover_clips(data_dir: Path, out: Path) -> list[AudioItem]:
    """The audio items of a folder or manifest (none of them under --out); none is an error."""
    items = [i for i in discover(data_dir) if not i.path.resolve().is_relative_to(out.resolve())]
    if not items:
        raise TelucodecError(f"{data_dir}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found")
    return items


def load_tasks(data_dir: Path, items: list[AudioItem], reference: Path | None, max_clips: int | None,
               log: Callable[[str], None], sample_rate: int) -> tuple[list[ClipTask], list[tuple[str, str]]]:
    """Load the clips (and --reference files) at `sample_rate` in discovery order; unusable ones
    are skipped with a reason: unreadable, or refused by training's own check (`load_clip`:
    silent or too short), whose level the RMS ratio, SNR and SI-SDR would divide by and whose
    scores would swamp every mean. With max_clips, clips are taken round-robin over speakers until
    enough load."""
    root = data_dir.parent if data_dir.is_file() else data_dir
    position = {id(item): n for n, item in enumerate(items)}
    tasks: list[tuple[int, ClipTask]] = []
    skipped: list[tuple[str, str]] = []
    for item in spread(items, lambda i: _speaker(i, root)) if max_clips is not None else items:
        if max_clips is not None and len(tasks) >= max_clips:
            break
        name = _clip_name(item, root)
        try:
            task = ClipTask(name, load_clip(item, sample_rate).wav, speaker=_speaker(item, root),
                            sample_rate=sample_rate)
            if reference is not None:
                found = _find_decoded(reference, name)
                if found is None:
                    raise AudioError(f"{reference / name}: no decoded file of this name in --reference")
                task.decoded = load_audio(found, sample_rate)
                if found.suffix.lower() in COMPRESSED_SUFFIXES:
                    task.decoded_bytes = found.stat().st_size
        except AudioError as exc:
            skipped.append((item.name, str(exc).split(": ", 1)[-1]))
            log(f"skipped {name}: {skipped[-1][1]}")
            continue
        tasks.append((position[id(item)], task))
    if not tasks:
        raise TelucodecError(f"{data_dir}: no usable clips ({len(skipped)} skipped, e.g. "
                             f"{skipped[0][0]}: {skipped[0][1]})")
    return [task for _, task in sorted(tasks, key=lambda pair: pair[0])], skipped
