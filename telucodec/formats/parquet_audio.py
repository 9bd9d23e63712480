"""Audio rows in Parquet files as Hugging Face `datasets` writes them: an `audio` column of
struct<bytes, path> (the `datasets` Audio feature) or of plain bytes; optional `speaker` and
`seconds`/`duration` columns.

No file stays open between reads (a corpus of thousands of files would pass the open-file limit):
a file is opened for one row group and closed; what is kept per process is a few files' parsed
footers and the last row group's audio column (sequential readers hit it, random crops mostly do
not: pack Parquet into shards with `telucodec shard` for training).

A file given to us is data from a stranger: before pyarrow reads a row group, the sizes the file
declares (rows, values, each page's decompressed size: `formats/parquet_footer.py` reads the
footer and every page header of the columns read with its own bounded decoder) are checked
against the bytes the file has, so that no file can make the reader allocate more than a bounded
multiple of its size (the byte columns are read as dictionary arrays, so a value repeated in many
rows is not copied out for each). A file that fails a check or that pyarrow cannot
parse is a damaged shard: its rows read so far are kept and it is listed with the reason. An
OSError of the machine (too many open files, an I/O error) is never that: it stops the run.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import math
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telucodec.errors import AudioError, StorageError, TelucodecError
from telucodec.formats import parquet_footer as pf
from telucodec.formats.audio import audio_seconds_in
from telucodec.formats.audio_index import DURATION_KEYS, AudioItem
from telucodec.formats.os_errors import read_error

Skipped = list[tuple[str, str]]
MAX_NAME = 4096                  # characters of a file name (audio.path) or speaker id


class DamagedShard(TelucodecError):
    """The file is not a readable audio Parquet file: skipped and listed, the run goes on."""


def _damaged(path: Path, reason: str) -> DamagedShard:
    return DamagedShard(f"{path}: {reason}")


# ---- opening: one file object, closed after each use -------------------------------------------
_footers: OrderedDict[tuple[str, int, int], Any] = OrderedDict()  # per process: (ours, pyarrow's) footers
FOOTER_CACHE = 64


class _Shard:
    """One open Parquet file (a Python file object, so that an OSError of the machine keeps its
    errno): `with _Shard(path) as shard:`. Raises DamagedShard, StorageError or AudioError (the
    file itself is gone or unreadable)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> _Shard:
        import pyarrow.parquet as pq

        try:
            self.f = open(self.path, "rb")  # noqa: SIM115 (closed in __exit__)
            stat = os.fstat(self.f.fileno())
        except OSError as exc:
            raise read_error(exc, self.path) from exc
        self.size = stat.st_size
        key = (str(self.path), stat.st_size, stat.st_mtime_ns)
        self.limits = {"thrift_string_size_limit": max(1024, min(self.size, 10**8)),
                       "thrift_container_size_limit": max(64, min(self.size, 10**6))}
        try:
            self.footer, meta = _footers[key] if key in _footers else (pf.read_footer(self.f, self.size), None)
            self.pf = pq.ParquetFile(self.f, metadata=meta, **self.limits)
            if self.pf.num_row_groups != len(self.footer.groups):
                raise pf.Damaged(f"pyarrow sees {self.pf.num_row_groups} row groups, the footer "
                                 f"{len(self.footer.groups)}")
        except BaseException as exc:
            self.f.close()
            if not isinstance(exc, Exception) or isinstance(exc, MemoryError):
                raise  # a bound that did not hold is a bug, not data (see `_reading`)
            _reraise_os(exc, self.path)
            if isinstance(exc, pf.Damaged):
                raise _damaged(self.path, str(exc)) from exc
            raise _damaged(self.path, f"not a readable Parquet file ({_one_line(exc)})") from exc
        _footers[key] = (self.footer, self.pf.metadata)
        _footers.move_to_end(key)
        while len(_footers) > FOOTER_CACHE:
            _footers.popitem(last=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.f.close()

    def layout(self) -> Layout:
        return _layout(self)

    def read(self, group: int, columns: list[str], dictionary: list[str], checked: list[str] = ()) -> Any:
        """Row group `group`'s `columns` (those in `dictionary` as dictionary arrays), after the
        sizes declared for them and for `checked` are checked (None: nothing to read)."""
        import pyarrow.parquet as pq

        try:
            pf.check_row_group(self.f, self.size, self.footer, group, list(dict.fromkeys([*columns, *checked])))
        except pf.Damaged as exc:
            raise _damaged(self.path, str(exc)) from exc
        if not columns:
            return None
        try:
            reader = pq.ParquetFile(self.f, metadata=self.pf.metadata,
                                    read_dictionary=[c for c in dictionary if c in columns], **self.limits)
            return reader.read_row_group(group, columns=columns)
        except MemoryError:
            raise
        except Exception as exc:
            _reraise_os(exc, self.path)
            raise _damaged(self.path, f"row group {group} cannot be read ({_one_line(exc)})") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """What pyarrow raises on a file is the file's damage (ArrowInvalid, its OSError without an
    errno, and from its metadata accessors IndexError, UnicodeDecodeError, ...), except an OSError
    with an errno (the OS failed) and MemoryError (a bound that did not hold: a bug, not data)."""
    try:
        yield
    except (TelucodecError, MemoryError):
        raise
    except Exception as exc:
        _reraise_os(exc, path)
        raise _damaged(path, f"unreadable ({_one_line(exc)})") from exc


def _reraise_os(exc: BaseException, path: Path) -> None:
    """An OSError with an errno came from the file object (the OS), not from pyarrow's parser."""
    if isinstance(exc, OSError) and exc.errno is not None:
        raise read_error(exc, path) from exc


# ---- which columns -----------------------------------------------------------------------------
@dataclass
class Layout:
    audio: str                    # the column with the audio bytes ("audio.bytes" or "audio")
    name: str | None = None       # the column with its file name ("audio.path")
    speaker: str | None = None
    seconds: str | None = None
    speaker_is_text: bool = True

    def text_columns(self) -> list[str]:
        """The columns read as dictionary arrays (a value repeated in every row is held once)."""
        return [c for c in (self.audio, self.name, self.speaker if self.speaker_is_text else None) if c]


def _layout(shard: _Shard) -> Layout:
    import pyarrow as pa

    try:
        schema = shard.pf.schema_arrow
    except Exception as exc:
        raise _damaged(shard.path, f"schema cannot be read ({_one_line(exc)})") from exc
    path = shard.path
    if "audio" not in schema.names:
        raise _damaged(path, "no 'audio' column (expected the datasets Audio layout: struct<bytes, path>)")
    kind = schema.field("audio").type

    def binary(t: Any) -> bool:
        return pa.types.is_binary(t) or pa.types.is_large_binary(t)

    def text(t: Any) -> bool:
        return pa.types.is_string(t) or pa.types.is_large_string(t)

    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0 and binary(kind.field("bytes").type):
        has_path = kind.get_field_index("path") >= 0 and text(kind.field("path").type)
        layout = Layout("audio.bytes", "audio.path" if has_path else None)
    elif binary(kind):
        layout = Layout("audio")
    else:
        raise _damaged(path, f"column 'audio' is {kind}, not bytes or struct<bytes, path>")
    if "speaker" in schema.names:
        t = schema.field("speaker").type
        if not (text(t) or pa.types.is_integer(t)):
            raise _damaged(path, f"column 'speaker' is {t}, not text or an integer")
        layout.speaker, layout.speaker_is_text = "speaker", text(t)
    seconds = next((k for k in DURATION_KEYS if k in schema.names), None)
    if seconds is not None:
        t = schema.field(seconds).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise _damaged(path, f"column '{seconds}' is {t}, not a number")
        layout.seconds = seconds
    return layout


# ---- values out of arrow arrays ----------------------------------------------------------------
class Cells:
    """One row group's column as arrow chunks; `[row]` is that row's value (a dictionary array's
    value is looked up, not copied out for every row)."""

    def __init__(self, table: Any, dotted: str, path: Path):
        self.chunks, self.starts = [], [0]
        top, _, child = dotted.partition(".")
        for chunk in table.column(top).chunks:
            try:
                if child:
                    chunk = chunk.flatten()[chunk.type.get_field_index(child)]
                chunk.validate(full=True)  # a dictionary index past its dictionary, offsets out of range
            except Exception as exc:
                raise _damaged(path, f"column '{dotted}' read back invalid ({_one_line(exc)})") from exc
            self.chunks.append(chunk)
            self.starts.append(self.starts[-1] + len(chunk))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, row: int) -> Any:
        c = bisect.bisect_right(self.starts, row) - 1
        cell = self.chunks[c][row - self.starts[c]]  # a dictionary's cell: its index, not a copy
        return cell.as_py() if cell.is_valid else None

    def values(self) -> list[Any]:
        """Every row's value; a dictionary's values are shared, not copied per row."""
        out: list[Any] = []
        for chunk in self.chunks:
            if hasattr(chunk, "dictionary"):
                words = chunk.dictionary.to_pylist()
                out += [None if i is None else words[i] for i in chunk.indices.to_pylist()]
            else:
                out += chunk.to_pylist()
        return out


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _label(value: Any) -> str | None:
    """A file name or speaker cell as text (None: empty, or too long to be one)."""
    if value is None:
        return None
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return text if 0 < len(text) <= MAX_NAME else None


# ---- the index and one cell --------------------------------------------------------------------
def index_parquet(path: Path, durations: bool) -> tuple[list[AudioItem], Skipped]:
    """The rows of one Parquet file; with `durations` and no seconds column, each row's audio
    header is read (the audio column is read for that, the audio is not decoded). A damaged file
    keeps the rows read before the damage and is listed in the skipped list."""
    items: list[AudioItem] = []
    skipped: Skipped = []
    try:
        with _reading(path), _Shard(path) as shard:
            layout = shard.layout()
            for group in range(len(shard.footer.groups)):
                _index_group(shard, layout, group, durations, items, skipped)
    except DamagedShard as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        after = f" (after {len(items)} rows)" if items else ""
        skipped.append((str(path), f"damaged Parquet file{after}: {reason}"))
    except AudioError as exc:  # the file itself: gone, or its own permissions
        skipped.append((str(path), str(exc).removeprefix(f"{path}: ")))
    return items, skipped


def _index_group(shard: _Shard, layout: Layout, group: int, durations: bool, items: list[AudioItem],
                 skipped: Skipped) -> None:
    path, base = shard.path, sum(g.num_rows for g in shard.footer.groups[:group])
    rows = shard.footer.groups[group].num_rows
    columns = [c for c in (layout.name, layout.speaker, layout.seconds) if c]
    if durations and not layout.seconds:
        columns.append(layout.audio)
    table = shard.read(group, columns, layout.text_columns(), checked=[layout.audio])  # audio's sizes always

    def column(name: str | None) -> list[Any]:
        return Cells(table, name, path).values() if name else [None] * rows

    names, speakers = column(layout.name), column(layout.speaker)
    seconds = column(layout.seconds)
    blobs = Cells(table, layout.audio, path) if layout.audio in columns else None
    if any(len(c) != rows for c in (names, speakers, seconds)) or (blobs is not None and len(blobs) != rows):
        raise _damaged(path, f"row group {group} read back a different number of rows than its {rows}")
    for row in range(rows):
        name, speaker = _label(names[row]), _label(speakers[row])
        member = name or f"row-{base + row:08d}"
        key = os.path.splitext(name)[0] if name else f"{path.stem}/{base + row:08d}"
        item = AudioItem(path, speaker or "", _seconds(seconds[row]), member, key, (group, row))
        if names[row] is not None and name is None or speakers[row] is not None and speaker is None:
            skipped.append((item.name, f"file name or speaker longer than {MAX_NAME} characters"))
            continue
        if blobs is not None:
            blob = blobs[row] or b""
            try:
                item.seconds = audio_seconds_in(lambda b=blob: io.BytesIO(b), item.name, lambda b=blob: b)
            except AudioError as exc:
                skipped.append((item.name, str(exc).removeprefix(f"{item.name}: ")))
                continue
        items.append(item)


_last_group: dict[str, Any] = {}  # per process: the last row group's audio column


def parquet_cell(item: AudioItem) -> bytes:
    """The audio bytes of one row. Raises AudioError (a damaged file skips the clip) or
    StorageError (the machine failed: the caller stops)."""
    group, row = item.where
    try:
        with _reading(item.path), _Shard(item.path) as shard:
            place = (str(item.path), shard.size, os.fstat(shard.f.fileno()).st_mtime_ns, group)
            if _last_group.get("place") != place:
                _last_group.clear()
                if not 0 <= group < len(shard.footer.groups):
                    raise _damaged(item.path, f"has no row group {group} (changed since it was indexed?)")
                layout = shard.layout()
                table = shard.read(group, [layout.audio], [layout.audio])
                _last_group.update(place=place, cells=Cells(table, layout.audio, item.path))
    except DamagedShard as exc:
        raise AudioError(f"{item.name}: damaged Parquet file ({str(exc).removeprefix(f'{item.path}: ')})") from exc
    except OSError as exc:
        raise read_error(exc, item.name, item.path) from exc
    cells = _last_group["cells"]
    if not 0 <= row < len(cells):
        raise AudioError(f"{item.name}: row {row} is not in its row group (changed since it was indexed?)")
    value = cells[row]
    return value if isinstance(value, bytes) else b""


__all__ = ["DamagedShard", "StorageError", "index_parquet", "parquet_cell"]
