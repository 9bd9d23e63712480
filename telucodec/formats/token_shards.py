"""Writing a tokens folder (the layout `telucodec.formats.tokens` reads) so that no crash loses more
than the shard in progress.

Codes stream into a temporary shard file; when it is full it gets its real .npy header, is
fsynced and renamed, and only then are its utterances appended to index.jsonl (one write, under
a file lock, fsynced). So the index only ever points into complete shards, and several `--shard`
jobs can share one folder.
"""

from __future__ import annotations

import builtins
import json
import os
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from telucodec.errors import TelucodecError
from telucodec.formats.tokens import INDEX_FILE, META_FILE, SKIPPED_FILE, iter_index

HEADER_BYTES = 128            # fixed .npy header size, so the header can be written last
CODES_DTYPE = np.dtype("<u2")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _lock(f: Any) -> None:
    try:
        import fcntl
    except ImportError:  # not on POSIX: concurrent --shard jobs must use separate folders
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)


def _repair_tail(f: Any) -> None:
    """Cut a torn last line (a crash mid-append) back to the last newline."""
    size = f.seek(0, os.SEEK_END)
    end = size
    while end > 0:
        start = max(0, end - 65536)
        f.seek(start)
        block = f.read(end - start)
        if end == size and block.endswith(b"\n"):
            return
        cut = block.rfind(b"\n")
        if cut >= 0:
            f.truncate(start + cut + 1)
            return
        end = start
    f.truncate(0)


def append_locked(path: Path, data: bytes, header: bytes = b"") -> None:
    """Append whole lines to `path` under an exclusive lock (several jobs may share the folder)."""
    with builtins.open(path, "a+b") as f:
        _lock(f)
        _repair_tail(f)
        if header and f.seek(0, os.SEEK_END) == 0:
            data = header + data
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def append_skipped(out: Path, skipped: list[tuple[str, str, str]]) -> None:
    """Append (path, reason, id) rows to skipped.tsv (its header first when the file is new)."""
    lines = "".join(f"{path}\t{_one_line(reason)}\t{uid}\n" for path, reason, uid in skipped)
    # backslashreplace: a file name that is not UTF-8 is listed, not a crash
    append_locked(out / SKIPPED_FILE, lines.encode(errors="backslashreplace"), header=b"path\treason\tid\n")


def skipped_paths(out: Path) -> set[str]:
    """Files already listed in skipped.tsv (a rerun does not retry them; delete the file to retry)."""
    path = out / SKIPPED_FILE
    if not path.is_file():
        return set()
    return {line.split("\t", 1)[0] for line in path.read_text().splitlines()[1:] if line}


def npy_header(n_q: int, frames: int) -> bytes:
    """A version 1.0 .npy header of exactly HEADER_BYTES for uint16 [n_q, frames], Fortran order."""
    text = f"{{'descr': '<u2', 'fortran_order': True, 'shape': ({n_q}, {frames}), }}"
    body = HEADER_BYTES - 10
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body) + (text.ljust(body - 1) + "\n").encode("latin1")


class ShardWriter:
    """Streams utterance codes into `.NAME.tmp`; `commit` makes it `NAME` and indexes it."""

    def __init__(self, out: Path, prefix: str, n_q: int, max_bytes: int, max_seconds: float, used: set[str]):
        self.out, self.prefix, self.n_q = out, prefix, n_q
        self.max_bytes, self.max_seconds = max_bytes, max_seconds
        # never reuse a name: stale index lines may still name a shard the user deleted
        names = used | {p.name for p in out.glob(f"{prefix}-*.npy")}
        existing = [int(Path(n).stem.rsplit("-", 1)[1]) for n in names if n.startswith(f"{prefix}-")]
        self.seq = max(existing, default=-1) + 1
        self._file: Any = None
        self.committed = 0

    @property
    def name(self) -> str:
        return f"{self.prefix}-{self.seq:05d}.npy"

    @property
    def _tmp(self) -> Path:
        return self.out / f".{self.name}.tmp"

    def add(self, codes: np.ndarray, entry: dict[str, Any]) -> None:
        """Append one utterance's codes [n_q, F] and its index entry (indexed at `commit`)."""
        if self._file is None:
            self._file = builtins.open(self._tmp, "wb")
            self._file.write(bytes(HEADER_BYTES))
            self._frames, self._entries, self._started = 0, [], time.monotonic()
        assert codes.shape[0] == self.n_q
        # [n_q, F] in Fortran order is [F, n_q] in C order: one contiguous run per utterance
        self._file.write(np.ascontiguousarray(codes.T, dtype=CODES_DTYPE).tobytes())
        self._entries.append({**entry, "shard": self.name, "offset": self._frames})
        self._frames += codes.shape[1]
        full = self._frames * self.n_q * CODES_DTYPE.itemsize >= self.max_bytes
        if full or time.monotonic() - self._started >= self.max_seconds:
            self.commit()

    def commit(self) -> None:
        """Finish the shard in progress: real header, fsync, rename, then its index lines."""
        f, self._file = self._file, None
        if f is None:
            return
        if not self._entries:
            f.close()
            self._tmp.unlink(missing_ok=True)
            return
        f.truncate(HEADER_BYTES + self._frames * self.n_q * CODES_DTYPE.itemsize)
        f.seek(0)
        f.write(npy_header(self.n_q, self._frames))
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(self._tmp, self.out / self.name)
        _fsync_dir(self.out)
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self._entries)
        append_locked(self.out / INDEX_FILE, lines.encode())
        self.committed += len(self._entries)
        self.seq += 1


def clean_leftovers(out: Path, prefix: str) -> set[str]:
    """Remove this shard prefix's temporary files and shard files no index line points to;
    returns the shard names the index mentions."""
    for tmp in out.glob(f".{prefix}-*.npy.tmp"):
        tmp.unlink(missing_ok=True)
    indexed = {entry["shard"] for _, entry in iter_index(out)}
    for shard in out.glob(f"{prefix}-*.npy"):
        if shard.name not in indexed:
            shard.unlink()
    return indexed


def check_meta(out: Path, meta: dict[str, Any]) -> None:
    """Write meta.json, or refuse a folder whose tokens are of another format, model or n_q."""
    path = out / META_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        for key in ("format", "model_id", "n_q"):
            if old.get(key) != meta[key]:
                raise TelucodecError(f"{out} holds tokens with {key}={old.get(key)}, this run would write "
                                     f"{key}={meta[key]}; use another --out")
        return
    tmp = out / f".{META_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, path)
