"""The runtime switch (`--runtime`, `runtime=`; telucodec/deploy/runtimes.py): PyTorch and the ONNX
export write the same .tcd bytes for the same audio, "auto" picks onnx only where it can run and
gives PyTorch's codes, anything else falls back to torch with a note (never an error), and the
CLI, the API, eval and tokenize all take the switch and say which runtime ran."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import break_exporter, hide_onnxruntime, model_copy_with_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telucodec
from telucodec.cli import main
from telucodec.config import get_config
from telucodec.deploy import runtimes as R
from telucodec.deploy.export import window_frames
from telucodec.errors import TelucodecError
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec

pytest.importorskip("onnxruntime")

SR = 16000


def tiny(amplitude: str = "rms", seed: int = 0, **model_fields) -> Codec:
    cfg = get_config("tiny")
    torch.manual_seed(seed)
    return Codec(replace(cfg, model=replace(cfg.model, amplitude=amplitude, **model_fields))).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, cache) -> Path:
    """A writable model folder (rms amplitude), exported once by the onnx runtime into its onnx/."""
    folder = tiny().save_pretrained(tmp_path_factory.mktemp("m") / "model")
    chosen = R.choose_runtime(telucodec.load_model(folder), "onnx", model_path=folder)
    assert chosen.name == "onnx", chosen.note
    return folder


@pytest.fixture(scope="module")
def model(model_dir) -> Codec:
    return telucodec.load_model(model_dir)


@pytest.fixture(scope="module")
def onnx_runtime(model, model_dir):
    return R.choose_runtime(model, "onnx", model_path=model_dir)


def speechy(seed: int, n: int, level: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = np.convolve(rng.standard_normal(n + 15), np.hanning(16), mode="valid")[:n]
    x = noise * (0.3 + np.abs(np.sin(np.arange(n) * 2 * np.pi * 3 / SR)))
    return (x * level / max(float(np.sqrt(np.mean(x**2))), 1e-9)).clip(-1, 1).astype(np.float32)


# ---- the same bytes -------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(length=st.integers(1, 3 * SR), level=st.floats(0.001, 0.5), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from(["float32", "float64", "int16"]), rate=st.sampled_from([SR, 8000, 44100]),
       kbps=st.sampled_from([None, 0.4, 1.3, 100.0]), entropy=st.booleans())
def test_either_runtime_writes_the_same_tcd_bytes(model, onnx_runtime, length, level, seed, dtype, rate, kbps,
                                                   entropy):
    wav = speechy(seed, length, level)
    wav = (np.round(wav * 32767).astype(np.int16) if dtype == "int16" else wav.astype(dtype))
    def outcome(runtime: str) -> bytes | str:
        """The .tcd bytes, or the one-line refusal (a clip too short for the --kbps budget, or one
        that resamples to no samples at all): both runtimes must answer alike."""
        try:
            return telucodec.compress(wav, rate, model=model, kbps=kbps, entropy=entropy, runtime=runtime)
        except TelucodecError as exc:
            return str(exc)

    with pytest.warns() if kbps == 100.0 else _nothing():  # capped: said the same way by both
        a, b = outcome("torch"), outcome("onnx")
    assert a == b
    if isinstance(a, str):
        assert "--kbps" in a or "empty" in a
        return
    ya, sr_a = telucodec.decompress(a, model=model, runtime="torch")
    yb, sr_b = telucodec.decompress(b, model=model, runtime="onnx")
    assert sr_a == sr_b == SR and ya.shape == yb.shape and ya.dtype == yb.dtype == np.float32
    assert float(np.abs(ya - yb).max()) < 1e-4


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_long_clips_run_in_the_models_windows(model, onnx_runtime, monkeypatch):
    """Past one window (5 s encode, 20 s decode) both runtimes still agree, and the ONNX graphs
    never see more than a window and its context: memory stays flat at any length."""
    wav = speechy(7, 47 * SR + 123, 0.1)
    seen: dict[str, list[int]] = {"encode": [], "decode": []}
    codec = onnx_runtime.codec
    enc, dec = codec.encode_normalized, codec.decode_normalized
    monkeypatch.setattr(codec, "encode_normalized", lambda w, *n: seen["encode"].append(len(w)) or enc(w, *n))
    monkeypatch.setattr(codec, "decode_normalized", lambda c, *a: seen["decode"].append(c.shape[-1]) or dec(c, *a))
    a, b = model.encode(wav, SR), onnx_runtime.encode(wav, SR)
    np.testing.assert_array_equal(a.codes.numpy(), b.codes.numpy())
    assert a.side == b.side
    assert float(np.abs(model.decode(a).numpy() - onnx_runtime.decode(b)).max()) < 1e-4
    windows = window_frames(model)
    assert len(seen["encode"]) > 1 and max(seen["encode"]) <= sum(windows["encode"][:1] + 2 * windows["encode"][1:]) * model.hop
    assert len(seen["decode"]) > 1 and max(seen["decode"]) <= windows["decode"][0] + 2 * windows["decode"][1]


# ---- the choice ------------------------------------------------------------------------------
def test_auto_picks_onnx_from_the_model_folders_export(model, model_dir):
    assert (model_dir / "onnx" / "encoder.onnx").is_file()  # kept in the (writable) model folder
    chosen = R.choose_runtime(model, None, model_path=model_dir)
    assert chosen.name == "onnx" and str(model_dir / "onnx") in chosen.note


def test_auto_exports_once_into_the_cache_for_a_model_without_a_folder(cache, monkeypatch):
    model = tiny(amplitude="none", seed=3)
    chosen = R.choose_runtime(model, "auto")
    assert chosen.name == "onnx" and "made in" in chosen.note
    assert (cache / "onnx" / model.model_id / "config.json").is_file()
    monkeypatch.setattr(R, "make_export", lambda *a, **k: pytest.fail("exported twice"))
    again = R.choose_runtime(model, "auto")
    assert again.name == "onnx" and "made in" not in again.note


@pytest.mark.parametrize("older", [True, False])
def test_an_export_of_another_version_is_made_again(older, cache, monkeypatch):
    """A cached export written by an older exporter (config.json "version" below this code's, or
    none) is never run: the runtime makes the export again, of this code's version, and uses it."""
    model = tiny(amplitude="none", seed=8 if older else 10)
    first = R.choose_runtime(model, "auto")
    assert first.name == "onnx" and "made in" in first.note
    config_path = cache / "onnx" / model.model_id / "config.json"
    config = json.loads(config_path.read_text())
    current = config["version"]
    if older:
        config["version"] = current - 1
    else:
        del config["version"]
    config_path.write_text(json.dumps(config))
    R._SESSIONS.clear()
    again = R.choose_runtime(model, "auto")
    assert again.name == "onnx" and "made in" in again.note, again.note
    assert json.loads(config_path.read_text())["version"] == current
    wav = speechy(2, SR, 0.1)
    np.testing.assert_array_equal(again.encode(wav, SR).codes.numpy(), model.encode(wav, SR).codes.numpy())


@pytest.mark.parametrize("case", ["no-onnxruntime", "factorized", "lufs", "export-fails"])
@pytest.mark.parametrize("requested", ["auto", "onnx"])
def test_what_cannot_run_on_onnx_falls_back_to_torch_with_a_note(case, requested, cache, monkeypatch):
    model = tiny(amplitude="lufs" if case == "lufs" else "rms", seed=5 if requested == "auto" else 6)
    if case == "factorized":
        cfg = get_config("tiny")
        cfg.quantizer.codebook_dim = 4
        model = Codec(cfg).eval()
    if case == "no-onnxruntime":
        hide_onnxruntime(monkeypatch)
    calls = break_exporter(monkeypatch, "telucodec.deploy.export.export_onnx") if case == "export-fails" else []
    chosen = R.choose_runtime(model, requested)
    assert chosen.name == "torch"
    want = {"no-onnxruntime": "onnxruntime is not installed", "factorized": "factorized codebooks",
            "lufs": "not 'lufs'", "export-fails": "Unsupported operator aten::mystery"}[case]
    assert chosen.note.startswith("runtime: torch (") and want in chosen.note and "\n" not in chosen.note
    assert ("onnx was asked for" in chosen.note) == (requested == "onnx")
    wav = speechy(1, SR, 0.1)
    np.testing.assert_array_equal(chosen.encode(wav, SR).codes.numpy(), model.encode(wav, SR).codes.numpy())
    if case == "export-fails":  # not retried on every run; the note says how to retry
        again = R.choose_runtime(model, requested)
        assert calls == [1] and again.name == "torch" and ".failed" in again.note


def test_an_export_whose_codes_differ_is_used_only_when_asked_for(model, model_dir, tmp_path):
    folder = model_copy_with_config(model_dir, tmp_path / "model", "onnx/config.json",
                                    lambda c: c["parity"].update(encoder_codes_identical=False, encoder_codes_mismatched=3))
    auto = R.choose_runtime(model, "auto", model_path=folder)
    assert auto.name == "torch" and "differ" in auto.note
    asked = R.choose_runtime(model, "onnx", model_path=folder)
    assert asked.name == "onnx" and "may differ" in asked.note


def test_another_models_export_is_not_used(model, model_dir, tmp_path, cache):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    other = tiny(amplitude="none", seed=3)  # the model the cache test exports (else exported here)
    other.save_pretrained(folder)  # same folder, other weights: its onnx/ is stale
    chosen = R.choose_runtime(telucodec.load_model(folder), "onnx", model_path=folder)
    assert chosen.name == "onnx"
    assert json.loads((chosen.directory / "config.json").read_text())["model_id"] == other.model_id != model.model_id


@pytest.mark.parametrize("name", ["tensorrt", "", "ONNX "])
def test_runtime_names(model, name):
    if name.strip().lower() == "onnx":
        assert R.check_runtime_name(name) == "onnx"
        return
    with pytest.raises(TelucodecError, match="choose one of auto, torch, onnx"):
        telucodec.compress(np.zeros(SR, np.float32), SR, model=model, runtime=name)


def test_the_api_warns_when_onnx_was_asked_for_and_torch_ran(monkeypatch, cache):
    model = tiny(amplitude="lufs", seed=2)
    with pytest.warns(UserWarning, match=r"runtime: torch \(onnx was asked for"):
        data = telucodec.compress(speechy(0, SR, 0.1), SR, model=model, runtime="onnx")
    assert data == telucodec.compress(speechy(0, SR, 0.1), SR, model=model, runtime="torch")


# ---- the CLI -------------------------------------------------------------------------------
def cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seconds=st.floats(0.05, 7.0), level=st.floats(0.01, 0.5), seed=st.integers(0, 1000),
       subtype=st.sampled_from(["PCM_16", "FLOAT"]))
def test_cli_encode_decode_same_bytes_and_says_which_runtime_ran(model_dir, tmp_path, capsys, seconds, level, seed,
                                                                 subtype):
    src = tmp_path / f"in-{seed}.wav"
    sf.write(str(src), speechy(seed, int(seconds * SR), level), SR, subtype=subtype)
    outs = {}
    for runtime in ("torch", "onnx", None):
        dst = tmp_path / f"{runtime}-{seed}.tcd"
        flag = ["--runtime", runtime] if runtime else []
        rc, out, err = cli(capsys, "encode", src, dst, "--model", model_dir, "--force", *flag)
        assert rc == 0, err
        assert err.strip().splitlines()[-1].startswith(f"runtime: {runtime or 'onnx'} (")
        outs[runtime] = dst.read_bytes()
        rc, out, err = cli(capsys, "decode", dst, tmp_path / f"{runtime}-{seed}.wav", "--model", model_dir,
                           "--force", *flag)
        assert rc == 0 and err.strip().splitlines()[-1].startswith(f"runtime: {runtime or 'onnx'} (")
    assert outs["torch"] == outs["onnx"] == outs[None]
    a, b = (load_audio(tmp_path / f"{r}-{seed}.wav") for r in ("torch", "onnx"))
    assert float(np.abs(a - b).max()) <= 2 / 32768  # the same audio but for 16-bit rounding


def test_cli_runtime_without_onnxruntime_is_a_note_not_an_error(model_dir, example_clips, tmp_path, capsys,
                                                                monkeypatch):
    real = R.importlib.util.find_spec
    monkeypatch.setattr(R.importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name))
    rc, out, err = cli(capsys, "encode", example_clips[0], tmp_path / "x.tcd", "--model", model_dir, "--runtime", "onnx")
    assert rc == 0 and "runtime: torch (onnx was asked for but onnxruntime is not installed" in err


def test_cli_refuses_an_unknown_runtime(capsys):
    with pytest.raises(SystemExit) as info:
        main(["encode", "a.wav", "b.tcd", "--runtime", "tensorrt"])
    assert info.value.code == 2 and "--runtime" in capsys.readouterr().err


# ---- eval and tokenize -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def few_clips(tmp_path_factory, example_clips) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for clip in example_clips[:3]:
        shutil.copy(clip, folder / clip.name)
    return folder


def test_eval_rows_are_the_same_with_either_runtime_and_say_which_ran(few_clips, model_dir, tmp_path, capsys):
    results = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / runtime
        rc, _, err = cli(capsys, "eval", "--data_dir", few_clips, "--out", out, "--model", model_dir, "--kbps", "1",
                         "--baselines", "none", "--quiet", "--runtime", runtime)
        assert rc == 0, err
        assert f"runtime: {runtime} (" in err
        results[runtime] = json.loads((out / "results.json").read_text())
    torch_run, onnx_run = results["torch"], results["onnx"]
    assert (torch_run["runtime"], onnx_run["runtime"]) == ("torch", "onnx")
    assert set(torch_run) == set(onnx_run) >= {"systems", "per_speaker", "model_id", "clips", "warnings"}
    a, b = torch_run["systems"][0], onnx_run["systems"][0]
    assert a["bytes"] == b["bytes"] and a["kbps_actual"] == b["kbps_actual"]
    assert a["pesq_wb"] == pytest.approx(b["pesq_wb"], abs=0.02, nan_ok=True)
    assert a["rms_ratio"] == pytest.approx(b["rms_ratio"], abs=1e-3)


def _codes(out: Path) -> dict[str, np.ndarray]:
    from telucodec.formats import tokens

    reader = tokens.open(out)
    return {utt: np.array(reader[utt]) for utt in reader.ids()}


def test_tokenize_gives_the_same_codes_with_either_runtime(few_clips, model, model_dir, tmp_path, capsys):
    from telucodec.deploy.tokenize import tokenize_dataset

    serial = tokenize_dataset(few_clips, tmp_path / "torch", model, kbps=1.0, runtime="torch")
    onnx = tokenize_dataset(few_clips, tmp_path / "onnx", model, kbps=1.0, runtime="onnx", model_path=model_dir,
                            workers=2)  # worker processes rebuild the onnx runtime
    assert (serial["runtime"], onnx["runtime"]) == ("torch", "onnx") and onnx["tokenized"] == 3
    a, b = _codes(tmp_path / "torch"), _codes(tmp_path / "onnx")
    assert a.keys() == b.keys() and all(np.array_equal(a[u], b[u]) for u in a)
    rc, _, err = cli(capsys, "tokenize", "--data_dir", few_clips, "--out", tmp_path / "cli", "--model", model_dir,
                     "--kbps", "1", "--runtime", "onnx")
    assert rc == 0 and err.strip().splitlines()[-1].startswith("runtime: onnx (")
    c = _codes(tmp_path / "cli")
    assert all(np.array_equal(a[u], c[u]) for u in a)


@pytest.mark.slow
def test_ray_actors_run_the_onnx_runtime(few_clips, model, model_dir, tmp_path):
    ray = pytest.importorskip("ray")
    from telucodec.deploy.tokenize import tokenize_dataset

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        got = tokenize_dataset(few_clips, tmp_path / "ray", model, kbps=1.0, workers=2, engine="ray",
                               runtime="onnx", model_path=model_dir)
    finally:
        ray.shutdown()
    assert got["runtime"] == "onnx" and got["tokenized"] == 3
    serial = tokenize_dataset(few_clips, tmp_path / "torch", model, kbps=1.0, runtime="torch")
    assert serial["tokenized"] == 3
    a, b = _codes(tmp_path / "torch"), _codes(tmp_path / "ray")
    assert a.keys() == b.keys() and all(np.array_equal(a[u], b[u]) for u in a)
