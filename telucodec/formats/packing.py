"""`telucodec shard`: pack any accepted dataset into WebDataset tar shards (~256 MB each).

Each sample is the audio file's bytes as they are (`KEY.flac`, `KEY.wav`, ...) plus `KEY.json`
with `id` (the utterance id tokenize uses: the path without its suffix), `speaker` and `seconds`
(from the manifest or the header), so training reads durations without touching the audio.
A key is the id with dots in its last part replaced (webdataset splits a name at its first dot).
Shards are written as `.shard-NNNNNN.tar.tmp` and renamed when complete; a folder that already
holds shards is refused (nothing of the user's is overwritten); clips whose header cannot be
read are listed in OUT/skipped.tsv, not packed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from telucodec.errors import AudioError, StorageError, TelucodecError
from telucodec.formats.archives import member_bytes, require
from telucodec.formats.dataset import index_audio, item_id, write_skipped
from telucodec.formats.os_errors import read_error

SHARD_NAME = "shard-%06d.tar"


def shard_key(uid: str) -> str:
    head, _, last = uid.rpartition("/")
    last = last.replace(".", "_") or "_"
    return f"{head}/{last}" if head else last


def write_shards(data_dir: str | Path, out: str | Path, shard_bytes: int = 256 * 2**20,
                 log: Any = print) -> dict[str, Any]:
    """Pack `data_dir` into `out`; returns counts (samples, shards, bytes, skipped)."""
    require("webdataset", "telucodec shard")
    from webdataset import ShardWriter

    started = time.monotonic()
    data_dir, out = Path(data_dir), Path(out)
    if out.exists() and data_dir.exists() and out.resolve() == data_dir.resolve():
        raise TelucodecError(f"--out {out}: the shards need a folder of their own, not --data_dir")
    if out.is_dir() and any(out.glob("*.tar")):
        raise TelucodecError(f"{out} already holds .tar files; pick a folder without shards")
    index = index_audio(data_dir, durations=True)  # before --out exists: a bad --data_dir leaves nothing
    if not len(index):
        raise TelucodecError(f"{data_dir}: no usable audio to pack ({len(index.skipped)} skipped)")
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".shard-*.tar.tmp"):
        tmp.unlink()
    root = data_dir if data_dir.is_dir() else data_dir.parent
    skipped = list(index.skipped)
    finished: list[str] = []

    def rename(tmp_name: str) -> None:
        final = Path(tmp_name).with_name(Path(tmp_name).name[1:].removesuffix(".tmp"))
        os.replace(tmp_name, final)
        finished.append(final.name)

    writer, samples, size, keys = None, 0, 0, set()
    try:
        for item in index:
            uid = item_id(item, root)
            key = shard_key(uid)
            if key in keys:
                skipped.append((item.name, f"duplicate id {uid}"))
                continue
            try:
                data = member_bytes(item) if item.member else item.path.read_bytes()
            except OSError as exc:  # the machine's fault stops the packing; the file's own skips it
                err = read_error(exc, item.name)
                if isinstance(err, StorageError):
                    raise err from exc
                skipped.append((item.name, str(err).split(": ", 1)[-1]))
                continue
            except AudioError as exc:
                skipped.append((item.name, str(exc).split(": ", 1)[-1]))
                continue
            keys.add(key)
            suffix = Path(item.member or item.path.name).suffix.lower().lstrip(".") or "wav"
            meta = {"id": uid, "speaker": item.speaker, "seconds": item.seconds}
            if writer is None:
                pattern = str(out).replace("%", "%%") + f"/.{SHARD_NAME}.tmp"
                writer = ShardWriter(pattern, maxsize=shard_bytes, maxcount=10**9, post=rename, verbose=0,
                                     encoder=False, mtime=0)
            writer.write({"__key__": key, suffix: data, "json": json.dumps(meta, ensure_ascii=False).encode()})
            samples += 1
            size += len(data)
    finally:
        if writer is not None:
            writer.close()
    write_skipped(out / "skipped.tsv", skipped)
    summary = {"out": str(out), "samples": samples, "shards": len(finished), "audio_bytes": size,
               "seconds": round(time.monotonic() - started, 2), "skipped": len(skipped)}
    log(f"{out}: {samples} clips in {len(finished)} shard(s), {size / 2**20:.1f} MB of audio, "
        f"{len(skipped)} skipped (see {out / 'skipped.tsv'}); train, eval or tokenize with --data_dir {out}")
    return summary


def run_from_args(args: argparse.Namespace) -> int:
    write_shards(args.data_dir, args.out, int(args.shard_mb * 2**20))
    return 0
