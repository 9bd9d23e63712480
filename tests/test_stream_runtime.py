"""The runtime switch for streams (`telucodec.open_streams`, deploy/stream_runtimes.py): "auto" streams
through the streaming ONNX graphs where they run with PyTorch's codes, made once and kept; both
runtimes take any chunking and any input dtype and give numpy; anything that cannot run on onnx
streams in PyTorch with a one-line note (never an error), and a failed export is recorded, not
retried, and leaves nothing half-written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import as_dtype, break_exporter, cut_pieces, hide_onnxruntime, model_copy_with_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telucodec
from telucodec.config import get_config
from telucodec.deploy import stream_runtimes as S
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec

pytest.importorskip("onnxruntime")

SR = 16000
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "te_cv"
AUDIO_TOLERANCE = 1e-4


def causal(seed: int = 0, **model_fields) -> Codec:
    cfg = get_config("tiny")
    fields = {"causal": True, "amplitude": "rms", "level_match": True, **model_fields}
    torch.manual_seed(seed)
    return Codec(replace(cfg, model=replace(cfg.model, **fields))).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, cache) -> Path:
    """A writable model folder whose streaming export is made once, into its onnx-stream/."""
    folder = causal().save_pretrained(tmp_path_factory.mktemp("m") / "model")
    streams = S.open_streams(telucodec.load_model(folder), "auto", model_path=folder)
    assert streams.runtime == "onnx" and "made in" in streams.note, streams.note
    assert (folder / "onnx-stream" / "streaming.json").is_file()
    return folder


@pytest.fixture(scope="module")
def model(model_dir) -> Codec:
    return telucodec.load_model(model_dir)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(sorted(EXAMPLES.rglob("*.flac"))[2])


def _run(streams: S.Streams, wav: np.ndarray, cuts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    codes = [streams.encoder.push(wav[a:b]) for a, b in cut_pieces(len(wav), cuts)] + [streams.encoder.flush()]
    for c in codes:
        assert isinstance(c, np.ndarray) and c.dtype == np.int64
    audio = [streams.decoder.push(c) for c in codes] + [streams.decoder.flush()]
    for a in audio:
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
    return np.concatenate(codes, axis=1), np.concatenate(audio)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, 40_000), length=st.integers(1, 24_000), gain=st.floats(0.01, 1.0),
       dtype=st.sampled_from(["int16", "int32", "float64", "float32"]),
       cuts=st.lists(st.integers(0, 24_000), max_size=6), kbps=st.sampled_from([None, 1.5, 3.0]))
def test_auto_streams_through_onnx_with_pytorchs_codes(model, model_dir, speech, start, length, gain, dtype, cuts, kbps):
    wav = as_dtype(speech[start: start + length] * gain, dtype)
    onnx = S.open_streams(model, "auto", kbps=kbps, model_path=model_dir)
    assert onnx.runtime == "onnx" and "made in" not in onnx.note  # the kept export, not made again
    torch_streams = S.open_streams(model, "torch", kbps=kbps, model_path=model_dir)
    assert torch_streams.runtime == "torch" and torch_streams.note == "runtime: torch (requested)"
    codes, audio = _run(onnx, wav, cuts)
    want_codes, want_audio = _run(torch_streams, wav, [])
    assert codes.shape[0] == model.n_q_for_kbps(kbps)
    np.testing.assert_array_equal(codes, want_codes)
    assert audio.shape == want_audio.shape
    assert float(np.abs(audio - want_audio).max(initial=0.0)) < AUDIO_TOLERANCE


def test_a_model_without_a_folder_keeps_its_streaming_export_in_the_cache(cache):
    model = causal(seed=4)
    first = telucodec.open_streams(model, runtime="auto")
    assert first.runtime == "onnx" and "made in" in first.note
    folder = cache / "onnx" / f"{model.model_id}-stream"
    assert str(folder) in first.note and (folder / "streaming.json").is_file()
    again = telucodec.open_streams(model, runtime="onnx")
    assert again.runtime == "onnx" and "made in" not in again.note


@pytest.mark.parametrize("case", ["no-onnxruntime", "lstm", "export-fails"])
@pytest.mark.parametrize("requested", ["auto", "onnx"])
def test_what_cannot_stream_on_onnx_streams_in_torch_with_a_note(case, requested, cache, monkeypatch):
    model = causal(seed=10 + (requested == "onnx"), lstm=case == "lstm")
    if case == "no-onnxruntime":
        hide_onnxruntime(monkeypatch)
    export = "telucodec.deploy.onnx_streaming_export.export_streaming_onnx"
    calls = break_exporter(monkeypatch, export) if case == "export-fails" else []
    streams = S.open_streams(model, requested)
    want = {"no-onnxruntime": "onnxruntime is not installed", "lstm": "bottleneck LSTM",
            "export-fails": "Unsupported operator aten::mystery"}[case]
    assert streams.runtime == "torch"
    assert streams.note.startswith("runtime: torch (") and want in streams.note and "\n" not in streams.note
    assert ("onnx was asked for" in streams.note) == (requested == "onnx")
    wav = (0.1 * np.sin(np.arange(SR) * 0.05)).astype(np.float32)
    codes, _ = _run(streams, wav, [777, 5000])
    np.testing.assert_array_equal(codes, model.encode(wav, SR, level=False).codes.numpy())
    if case == "export-fails":  # recorded, not retried; nothing half-written left behind
        again = S.open_streams(model, requested)
        assert calls == [1] and again.runtime == "torch" and ".failed" in again.note
        assert not (cache / "onnx" / f"{model.model_id}-stream").exists()
        assert not [p for p in (cache / "onnx").iterdir() if p.name.startswith(".")]


def test_an_older_streaming_export_is_made_again(model, model_dir, tmp_path):
    folder = model_copy_with_config(model_dir, tmp_path / "model", "onnx-stream/streaming.json",
                                    lambda c: c.update(version=c["version"] - 1))
    streams = S.open_streams(model, "auto", model_path=folder)
    assert streams.runtime == "onnx" and "made in" in streams.note
    assert S.usable_stream_export(folder / "onnx-stream", model) is not None


def test_a_streaming_export_whose_codes_differ_is_used_only_when_asked_for(model, model_dir, tmp_path):
    folder = model_copy_with_config(model_dir, tmp_path / "model", "onnx-stream/streaming.json",
                                    lambda c: c["parity"].update(codes_identical=False, codes_mismatched=2))
    auto = S.open_streams(model, "auto", model_path=folder)
    assert auto.runtime == "torch" and "differ" in auto.note
    asked = S.open_streams(model, "onnx", model_path=folder)
    assert asked.runtime == "onnx" and "differ" in asked.note


def test_the_api_warns_when_onnx_was_asked_for_and_torch_streams(cache):
    model = causal(seed=20, lstm=True)
    with pytest.warns(UserWarning, match=r"runtime: torch \(onnx was asked for.*LSTM"):
        streams = telucodec.open_streams(model, runtime="onnx")
    assert streams.runtime == "torch"
