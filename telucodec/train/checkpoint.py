"""Training checkpoints that never lose work.

A checkpoint is a plain dict of tensors and numbers written with torch.save to a temporary file
in the same folder, flushed to disk, then renamed over the old one: a crash or a full disk
leaves the previous checkpoint whole. Loading uses `weights_only=True`, so a file carrying a
pickle payload is refused without running it.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from telucodec.config import CodecConfig
from telucodec.errors import ModelError, TelucodecError

CHECKPOINT_FORMAT = 1


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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely (tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: refused: not a plain-tensor telucodec checkpoint ({first[:200]})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise ModelError(f"{path}: not a telucodec training checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def checkpoint_config(state: dict[str, Any], source: str) -> CodecConfig:
    try:
        return CodecConfig.from_dict(state["config"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{source}: checkpoint has no usable config") from exc
