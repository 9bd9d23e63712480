"""Datasets on disk: find audio under a folder or a manifest, load it, split off validation.

A dataset is a folder (searched recursively for .wav/.flac/.mp3/.ogg, symlink loops ignored) or
a manifest (.tsv/.csv with a `path` column, optional `speaker`; a folder that holds a
`manifest.tsv` uses it). Files that cannot be used are skipped, counted and listed with the
reason — a corrupt clip never stops a run. The validation split is deterministic: by speaker
when speakers are known, else by a hash of the file name.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from telucodec.errors import AudioError, TelucodecError
from telucodec.formats.audio import AUDIO_SUFFIXES, load_audio

MIN_SECONDS = 0.25
T = TypeVar("T")
SILENCE_RMS = 1e-4  # about -80 dBFS


@dataclass
class AudioItem:
    path: Path
    speaker: str = ""


@dataclass
class Clip:
    path: Path
    speaker: str
    wav: np.ndarray  # float32 [T] at the codec's sample rate


@dataclass
class LoadedData:
    train: list[Clip]
    val: list[Clip]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def train_seconds(self, sample_rate: int) -> float:
        return sum(c.wav.shape[0] for c in self.train) / sample_rate


def _walk_audio(root: Path) -> list[Path]:
    found, seen_dirs = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop or a second link to the same folder
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(AUDIO_SUFFIXES):
                found.append(Path(dirpath) / name)
    return found


def _read_manifest(path: Path) -> list[AudioItem]:
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TelucodecError(f"{path}: unreadable manifest ({exc})") from exc
    if not rows or "path" not in rows[0]:
        raise TelucodecError(f"{path}: manifest needs a header with a 'path' column")
    base = path.parent
    return [AudioItem(base / r["path"], (r.get("speaker") or "").strip()) for r in rows if r.get("path")]


def discover(data_dir: str | Path) -> list[AudioItem]:
    """Every audio item under a folder or listed in a manifest (no audio is read here)."""
    root = Path(data_dir)
    if root.is_file():
        return _read_manifest(root)
    if not root.is_dir():
        raise TelucodecError(f"{root}: no such folder or manifest")
    if (root / "manifest.tsv").is_file():
        return _read_manifest(root / "manifest.tsv")
    return [AudioItem(p) for p in _walk_audio(root)]


def load_clip(item: AudioItem, sample_rate: int) -> Clip:
    """Load one item or raise AudioError with the reason it cannot be used for training."""
    wav = load_audio(item.path, sample_rate)
    if wav.shape[0] < MIN_SECONDS * sample_rate:
        raise AudioError(f"{item.path}: too short ({wav.shape[0] / sample_rate:.2f} s < {MIN_SECONDS} s)")
    if float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) < SILENCE_RMS:
        raise AudioError(f"{item.path}: silent (RMS below -80 dBFS)")
    return Clip(item.path, item.speaker, wav)


def _hash_fraction(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_validation(items: list[AudioItem], val_fraction: float, val_speakers: tuple[str, ...] = ()) -> tuple[list[AudioItem], list[AudioItem]]:
    """Deterministic split. With speakers: named `val_speakers`, else (3+ speakers) whole speakers
    in hash order until `val_fraction` of the files is reached (at least one speaker, never all).
    Otherwise: the `val_fraction` of files with the lowest name hash (at least one file)."""
    if len(items) < 2 or val_fraction <= 0 and not val_speakers:
        return items, []
    speakers = sorted({i.speaker for i in items if i.speaker})
    if val_speakers:
        held = set(val_speakers)
    elif len(speakers) >= 3 and all(i.speaker for i in items):
        target = val_fraction * len(items)
        held, count = set(), 0
        for spk in sorted(speakers, key=_hash_fraction):
            size = sum(1 for i in items if i.speaker == spk)
            if count >= target or len(held) == len(speakers) - 1:
                break
            if held and count + size > 2 * target:
                continue  # this speaker would overshoot the fraction; try the next one
            held.add(spk)
            count += size
    else:
        ranked = sorted(items, key=lambda i: _hash_fraction(i.path.name))
        n_val = max(1, int(round(val_fraction * len(items))))
        val_names = {i.path for i in ranked[:n_val]}
        return [i for i in items if i.path not in val_names], [i for i in items if i.path in val_names]
    return [i for i in items if i.speaker not in held], [i for i in items if i.speaker in held]


def load_dataset(data_dir: str | Path, sample_rate: int, val_fraction: float,
                 val_speakers: tuple[str, ...] = (), log=print) -> LoadedData:
    items = discover(data_dir)
    if not items:
        raise TelucodecError(f"{data_dir}: no audio files (.wav, .flac, .mp3, .ogg) found")
    clips, skipped = [], []
    for item in items:
        try:
            clips.append(load_clip(item, sample_rate))
        except AudioError as exc:
            skipped.append((str(item.path), str(exc).split(": ", 1)[-1]))
    if not clips:
        raise TelucodecError(f"{data_dir}: no usable audio ({len(skipped)} files skipped, e.g. {skipped[0][0]}: {skipped[0][1]})")
    if skipped:
        log(f"skipped {len(skipped)} of {len(items)} files (listed in skipped.tsv)")
    usable = [AudioItem(c.path, c.speaker) for c in clips]
    train_items, val_items = split_validation(usable, val_fraction, val_speakers)
    by_path = {c.path: c for c in clips}
    train = [by_path[i.path] for i in train_items]
    val = spread([by_path[i.path] for i in val_items], lambda c: c.speaker) or train[:1]
    return LoadedData(train, val, skipped)


def spread(items: list[T], key: Callable[[T], str]) -> list[T]:
    """Items reordered round-robin over `key` groups, so the first N cover as many groups (speakers)
    as possible; order inside a group kept. Used for validation clips, --max_clips and reports."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    ordered: list[T] = []
    queues = list(groups.values())
    while any(queues):
        for q in queues:
            if q:
                ordered.append(q.pop(0))
    return ordered


def write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    with path.open("w") as f:
        f.write("path\treason\n")
        for p, reason in skipped:
            f.write(f"{p}\t{reason}\n")
