"""Read a tokenized dataset (what `telucodec tokenize` writes) without loading it into memory.

    reader = telucodec.formats.tokens.open("tokens/")
    for utt_id in reader.ids():
        codes = reader[utt_id]          # uint16 [n_q, F], a view into a memory-mapped shard
        info = reader.info(utt_id)      # the utterance's index.jsonl entry (path, duration, ...)

A tokens folder holds:

    meta.json       model_id, n_q, sample_rate, frame_rate, codebook size/bits, amplitude kind
    codes-*.npy     shards: uint16 arrays [n_q, frames] in Fortran order (frame-major on disk,
                    so an utterance is one contiguous byte range), each written whole to a
                    temporary name and renamed: a shard file that exists is complete
    index.jsonl     one JSON object per utterance: id, path, duration, num_samples, frames,
                    n_q, shard, offset (first frame in the shard), sha256 (of the audio file),
                    side_kind, side (amplitude side info, so decoding is exact)
    skipped.tsv     files that could not be tokenized, with the reason

Only numpy is imported here; `codes_for` (which builds a torch `Codes`) imports torch lazily.
A tokens folder may come from a stranger: every field is checked where it is read, and a damaged
one raises `TokensError` naming the file (benchmarks/fuzz.py `shards` fuzzes this reader).
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from telucodec.errors import TelucodecError

if TYPE_CHECKING:
    from telucodec.formats.codes import Codes

META_FILE = "meta.json"
INDEX_FILE = "index.jsonl"
SKIPPED_FILE = "skipped.tsv"
FORMAT = "telucodec-tokens"
SHARD_NAME = re.compile(r"[\w.-]+\.npy")  # a plain file name inside the folder, never a path


class HasModelId(Protocol):
    """What `codes_for` checks a model by: a `telucodec.model.codec.Codec`, or anything with its id."""

    @property
    def model_id(self) -> str: ...


class TokensError(TelucodecError, ValueError):
    """A tokens folder that is missing, damaged, or asked for an id it does not hold."""


def _field(entry: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """entry[key], which must be a `kind` (an int that is no bool; a non-negative one)."""
    value = entry.get(key)
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise TokensError(f"{where}: field {key!r} is {value!r:.40}, not a {'non-negative integer' if kind is int else kind.__name__}")
    return value


def _entry(line: bytes, where: str) -> dict[str, Any]:
    """One index.jsonl line as an entry whose id and shard name are usable."""
    try:
        entry = json.loads(line)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise TokensError(f"{where}: not a JSON line ({exc})") from None
    if not isinstance(entry, dict):
        raise TokensError(f"{where}: not a JSON object")
    _field(entry, "id", str, where)
    if not SHARD_NAME.fullmatch(str(_field(entry, "shard", str, where))):
        raise TokensError(f"{where}: shard {entry['shard']!r:.60} is not a shard file name")
    return entry


def iter_index(directory: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(byte offset, entry) for every complete line of index.jsonl; a torn last line is ignored."""
    path = directory / INDEX_FILE
    if not path.is_file():
        return
    with builtins.open(path, "rb") as f:
        pos = 0
        for number, line in enumerate(f, 1):
            start, pos = pos, pos + len(line)
            if not line.endswith(b"\n"):
                break  # an append cut short by a crash: the writer repairs it on its next run
            if line.strip():
                yield start, _entry(line, f"{path}: line {number}")


def live_entries(directory: Path) -> dict[str, int]:
    """id -> byte offset of its entry in index.jsonl: the last entry per id whose shard exists."""
    offsets: dict[str, int] = {}
    present: dict[str, bool] = {}
    for pos, entry in iter_index(directory):
        shard = entry["shard"]
        if shard not in present:
            present[shard] = (directory / shard).is_file()
        if present[shard]:
            offsets[entry["id"]] = pos
    return offsets


class TokenReader:
    """Random access to the codes of a tokens folder. Shards are memory-mapped on first use."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        meta_path = self.directory / META_FILE
        if not meta_path.is_file():
            raise TokensError(f"{self.directory}: not a tokens folder (no {META_FILE})")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_bytes())
        except ValueError as exc:
            raise TokensError(f"{meta_path}: not a readable JSON file ({exc})") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise TokensError(f"{meta_path}: not written by `telucodec tokenize`")
        for key in ("n_q", "frame_rate", "sample_rate", "codebook_bits"):
            _field(self.meta, key, int, str(meta_path))
        _field(self.meta, "model_id", str, str(meta_path))
        self._offsets = live_entries(self.directory)
        self._shards: dict[str, np.ndarray] = {}
        self._index_file = None

    # ---- facts --------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return str(self.meta["model_id"])

    @property
    def n_q(self) -> int:
        return int(self.meta["n_q"])

    @property
    def frame_rate(self) -> int:
        return int(self.meta["frame_rate"])

    def ids(self) -> list[str]:
        return list(self._offsets)

    def __len__(self) -> int:
        return len(self._offsets)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._offsets

    def __iter__(self) -> Iterator[str]:
        return iter(self._offsets)

    # ---- access -------------------------------------------------------------------------
    def entries(self) -> Iterator[dict[str, Any]]:
        """Every live index entry, in index order (one pass over index.jsonl, flat memory)."""
        live = set(self._offsets.values())
        for pos, entry in iter_index(self.directory):
            if pos in live:
                yield entry

    def info(self, utt_id: str) -> dict[str, Any]:
        """The index.jsonl entry of `utt_id`."""
        try:
            pos = self._offsets[utt_id]
        except KeyError:
            raise TokensError(f"{self.directory}: no utterance with id {utt_id!r}") from None
        if self._index_file is None:
            self._index_file = builtins.open(self.directory / INDEX_FILE, "rb")
        self._index_file.seek(pos)
        return _entry(self._index_file.readline(), f"{self.directory / INDEX_FILE}: entry {utt_id!r:.40}")

    def shard(self, name: str) -> np.ndarray:
        """A whole shard, uint16 [n_q, frames], memory-mapped (read-only)."""
        if name not in self._shards:
            path = self.directory / name
            if not SHARD_NAME.fullmatch(name):
                raise TokensError(f"{self.directory}: {name!r:.60} is not a shard file name")
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except Exception as exc:  # numpy's header parser raises many kinds (ValueError, SyntaxError, TokenError)
                raise TokensError(f"{path}: not a readable shard ({str(exc)[:120]})") from None
            if not isinstance(array, np.ndarray) or array.dtype != np.uint16 or array.ndim != 2 \
                    or array.shape[0] != self.n_q:
                raise TokensError(f"{path}: not a uint16 [n_q={self.n_q}, frames] shard "
                                  f"({getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')})")
            self._shards[name] = array
        return self._shards[name]

    def __getitem__(self, utt_id: str) -> np.ndarray:
        """codes uint16 [n_q, F] of `utt_id` (a read-only view; copy it to modify)."""
        entry = self.info(utt_id)
        where = f"{self.directory / INDEX_FILE}: entry {utt_id!r:.40}"
        start, frames = _field(entry, "offset", int, where), _field(entry, "frames", int, where)
        shard = self.shard(entry["shard"])
        if start + frames > shard.shape[1]:
            raise TokensError(f"{where}: frames {start}..{start + frames} are beyond its shard's {shard.shape[1]}")
        return shard[:, start: start + frames]

    def close(self) -> None:
        if self._index_file is not None:
            self._index_file.close()
            self._index_file = None
        self._shards.clear()

    def __enter__(self) -> TokenReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(directory: str | Path) -> TokenReader:  # noqa: A001 - `telucodec.formats.tokens.open(DIR)` reads well
    """Open a folder written by `telucodec tokenize`."""
    return TokenReader(directory)


def codes_for(directory: str | Path, utt_id: str, model: HasModelId | None = None) -> Codes:
    """The `Codes` of one utterance, ready for `model.decode` (exact: side info included).

    With `model`, codes made by a different model are refused here with a clear message."""
    from telucodec.formats.codes import SIDE_KINDS, Codes

    try:
        with TokenReader(directory) as reader:
            entry = reader.info(utt_id)
            codes = np.asarray(reader[utt_id], dtype=np.int64)
            meta = reader.meta
    except OSError as exc:
        raise TokensError(f"{directory}: cannot read ({exc.strerror or exc})") from exc
    if model is not None and model.model_id != meta["model_id"]:
        raise TokensError(f"{directory}: tokens were made by model {meta['model_id']}, "
                          f"this model is {model.model_id}")
    where = f"{Path(directory) / INDEX_FILE}: entry {utt_id!r:.40}"
    side = _field(entry, "side", list, where)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 16 for v in side):
        raise TokensError(f"{where}: side info must be integers in 0..65535")
    if entry.get("side_kind") not in SIDE_KINDS:
        raise TokensError(f"{where}: side_kind {entry.get('side_kind')!r:.40} is not one of {', '.join(SIDE_KINDS)}")
    import torch

    return Codes(codes=torch.from_numpy(codes), num_samples=_field(entry, "num_samples", int, where),
                 model_id=meta["model_id"], sample_rate=meta["sample_rate"], frame_rate=meta["frame_rate"],
                 codebook_bits=meta["codebook_bits"], side_kind=entry["side_kind"], side=side,
                 stage_bits=_stage_bits(meta, codes.shape[0], where))


def _stage_bits(meta: dict[str, Any], n_q: int, where: str) -> tuple[int, ...]:
    """`Codes.stage_bits` of a folder's codes: () when its stages have the one width "codebook_bits"
    (folders written before "stage_bits" existed have one); kept when they are narrower (the first
    stages of a model whose later ones are wider)."""
    bits = meta.get("stage_bits")
    if bits is None:
        return ()
    if not isinstance(bits, list) or len(bits) < n_q or not all(isinstance(b, int) and 1 <= b <= 16 for b in bits):
        raise TokensError(f"{where}: stage_bits must list 1..16 bits for each of the {n_q} stages")
    return tuple(bits[:n_q]) if set(bits[:n_q]) != {meta["codebook_bits"]} else ()
