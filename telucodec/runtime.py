"""Process-wide settings that must be in place before the first convolution runs."""

from __future__ import annotations

import os

# oneDNN caches one conv "primitive" (with its scratch memory) per input length; clips of many
# lengths then grow RSS without bound (~1.3 GB after 200 lengths with the spectral preset).
# 64 entries keep it flat at no measurable speed cost. oneDNN reads this on first use only.
ONEDNN_CACHE_ENV, ONEDNN_CACHE_ENTRIES = "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64"


def bound_kernel_cache() -> None:
    """Cap oneDNN's per-shape kernel cache unless the user already chose a size."""
    os.environ.setdefault(ONEDNN_CACHE_ENV, ONEDNN_CACHE_ENTRIES)
