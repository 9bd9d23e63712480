"""The residual-VQ search of the exported encoder graph, written as ONNX nodes by hand (onnx only).

`deploy/export.py` exports the encoder up to its latent [F, D] with torch's exporter, then appends
this search, so the graph's ops are chosen for onnxruntime's speed on one thread while each
stage's arithmetic stays that of `telucodec.model.clustering.nearest_entry` (which PyTorch runs):

    x2    = ReduceSum(Pow(residual, 2), axis 1)           [F, 1]   (x.pow(2).sum(1, keepdim=True))
    dist2 = Gemm(residual, book, x2, alpha=-2, transB=1)  [F, K]   (x2 - 2 x @ book.T, one pass)
          + norms                                                  (book.pow(2).sum(1), made by
                                                                    torch at export: a constant)
    index = the first argmin of dist2 along K              [F]

In float arithmetic `fl(x2 + fl(-2 m))` is `fl(x2 - fl(2 m))` bit for bit (scaling by 2 is exact),
so the distances are those of the graph this replaced, which computed them in three passes and
the norms each run. onnxruntime's ArgMin takes ~1.3 ns an element on [F, 1024] (a scalar loop);
the search here takes the minimum of each block of ARGMIN_BLOCK entries (ReduceMin, vectorized),
the first block holding the smallest, and the first smallest entry inside it: the same index as
ArgMin's (first of equal minima, as torch.argmin), ~3.5x faster.

Every stage is its own nodes, its codebook a constant of its own size K_s (stages may differ in
size: issue 34's 15-bit stages before 10-bit ones; onnxruntime prepacks each for the Gemm; an
ONNX `Loop` over the stages, tried first, cost ~65 us a stage more and copied a codebook out of
the stack each time: 13% of the encode). A caller who needs only n codebooks (a bitrate) runs a
copy of the graph cut after stage n (`prefix_search`, made in memory by `OnnxCodec` where the
`onnx` package is installed); greedy residual VQ makes those the first n codes of all.
`keep_from` / `keep_to` (overridable inputs, default: every frame) pick the frames to search: a
window's context frames feed the encoder but their codes are thrown away.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ARGMIN_BLOCK = 32  # entries per block of the two-level argmin (measured: 16 and 64 are slower)
KEEP_INPUTS = ("keep_from", "keep_to")  # int64 [1]: the frames searched (default: all)
LATENT = "latent"


def _const(name: str, value: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array(value, order="C"), name)  # 0-d stays 0-d


def _blocks(k: int) -> bool:
    """A stage of k entries is searched by blocks (`_first_argmin`): else one ArgMin."""
    return k % ARGMIN_BLOCK == 0 and k > ARGMIN_BLOCK


def _blocks_shape_name(k: int, first: int) -> str:
    """The constant [-1, k / ARGMIN_BLOCK, ARGMIN_BLOCK] for stages of k entries: the first
    stage's size keeps the name it always had (a uniform model's graph is unchanged)."""
    return "search/blocks_shape" if k == first else f"search/blocks_shape_{k}"


def _first_argmin(h, x: str, k: int, out: str, prefix: str, blocks_shape: str = "search/blocks_shape") -> list:
    """Nodes: `out` [F] int64 = the first index of the minimum of `x` [F, k] along axis 1
    (`blocks_shape`: the name of the constant [-1, k / ARGMIN_BLOCK, ARGMIN_BLOCK])."""
    b = ARGMIN_BLOCK if _blocks(k) else 0
    if not b:
        return [h.make_node("ArgMin", [x], [out], axis=1, keepdims=0, name=f"{prefix}argmin")]
    p = prefix
    return [
        h.make_node("Reshape", [x, blocks_shape], [f"{p}blocks"], name=f"{p}blocks"),      # [F, k/b, b]
        h.make_node("ReduceMin", [f"{p}blocks", "search/axis2"], [f"{p}block_min"], keepdims=0, name=f"{p}block_min"),
        h.make_node("ArgMin", [f"{p}block_min"], [f"{p}block"], axis=1, keepdims=1, name=f"{p}block"),  # [F, 1]
        h.make_node("Unsqueeze", [f"{p}block", "search/axis2"], [f"{p}block3"], name=f"{p}block3"),  # [F, 1, 1]
        h.make_node("Expand", [f"{p}block3", "search/row_shape"], [f"{p}rows"], name=f"{p}rows"),    # [F, 1, b]
        h.make_node("GatherElements", [f"{p}blocks", f"{p}rows"], [f"{p}row"], axis=1, name=f"{p}row"),  # [F, 1, b]
        h.make_node("ArgMin", [f"{p}row"], [f"{p}within"], axis=2, keepdims=0, name=f"{p}within"),    # [F, 1]
        h.make_node("Mul", [f"{p}block", "search/block_size"], [f"{p}base"], name=f"{p}base"),
        h.make_node("Add", [f"{p}base", f"{p}within"], [f"{p}index2"], name=f"{p}index2"),
        h.make_node("Reshape", [f"{p}index2", "search/flat"], [out], name=f"{p}index"),
    ]


def unrolled_search_nodes(codebooks: Sequence[np.ndarray], norms: Sequence[np.ndarray], latent: str, codes: str,
                          prefix: str = "search/", two_level: bool = False) -> tuple[list, list]:
    """(nodes, initializers): `latent` [F, D] -> `codes` [n_q, F] int64, every stage its own
    nodes (named `{prefix}{q}/...`, which `prefix_search` cuts by) with its codebook a constant.
    `codebooks`: each stage's [K_s, D] (a stacked [n_q, K, D] array too), `norms` each one's [K_s].
    `two_level`: the argmin by blocks (for many frames at once; one frame: onnxruntime's ArgMin).
    Measured on one thread, 250 frames, D = 64: a 1024-entry stage 2.0 -> 1.2 us a frame, a
    32768-entry one ~150 -> ~90-115 us (its Gemm + Add, ~45-100 us, is the rest; blocks of 32 to
    1024 all within noise of each other there); one frame of 32768 entries ~300 us either way
    (the Gemm reads the whole 8 MB book: memory-bound)."""
    from onnx import helper as h

    n_q, sizes = len(codebooks), [int(book.shape[0]) for book in codebooks]
    p = prefix
    b = ARGMIN_BLOCK
    inits = [_const(f"{p}axis1", np.array([1], np.int64)), _const(f"{p}two", np.array(2.0, np.float32)),
             _const(f"{p}codes_shape", np.array([n_q, -1], np.int64))]
    if two_level:
        inits += [_const("search/axis2", np.array([2], np.int64)),
                  _const("search/blocks_shape", np.array([-1, sizes[0] // b, b], np.int64)),
                  _const("search/row_shape", np.array([1, 1, b], np.int64)),
                  _const("search/block_size", np.array([b], np.int64)), _const("search/flat", np.array([-1], np.int64))]
        inits += [_const(_blocks_shape_name(k, sizes[0]), np.array([-1, k // b, b], np.int64))
                  for k in sorted(set(sizes) - {sizes[0]}) if _blocks(k)]  # stages of other sizes
    nodes, indices, residual = [], [], latent
    for q, k in enumerate(sizes):
        s = f"{p}{q}/"
        inits += [_const(f"{s}book", np.asarray(codebooks[q], np.float32)), _const(f"{s}norms", np.asarray(norms[q], np.float32))]
        nodes += [
            h.make_node("Pow", [residual, f"{p}two"], [f"{s}sq"], name=f"{s}sq"),
            h.make_node("ReduceSum", [f"{s}sq", f"{p}axis1"], [f"{s}x2"], keepdims=1, name=f"{s}x2"),
            h.make_node("Gemm", [residual, f"{s}book", f"{s}x2"], [f"{s}partial"], alpha=-2.0, beta=1.0, transB=1,
                        name=f"{s}partial"),
            h.make_node("Add", [f"{s}partial", f"{s}norms"], [f"{s}dist2"], name=f"{s}dist2"),
        ]
        if two_level:
            nodes += _first_argmin(h, f"{s}dist2", k, f"{s}index", s, _blocks_shape_name(k, sizes[0]))
        else:
            nodes.append(h.make_node("ArgMin", [f"{s}dist2"], [f"{s}index"], axis=1, keepdims=0, name=f"{s}index"))
        indices.append(f"{s}index")
        if q + 1 < n_q:
            nodes += [h.make_node("Gather", [f"{s}book", f"{s}index"], [f"{s}chosen"], axis=0, name=f"{s}chosen"),
                      h.make_node("Sub", [residual, f"{s}chosen"], [f"{s}residual"], name=f"{s}residual")]
            residual = f"{s}residual"
    nodes += [h.make_node("Concat", indices, [f"{p}indices"], axis=0, name=f"{p}indices"),
              h.make_node("Reshape", [f"{p}indices", f"{p}codes_shape"], [codes], name=f"{p}codes")]
    return nodes, inits


def search_graph_nodes(codebooks: Sequence[np.ndarray], norms: Sequence[np.ndarray], latent: str = LATENT,
                       codes: str = "codes"):
    """(nodes, initializers, graph inputs keep_from / keep_to) that turn `latent` [F, D] into
    `codes` [1, n_q, keep_to - keep_from] int64: the offline encoder's search (`append_search`);
    `codebooks` each stage's [K_s, D], `norms` each one's `pow(2).sum(-1)` as torch computes it."""
    from onnx import TensorProto
    from onnx import helper as h

    nodes, inits = unrolled_search_nodes(codebooks, norms, "search/kept", "search/codes2", two_level=True)
    inits += [_const("search/axis0", np.array([0], np.int64)), _const(KEEP_INPUTS[0], np.array([0], np.int64)),
              _const(KEEP_INPUTS[1], np.array([2**62], np.int64))]
    nodes = [h.make_node("Slice", [latent, *KEEP_INPUTS, "search/axis0"], ["search/kept"], name="search/kept"),
             *nodes, h.make_node("Unsqueeze", ["search/codes2", "search/axis0"], [codes], name="search/codes3")]
    inputs = [h.make_tensor_value_info(name, TensorProto.INT64, [1]) for name in KEEP_INPUTS]
    return nodes, inits, inputs


def append_search(path, codebooks: Sequence[np.ndarray], norms: Sequence[np.ndarray], output: str = "codes") -> None:
    """Rewrite the ONNX file `path` (a graph whose one output is the latent [F, D]) so that its
    output is `output` [1, n_q, F] int64 codes of the frames its new inputs `keep_from` /
    `keep_to` pick (default: all); its convs run as 2-D ones (`onnx_rewrite.convs_as_2d`)."""
    import onnx

    from telucodec.deploy.onnx_rewrite import convs_as_2d

    model = convs_as_2d(onnx.load(str(path)))
    graph = model.graph
    latent = graph.output[0].name
    nodes, inits, inputs = search_graph_nodes(codebooks, norms, latent, output)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    graph.input.extend(inputs)
    del graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info(output, onnx.TensorProto.INT64, [1, None, None]))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def prefix_search(model, n: int, prefix: str = "search/"):
    """A copy of `model` (an onnx ModelProto with an `unrolled_search_nodes` search) that searches
    only its first `n` stages: the later stages' nodes and codebooks dropped, the codes [n, F]."""
    import copy

    from onnx import numpy_helper

    model = copy.deepcopy(model)
    graph = model.graph
    cut = tuple(f"{prefix}{q}/" for q in range(n, 10_000))
    last = f"{prefix}{n - 1}/"
    dropped = {f"{last}chosen", f"{last}residual"}
    kept = [node for node in graph.node if not node.name.startswith(cut) and node.name not in dropped]
    for node in kept:
        if node.name == f"{prefix}indices":
            node.input[:] = [f"{prefix}{q}/index" for q in range(n)]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    inits = [i for i in graph.initializer if i.name in used or i.name in {x.name for x in graph.input}]
    for i in inits:
        if i.name == f"{prefix}codes_shape":
            i.CopyFrom(numpy_helper.from_array(np.array([n, -1], np.int64), i.name))
    del graph.initializer[:]
    graph.initializer.extend(inits)
    codes = next(node.output[0] for node in graph.node if node.name == f"{prefix}codes")
    for output in graph.output:  # a stream graph's codes [n_q, F] are a graph output: now [n, F]
        if output.name == codes and output.type.tensor_type.shape.dim[0].HasField("dim_value"):
            output.type.tensor_type.shape.dim[0].dim_value = n
    return model


def replace_first_output_by_search(path, codebooks: Sequence[np.ndarray], norms: Sequence[np.ndarray],
                                   output: str = "codes") -> None:
    """Rewrite the ONNX file `path`, whose first output is a latent [F, D] (a stream encoder's:
    its other outputs are states), so that its first output is `output` [n_q, F] int64 codes,
    searched by `unrolled_search_nodes`."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    latent = graph.output[0].name
    nodes, inits = unrolled_search_nodes(codebooks, norms, latent, output)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info(output, onnx.TensorProto.INT64, [len(codebooks), None]))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
