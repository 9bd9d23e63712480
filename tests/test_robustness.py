"""Robustness: the bounded `benchmarks/robustness.py --quick` run must find no failures, plus
focused tests for what that benchmark found and got fixed (see docs/robustness.md)."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import as_unprivileged, load_benchmark

from telucodec.cli import main
from telucodec.config import CodecConfig, get_config
from telucodec.errors import AudioError, ModelError, TelucodecError
from telucodec.formats import audio
from telucodec.formats.audio import load_audio
from telucodec.formats.bitstream import write_bitstream
from telucodec.formats.codes import Codes
from telucodec.model.codec import Codec
from telucodec.model.loading import load_checkpoint
from telucodec.train import checkpoint
from telucodec.train.checkpoint import atomic_torch_save, disk_full
from telucodec.train.experiment import tidy_for_resume

ROOT = Path(__file__).resolve().parents[1]
QUICK_BUDGET_S = 90


def random_tiny(amplitude: str = "none", seed: int = 0) -> Codec:
    cfg = get_config("tiny")
    torch.manual_seed(seed)
    return Codec(replace(cfg, model=replace(cfg.model, amplitude=amplitude))).eval()


# ---- the benchmark, bounded ------------------------------------------------------------------

def test_quick_robustness_benchmark_finds_no_failures(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "robustness.py"), "--quick",
                           "--out", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["failures"] == 0
    areas = {row["area"] for row in result["rows"]}
    assert {"bitstream fuzz", "bad audio: encode", "bad audio: training folder", "untrusted files",
            "training faults"} <= areas
    assert sum(row["tried"] for row in result["rows"]) > 250
    report = (tmp_path / "r.md").read_text()
    assert "benchmarks/robustness.py --quick" in report and "| Area | Case |" in report
    # the budget is for an unloaded 2-core machine; allow for others' jobs sharing it
    assert took < 2.5 * QUICK_BUDGET_S, f"--quick took {took:.0f} s"


# ---- audio: one clear reason ------------------------------------------------------------------

def test_audio_errors_name_the_problem(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "loop.wav").symlink_to("loop.wav")
    (tmp_path / "dangling.wav").symlink_to("nowhere.wav")
    os.mkfifo(tmp_path / "fifo.wav")  # opening it for reading would block forever
    (tmp_path / "zero.wav").symlink_to("/dev/zero")
    expected = {"empty.wav": "empty file (0 bytes)", "loop.wav": "symlink loop", "dangling.wav": "broken symlink",
                "fifo.wav": "not a regular file", "zero.wav": "not a regular file",
                "missing.wav": "no such file"}
    for name, reason in expected.items():
        with pytest.raises(AudioError, match=re.escape(reason)):
            load_audio(tmp_path / name)


def test_unreadable_file_says_permission_denied(example_clips):
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        path = folder / "locked.wav"
        shutil.copy(example_clips[0], path)
        path.chmod(0)
        out = _load_as_unprivileged(path)
        assert out.endswith("locked.wav: permission denied"), out
        (folder / "inner").mkdir()
        (folder / "inner").chmod(0)  # a folder we may not enter (even as its owner): refused the same way
        assert _load_as_unprivileged(folder / "inner" / "x.wav").endswith("x.wav: permission denied")
    finally:
        if (folder / "inner").exists():
            (folder / "inner").chmod(0o700)
        shutil.rmtree(folder)


def _load_as_unprivileged(path: Path) -> str:
    """`load_audio(path)`'s error as a user who is not root (nobody, when we are root)."""
    code = f"from telucodec.formats.audio import load_audio\ntry:\n    load_audio({str(path)!r})\nexcept Exception as e:\n    print(e)"
    cmd = as_unprivileged([sys.executable, "-c", code])  # root reads anything: drop that power
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        pytest.skip(f"cannot run as another user here: {proc.stderr.strip()[-200:]}")
    return proc.stdout.strip()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make MP3/AAC files")
def test_mp3_decoder_chatter_never_reaches_stderr(tmp_path, example_clips, capfd):
    good = tmp_path / "good.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(example_clips[0]), str(good)], check=True)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(2000, len(data), 50):
        data[i] = int(rng.integers(0, 256))
    (tmp_path / "corrupt.mp3").write_bytes(bytes(data))  # libmpg123 prints "Illegal Audio-MPEG-Header"
    (tmp_path / "half.mp3").write_bytes(good.read_bytes()[: len(data) // 2])  # ... "Xing stream size off"
    (tmp_path / "text.mp3").write_text("not audio\n" * 20)
    capfd.readouterr()
    assert load_audio(tmp_path / "corrupt.mp3").size > 16000
    assert load_audio(tmp_path / "half.mp3").size > 16000
    with pytest.raises(AudioError, match="not decodable audio"):
        load_audio(tmp_path / "text.mp3")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_ffmpeg_path_enforces_the_duration_limit(tmp_path, example_clips, monkeypatch):
    m4a = tmp_path / "clip.m4a"  # AAC: libsndfile cannot read it, so ffmpeg decodes it
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(example_clips[0]), "-c:a", "aac", str(m4a)], check=True)
    assert load_audio(m4a).size > 2 * 16000
    monkeypatch.setattr(audio, "MAX_INPUT_SECONDS", 1)
    with pytest.raises(AudioError, match="longer than the 1 s limit"):
        load_audio(m4a)


# ---- decode refuses codes the model cannot have made --------------------------------------------

def _forged(original: Codes, **changes) -> Codes:
    return replace(original, **changes)


def test_decode_refuses_codes_of_another_format():
    model = random_tiny()
    codes = model.encode(np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3)
    assert model.decode(codes).shape[0] == 16000
    wide = torch.randint(0, 1 << 16, (4, codes.num_frames))  # 8 x 8 bits rewritten as 4 x 16 bits
    cases = {
        "codebook bits 16": _forged(codes, codes=wide, codebook_bits=16),
        "sample rate 32000": _forged(codes, sample_rate=32000, frame_rate=100),
        "frame rate 25": _forged(codes, frame_rate=25),
        "code values must be in 0..255": _forged(codes, codes=codes.codes.clone().fill_(300)),
    }
    for message, forged in cases.items():
        with pytest.raises(ModelError, match=message):
            model.decode(forged)
    rms = random_tiny("rms")
    rms_codes = rms.encode(np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3)
    with pytest.raises(ModelError, match="no 'rms' amplitude side info"):
        rms.decode(_forged(rms_codes, side=[]))


def test_forged_tcd_with_valid_crc_is_one_line_error(tmp_path, capsys):
    model = random_tiny()
    model.save_pretrained(tmp_path / "m")
    data = write_bitstream(model.encode(np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3))
    fields = list(struct.unpack_from("<4sBB8sIQBBHBBII", data))
    fields[6], fields[7] = 4, 16  # n_q 8 -> 4, codebook bits 8 -> 16: the same payload size
    body = struct.pack("<4sBB8sIQBBHBBII", *fields)
    payload = data[44:]
    (tmp_path / "forged.tcd").write_bytes(body + struct.pack("<I", zlib.crc32(payload, zlib.crc32(body))) + payload)
    rc = main(["decode", str(tmp_path / "forged.tcd"), str(tmp_path / "out.wav"), "--model", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "codebook bits 16, the model uses 8" in err[0]


# ---- checkpoints and model files ---------------------------------------------------------------

def test_real_full_disk_error_shape_is_reported_as_disk_full(tmp_path, monkeypatch):
    """torch.save on a full disk raises RuntimeError('unexpected pos'), the OSError only as its
    context (seen on a real tmpfs by the benchmark); it must still be 'disk full'."""
    path = tmp_path / "last.pt"
    atomic_torch_save({"format": 1, "model": {"w": torch.ones(3)}, "config": {}}, path)
    before = path.read_bytes()

    def torch_style_full_disk(obj, f):
        f.write(b"partial")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    monkeypatch.setattr(checkpoint.torch, "save", torch_style_full_disk)
    with pytest.raises(TelucodecError, match="disk full.*previous one is intact"):
        atomic_torch_save({"format": 1, "model": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert not disk_full(RuntimeError("something else"))


def test_resume_tidies_what_a_kill_left(tmp_path):
    root = tmp_path / "exp"
    (root / "checkpoints").mkdir(parents=True)
    (root / "model").mkdir()
    for stale in ("checkpoints/.last.pt.tmp-4242", "checkpoints/.best.tmp", "model/model.safetensors.tmp"):
        (root / stale).write_bytes(b"half a file")
    (root / "checkpoints" / "last.pt").write_bytes(b"kept")
    rows = [json.dumps({"epoch": e, "step": 2 * e}) for e in (1, 2, 3)]
    (root / "metrics.jsonl").write_text("\n".join(rows) + '\n{"epoch": 4, "ste')  # killed mid-line
    tidy_for_resume(root, epoch=2)
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["last.pt"]
    assert list((root / "model").iterdir()) == []
    assert [json.loads(line)["epoch"] for line in (root / "metrics.jsonl").read_text().splitlines()] == [1, 2]


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_refused_pickle_gives_no_warning_lines(tmp_path):
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": 1, "model": {}, "x": _Payload(tmp_path / "pwned")}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ModelError, match="refused"):
            load_checkpoint(evil)
    assert caught == [] and not (tmp_path / "pwned").exists()


def test_binary_config_json_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_bytes(pickle.dumps(_Payload(tmp_path / "pwned")))
    with pytest.raises(TelucodecError, match="not a readable JSON config"):
        CodecConfig.load(tmp_path / "config.json")
    assert not (tmp_path / "pwned").exists()


def test_saved_model_folder_is_readable_like_its_config(tmp_path):
    folder = random_tiny().save_pretrained(tmp_path / "m")
    weights, config = (folder / "model.safetensors").stat().st_mode, (folder / "config.json").stat().st_mode
    assert weights & 0o777 == config & 0o777  # safetensors alone would make it 0600


# ---- coverage-guided fuzzing (benchmarks/fuzz.py, atheris) ---------------------------------------

REGRESSIONS = ROOT / "tests" / "fuzz_regressions"


def _fuzz_module():
    return load_benchmark("fuzz", "telucodec_fuzz")


@pytest.mark.parametrize("path", sorted(p for p in REGRESSIONS.rglob("*") if p.is_file()),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fuzzer_findings_stay_fixed(path: Path) -> None:
    """Each input the fuzzer once crashed on (tests/fuzz_regressions/TARGET/NAME) is now refused
    with a telucodec error (or read), through the same target code the fuzzer runs."""
    target = _fuzz_module().make_target(path.parent.name)
    target.setup()
    try:
        target.run(path.read_bytes())
    except TelucodecError as exc:
        assert str(exc) and "\n" not in str(exc)


def test_a_stranger_config_cannot_make_the_loader_allocate(tmp_path) -> None:
    """A model folder whose config.json asks for a 20-billion-value decoder is refused before any
    tensor is built (found by the fuzzer as a zero-width model; this is its big sibling)."""
    fuzz = _fuzz_module()
    config, weights = fuzz.unpack_files((REGRESSIONS / "model" / "huge-decoder").read_bytes(), 2)
    (tmp_path / "config.json").write_bytes(config)
    (tmp_path / "model.safetensors").write_bytes(weights)
    with pytest.raises(ModelError, match="describes a model of 20,252,175,687 values, more than model.safetensors"):
        Codec.from_pretrained(tmp_path)


@pytest.mark.parametrize("target", ["tcd", "audio", "model", "shards"])
def test_a_short_fuzzing_run_of_every_target_finds_nothing(target, tmp_path) -> None:
    """A few thousand coverage-guided cases per target (docs/robustness.md has the million-case runs)."""
    pytest.importorskip("atheris", reason="make install installs the fuzz extra (atheris)")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), target, "--runs", "3000",
                           "--work", str(tmp_path), "--json", str(tmp_path / "summary.json")],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (summary,) = json.loads((tmp_path / "summary.json").read_text())
    assert summary["runs"] >= 3000 and summary["failures"] == [] and summary["timeouts"] == 0
    assert summary["coverage"] > 0 and summary["seeds"] >= 1
