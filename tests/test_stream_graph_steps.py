"""The forms a streaming step takes for a graph (`portable()`), against the offline layer.

A transposed conv made under `portable()` runs as its polyphase conv (state: its last input frames,
not the output overlap), and convs, transposed convs and activations run on 4-D tensors
[1, C, 1, T] when a whole stream is exported so (`rank4_ready`). Both are speed forms for
onnxruntime; each must give the offline layer's output, for generated shapes (kernel, stride,
groups, dilation) and chunkings, within float rounding.
"""

from __future__ import annotations

import torch
from conftest import cut_pieces
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from telucodec.deploy.onnx_streaming_export import convs_for_graphs
from telucodec.model.stream_steps import (
    ChainStep,
    ConvStep,
    ConvTransposeStep,
    ElementwiseStep,
    LSTMStep,
    portable,
    rank4_ready,
)

TOLERANCE = 1e-5


def _run(step, x: torch.Tensor, pieces: list[tuple[int, int]], rank4: bool) -> torch.Tensor:
    """Push x [C, T] through `step` piece by piece as an export traces it: [1, C, T] or [1, C, 1, T]."""
    state = [t[None, :, None] if rank4 else t[None] for t in step.init("cpu")]
    out = []
    for lo, hi in pieces:
        piece = x[None, :, None, lo:hi] if rank4 else x[None, :, lo:hi]
        y, state = step.step(piece, state)
        assert y.dim() == (4 if rank4 else 3)
        out.append(y.reshape(y.shape[1], -1))
    return torch.cat(out, dim=-1)


@settings(max_examples=60, deadline=None)
@given(groups=st.integers(1, 3), cin=st.integers(1, 4), cout=st.integers(1, 4), stride=st.integers(1, 6),
       extra=st.integers(0, 13), frames=st.integers(1, 12), cuts=st.lists(st.integers(0, 12), max_size=4),
       rank4=st.booleans(), seed=st.integers(0, 2**16))
def test_a_graphs_transposed_conv_is_the_offline_one(groups, cin, cout, stride, extra, frames, cuts, rank4, seed):
    torch.manual_seed(seed)
    conv = nn.ConvTranspose1d(cin * groups, cout * groups, stride + extra, stride, groups=groups)
    with portable():
        step = ConvTransposeStep(conv.weight, conv.bias, stride, groups)
    x = torch.randn(cin * groups, frames)
    with torch.no_grad():
        offline = conv(x[None])[0, :, : frames * stride]  # causal: the last k - stride outputs trimmed
        streamed = _run(step, x, cut_pieces(frames, cuts), rank4)
    assert streamed.shape == offline.shape
    assert float((streamed - offline).abs().max()) < TOLERANCE


@settings(max_examples=60, deadline=None)
@given(groups=st.integers(1, 3), cin=st.integers(1, 3), cout=st.integers(1, 3), k=st.integers(1, 5),
       stride=st.integers(1, 3), dilation=st.integers(1, 4), frames=st.integers(1, 10),
       cuts=st.lists(st.integers(0, 10), max_size=4), seed=st.integers(0, 2**16))
def test_a_graphs_conv_gives_the_same_on_4d_tensors(groups, cin, cout, k, stride, dilation, frames, cuts, seed):
    if dilation * (k - 1) < stride - 1:
        return  # a conv that skips input samples does not stream (ConvStep refuses it)
    torch.manual_seed(seed)
    weight, bias = torch.randn(cout * groups, cin, k), torch.randn(cout * groups)
    with portable():
        step = ConvStep(weight, bias, stride, dilation, groups)
    convs_for_graphs(step)  # as the export does: a depthwise conv as one conv, not per tap
    assert rank4_ready(step)
    x = torch.randn(cin * groups, frames * stride)
    context = dilation * (k - 1) - (stride - 1)
    offline = F.conv1d(F.pad(x[None], (context, 0)), weight, bias, stride, 0, dilation, groups)[0]
    pieces = [(lo * stride, hi * stride) for lo, hi in cut_pieces(frames, cuts)]
    for rank4 in (False, True):
        streamed = _run(step, x, pieces, rank4)
        assert float((streamed - offline).abs().max()) < TOLERANCE


def test_only_steps_that_run_4d_make_a_4d_graph():
    with portable():
        conv = ConvStep(torch.randn(2, 2, 3), None)
        up = ConvTransposeStep(torch.randn(2, 2, 4), None, 2)
        depthwise = ConvStep(torch.randn(2, 1, 3), None, groups=2)
    act = ElementwiseStep(nn.LeakyReLU(0.3))
    assert rank4_ready(ChainStep([conv, act, up]))
    assert not rank4_ready(depthwise)  # per-tap form: 3-D only, until the export makes it one conv
    convs_for_graphs(depthwise)
    assert rank4_ready(depthwise)
    assert not rank4_ready(ChainStep([conv, LSTMStep(nn.LSTM(2, 2))]))
    plain = ConvTransposeStep(torch.randn(2, 2, 4), None, 2)  # not made for a graph: the overlap form
    assert not rank4_ready(plain)
