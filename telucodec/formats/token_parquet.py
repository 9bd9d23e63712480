"""Tokens as Parquet (`telucodec tokenize --format parquet`): rows that pyarrow, DuckDB and
`datasets.load_dataset("parquet", data_files="OUT/data/*.parquet")` read as they are.

    OUT/meta.json                       what made the codes (as for the .npy shards, format
                                        "telucodec-tokens-parquet")
    OUT/data/codes-IIIII-of-NNNNN-SSSSS.parquet
        id string, speaker string, seconds float64, n_q int16,
        codes list<list<uint16>> (one list of frames per codebook), frames int32,
        num_samples int64, side list<int32> (amplitude side info), source string, sha256 string
    OUT/skipped.tsv

Crash safety as for the shards: a part is written to `.NAME.tmp` and renamed when complete, so
a run killed at any moment loses at most the part in progress; a rerun skips every id that a
complete part holds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "telucodec-tokens-parquet"
DATA_DIR = "data"
LAYOUT = "data/*.parquet rows; codes list<list<uint16>>: one list of frames per codebook"


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("speaker", pa.string()), ("seconds", pa.float64()),
                      ("n_q", pa.int16()), ("codes", pa.list_(pa.list_(pa.uint16()))), ("frames", pa.int32()),
                      ("num_samples", pa.int64()), ("side", pa.list_(pa.int32())), ("source", pa.string()),
                      ("sha256", pa.string())])


def codes_column(codes: list[np.ndarray]) -> Any:
    """uint16 [n_q, F] arrays -> list<list<uint16>>, built from the arrays without Python ints."""
    import pyarrow as pa

    inner_sizes = [np.full(c.shape[0], c.shape[1], dtype=np.int32) for c in codes]
    inner_offsets = np.concatenate([[0], np.cumsum(np.concatenate(inner_sizes) if codes else [])]).astype(np.int32)
    values = pa.array(np.concatenate([c.reshape(-1) for c in codes]) if codes else np.zeros(0, np.uint16),
                      type=pa.uint16())
    inner = pa.ListArray.from_arrays(pa.array(inner_offsets), values)
    outer_offsets = np.concatenate([[0], np.cumsum([c.shape[0] for c in codes])]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(outer_offsets), inner)


def codes_of(row_codes: Any) -> np.ndarray:
    """One row's `codes` cell (a pyarrow ListScalar) back to uint16 [n_q, F]."""
    inner = row_codes.values  # this row's codebooks (a slice: flatten() honours its offsets, .values would not)
    return np.asarray(inner.flatten().to_numpy(zero_copy_only=False), dtype=np.uint16).reshape(len(inner), -1)


class ParquetPartWriter:
    """Rows into `.NAME.tmp`; a part is closed and renamed at ~`max_bytes` of codes or after
    `max_seconds` of work (`commit` also closes the one in progress)."""

    def __init__(self, out: Path, prefix: str, max_bytes: int, max_seconds: float, rows_per_group: int = 256):
        self.dir = out / DATA_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix, self.max_bytes, self.max_seconds, self.rows_per_group = prefix, max_bytes, max_seconds, rows_per_group
        existing = [int(p.stem.rsplit("-", 1)[1]) for p in self.dir.glob(f"{prefix}-*.parquet")]
        self.seq = max(existing, default=-1) + 1
        self.committed = 0
        self._writer: Any = None
        self._rows: list[dict[str, Any]] = []
        self._started: float | None = None  # when the part in progress got its first row

    @property
    def name(self) -> str:
        return f"{self.prefix}-{self.seq:05d}.parquet"

    def _flush_rows(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.dir / f".{self.name}.tmp", _schema())
        rows, self._rows = self._rows, []
        columns = {k: [r[k] for r in rows] for k in _schema().names if k != "codes"}
        table = pa.table({**columns, "codes": codes_column([r["codes"] for r in rows])})
        self._writer.write_table(table.select(_schema().names).cast(_schema()))
        self._count += len(rows)

    def add(self, row: dict[str, Any]) -> None:
        """One utterance: the schema's fields, `codes` as uint16 [n_q, F]."""
        if self._started is None:
            self._started, self._bytes, self._count = time.monotonic(), 0, 0
        self._rows.append(row)
        self._bytes += row["codes"].nbytes
        if len(self._rows) >= self.rows_per_group:
            self._flush_rows()
        if self._bytes >= self.max_bytes or time.monotonic() - self._started >= self.max_seconds:
            self.commit()

    def commit(self) -> None:
        """Close the part in progress and rename it into place."""
        self._flush_rows()
        self._started = None
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        tmp = self.dir / f".{self.name}.tmp"
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / self.name)
        self.committed += self._count
        self.seq += 1


def clean_leftovers(out: Path, prefix: str) -> None:
    for tmp in (out / DATA_DIR).glob(f".{prefix}-*.parquet.tmp"):
        tmp.unlink(missing_ok=True)


def parts(out: Path) -> list[Path]:
    return sorted((out / DATA_DIR).glob("*.parquet"))


def done_ids(out: Path) -> set[str]:
    """Every id a complete part holds (only the id column is read)."""
    import pyarrow.parquet as pq

    return {i for p in parts(out) for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()}


def folder_counts(out: Path, codebook_size: int) -> tuple[dict[str, Any], np.ndarray]:
    """Totals over the parts, and code counts [n_q, codebook_size] (one part's codes at a time)."""
    import pyarrow.parquet as pq

    totals = {"utterances": 0, "seconds": 0.0, "frames": 0, "shards": 0}
    counts = None
    for path in parts(out):
        table = pq.read_table(path, columns=["seconds", "frames", "codes"])
        totals["utterances"] += table.num_rows
        totals["seconds"] += float(np.sum(table.column("seconds").to_numpy()))
        totals["frames"] += int(np.sum(table.column("frames").to_numpy()))
        totals["shards"] += 1
        for cell in table.column("codes").combine_chunks():
            codes = codes_of(cell)
            if counts is None:
                counts = np.zeros((codes.shape[0], codebook_size), dtype=np.int64)
            for q in range(codes.shape[0]):
                counts[q] += np.bincount(codes[q], minlength=codebook_size)[:codebook_size]
    return totals, counts if counts is not None else np.zeros((1, codebook_size), dtype=np.int64)
