"""A training run's data: an index of the training clips (nothing decoded before the first step),
a small validation set in memory, and the list of clips that could not be used.

The index comes from `formats/dataset.index_audio` (durations from the manifest, a JSON
sidecar or the file header). Validation holds out whole speakers as before, but only its first
`val_max_clips` clips (spread over those speakers) are decoded, on rank 0 alone. Clips found
unusable while training are gathered from every rank at the end of each epoch and appended to
skipped.tsv by rank 0; a resumed run keeps the list it had, and the clips its crops had found
unusable (`bad_clip_state`, kept in the checkpoint).

`data_identity` describes the data for `--resume` to recognise: every item's name (relative to
--data_dir, so a moved folder is the same data), speaker and length, hashed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist

from telucodec.config import CodecConfig
from telucodec.errors import AudioError, TelucodecError
from telucodec.formats.audio_index import AudioIndex
from telucodec.formats.dataset import Clip, held_out, index_audio, load_clip, load_item, spread, write_skipped
from telucodec.train.crops import LONG_SECONDS, CropDataset, Found, StreamingClips


@dataclass
class TrainingData:
    train: AudioIndex                 # the training clips (len() = how many)
    val: list[Clip]                   # decoded validation clips (rank 0; [] elsewhere)
    held_out: int                     # clips held out for validation (only `val` of them decoded)
    val_speakers: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason), as in skipped.tsv
    found: Found = field(default_factory=list)                    # this epoch's finds, not yet reported
    identity: dict[str, Any] = field(default_factory=dict)        # `data_identity` of the whole index

    def train_seconds(self) -> float:
        return self.train.total_seconds()


def data_identity(index: AudioIndex, data_dir: str | Path) -> dict[str, Any]:
    """{"dir", "fingerprint", "clips", "seconds"}: the fingerprint hashes each item's name (a file
    relative to --data_dir, or to the manifest's or shards' folder; an archive member as
    ARCHIVE:MEMBER), speaker and length in index order: what the crops are drawn from. Another
    path to the same files is the same data; a file added, removed, renamed or of another length
    is not."""
    root = Path(data_dir)
    prefix = str(root if root.is_dir() else root.parent).rstrip(os.sep) + os.sep

    def relative(path: str) -> str:
        return path[len(prefix):] if path.startswith(prefix) else path

    containers = [relative(c) for c in index.containers]
    digest = hashlib.sha256()
    for i in range(len(index)):
        c = int(index.container[i])
        name = f"{containers[c]}:{index.names[i]}" if c >= 0 else relative(index.names[i])
        digest.update(f"{name}\t{index.speaker_of(i)}\t{float(index.seconds[i])!r}\n".encode())
    return {"dir": str(data_dir), "fingerprint": digest.hexdigest()[:16], "clips": len(index),
            "seconds": index.total_seconds()}


def describe_identity(identity: dict[str, Any]) -> str:
    """"14 clips, 3.2 min, fingerprint 0123456789abcdef, in DIR"."""
    seconds = float(identity.get("seconds", 0.0))
    size = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    return f"{identity.get('clips')} clips, {size}, fingerprint {identity.get('fingerprint')}, in {identity.get('dir')}"


def _load_val(index: AudioIndex, order: list[int], sample_rate: int, max_clips: int, max_seconds: float,
              skipped: list[tuple[str, str]]) -> list[Clip]:
    clips: list[Clip] = []
    frames = int(max_seconds * sample_rate)
    for k in order:
        if len(clips) >= max_clips:
            break
        item = index[k]
        try:
            if (item.seconds or 0.0) > LONG_SECONDS:  # read the part validation uses, not the hour
                wav = load_item(item, sample_rate, 0, frames)
            else:
                wav = load_clip(item, sample_rate).wav[:frames].copy()
        except AudioError as exc:
            skipped.append((item.name, str(exc).split(": ", 1)[-1]))
            continue
        clips.append(Clip(item.path, item.speaker, wav))
    return clips


def prepare_training_data(data_dir: str | Path, config: CodecConfig, load_val: bool,
                          log: Callable[[str], None] = print) -> TrainingData:
    """Index `data_dir`, hold out validation speakers, decode the validation clips (`load_val`)."""
    tc, sample_rate, val_speakers = config.train, config.model.sample_rate, config.train.val_speakers
    index = index_audio(data_dir, durations=True)
    identity = data_identity(index, data_dir)
    skipped = list(index.skipped)
    if not len(index):
        if skipped:
            raise TelucodecError(f"{data_dir}: no usable audio ({len(skipped)} files skipped, e.g. "
                                 f"{skipped[0][0]}: {skipped[0][1]})")
        raise TelucodecError(f"{data_dir}: no audio files (.wav, .flac, .mp3, .ogg) found")
    if skipped:
        log(f"skipped {len(skipped)} of {len(index) + len(skipped)} files (listed in skipped.tsv)")
    speakers = [index.speakers[c] for c in index.speaker]
    mask = held_out(speakers, lambda: [index.name(i) for i in range(len(index))], tc.val_fraction, val_speakers)
    if mask.all():
        raise TelucodecError(f"{data_dir}: every clip belongs to a validation speaker "
                             f"({', '.join(sorted(set(val_speakers)))}); nothing is left to train on")
    train = index.select(np.flatnonzero(~mask))
    val_rows = np.flatnonzero(mask).tolist()
    val = []
    if load_val:
        val = _load_val(index, spread(val_rows, lambda k: speakers[k]), sample_rate, tc.val_max_clips,
                        tc.val_max_seconds, skipped)
        if not val:  # none held out, or none of them usable: one training clip, as before
            val = _load_val(index, np.flatnonzero(~mask).tolist(), sample_rate, 1, tc.val_max_seconds, skipped)
        if not val:
            raise TelucodecError(f"{data_dir}: no usable validation clip ({skipped[-1][0]}: {skipped[-1][1]})")
    return TrainingData(train, val, len(val_rows), sorted({speakers[k] for k in val_rows if speakers[k]}), skipped,
                        identity=identity)


def training_crops(data: TrainingData, config: CodecConfig, length: int) -> CropDataset:
    """`length` crops of the training clips per epoch, decoded as they are drawn."""
    tc, sample_rate = config.train, config.model.sample_rate
    return CropDataset(StreamingClips(data.train, sample_rate), int(tc.segment_seconds * sample_rate), length,
                       tc.seed, tc.augment_gain_db, tc.augment_noise_snr_db)


def start_skipped_list(data: TrainingData, path: Path, resuming: bool) -> None:
    """Write skipped.tsv (rank 0): this start's finds, after those of the run being resumed."""
    if resuming and path.is_file():
        old = [tuple(line.split("\t", 1)) for line in path.read_text().splitlines()[1:] if "\t" in line]
        have = {name for name, _ in data.skipped}
        data.skipped = [(n, r) for n, r in old if n not in have] + data.skipped
    write_skipped(path, data.skipped)


def report_found(data: TrainingData, dataset: CropDataset, world: int, path: Path | None,
                 log: Callable[[str], None]) -> None:
    """End of an epoch: gather every rank's finds, tell the dataset (its next workers skip them)
    and, on rank 0 (`path` given), append the new ones to skipped.tsv."""
    found, data.found = data.found, []
    if world > 1:
        gathered: list[Found] = [[] for _ in range(world)]
        dist.all_gather_object(gathered, found)
        found = [f for part in gathered for f in part]
    dataset.known_bad.update(k for k, _, _ in found)
    have = {name for name, _ in data.skipped}
    new = []
    for _, name, reason in found:
        if name not in have:
            have.add(name)
            new.append((name, reason))
    if not new or path is None:
        return
    data.skipped += new
    with path.open("a") as f:
        f.writelines(f"{name}\t{reason}\n" for name, reason in new)
    log(f"{len(new)} clip(s) found unusable while reading this epoch: skipped, listed in {path}")


def bad_clip_state(data: TrainingData, dataset: CropDataset, world: int) -> dict[str, list]:
    """For a checkpoint: {"known": names of every clip found unusable so far, "found": [name,
    reason] of this epoch's finds not yet in skipped.tsv}. Under DDP (`world` > 1) a collective:
    every rank calls it (the finds since the epoch began are each rank's own)."""
    found = list(data.found)
    if world > 1:
        gathered: list[Found] = [[] for _ in range(world)]
        dist.all_gather_object(gathered, found)
        found = [f for part in gathered for f in part]
    known = {data.train.name(k) for k in dataset.known_bad} | {name for _, name, _ in found}
    return {"known": sorted(known), "found": [[name, reason] for _, name, reason in found]}


def restore_bad_clips(data: TrainingData, dataset: CropDataset, saved: dict[str, list] | None,
                      is_main: bool) -> None:
    """A resumed run knows the clips its checkpoint found unusable (its crops skip them unread)
    and, on rank 0, reports the unreported ones at the end of the epoch as the run would have.
    Clips not in this data (accepted other data) are left out."""
    if not saved or not (saved.get("known") or saved.get("found")):
        return
    by_name = {data.train.name(i): i for i in range(len(data.train))}
    dataset.known_bad.update(by_name[name] for name in saved.get("known", []) if name in by_name)
    if is_main:
        data.found += [(by_name[name], name, reason) for name, reason in saved.get("found", []) if name in by_name]
