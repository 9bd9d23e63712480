"""The ONNX runtimes for a model whose residual-VQ stages differ in size (issue 34): the offline
export (deploy/export.py, onnx_runtime.py, onnx_search.py) and the streaming graphs
(onnx_streaming_export.py, onnx_streaming.py) give PyTorch's codes exactly and its audio within
the parity tolerance, their codes carry each stage's width, and `compress` / `open_streams` with
runtime="onnx" run them. One small model (stages of 256, 256, then 6 x 16 entries: 8, 8, then
4-bit codes), exported once per module into a temporary cache."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import as_dtype, cut_pieces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telucodec
from telucodec.api import read_codes, runtime_for
from telucodec.config import get_config
from telucodec.deploy import runtimes as R
from telucodec.deploy import stream_runtimes as S
from telucodec.deploy.export import DECODER_TOLERANCE
from telucodec.errors import ModelError, TelucodecError
from telucodec.formats.audio import load_audio
from telucodec.model.clustering import nearest_entry
from telucodec.model.codec import Codec

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from telucodec.deploy import onnx_search as OS  # noqa: E402  (needs onnx)
from telucodec.deploy.onnx_runtime import OnnxCodec  # noqa: E402
from telucodec.deploy.onnx_streaming import OnnxStreamDecoder, OnnxStreamEncoder  # noqa: E402

SR = 16000
SIZES = (256, 256, 16, 16, 16, 16, 16, 16)
# nominal kbps of n stages: 0.4, 0.8, 1.0, 1.2, ... 2.0; 0.9 and 1.3 fall between stages of
# different widths (8 then 4 bits) and equal widths; None: every stage
KBPS = [None, 0.4, 0.8, 0.9, 1.0, 1.3, 2.0]


def mixed(seed: int = 0) -> Codec:
    """A causal `tiny` (streams; rms amplitude with level matching: the numpy amplitude mirror)
    whose stages have SIZES entries."""
    cfg = get_config("tiny")
    torch.manual_seed(seed)
    return Codec(replace(cfg, model=replace(cfg.model, causal=True, amplitude="rms", level_match=True),
                         quantizer=replace(cfg.quantizer, codebook_sizes=SIZES))).eval()


@pytest.fixture(scope="module")
def model(cache) -> Codec:
    return mixed()


@pytest.fixture(scope="module")
def offline(model) -> R.OnnxRuntime:
    """The offline export, made once by the runtime switch into the module's cache."""
    chosen = R.choose_runtime(model, "onnx")
    assert chosen.name == "onnx", chosen.note
    return chosen


@pytest.fixture(scope="module")
def streams(model) -> S.Streams:
    """The streaming export, made once by the stream runtime switch into the module's cache."""
    chosen = S.open_streams(model, "onnx")
    assert chosen.runtime == "onnx", chosen.note
    return chosen


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    from conftest import EXAMPLES

    return np.concatenate([load_audio(p) for p in sorted(EXAMPLES.rglob("*.flac"))[:3]])


# ---- the search alone -----------------------------------------------------------------------
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.integers(1, 30), sizes=st.lists(st.sampled_from([8, 16, 64, 128]), min_size=1, max_size=5),
       d=st.integers(1, 5), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_search_of_stages_of_different_sizes_equals_pytorchs(frames, sizes, d, seed, data):
    """Small integer latents and books (exact sums, many ties) of per-stage sizes, some searched by
    blocks (64, 128), some by ArgMin (8, 16): the graph's codes are `nearest_entry`'s, stage by
    stage with each stage's own book, and the graph cut after stage n gives the first n."""
    rng = np.random.default_rng(seed)
    books = [rng.integers(-3, 4, size=(k, d)).astype(np.float32) for k in sizes]
    for book in books:
        book[1] = book[0]  # an exact tie wherever entry 0 is nearest
    norms = [torch.from_numpy(b).pow(2).sum(-1).numpy() for b in books]
    latent = rng.integers(-6, 7, size=(frames, d)).astype(np.float32)
    from onnx import TensorProto
    from onnx import helper as h

    nodes, inits, inputs = OS.search_graph_nodes(books, norms, "latent", "codes")
    graph = h.make_graph(nodes, "search", [h.make_tensor_value_info("latent", TensorProto.FLOAT, [None, d]), *inputs],
                         [h.make_tensor_value_info("codes", TensorProto.INT64, [1, None, None])], inits)
    graph_model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    graph_model.ir_version = 9
    onnx.checker.check_model(graph_model)
    residual, want = torch.from_numpy(latent), []
    for book in books:
        index = nearest_entry(residual, torch.from_numpy(book))
        residual = residual - torch.from_numpy(book)[index]
        want.append(index.numpy())
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = 1, 3

    def run(m) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
            None, {"latent": latent})[0][0]

    np.testing.assert_array_equal(run(graph_model), np.stack(want))
    n = data.draw(st.integers(1, len(sizes)))
    np.testing.assert_array_equal(run(OS.prefix_search(graph_model, n)), np.stack(want[:n]))


# ---- the offline export ---------------------------------------------------------------------
def test_export_describes_each_stage(model, offline):
    config = offline.codec.config
    assert config["codebook_sizes"] == list(SIZES) and config["stage_bits"] == [8, 8, 4, 4, 4, 4, 4, 4]
    parity = config["parity"]
    assert parity["passed"] and parity["encoder_codes_identical"] and parity["end_to_end_codes_identical"]
    books = np.load(offline.directory / config["codebooks"]["file"])
    want = np.concatenate([b.numpy() for b in model.quantizer.stage_codebooks()])
    assert books.shape == (sum(SIZES), model.config.model.latent_dim)
    np.testing.assert_array_equal(books, want)
    assert offline.codec.stage_sizes == list(SIZES) and offline.codec.stage_bits == [8, 8, 4, 4, 4, 4, 4, 4]


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(0, 60_000), length=st.integers(1, 3 * SR), gain=st.floats(0.01, 1.0),
       dtype=st.sampled_from(["float32", "int16"]), n_q=st.integers(1, len(SIZES)))
def test_onnx_codes_and_audio_equal_pytorchs(model, offline, speech, start, length, gain, dtype, n_q):
    """Any length, level and number of stages (cutting after an 8-bit or a 4-bit one): ONNX's
    codes are PyTorch's, with each stage's width, and its audio is PyTorch's within tolerance."""
    wav = as_dtype(speech[start: start + length] * gain, dtype)
    kbps = model.nominal_kbps(n_q)
    want, got = model.encode(wav, SR, kbps), offline.encode(wav, SR, kbps)
    np.testing.assert_array_equal(got.codes.numpy(), want.codes.numpy())
    assert got.side == want.side and got.n_q == n_q
    assert got.stage_bits == want.stage_bits and got.widths == [8, 8, 4, 4, 4, 4, 4, 4][:n_q]
    assert float(np.abs(offline.decode(got) - model.decode(want).numpy()).max()) < DECODER_TOLERANCE
    clip = offline.codec.encode(wav, n_q, SR)  # the torch-free runner's own codes say each stage's width
    assert clip.stage_bits == want.stage_bits and np.array_equal(clip.codes, want.codes.numpy())


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(0, 60_000), length=st.integers(1, 2 * SR), gain=st.floats(0.01, 1.0),
       kbps=st.sampled_from(KBPS), entropy=st.booleans())
def test_either_runtime_writes_the_same_tcd_and_onnx_decodes_it(model, offline, speech, start, length, gain, kbps,
                                                                 entropy):
    """`compress` with runtime="onnx" writes torch's bytes (rate control's per-frame stage counts
    included, for a `kbps`; a .tcd of version 4, each stage's width); the file reads back to the
    same codes and ONNX decodes it as PyTorch does."""
    wav = speech[start: start + length] * gain
    entropy = entropy and kbps is None  # `entropy` is for files without a rate

    def outcome(runtime: str) -> bytes | str:
        try:
            return telucodec.compress(wav, SR, model=model, kbps=kbps, entropy=entropy, runtime=runtime)
        except TelucodecError as exc:  # a clip too short for the kbps budget: both alike
            return str(exc)

    a, b = outcome("torch"), outcome("onnx")
    assert a == b
    if isinstance(b, str):
        assert "kbps" in b
        return
    codes = read_codes(b, model)
    assert codes.widths == [8, 8, 4, 4, 4, 4, 4, 4][: codes.n_q]
    y_onnx, rate = telucodec.decompress(b, model=model, runtime="onnx")
    y_torch, _ = telucodec.decompress(b, model=model, runtime="torch")
    assert rate == SR and y_onnx.shape == y_torch.shape == (len(wav),)
    assert float(np.abs(y_onnx - y_torch).max()) < DECODER_TOLERANCE


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(length=st.integers(SR // 10, 2 * SR), seed=st.integers(0, 2**31 - 1))
def test_frames_that_send_fewer_stages_decode_alike(model, offline, speech, length, seed):
    """Per-frame stage counts (rate control): a frame's unsent stages add nothing in the ONNX
    decoder too, whichever stage (of whichever size) a frame stops after."""
    codes = model.encode(speech[:length], SR)
    counts = np.random.default_rng(seed).integers(1, len(SIZES) + 1, size=codes.num_frames)
    sent = torch.arange(len(SIZES))[:, None] < torch.from_numpy(counts)[None]
    codes = replace(codes, codes=torch.where(sent, codes.codes, 0), stage_counts=counts)
    assert float(np.abs(offline.decode(codes) - model.decode(codes).numpy()).max()) < DECODER_TOLERANCE


@pytest.mark.parametrize("stage", [0, 2, 7])
def test_a_code_outside_its_stage_is_refused(model, offline, streams, speech, stage):
    """Each stage's codes are checked against that stage's size (16 fits an 8-bit stage, not a
    4-bit one), by the numpy runner and the stream decoder, with a one-line error."""
    codes = model.encode(speech[:SR], SR).codes.numpy().copy()
    codes[stage, 3] = SIZES[stage]
    with pytest.raises(ModelError, match=f"stage {stage} must be in 0..{SIZES[stage] - 1}"):
        offline.codec.decode(codes, [], SR, side_kind="none")
    with pytest.raises(ModelError, match=f"stage {stage} must be in 0..{SIZES[stage] - 1}"):
        OnnxStreamDecoder(streams.decoder.directory).push(codes)
    codes[stage, 3] = SIZES[stage] - 1  # the largest code of the stage decodes
    assert offline.codec.decode(codes, [], SR, side_kind="none").shape == (SR,)


# ---- the streaming graphs -------------------------------------------------------------------
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(0, 60_000), length=st.integers(1, 24_000), gain=st.floats(0.01, 1.0),
       cuts=st.lists(st.integers(0, 24_000), max_size=6), kbps=st.sampled_from(KBPS))
def test_stream_codes_equal_pytorchs(model, streams, speech, start, length, gain, cuts, kbps):
    """Any chunking and number of stages: the ONNX streams' codes are PyTorch's streams' codes,
    and the ONNX stream decoder's audio is PyTorch's within tolerance."""
    wav = (speech[start: start + length] * gain).astype(np.float32)
    onnx_streams = S.open_streams(model, "onnx", kbps=kbps)
    torch_streams = S.open_streams(model, "torch", kbps=kbps)
    assert onnx_streams.runtime == "onnx" and isinstance(onnx_streams.encoder, OnnxStreamEncoder)
    pieces = cut_pieces(len(wav), cuts)
    got = np.concatenate([onnx_streams.encoder.push(wav[a:b]) for a, b in pieces] + [onnx_streams.encoder.flush()], 1)
    want = np.concatenate([torch_streams.encoder.push(wav[a:b]) for a, b in pieces] + [torch_streams.encoder.flush()], 1)
    np.testing.assert_array_equal(got, want)
    assert got.shape[0] == model.n_q_for_kbps(kbps)
    audio = np.concatenate([onnx_streams.decoder.push(got), onnx_streams.decoder.flush()])
    want_audio = np.concatenate([torch_streams.decoder.push(want), torch_streams.decoder.flush()])
    assert audio.shape == want_audio.shape
    assert not audio.size or float(np.abs(audio - want_audio).max()) < DECODER_TOLERANCE


def test_stream_export_describes_each_stage(streams):
    config = streams.encoder.config
    assert config["codebook_sizes"] == list(SIZES) and config["parity"]["codes_identical"]
    assert streams.encoder.stage_bits == streams.decoder.stage_bits == [8, 8, 4, 4, 4, 4, 4, 4]


# ---- the API runs them ------------------------------------------------------------------------
def test_compress_and_open_streams_run_onnx(model, offline, streams, speech, monkeypatch):
    """telucodec.compress / decompress / open_streams with runtime="onnx" on the mixed model run
    the ONNX graphs (no fallback warning; the runner's encode and decode are the ones called)."""
    calls: list[str] = []
    for name in ("encode", "decode"):
        real = getattr(OnnxCodec, name)
        monkeypatch.setattr(OnnxCodec, name, lambda self, *a, _r=real, _n=name, **k: calls.append(_n) or _r(self, *a, **k))
    wav = speech[: SR + 555]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a fallback to torch warns
        data = telucodec.compress(wav, SR, model=model, kbps=0.9, runtime="onnx")
        y, _ = telucodec.decompress(data, model=model, runtime="onnx")
        live = telucodec.open_streams(model, kbps=0.9, runtime="onnx")
    assert calls == ["encode", "decode"] and y.shape == wav.shape
    assert runtime_for(model, "onnx").name == "onnx"
    assert live.runtime == "onnx" and isinstance(live.encoder, OnnxStreamEncoder)
    assert isinstance(live.decoder, OnnxStreamDecoder)
    assert live.encoder.push(wav).shape[0] == 2  # 0.9 kbps: the two 8-bit stages
