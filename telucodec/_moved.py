"""Module paths from before the package had folders, kept importable.

`import telucodec.bitstream` (or `from telucodec.metrics import pesq_wb`) still works: the old
name is an alias of the module at its new path, the same module object, not a copy, imported
only when first asked for. New code imports the new paths (README, "Where things moved");
tests/test_layering.py checks that the package itself never uses an old one.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

MOVED: dict[str, str] = {
    "telucodec.audio": "telucodec.formats.audio",
    "telucodec.codes": "telucodec.formats.codes",
    "telucodec.bitstream": "telucodec.formats.bitstream",
    "telucodec.tokens": "telucodec.formats.tokens",
    "telucodec.data": "telucodec.formats.dataset",
    "telucodec.metrics": "telucodec.evaluation.metrics",
    "telucodec.plots": "telucodec.evaluation.plots",
    "telucodec.baselines": "telucodec.evaluation.baselines",
    "telucodec.report": "telucodec.evaluation.report",
    "telucodec.evaluate": "telucodec.evaluation.evaluate",
    "telucodec.discriminators": "telucodec.train.discriminators",
    "telucodec.export": "telucodec.deploy.export",
    "telucodec.onnx_runtime": "telucodec.deploy.onnx_runtime",
    "telucodec.tokenize": "telucodec.deploy.tokenize",
    "telucodec.commands": "telucodec.cli.commands",
}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds only the old names; loading one puts the new module into sys.modules under it."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a placeholder module; exec_module swaps in the real one

    def exec_module(self, module: ModuleType) -> None:
        # the import system returns whatever sys.modules holds under the name after this call
        sys.modules[module.__name__] = importlib.import_module(MOVED[module.__name__])


def install() -> None:
    """Answer the old names (once per process; real modules are always found first)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
