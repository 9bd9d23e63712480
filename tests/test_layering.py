"""The package's architecture, checked from its source: layers import only downward, no cycles.

The import graph is built with `ast` from every module under telucodec/ (imports inside
functions and under `if TYPE_CHECKING:` count too), so a new module is checked without being
listed here; only a new top-level folder or module needs a place in LAYERS.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from telucodec._moved import MOVED

PACKAGE = Path(__file__).resolve().parents[1] / "telucodec"

# Bottom to top. A module may import from its own part (folder or top-level module) and from
# parts in lower layers, never from a higher layer or from another part of its own layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),                         # the exception family
    ("config", "runtime", "losses"),     # config dataclasses, process settings, loss functions
    ("formats",),                        # bytes and files: audio, datasets, Codes, .tcd, tokens
    ("model",),                          # the codec, and reading it from disk
    ("evaluation",),                     # metrics, baselines, the eval job, reports, plots
    ("train", "deploy"),                 # training; ONNX export / numpy runtime / tokenize
    ("api",),                            # load_model, compress, decompress
    ("cli",),                            # the `telucodec` command
    ("_moved",),                         # old module paths, answered as aliases
    ("__init__",),                       # the package face: lazy public names
)
LAYER_OF = {part: i for i, parts in enumerate(LAYERS) for part in parts}
MAX_LINES = 400
WHOLE_MARK = "reads best whole"  # a longer module must say why in its docstring


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path, module: str) -> set[str]:
    """Every telucodec module name `path` imports (`from a import b` yields a.b when b is a module)."""
    known = modules()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(n for n in names if n == "telucodec" or n.startswith("telucodec."))
    return found


def graph() -> dict[str, set[str]]:
    """module -> the telucodec modules it imports (an import of a package counts as its __init__)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for imported in imported_names(path, name):
            while imported not in known and "." in imported:  # `import telucodec.x.y` of an attribute
                imported = imported.rpartition(".")[0]
            if imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def test_every_part_has_a_layer() -> None:
    unplaced = sorted({part_of(m) for m in modules()} - set(LAYER_OF))
    assert not unplaced, f"give these parts of telucodec a layer in tests/test_layering.py: {unplaced}"


def test_imports_only_point_down() -> None:
    upward = []
    for source, targets in graph().items():
        for target in targets:
            a, b = part_of(source), part_of(target)
            if a != b and LAYER_OF[b] >= LAYER_OF[a]:
                upward.append(f"{source} -> {target} ({a} is layer {LAYER_OF[a]}, {b} is layer {LAYER_OF[b]})")
    assert not upward, "imports that do not point to a lower layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_the_package_uses_no_old_module_path() -> None:
    users = sorted(f"{name} imports {old} (now {MOVED[old]})" for name, path in modules().items()
                   for old in imported_names(path, name) if old in MOVED)
    assert not users, "\n".join(users)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_still_import(old: str) -> None:
    assert old not in modules(), f"{old} is both a module and an alias"
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_modules_stay_small_or_say_why() -> None:
    long = []
    for name, path in modules().items():
        text = path.read_text()
        if text.count("\n") > MAX_LINES and WHOLE_MARK not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(f"{name}: {text.count(chr(10))} lines")
    assert not long, f"over {MAX_LINES} lines without '{WHOLE_MARK}' (and why) in the docstring: {long}"
