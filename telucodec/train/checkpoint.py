"""Training checkpoints that never lose work: the writing side.

A checkpoint is a plain dict of tensors and numbers written with torch.save to a temporary file
in the same folder, flushed to disk, then renamed over the old one: a crash or a full disk
leaves the previous checkpoint whole. Reading one (`load_checkpoint`, refusing pickle payloads)
is `telucodec.model.loading`'s job, shared with the inference API.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch

from telucodec.errors import TelucodecError
from telucodec.model.loading import CHECKPOINT_FORMAT

__all__ = ["CHECKPOINT_FORMAT", "atomic_torch_save", "disk_full"]


def disk_full(exc: BaseException | None) -> bool:
    """True when `exc` or an exception it was raised from is ENOSPC/EDQUOT. torch.save reports
    a full disk as a RuntimeError ("unexpected pos") whose context holds the OSError."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if disk_full(exc):
            raise TelucodecError(f"{path}: disk full while saving the checkpoint; the previous one is intact") from exc
        raise
