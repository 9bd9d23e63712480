"""Datasets on disk: find audio under a folder, a manifest or archives, load it, split off validation.

A dataset is a folder (searched recursively for .wav/.flac/.mp3/.ogg, symlink loops ignored), a
manifest (.tsv/.csv with a `path` column, optional `speaker` and `seconds`; a folder that holds a
`manifest.tsv` uses it), WebDataset tar shards or Parquet files (`formats/archives.py`: a file, a
folder of them, or a brace pattern). `index_audio` lists it without decoding anything (durations
from the manifest, a JSON sidecar or the file header, whose end is read and whose float samples
are scanned: `audio.audio_seconds`); training keeps that index and decodes
crops as it goes. Files that cannot be used are skipped, counted and listed with the reason: a
corrupt clip never stops a run. The validation split is deterministic: by speaker when speakers
are known, else by a hash of the file name.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TypeVar

import numpy as np

from telucodec.errors import AudioError, StorageError, TelucodecError
from telucodec.formats.archives import find_archives, index_archives, member_bytes
from telucodec.formats.audio import AUDIO_SUFFIXES, audio_seconds, load_audio, load_audio_bytes
from telucodec.formats.audio_index import DURATION_KEYS, AudioIndex, AudioItem
from telucodec.formats.os_errors import FILE_ERRNOS, PERMISSION_ERRNOS, raise_if_machine_fault

__all__ = ["AudioItem", "AudioIndex", "Clip", "LoadedData", "discover", "index_audio", "load_clip", "load_item",
           "load_dataset", "split_validation", "held_out", "spread", "write_skipped", "item_id"]

MIN_SECONDS = 0.25
T = TypeVar("T")
SILENCE_RMS = 1e-4  # about -80 dBFS


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


def _unlisted(exc: OSError) -> None:
    """os.walk's error for a folder it cannot list: a folder gone meanwhile (or a link loop) is left
    out; any other (permission, too many open files, an I/O error) stops with its name, since the
    clips in it would otherwise silently go missing from the data."""
    if exc.errno in FILE_ERRNOS:
        return
    name = exc.filename if exc.filename is not None else "a folder of the data"
    if exc.errno in PERMISSION_ERRNOS:
        raise StorageError(f"{name}: permission denied (cannot list the folder)") from exc
    raise StorageError(f"{name}: cannot list the folder ({exc.strerror or exc})") from exc


def _walk_audio(root: Path) -> list[Path]:
    found, seen_dirs = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=_unlisted):
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


def _manifest_rows(path: Path) -> list[dict[str, str]]:
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter=delimiter))
    except OSError as exc:
        raise_if_machine_fault(exc, path)
        raise TelucodecError(f"{path}: unreadable manifest ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TelucodecError(f"{path}: unreadable manifest ({exc})") from exc
    if not rows or "path" not in rows[0]:
        raise TelucodecError(f"{path}: manifest needs a header with a 'path' column")
    return rows


def _read_manifest(path: Path) -> list[AudioItem]:
    base = path.parent
    column = next((k for k in DURATION_KEYS if k in _manifest_rows(path)[0]), None)
    items = []
    for r in _manifest_rows(path):
        if not r.get("path"):
            continue
        try:
            seconds = float(r[column]) if column and r.get(column) else None
        except (TypeError, ValueError, OverflowError):
            seconds = None
        if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
            seconds = None  # an impossible stated length: the header is read instead
        items.append(AudioItem(base / r["path"], (r.get("speaker") or "").strip(), seconds))
    return items


def index_audio(data_dir: str | Path, durations: bool = False) -> AudioIndex:
    """Every audio item under a folder, in a manifest or in archives, without decoding any. With
    `durations`, an item whose length no manifest or sidecar states has its header read; an
    unreadable header or a clip shorter than MIN_SECONDS goes to `index.skipped`."""
    try:
        has_manifest = Path(data_dir).is_dir() and (Path(data_dir) / "manifest.tsv").is_file()
        archives = None if has_manifest else find_archives(data_dir)
    except OSError as exc:  # listing the folder failed
        raise_if_machine_fault(exc, exc.filename or data_dir)
        raise TelucodecError(f"{exc.filename or data_dir}: cannot read ({exc.strerror or exc})") from exc
    if archives is not None:
        items, skipped = index_archives(*archives, durations)
    else:
        root = Path(data_dir)
        if root.is_file():
            items = _read_manifest(root)
        elif not root.is_dir():
            raise TelucodecError(f"{root}: no such folder, manifest or shard")
        elif (root / "manifest.tsv").is_file():
            items = _read_manifest(root / "manifest.tsv")
        else:
            items = [AudioItem(p) for p in _walk_audio(root)]
        skipped = []
    return AudioIndex(_with_durations(items, skipped) if durations else items, skipped)


def _with_durations(items: list[AudioItem], skipped: list[tuple[str, str]]) -> list[AudioItem]:
    kept = []
    for item in items:
        if item.seconds is None:
            try:
                item.seconds = audio_seconds(item.path)
            except AudioError as exc:
                skipped.append((item.name, _reason(exc)))
                continue
        if item.seconds < MIN_SECONDS:
            skipped.append((item.name, f"too short ({item.seconds:.2f} s < {MIN_SECONDS} s)"))
            continue
        kept.append(item)
    return kept


def discover(data_dir: str | Path) -> list[AudioItem]:
    """Every audio item under a folder, in a manifest or in archives (no audio is read here)."""
    return list(index_audio(data_dir))


def item_id(item: AudioItem, root: Path) -> str:
    """The utterance id: an archive member's key, else the path relative to the dataset root
    without its suffix."""
    if item.member:
        return item.key
    return PurePath(os.path.relpath(item.path, root)).with_suffix("").as_posix()


def _reason(exc: AudioError) -> str:
    return str(exc).split(": ", 1)[-1]


def load_item(item: AudioItem, sample_rate: int, start: int = 0, frames: int = -1) -> np.ndarray:
    """An item's audio (or samples [start, start + frames) of it), from a file or an archive."""
    if item.member:
        return load_audio_bytes(member_bytes(item), item.name, sample_rate, start, frames)
    return load_audio(item.path, sample_rate, start, frames)


def load_clip(item: AudioItem, sample_rate: int) -> Clip:
    """Load one item or raise AudioError with the reason it cannot be used for training."""
    wav = load_item(item, sample_rate)
    if wav.shape[0] < MIN_SECONDS * sample_rate:
        raise AudioError(f"{item.name}: too short ({wav.shape[0] / sample_rate:.2f} s < {MIN_SECONDS} s)")
    if float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) < SILENCE_RMS:
        raise AudioError(f"{item.name}: silent (RMS below -80 dBFS)")
    return Clip(item.path, item.speaker, wav)


def _hash_fraction(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def held_out(speakers: Sequence[str], names: Callable[[], Sequence[str]], val_fraction: float,
             val_speakers: tuple[str, ...] = ()) -> np.ndarray:
    """Which items validation holds out (a bool mask), from each item's speaker and, only when
    speakers cannot decide, its name (`names()`: unique per item, hashed by its last part).
    With speakers: named `val_speakers`, else (3+ speakers) whole speakers in hash order until
    `val_fraction` of the files is reached (at least one speaker, never all). Otherwise: the
    `val_fraction` of files with the lowest name hash (at least one file)."""
    n = len(speakers)
    if n < 2 or val_fraction <= 0 and not val_speakers:
        return np.zeros(n, dtype=bool)
    sizes = Counter(speakers)
    named = sorted(s for s in sizes if s)
    if val_speakers:
        held = set(val_speakers)
    elif len(named) >= 3 and "" not in sizes:
        target = val_fraction * n
        held, count = set(), 0
        for spk in sorted(named, key=_hash_fraction):
            if count >= target or len(held) == len(named) - 1:
                break
            if held and count + sizes[spk] > 2 * target:
                continue  # this speaker would overshoot the fraction; try the next one
            held.add(spk)
            count += sizes[spk]
    else:
        all_names = names()
        ranked = sorted(range(n), key=lambda i: _hash_fraction(PurePath(all_names[i]).name))
        chosen = {all_names[i] for i in ranked[: max(1, int(round(val_fraction * n)))]}
        return np.array([name in chosen for name in all_names], dtype=bool)
    return np.array([s in held for s in speakers], dtype=bool)


def split_validation(items: list[AudioItem], val_fraction: float,
                     val_speakers: tuple[str, ...] = ()) -> tuple[list[AudioItem], list[AudioItem]]:
    """`held_out` on a list of items: (train, validation)."""
    mask = held_out([i.speaker for i in items], lambda: [i.member or str(i.path) for i in items],
                    val_fraction, val_speakers)
    return [i for i, m in zip(items, mask) if not m], [i for i, m in zip(items, mask) if m]


def load_dataset(data_dir: str | Path, sample_rate: int, val_fraction: float,
                 val_speakers: tuple[str, ...] = (), log=print) -> LoadedData:
    """Every usable clip decoded into memory (small tools and the overfit check; training
    streams instead: `train/data.py`)."""
    index = index_audio(data_dir)
    if not len(index):
        raise TelucodecError(f"{data_dir}: no audio files (.wav, .flac, .mp3, .ogg) found")
    items, clips, skipped = [], [], list(index.skipped)
    for item in index:
        try:
            clips.append(load_clip(item, sample_rate))
            items.append(item)
        except AudioError as exc:
            skipped.append((item.name, _reason(exc)))
    if not clips:
        raise TelucodecError(f"{data_dir}: no usable audio ({len(skipped)} files skipped, e.g. {skipped[0][0]}: {skipped[0][1]})")
    if skipped:
        log(f"skipped {len(skipped)} of {len(index) + len(index.skipped)} files (listed in skipped.tsv)")
    mask = held_out([i.speaker for i in items], lambda: [i.member or str(i.path) for i in items],
                    val_fraction, val_speakers)
    train = [c for c, m in zip(clips, mask) if not m]
    val = spread([c for c, m in zip(clips, mask) if m], lambda c: c.speaker) or train[:1]
    return LoadedData(train, val, skipped)


def spread(items: list[T], key: Callable[[T], str]) -> list[T]:
    """Items reordered round-robin over `key` groups, so the first N cover as many groups (speakers)
    as possible; order inside a group kept. Used for validation clips, --max_clips and reports."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    ordered: list[T] = []
    queues = [deque(g) for g in groups.values()]
    while any(queues):
        for q in queues:
            if q:
                ordered.append(q.popleft())
    return ordered


def _printable(text: str) -> str:
    """A name as UTF-8 text; bytes that are not UTF-8 (a Linux file name may hold any) as \\xNN."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("path\treason\n")
        for p, reason in skipped:
            f.write(f"{_printable(p)}\t{_printable(reason)}\n")
