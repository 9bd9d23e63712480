"""Shared fixtures: real example clips and a tiny model trained here through the real CLI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"

torch.set_num_threads(1)
# `--runtime` / `runtime=` default to "auto", which exports a model to ONNX the first time it is
# used (seconds per model, cached under ~/.cache): the suite runs PyTorch unless a test asks
# for a runtime itself (tests/test_runtime.py).
os.environ.setdefault("TELUCODEC_RUNTIME", "torch")

def as_unprivileged(cmd: list[str]) -> list[str]:
    """`cmd` run so that file permissions apply to it. As root: root without the capabilities that
    override them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a chmod 000 file or folder is refused
    while the checkout stays readable wherever it is cloned (a private folder other users cannot
    enter included); skipped only where setpriv is missing."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: file permissions cannot be tested")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]


def as_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """float samples in [-1, 1] -> that dtype's PCM (integers: full scale of the dtype)."""
    if dtype.startswith("float"):
        return x.astype(dtype)
    info = np.iinfo(dtype)
    if info.min == 0:  # unsigned: centred on the middle code
        return np.clip(np.round(x * 128 + 128), 0, 255).astype(dtype)
    return np.clip(np.round(x * (float(info.max) + 1)), info.min, info.max).astype(dtype)


def cut_pieces(total: int, cuts: list[int]) -> list[tuple[int, int]]:
    """[0, total) cut at each of `cuts` (taken modulo total + 1): the (start, end) pieces in order."""
    points = sorted({0, total, *(c % (total + 1) for c in cuts)})
    return list(zip(points[:-1], points[1:]))


def model_copy_with_config(model_dir: Path, dest: Path, config: str, edit) -> Path:
    """A copy of the model folder `model_dir` at `dest` whose JSON file `config` (a path inside
    it, e.g. an export's config) was changed in place by `edit(dict)`."""
    import json

    shutil.copytree(model_dir, dest)
    path = dest / config
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))
    return dest


def hide_onnxruntime(monkeypatch) -> None:
    """The runtimes find no onnxruntime installed (every other package as it is)."""
    from telucodec.deploy import runtimes

    real = runtimes.importlib.util.find_spec
    monkeypatch.setattr(runtimes.importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name))


def break_exporter(monkeypatch, target: str) -> list[int]:
    """Replace the exporter `target` ("module.function", called as (model, folder, ...)) by one
    that writes half a file into its folder, then fails as a model it cannot trace would.
    Returns the list it appends to on each call."""
    calls: list[int] = []

    def broken(*args, **kwargs):
        calls.append(1)
        Path(args[1]).mkdir(parents=True, exist_ok=True)
        (Path(args[1]) / "half-written.onnx").write_bytes(b"x")
        raise RuntimeError("Unsupported operator aten::mystery")

    monkeypatch.setattr(target, broken)
    return calls


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """$TELUCODEC_CACHE_DIR in a temporary folder for one test module (the runtimes' exports are
    made there), and the default runtime unset (auto)."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("cache")
    mp.setenv("TELUCODEC_CACHE_DIR", str(folder))
    mp.delenv("TELUCODEC_RUNTIME", raising=False)
    yield folder
    mp.undo()


@pytest.fixture(scope="session")
def example_clips() -> list[Path]:
    clips = sorted(EXAMPLES.rglob("*.flac"))
    assert len(clips) >= 10, "examples/te_cv should hold the CC0 Common Voice clips"
    return clips


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> Path:
    """A `tiny` codec trained for 2 short epochs on the example clips; returns the experiment folder
    (its `model/` subfolder is a model folder, `checkpoints/last.pt` a training checkpoint)."""
    from telucodec.cli import main

    root = tmp_path_factory.mktemp("tiny_run")
    rc = main(["train", "--data_dir", str(EXAMPLES), "--checkpoint_dir", str(root), "--experiment_name", "tiny",
               "--config", "tiny", "--batch_size", "8", "--num_epochs", "2", "--steps_per_epoch", "15",
               "--learning_rate", "1e-3", "--quiet"])
    assert rc == 0
    return root / "tiny"


def assert_pieces_round_trip(tables, arr, cuts: list[int], byte_cuts: list[int]) -> None:
    """Frames of `arr` [n_q, F] pushed to a ContextEncoder in the pieces `cuts` make give the whole
    clip's bytes; those bytes fed to a ContextDecoder in the pieces `byte_cuts` make (each piece with
    the frames announced) give the frames back, never one the encoder has not taken."""
    from telucodec.formats.context_coder import ContextDecoder, ContextEncoder, encode_codes

    n_q, frames = arr.shape
    whole = encode_codes(tables, arr)
    enc, sent = ContextEncoder(tables, n_q), []
    for lo, hi in zip([0, *sorted(cuts)], [*sorted(cuts), frames]):
        lo, hi = min(lo, frames), min(hi, frames)
        sent.append((enc.push(arr[:, lo:hi]), enc.frames))
    sent.append((enc.finish(), enc.frames))
    assert b"".join(b for b, _ in sent) == whole
    dec, got = ContextDecoder(tables, n_q), []
    for data, taken in sent:
        ends = sorted(c % (len(data) + 1) for c in byte_cuts)
        for i, j in zip([0, *ends], [*ends, len(data)]):
            got.append(dec.feed(data[i:j], taken))
            assert dec.frames <= taken
    got.append(dec.finish(frames))
    np.testing.assert_array_equal(np.concatenate(got, axis=1), arr)


def load_benchmark(name: str, module_name: str | None = None):
    """A script of benchmarks/ as a module (they are scripts, not a package): benchmarks/NAME.py."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(module_name or name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def tiny_with_tables(tables_seed: int):
    """The `tiny` preset with started codebooks, later stages smaller (as trained RVQ stages are),
    and random context tables (`mixed_tables` of `tables_seed`): rate control and the weighed beam
    have real codebooks and tables to work with."""
    import torch

    from telucodec.config import get_config
    from telucodec.model.codec import Codec

    torch.manual_seed(0)
    model = Codec(get_config("tiny")).eval()
    with torch.no_grad():
        scale = torch.tensor([0.5 ** i for i in range(model.max_n_q)])[:, None, None]
        model.quantizer.set_codebooks(torch.randn_like(model.quantizer.codebooks()) * 0.3 * scale)
    model.entropy_tables = mixed_tables(tables_seed, [model.codebook_bits] * model.max_n_q)
    return model


def mixed_tables(seed: int, stage_bits: list[int], a: int = 3, b: int = 2, k: int = 3):
    """Valid tables for stages of `stage_bits`, from integer draws only (an adversary's tables:
    any class maps, flat to very peaked frequencies, any repeat mass)."""
    from telucodec.formats.context_tables import TOTAL_BITS, ContextTables, StageTables, total_bits_for

    rng = np.random.default_rng(seed)
    stages = []
    for q, bits in enumerate(stage_bits):
        v = 1 << bits
        v_before = 1 << stage_bits[q - 1] if q else v
        total = 1 << total_bits_for(v)
        wide = np.uint32 if total_bits_for(v) != TOTAL_BITS else np.uint16
        bq = b if q else 1
        repeat = rng.integers(0, total - 4 * v + 1, size=k)
        weights = rng.integers(1, 1000, size=(k, v)) ** int(rng.integers(1, 4))
        tot = total - repeat
        freq = 1 + weights * (tot - v)[:, None] // weights.sum(1, keepdims=True)
        freq[np.arange(k), np.argmax(weights, 1)] += tot - freq.sum(1)
        stages.append(StageTables(prev_class=rng.integers(0, a, v + 1).astype(np.uint8),
                                  stage_class=rng.integers(0, bq, v_before).astype(np.uint8),
                                  context=rng.integers(0, k, (a, bq)).astype(np.uint8),
                                  freq=freq.astype(wide), repeat=repeat.astype(wide)))
    return ContextTables(stages, f"mixed tables {seed}")
