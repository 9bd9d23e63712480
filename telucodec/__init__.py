"""telucodec: a neural speech codec toolkit for Telugu and other low-resource languages.

Names are imported on first use (PEP 562), so `import telucodec.tokens` or
`import telucodec.onnx_runtime` works without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {"compress": "telucodec.api", "decompress": "telucodec.api", "load_model": "telucodec.api",
         "Codes": "telucodec.codes"}
_SUBMODULES = ("api", "codes", "tokens", "onnx_runtime")

__all__ = ["Codes", "compress", "decompress", "load_model", "tokens", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"telucodec.{name}")
    raise AttributeError(f"module 'telucodec' has no attribute {name!r}")
