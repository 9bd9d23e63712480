"""The audio items of a data set in flat arrays: what training keeps instead of the audio.

One item is a file, a member of a WebDataset tar shard, or a row of a Parquet file. The index
holds no Python object per item (names in one byte buffer, numbers in numpy arrays), so a
million items cost tens of MB, and DataLoader workers forked from the training process share
those pages instead of copying them as they touch reference counts. `index[i]` gives the item
as an `AudioItem` when one is needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DURATION_KEYS = ("seconds", "duration")  # a manifest column, a JSON sidecar key or a Parquet column


@dataclass
class AudioItem:
    path: Path                      # the audio file; for an archive member, the archive (.tar, .parquet)
    speaker: str = ""
    seconds: float | None = None    # from the manifest, a sidecar or the file header; None: not read
    member: str = ""                # archive members: the name inside the archive ("spk/clip.flac")
    key: str = ""                   # archive members: the utterance id
    where: tuple[int, int] = (0, 0)  # tar: (data offset, size); Parquet: (row group, row in it)

    @property
    def name(self) -> str:
        """How errors and skipped.tsv name it: the file, or ARCHIVE:MEMBER."""
        return f"{self.path}:{self.member}" if self.member else str(self.path)


class StringTable:
    """Many strings in one UTF-8 buffer plus offsets. A file name's undecodable bytes (which Python
    holds as surrogates) are kept as they were, so the name still opens the file."""

    def __init__(self, strings: Iterable[str] = ()):
        encoded = [s.encode("utf-8", "surrogateescape") for s in strings]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self.offsets[1:])
        self.data = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.data[self.offsets[i]: self.offsets[i + 1]].tobytes().decode("utf-8", "surrogateescape")

    def select(self, indices: np.ndarray) -> StringTable:
        return StringTable(self[int(i)] for i in indices)


class AudioIndex:
    """Items in arrays; `containers` are the archives (empty for plain files), `skipped` the
    (name, reason) pairs found unusable while indexing."""

    def __init__(self, items: Iterable[AudioItem] = (), skipped: list[tuple[str, str]] | None = None):
        containers: dict[str, int] = {}
        speakers: dict[str, int] = {}
        names, keys, container, speaker, seconds, where = [], [], [], [], [], []
        for item in items:
            archived = bool(item.member)
            names.append(item.member if archived else str(item.path))
            keys.append(item.key)
            container.append(containers.setdefault(str(item.path), len(containers)) if archived else -1)
            speaker.append(speakers.setdefault(item.speaker, len(speakers)))
            seconds.append(np.nan if item.seconds is None else item.seconds)
            where.append(item.where)
        self.containers = list(containers)
        self.speakers = list(speakers)
        self.names, self.keys = StringTable(names), StringTable(keys)
        self.container = np.array(container, dtype=np.int32)
        self.speaker = np.array(speaker, dtype=np.int32)
        self.seconds = np.array(seconds, dtype=np.float64)
        self.where = np.array(where, dtype=np.int64).reshape(-1, 2)
        self.skipped = list(skipped or [])

    def __len__(self) -> int:
        return len(self.container)

    def __getitem__(self, i: int) -> AudioItem:
        c, secs = int(self.container[i]), float(self.seconds[i])
        return AudioItem(Path(self.containers[c] if c >= 0 else self.names[i]), self.speakers[self.speaker[i]],
                         None if np.isnan(secs) else secs, self.names[i] if c >= 0 else "", self.keys[i],
                         (int(self.where[i, 0]), int(self.where[i, 1])))

    def __iter__(self) -> Iterator[AudioItem]:
        return (self[i] for i in range(len(self)))

    def name(self, i: int) -> str:
        c = int(self.container[i])
        return f"{self.containers[c]}:{self.names[i]}" if c >= 0 else self.names[i]

    def speaker_of(self, i: int) -> str:
        return self.speakers[self.speaker[i]]

    def select(self, indices: np.ndarray | list[int]) -> AudioIndex:
        """The items at `indices`, in that order (the same container and speaker tables)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = AudioIndex()
        out.containers, out.speakers = self.containers, self.speakers
        out.names, out.keys = self.names.select(indices), self.keys.select(indices)
        out.container, out.speaker = self.container[indices], self.speaker[indices]
        out.seconds, out.where = self.seconds[indices], self.where[indices]
        return out

    def total_seconds(self) -> float:
        return float(np.nansum(self.seconds))
