"""Random training crops that a resumed run sees again exactly, cut from clips in memory or
decoded from disk as they are drawn (in DataLoader workers: memory stays flat at any corpus size).

Crop i of epoch e depends only on (seed, e, i): the draw picks a clip with probability
proportional to its length, then a start, gain and noise. A clip that turns out unusable when
first read (corrupt, silent, gone) is drawn past with the same generator, which moves the same
whether this process already knew the clip was unusable or finds it now, so the crop is still a
function of (seed, e, i) and the data alone: not of which process read what before, of the
number of DataLoader workers, nor of a resume. A find is reported back with the batch and listed
in skipped.tsv; a checkpoint keeps the list (`data.bad_clip_state`) so a resumed run neither
reads those clips again nor loses a find of the epoch it stopped in. Step s of rank r of a DDP
run of W processes takes crops r, r + W, ... of block s: the ranks' shares are disjoint and
each decodes only its own.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from telucodec.errors import AudioError, TelucodecError
from telucodec.formats.audio_index import AudioIndex
from telucodec.formats.dataset import Clip, load_clip, load_item

LONG_SECONDS = 60.0  # a longer clip is never decoded whole for a crop: only the crop is read
MAX_DRAWS = 1000     # unusable clips drawn in a row before the data is declared unusable

Found = list[tuple[int, str, str]]  # (clip number, name, reason) of clips found unusable


class ClipSource(Protocol):
    def __len__(self) -> int: ...
    def lengths(self) -> np.ndarray: ...            # samples at the model's rate, for the draw
    def name(self, k: int) -> str: ...
    def read(self, k: int, start: int, frames: int) -> np.ndarray: ...  # samples [start, start + frames); AudioError


class InMemoryClips:
    """Clips decoded up front (`formats/dataset.load_dataset`): small tools and the overfit check."""

    def __init__(self, clips: list[Clip]):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def lengths(self) -> np.ndarray:
        return np.array([c.wav.shape[0] for c in self.clips], dtype=np.int64)

    def name(self, k: int) -> str:
        return str(self.clips[k].path)

    def read(self, k: int, start: int, frames: int) -> np.ndarray:
        return self.clips[k].wav[start: start + frames]


class StreamingClips:
    """The items of an index, read when drawn. A clip's first read in a process decodes it whole
    and checks it as `load_clip` does (silent, too short, corrupt); later reads take only the
    crop (a seek where the format allows one). Clips over LONG_SECONDS are only ever read by part."""

    def __init__(self, index: AudioIndex, sample_rate: int):
        self.index, self.sample_rate = index, sample_rate
        self.checked = np.zeros(len(index), dtype=bool)  # this process's: decoded whole once

    def __len__(self) -> int:
        return len(self.index)

    def lengths(self) -> np.ndarray:
        return np.round(np.nan_to_num(self.index.seconds) * self.sample_rate).astype(np.int64)

    def name(self, k: int) -> str:
        return self.index.name(k)

    def read(self, k: int, start: int, frames: int) -> np.ndarray:
        if self.checked[k] or self.index.seconds[k] > LONG_SECONDS:
            return load_item(self.index[k], self.sample_rate, start, frames)
        wav = load_clip(self.index[k], self.sample_rate).wav
        self.checked[k] = True
        return wav[start: start + frames]


class CropDataset(torch.utils.data.Dataset):
    """`length` random crops of `segment` samples from `clips` (decoded clips or a ClipSource)."""

    def __init__(self, clips: list[Clip] | ClipSource, segment: int, length: int, seed: int,
                 gain_db: float = 0.0, noise_snr_db: float = 0.0):
        self.source: ClipSource = InMemoryClips(clips) if isinstance(clips, list) else clips
        self.segment, self.length, self.seed = segment, length, seed
        self.gain_db, self.noise_snr_db = gain_db, noise_snr_db
        self.sizes = self.source.lengths()
        weights = np.maximum(self.sizes, 1).astype(np.float64)
        self.cumulative = np.cumsum(weights / weights.sum())
        self.epoch = 0
        self.known_bad: set[int] = set()  # clips found unusable (this process's view)
        self.found: Found = []            # ... since the last batch was handed out

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _start(self, k: int, rng: np.random.Generator) -> int:
        """The start is drawn from the clip's listed length (a clip the listing overstates ends
        in zeros), so it does not depend on whether this process has decoded the clip yet."""
        size = int(self.sizes[k])
        return int(rng.integers(0, size - self.segment + 1)) if size > self.segment else 0

    def _crop(self, k: int, start: int) -> np.ndarray:
        piece = self.source.read(k, start, self.segment)
        crop = np.zeros(self.segment, dtype=np.float32)
        crop[: piece.shape[0]] = piece
        return crop

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        for _ in range(MAX_DRAWS):
            k = min(int(np.searchsorted(self.cumulative, rng.random())), len(self.cumulative) - 1)
            start = self._start(k, rng)  # drawn for a clip known to be unusable too: the same draws follow
            if k in self.known_bad:
                continue
            try:
                crop = self._crop(k, start)
                break
            except AudioError as exc:
                self.known_bad.add(k)
                self.found.append((k, self.source.name(k), str(exc).split(": ", 1)[-1]))
        else:
            raise TelucodecError(f"no usable audio: the last {MAX_DRAWS} clips drawn were all unusable "
                                 f"(e.g. {self.found[-1][1]}: {self.found[-1][2]})" if self.found else
                                 "no usable audio left to draw from")
        if self.gain_db > 0:
            crop *= 10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20)
        if self.noise_snr_db > 0:
            level = np.sqrt(np.mean(crop ** 2) + 1e-12) * 10 ** (-rng.uniform(self.noise_snr_db, self.noise_snr_db + 20) / 20)
            crop += (level * rng.standard_normal(self.segment)).astype(np.float32)
        return torch.from_numpy(np.clip(crop, -1.0, 1.0)).unsqueeze(0)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor | None, Found, str]:
        """One batch as the DataLoader fetches it: (crops [B, 1, segment], clips found unusable
        while cutting them, an error that stops training or "")."""
        try:
            batch, error = torch.stack([self[i] for i in indices]), ""
        except TelucodecError as exc:
            batch, error = None, str(exc)
        found, self.found = self.found, []
        return batch, found, error


class RankBatches(torch.utils.data.Sampler):
    """The crop numbers of this rank's steps `start`.. `steps` - 1 of an epoch: step s takes
    rank + world * j for j in [s * batch, (s + 1) * batch)."""

    def __init__(self, length: int, rank: int, world: int, batch_size: int, steps: int, start: int = 0):
        self.own, self.world = range(rank, length, world), world
        self.batch_size, self.steps, self.start = batch_size, steps, start

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        b = self.batch_size
        for s in range(self.start, self.steps):
            yield list(self.own[s * b: (s + 1) * b])


def default_workers(world: int = 1) -> int:
    """DataLoader workers per training process: the cores this process may use, shared among
    the processes of the machine, less one for the training step itself (at most 4)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores // max(world, 1) - 1))


def _as_is(batch: tuple) -> tuple:
    return batch


def crop_batches(dataset: CropDataset, sampler: RankBatches, workers: int | None = None,
                 found: Found | None = None) -> Iterator[torch.Tensor]:
    """The crops of each step, cut in `workers` DataLoader processes (0: here; None: the default
    for this machine); clips found unusable on the way are appended to `found`. A daemonic
    process (a job run inside a multiprocessing pool or sandbox) may not start workers: there
    the crops are always cut here."""
    if multiprocessing.current_process().daemon:
        workers = 0
    elif workers is None:
        workers = default_workers(sampler.world)
    # its own generator: a loader seeds its workers from the global one, which a resumed run must
    # find exactly as the uninterrupted run left it (crops use no torch randomness)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=_as_is, num_workers=workers,
                                         prefetch_factor=4 if workers else None, generator=torch.Generator())
    for batch, new, error in loader:
        if error:
            raise TelucodecError(error)
        if found is not None:
            found += new
        yield batch
