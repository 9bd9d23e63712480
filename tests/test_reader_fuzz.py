"""The atheris harnesses of the data readers (benchmarks/fuzz.py targets tar, parquet, sidecar):
a short coverage-guided run of each finds nothing (docs/robustness.md has the million-case runs),
and every input they once failed on is refused or read (tests/fuzz_regressions/TARGET/, replayed
for all targets by tests/test_robustness.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = 300


@pytest.mark.parametrize("target", ["tar", "parquet", "sidecar"])
def test_a_short_fuzzing_run_of_each_reader_finds_nothing(target, tmp_path) -> None:
    pytest.importorskip("atheris", reason="make install installs the fuzz extra (atheris)")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), target, "--runs", str(RUNS),
                           "--work", str(tmp_path), "--json", str(tmp_path / "summary.json")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (summary,) = json.loads((tmp_path / "summary.json").read_text())
    assert summary["runs"] >= RUNS and summary["failures"] == [] and summary["timeouts"] == 0
    assert summary["coverage"] > 0 and summary["seeds"] >= 3


def test_the_reader_targets_fail_on_a_broken_promise(tmp_path, monkeypatch) -> None:
    """The harness can fail: an error that does not name the file is a finding, not a pass."""
    import importlib.util

    from telucodec.errors import AudioError
    from telucodec.formats import dataset

    spec = importlib.util.spec_from_file_location("telucodec_fuzz_readers", ROOT / "benchmarks" / "fuzz.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    target = fuzz.make_target("tar")
    target.setup()
    seed = target.seeds()[0]
    target.check(seed)  # a real shard: read

    def anonymous(*args, **kwargs):
        raise AudioError("something is wrong")

    monkeypatch.setattr(dataset, "load_audio_bytes", anonymous)
    with pytest.raises(AssertionError, match="does not name"):
        target.check(seed)
