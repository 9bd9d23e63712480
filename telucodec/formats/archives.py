"""Audio in archives: WebDataset tar shards and Parquet files as Hugging Face `datasets` writes them.

Tar shards: members `KEY.EXT` are grouped by KEY (webdataset's rule: the name up to the first dot
of its last part); a sample is its audio member (.flac, .wav, .mp3, .ogg, .opus) plus an optional
`KEY.json` with `speaker`, `seconds` and `id`. The index keeps each audio member's data offset
and size, so reading one at random is a seek and a read: shards must be uncompressed `.tar`.

A shard is opened for one read and closed (no file stays open: a corpus may hold more shards
than the open-file limit). A damaged shard keeps the samples before the damage and is listed
with the reason, like a damaged clip; a member's declared size is checked against the shard's
before it is read, and a JSON sidecar is at most MAX_SIDECAR bytes. An OSError of the machine
(too many open files, an I/O error) raises StorageError instead (`formats/os_errors.py`).

Parquet (`formats/parquet_audio.py`): an `audio` column of struct<bytes, path> (the `datasets`
Audio feature) or of plain bytes; optional `speaker` and `seconds`/`duration` columns.

Audio bytes are decoded by `formats/audio.py` like any file.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from telucodec.errors import AudioError, StorageError, TelucodecError
from telucodec.formats.audio import audio_seconds_in
from telucodec.formats.audio_index import DURATION_KEYS, AudioItem
from telucodec.formats.os_errors import read_error
from telucodec.formats.parquet_audio import index_parquet, parquet_cell

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
    """The duration a sidecar states; None (read the header) when it states none or an impossible one."""
    for key in DURATION_KEYS:
        if meta.get(key) is not None:
            try:
                seconds = float(meta[key])
            except (TypeError, ValueError, OverflowError):
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


# ---- tar shards --------------------------------------------------------------------------------
MAX_SIDECAR = 2**20  # bytes of a KEY.json sidecar: metadata, not data


class _Segment(io.RawIOBase):
    """A read-only, seekable view of bytes [offset, offset + size) of a file (one tar member),
    so soundfile reads a member's header without the rest. soundfile reads through a C callback
    that cannot raise: an OSError is kept in `error` (and reads as the end of the data)."""

    def __init__(self, f: Any, offset: int, size: int):
        self.f, self.offset, self.size, self.pos = f, offset, size, 0
        self.error: OSError | None = None

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
        try:
            self.f.seek(self.offset + self.pos)
            data = self.f.read(n)
        except OSError as exc:
            self.error = exc
            return 0
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


class _Capped:
    """A file whose read(n) never asks for more than the bytes left in it: tarfile reads a long-name
    or pax header's declared size in one call, and Python allocates what is asked first."""

    def __init__(self, f: Any, size: int):
        self.f, self.size = f, size

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self.size - self.f.tell())
        return self.f.read(left if n is None or n < 0 or n > left else n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)

    def tell(self) -> int:
        return self.f.tell()


# what tarfile raises for bytes that are not a (whole) tar file; an OSError with an errno is the OS's
_TAR_DAMAGE = (tarfile.TarError, EOFError, ValueError, OverflowError, UnicodeError)


def _tar_members(path: Path, f: Any, size: int) -> tuple[dict[str, dict[str, tarfile.TarInfo]], str]:
    """(KEY -> {ext: member}, from the headers alone (tarfile seeks over the data); the damage
    found, or ""). Raises OSError when the OS fails reading."""
    from webdataset.tariterators import base_plus_ext

    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        tf = tarfile.open(fileobj=_Capped(f, size), mode="r:")
    except _TAR_DAMAGE + (OSError,) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        return samples, f"not an uncompressed tar shard ({_one_line(exc)})"
    while True:
        try:
            info = tf.next()
        except _TAR_DAMAGE + (OSError,) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise
            return samples, f"damaged tar shard after {len(samples)} samples ({_one_line(exc)})"
        if info is None:
            return samples, ""
        if not 0 <= info.size or info.offset_data + info.size > size:
            return samples, (f"damaged tar shard after {len(samples)} samples (member {info.name!r} declares "
                             f"{info.size} bytes at {info.offset_data}, past the end of its {size})")
        key, ext = base_plus_ext(info.name) if info.isfile() and not info.issparse() else (None, None)
        if key is not None:
            samples.setdefault(key, {})[ext.lower()] = info


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _utf8(text: str) -> str:
    """`text` as valid UTF-8: tarfile decodes a name's undecodable bytes, and JSON a lone "\\ud800",
    to surrogates that no file, index or TSV can hold (they become "?")."""
    return text.encode("utf-8", "replace").decode("utf-8")


def read_sidecar(data: bytes, name: str) -> dict[str, Any]:
    """A KEY.json sidecar's object. Raises AudioError naming `name`."""
    if len(data) > MAX_SIDECAR:
        raise AudioError(f"{name}: JSON sidecar of {len(data)} bytes (more than {MAX_SIDECAR})")
    try:
        meta = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise AudioError(f"{name}: unreadable JSON sidecar ({_one_line(exc)})") from exc
    if not isinstance(meta, dict):
        raise AudioError(f"{name}: JSON sidecar is a {type(meta).__name__}, not an object")
    return meta


def index_tar(path: Path, durations: bool) -> tuple[list[AudioItem], Skipped]:
    """The audio samples of one shard; with `durations`, a sample whose JSON gives no seconds has
    its audio header read (not its audio). A damaged shard keeps the samples before the damage
    and is listed; an OSError of the machine raises StorageError."""
    skipped: Skipped = []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            samples, damage = _tar_members(path, f, size)
            items = _tar_items(path, f, samples, durations, skipped)
    except OSError as exc:
        err = read_error(exc, path)
        if isinstance(err, StorageError):
            raise err from exc
        return [], [(str(path), str(err).removeprefix(f"{path}: "))]
    if damage:
        skipped.append((str(path), damage))
    return items, skipped


def _tar_items(path: Path, f: Any, samples: dict[str, dict[str, tarfile.TarInfo]], durations: bool,
               skipped: Skipped) -> list[AudioItem]:
    items = []
    for key, members in samples.items():
        ext = next((e for e in members if e.rsplit(".", 1)[-1] in AUDIO_EXTS), None)
        if ext is None:
            continue
        audio = members[ext]
        name = f"{path}:{_utf8(audio.name)}"
        meta: dict[str, Any] = {}
        if "json" in members:
            sidecar = members["json"]
            try:
                if sidecar.size > MAX_SIDECAR:
                    raise AudioError(f"{name}: JSON sidecar {sidecar.name} of {sidecar.size} bytes "
                                     f"(more than {MAX_SIDECAR})")
                f.seek(sidecar.offset_data)
                meta = read_sidecar(f.read(sidecar.size), name)
            except AudioError as exc:
                skipped.append((name, str(exc).removeprefix(f"{name}: ")))
                continue
        item = AudioItem(path, _utf8(str(meta.get("speaker") or "")), _sidecar_seconds(meta), _utf8(audio.name),
                         _utf8(str(meta.get("id") or key)), (audio.offset_data, audio.size))
        if item.seconds is None and durations:
            views: list[_Segment] = []

            def view(a: tarfile.TarInfo = audio, kept: list[_Segment] = views) -> _Segment:
                kept.append(_Segment(f, a.offset_data, a.size))
                return kept[-1]

            try:
                item.seconds = audio_seconds_in(view, name, lambda i=item: member_bytes(i))
            except AudioError as exc:
                failed = next((v.error for v in views if v.error is not None), None)
                if failed is not None:
                    raise failed from exc
                skipped.append((name, str(exc).removeprefix(f"{name}: ")))
                continue
        items.append(item)
    return items


# ---- Parquet (formats/parquet_audio.py) --------------------------------------------------------
# ---- reading one member ------------------------------------------------------------------------
def member_bytes(item: AudioItem) -> bytes:
    """The stored bytes of an archive member (the audio file as it was packed). Raises AudioError
    (the member or its archive is damaged or gone: skip the clip) or StorageError (the machine
    failed: stop)."""
    if item.path.suffix.lower() == PARQUET:
        return parquet_cell(item)
    offset, size = item.where
    try:
        with open(item.path, "rb") as f:
            if offset < 0 or size < 0 or offset + size > os.fstat(f.fileno()).st_size:
                raise AudioError(f"{item.name}: the shard is shorter than its index (truncated after indexing?)")
            f.seek(offset)
            data = f.read(size)
    except OSError as exc:
        raise read_error(exc, item.name, item.path) from exc
    if len(data) != size:
        raise AudioError(f"{item.name}: the shard is shorter than its index (truncated after indexing?)")
    return data


def iter_members(items: list[AudioItem]) -> Iterator[tuple[AudioItem, bytes | AudioError]]:
    """Each item with its bytes (or the error reading them), for converters reading in order; a
    StorageError (the machine failed) is raised, not handed over."""
    for item in items:
        try:
            yield item, (member_bytes(item) if item.member else Path(item.path).read_bytes())
        except AudioError as exc:
            yield item, exc
        except OSError as exc:
            err = read_error(exc, item.name)
            if isinstance(err, StorageError):
                raise err from exc
            yield item, err
