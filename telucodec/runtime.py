"""Process-wide settings: what must be in place before the first convolution runs, and the names
and places the runtime switch (`--runtime`, `runtime=`) reads."""

from __future__ import annotations

import os
from pathlib import Path

# oneDNN caches one conv "primitive" (with its scratch memory) per input length; clips of many
# lengths then grow RSS without bound (~1.3 GB after 200 lengths with the spectral preset).
# 64 entries keep it flat at no measurable speed cost. oneDNN reads this on first use only.
ONEDNN_CACHE_ENV, ONEDNN_CACHE_ENTRIES = "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64"


def bound_kernel_cache() -> None:
    """Cap oneDNN's per-shape kernel cache unless the user already chose a size."""
    os.environ.setdefault(ONEDNN_CACHE_ENV, ONEDNN_CACHE_ENTRIES)


# ---- which runtime runs a model (the choice itself: telucodec/deploy/runtimes.py) -------------
RUNTIMES = ("auto", "torch", "onnx")
RUNTIME_ENV = "TELUCODEC_RUNTIME"   # the default of --runtime / runtime= (else "auto")
CACHE_ENV = "TELUCODEC_CACHE_DIR"   # where exports made for the onnx runtime are kept


def default_runtime() -> str:
    """What `--runtime` / `runtime=None` means: $TELUCODEC_RUNTIME when set, else "auto"."""
    return os.environ.get(RUNTIME_ENV, "").strip().lower() or "auto"


def cache_dir() -> Path:
    """$TELUCODEC_CACHE_DIR, else $XDG_CACHE_HOME/telucodec, else ~/.cache/telucodec."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "telucodec"
