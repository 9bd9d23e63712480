"""telucodec: a neural speech codec toolkit for Telugu and other low-resource languages.

Layers, bottom to top; each imports only from the ones below it (docs/design.md; checked by
tests/test_layering.py):

    errors; config, runtime, losses   exceptions; config dataclasses, process settings, loss functions
    formats/      bytes and files: audio, datasets, `Codes`, the .tcd bitstream, token folders
    model/        the codec (encoder, quantizer, decoders, amplitude, streaming) and loading it
    evaluation/   metrics, baselines, `telucodec eval`, reports and plots
    train/, deploy/   the training job; ONNX export + numpy runtime, datasets -> token shards
    api           load_model, compress, decompress, open_streams
    cli/          the `telucodec` command

Names are imported on first use (PEP 562), so `import telucodec.tokens` or
`import telucodec.onnx_runtime` works without importing torch. Module paths from before the
folders (`telucodec.bitstream`, ...) still import: see `telucodec._moved`.
"""

from __future__ import annotations

import importlib
from typing import Any

from telucodec import _moved

__version__ = "0.1.0"

_moved.install()

_LAZY = {"compress": "telucodec.api", "decompress": "telucodec.api", "load_model": "telucodec.api",
         "open_streams": "telucodec.api",
         "Codes": "telucodec.formats.codes"}
_SUBMODULES = {"api": "telucodec.api", "codes": "telucodec.formats.codes", "tokens": "telucodec.formats.tokens",
               "onnx_runtime": "telucodec.deploy.onnx_runtime"}

__all__ = ["Codes", "compress", "decompress", "load_model", "open_streams", "tokens", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'telucodec' has no attribute {name!r}")
