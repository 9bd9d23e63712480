"""A training run's data: an index of the training clips (nothing decoded before the first step),
a small validation set in memory, and the list of clips that could not be used.

The index comes from `formats/dataset.index_audio` (durations from the manifest, a JSON
sidecar or the file header). Validation holds out whole speakers as before, but only its first
`val_max_clips` clips (spread over those speakers) are decoded, on rank 0 alone. Clips found
unusable while training are gathered from every rank at the end of each epoch and appended to
skipped.tsv by rank 0; a resumed run keeps the list it had.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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

    def train_seconds(self) -> float:
        return self.train.total_seconds()


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
    return TrainingData(train, val, len(val_rows), sorted({speakers[k] for k in val_rows if speakers[k]}), skipped)


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
