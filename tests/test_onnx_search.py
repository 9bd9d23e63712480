"""The exported encoder's residual-VQ search (telucodec/deploy/onnx_search.py): the same codes as
PyTorch's search (`nearest_entry`, first of equal minima), for any number of stages asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telucodec.config import get_config
from telucodec.formats.audio import load_audio
from telucodec.model.clustering import nearest_entry
from telucodec.model.codec import Codec

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from telucodec.deploy import onnx_search as S  # noqa: E402  (needs onnx)


def _session(model) -> object:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = 1, 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _search_model(books: np.ndarray):
    """A graph: latent [F, D] (+ keep_from / keep_to) -> codes [1, n_q, F], the search of `books` alone."""
    from onnx import TensorProto
    from onnx import helper as h

    norms = torch.from_numpy(books).pow(2).sum(-1).numpy()
    nodes, inits, inputs = S.search_graph_nodes(books, norms, "latent", "codes")
    graph = h.make_graph(nodes, "search", [h.make_tensor_value_info("latent", TensorProto.FLOAT, [None, books.shape[2]]),
                                           *inputs], [h.make_tensor_value_info("codes", TensorProto.INT64, [1, None, None])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def _torch_search(latent: np.ndarray, books: np.ndarray, n: int) -> np.ndarray:
    residual, codes = torch.from_numpy(latent), []
    for book in torch.from_numpy(books)[:n]:
        index = nearest_entry(residual, book)
        residual = residual - book[index]
        codes.append(index)
    return torch.stack(codes).numpy()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(frames=st.integers(1, 40), k=st.sampled_from([8, 32, 40, 64, 96, 256]), seed=st.integers(0, 2**31 - 1),
       levels=st.integers(2, 5))
def test_first_argmin_is_the_first_index_of_the_minimum(frames, k, seed, levels):
    """The two-level argmin (block minima, then inside the first best block) gives ArgMin's and
    torch.argmin's index: the first of equal minima. Few distinct values: ties on every row."""
    from onnx import TensorProto
    from onnx import helper as h

    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, size=(frames, k)).astype(np.float32)
    _, inits, _ = S.search_graph_nodes(np.zeros((1, k, 1), np.float32), np.zeros((1, k), np.float32))
    graph = h.make_graph(S._first_argmin(h, "x", k, "y", "t/"), "argmin",
                         [h.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                         [h.make_tensor_value_info("y", TensorProto.INT64, [None])],
                         [i for i in inits if i.name.startswith("search/") and "/0/" not in i.name])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    model.ir_version = 9
    got = _session(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, np.argmin(x, axis=1))
    np.testing.assert_array_equal(got, torch.from_numpy(x).argmin(1).numpy())


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.integers(1, 30), k=st.sampled_from([16, 64, 128]), d=st.integers(1, 6), stages=st.integers(1, 5),
       seed=st.integers(0, 2**31 - 1), data=st.data())
def test_search_equals_pytorchs_for_any_number_of_stages(frames, k, d, stages, seed, data):
    """Small integer latents and codebooks (every sum exact, ties common, duplicated entries):
    the graph's codes are PyTorch's `nearest_entry` search; the graph cut after stage n
    (`prefix_search`) gives PyTorch's search of n stages, the first n of all; `keep_from` /
    `keep_to` give the codes of those frames."""
    rng = np.random.default_rng(seed)
    books = rng.integers(-3, 4, size=(stages, k, d)).astype(np.float32)
    books[:, 1] = books[:, 0]  # a duplicated entry: an exact tie on every frame that picks it
    latent = rng.integers(-6, 7, size=(frames, d)).astype(np.float32)
    n = data.draw(st.integers(1, stages))
    model = _search_model(books)
    every = _session(model).run(None, {"latent": latent})[0][0]
    cut = S.prefix_search(model, n)
    onnx.checker.check_model(cut)
    assert len(cut.graph.initializer) < len(model.graph.initializer) or n == stages  # later codebooks dropped
    some = _session(cut).run(None, {"latent": latent})[0][0]
    np.testing.assert_array_equal(every, _torch_search(latent, books, stages))
    np.testing.assert_array_equal(some, _torch_search(latent, books, n))
    np.testing.assert_array_equal(some, every[:n])
    lo = data.draw(st.integers(0, frames - 1))
    hi = data.draw(st.integers(lo + 1, frames))
    kept = _session(cut).run(None, {"latent": latent, "keep_from": np.array([lo]), "keep_to": np.array([hi])})[0][0]
    np.testing.assert_array_equal(kept, every[:n, lo:hi])


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, example_clips):
    from telucodec.deploy.export import export_onnx

    out = tmp_path_factory.mktemp("onnx_search")
    cfg = get_config("tiny")
    cfg.model.causal = True  # a causal encoder: windows without right context
    torch.manual_seed(4)
    model = Codec(cfg).eval()
    export_onnx(model, out, parity_clip=example_clips[3])
    return model, out


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(clip=st.integers(0, 9), start=st.integers(0, 8000), length=st.integers(1, 40000), repeat=st.integers(1, 4),
       data=st.data())
def test_exported_encoder_searches_the_stages_asked_for(tiny_export, example_clips, clip, start, length, repeat,
                                                         data):
    """A real export of a causal model: `OnnxCodec.encode(n_q=n)` runs n stages and gives
    PyTorch's codes at that bitrate, the first n of all, at any length (clips repeated past one
    encode window: the windows' left context only, searched only where kept); the file's config
    says which version of the export it is and that the encoder is causal."""
    import json

    from telucodec.deploy.export import EXPORT_VERSION
    from telucodec.deploy.onnx_runtime import OnnxCodec

    model, out = tiny_export
    config = json.loads((out / "config.json").read_text())
    assert config["version"] == EXPORT_VERSION and config["encoder_causal"] is True
    wav = np.tile(load_audio(example_clips[clip])[start: start + length], repeat)
    if wav.size == 0:
        return
    codec = OnnxCodec(out)
    n = data.draw(st.integers(1, model.max_n_q))
    every, some = codec.encode(wav), codec.encode(wav, n_q=n)
    assert n == model.max_n_q or codec._encoder_for(n) is not codec.encoder  # a graph that searches n stages
    ref = model.encode(wav, 16000, kbps=n * model.kbps_per_codebook())
    np.testing.assert_array_equal(some.codes, ref.codes.numpy())
    np.testing.assert_array_equal(some.codes, every.codes[:n])
