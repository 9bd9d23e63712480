"""Audio in archives: WebDataset tar shards and Parquet files as Hugging Face `datasets` writes them.

Tar shards: members `KEY.EXT` are grouped by KEY (webdataset's rule: the name up to the first dot
of its last part); a sample is its audio member (.flac, .wav, .mp3, .ogg, .opus) plus an optional
`KEY.json` with `speaker`, `seconds` and `id`. The index keeps each audio member's data offset
and size, so reading one at random is a seek and a read: shards must be uncompressed `.tar`.

Parquet: an `audio` column of struct<bytes, path> (the `datasets` Audio feature) or of plain
bytes; optional `speaker` and `seconds`/`duration` columns. A row is read through its row group;
each process keeps the last row group it read (sequential readers hit it, random crops mostly do
not: pack Parquet into shards with `telucodec shard` for training).

Audio bytes are decoded by `formats/audio.py` like any file.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from telucodec.errors import AudioError, TelucodecError
from telucodec.formats.audio import audio_seconds_in
from telucodec.formats.audio_index import DURATION_KEYS, AudioItem

TAR, PARQUET = ".tar", ".parquet"
AUDIO_EXTS = ("flac", "wav", "mp3", "ogg", "opus")
Skipped = list[tuple[str, str]]


# ---- which archives ----------------------------------------------------------------------------
def require(package: str, needed_by: str) -> None:
    """One line naming the extra to install when an optional package is missing."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise TelucodecError(f"{needed_by} needs the '{package}' package: pip install 'telucodec[corpus]'")


def find_archives(spec: str | Path) -> tuple[str, list[Path]] | None:
    """(".tar" | ".parquet", files) when `spec` names archives: such a file, a brace pattern of
    them (`shards/train-{000000..000099}.tar`), or a folder holding .tar files at its top or
    .parquet files up to two folders down (`data/train-00000-of-00004.parquet`, as the Hub lays
    them out); None for anything else (a folder of audio, a manifest)."""
    text = str(spec)
    if "{" in text:
        require("webdataset", text)
        from webdataset.shardlists import expand_urls

        files = [Path(u) for u in expand_urls(text)]
        if any("://" in str(f) or str(f).startswith("pipe:") for f in files):
            raise TelucodecError(f"{text}: only local shard files are read (copy remote shards first)")
        kinds = {f.suffix.lower() for f in files}
        if len(kinds) != 1 or not kinds <= {TAR, PARQUET}:
            raise TelucodecError(f"{text}: a pattern must name .tar or .parquet files")
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise TelucodecError(f"{missing[0]}: no such shard ({len(missing)} of {len(files)} missing)")
        return _needing(text, kinds.pop(), files)
    root = Path(spec)
    if root.is_file():
        suffix = root.suffix.lower()
        return _needing(text, suffix, [root]) if suffix in (TAR, PARQUET) else None
    if not root.is_dir():
        return None
    tars = sorted(p for p in root.iterdir() if p.suffix.lower() == TAR and p.is_file())
    parquets = sorted(p for depth in ("", "*/", "*/*/") for p in root.glob(f"{depth}*{PARQUET}") if p.is_file())
    if tars and parquets:
        raise TelucodecError(f"{root}: holds both .tar shards and .parquet files; point --data_dir at one of them")
    if tars:
        return _needing(text, TAR, tars)
    return _needing(text, PARQUET, parquets) if parquets else None


def _needing(spec: str, kind: str, files: list[Path]) -> tuple[str, list[Path]]:
    require("webdataset" if kind == TAR else "pyarrow", f"{spec} ({'tar shards' if kind == TAR else 'Parquet'})")
    return kind, files


def index_archives(kind: str, files: list[Path], durations: bool) -> tuple[list[AudioItem], Skipped]:
    items: list[AudioItem] = []
    skipped: Skipped = []
    for path in files:
        found, bad = (index_tar if kind == TAR else index_parquet)(path, durations)
        items += found
        skipped += bad
    return items, skipped


def _sidecar_seconds(meta: dict[str, Any]) -> float | None:
    for key in DURATION_KEYS:
        if meta.get(key) is not None:
            try:
                return float(meta[key])
            except (TypeError, ValueError):
                return None
    return None


# ---- tar shards --------------------------------------------------------------------------------
class _Segment(io.RawIOBase):
    """A read-only, seekable view of bytes [offset, offset + size) of a file (one tar member),
    so soundfile reads a member's header without the rest."""

    def __init__(self, f: Any, offset: int, size: int):
        self.f, self.offset, self.size, self.pos = f, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = max(0, min(self.size, (0, self.pos, self.size)[whence] + pos))
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self.pos)
        self.f.seek(self.offset + self.pos)
        data = self.f.read(n)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _tar_members(path: Path, skipped: Skipped) -> dict[str, dict[str, tarfile.TarInfo]]:
    """KEY -> {ext: member}, from the headers alone (tarfile seeks over the data)."""
    from webdataset.tariterators import base_plus_ext

    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with tarfile.open(path, "r:") as tf:
            while True:
                try:
                    info = tf.next()
                except tarfile.TarError as exc:
                    skipped.append((str(path), f"damaged tar shard after {len(samples)} samples ({exc})"))
                    break
                if info is None:
                    break
                key, ext = base_plus_ext(info.name) if info.isfile() else (None, None)
                if key is not None:
                    samples.setdefault(key, {})[ext.lower()] = info
    except (tarfile.TarError, OSError) as exc:
        skipped.append((str(path), f"not an uncompressed tar shard ({exc})"))
    return samples


def index_tar(path: Path, durations: bool) -> tuple[list[AudioItem], Skipped]:
    """The audio samples of one shard; with `durations`, a sample whose JSON gives no seconds has
    its audio header read (not its audio)."""
    skipped: Skipped = []
    items = []
    samples = _tar_members(path, skipped)
    with open(path, "rb") if samples else io.BytesIO() as f:
        for key, members in samples.items():
            ext = next((e for e in members if e.rsplit(".", 1)[-1] in AUDIO_EXTS), None)
            if ext is None:
                continue
            audio = members[ext]
            name = f"{path}:{audio.name}"
            meta: dict[str, Any] = {}
            if "json" in members:
                f.seek(members["json"].offset_data)
                try:
                    meta = json.loads(f.read(members["json"].size))
                    assert isinstance(meta, dict)
                except (ValueError, AssertionError):
                    skipped.append((name, f"unreadable JSON sidecar {members['json'].name}"))
                    continue
            item = AudioItem(path, str(meta.get("speaker") or ""), _sidecar_seconds(meta), audio.name,
                             str(meta.get("id") or key), (audio.offset_data, audio.size))
            if item.seconds is None and durations:
                try:
                    item.seconds = audio_seconds_in(lambda a=audio: _Segment(f, a.offset_data, a.size),
                                                    name, lambda i=item: member_bytes(i))
                except AudioError as exc:
                    skipped.append((name, str(exc).removeprefix(f"{name}: ")))
                    continue
            items.append(item)
    return items, skipped


# ---- Parquet -----------------------------------------------------------------------------------
def _parquet_layout(pf: Any, path: Path) -> tuple[str, str | None, str | None, str | None]:
    """(column with the audio bytes, column with its file name, speaker column, seconds column)."""
    import pyarrow as pa

    schema = pf.schema_arrow
    if "audio" not in schema.names:
        raise TelucodecError(f"{path}: no 'audio' column (expected the datasets Audio layout: struct<bytes, path>)")
    kind = schema.field("audio").type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        audio, name = "audio.bytes", "audio.path" if kind.get_field_index("path") >= 0 else None
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        audio, name = "audio", None
    else:
        raise TelucodecError(f"{path}: column 'audio' is {kind}, not bytes or struct<bytes, path>")
    speaker = "speaker" if "speaker" in schema.names else None
    seconds = next((k for k in DURATION_KEYS if k in schema.names), None)
    return audio, name, speaker, seconds


def _column(table: Any, dotted: str) -> list[Any]:
    column = table.column(dotted.split(".")[0]).combine_chunks()
    return (column.field(dotted.split(".")[1]) if "." in dotted else column).to_pylist()


def index_parquet(path: Path, durations: bool) -> tuple[list[AudioItem], Skipped]:
    """The rows of one Parquet file; with `durations` and no seconds column, each row's audio
    header is read (the audio column is read for that, the audio is not decoded)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for a damaged or foreign file
        return [], [(str(path), f"not a readable Parquet file ({exc})")]
    audio, name_col, speaker_col, seconds_col = _parquet_layout(pf, path)
    items: list[AudioItem] = []
    skipped: Skipped = []
    row_base = 0
    for group in range(pf.num_row_groups):
        rows = pf.metadata.row_group(group).num_rows
        columns = [c for c in (name_col, speaker_col, seconds_col) if c]
        table = pf.read_row_group(group, columns=columns) if columns else None
        names = _column(table, name_col) if name_col else [None] * rows
        speakers = _column(table, speaker_col) if speaker_col else [None] * rows
        seconds = _column(table, seconds_col) if seconds_col else [None] * rows
        blobs = _column(pf.read_row_group(group, columns=[audio]), audio) if durations and not seconds_col else None
        for row in range(rows):
            member = names[row] or f"row-{row_base + row:08d}"
            key = os.path.splitext(names[row])[0] if names[row] else f"{path.stem}/{row_base + row:08d}"
            item = AudioItem(path, str(speakers[row] or ""), seconds[row], member, key, (group, row))
            if blobs is not None:
                blob = blobs[row] or b""
                try:
                    item.seconds = audio_seconds_in(lambda b=blob: io.BytesIO(b), item.name, lambda b=blob: b)
                except AudioError as exc:
                    skipped.append((item.name, str(exc).removeprefix(f"{item.name}: ")))
                    continue
            items.append(item)
        row_base += rows
    return items, skipped


_open_parquet: dict[tuple[int, str], Any] = {}   # per process: (pid, path) -> ParquetFile
_last_group: dict[str, Any] = {}                 # per process: the last row group's audio column


def _parquet_cell(item: AudioItem) -> bytes:
    import pyarrow.parquet as pq

    group, row = item.where
    place = (os.getpid(), str(item.path))
    if _last_group.get("place") != (place, group):
        pf = _open_parquet.get(place)
        if pf is None:
            pf = _open_parquet[place] = pq.ParquetFile(item.path)
        audio = _parquet_layout(pf, item.path)[0]
        _last_group.update(place=(place, group), cells=_column(pf.read_row_group(group, columns=[audio]), audio))
    return _last_group["cells"][row] or b""


# ---- reading one member ------------------------------------------------------------------------
def member_bytes(item: AudioItem) -> bytes:
    """The stored bytes of an archive member (the audio file as it was packed). Raises AudioError."""
    try:
        if item.path.suffix.lower() == PARQUET:
            return _parquet_cell(item)
        offset, size = item.where
        with open(item.path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
    except Exception as exc:  # OSError, or pyarrow's errors for a damaged file
        raise AudioError(f"{item.name}: cannot read its archive ({exc})") from exc
    if len(data) != size:
        raise AudioError(f"{item.name}: the shard is shorter than its index (truncated after indexing?)")
    return data


def iter_members(items: list[AudioItem]) -> Iterator[tuple[AudioItem, bytes | AudioError]]:
    """Each item with its bytes (or the error reading them), for converters reading in order."""
    for item in items:
        try:
            yield item, (member_bytes(item) if item.member else Path(item.path).read_bytes())
        except AudioError as exc:
            yield item, exc
        except OSError as exc:
            yield item, AudioError(f"{item.name}: cannot read ({exc.strerror})")
