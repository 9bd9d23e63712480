"""Stateful streaming steps: each layer of a causal model as a pure function of (new input, its state).

A step is `step(x, state) -> (y, state)`: `x` [channels, time] holds the layer's input for some
whole frames (its length a multiple of the layer's stride), `y` the layer's output for exactly
those frames, and `state` a flat list of tensors of fixed shapes (`init(device)` gives the start:
zeros, which is what the offline layer pads with). So a push of N frames costs N frames of
compute, and the same function with its state as explicit inputs and outputs is an ONNX graph
(`telucodec/deploy/onnx_streaming_export.py`).

One stream is one item, so there is no batch dimension: at a frame per push a step is a handful
of small ops, and the views a batch dimension costs around every matrix product were a fifth of
them. Steps made under `portable()` (plain conv ops) also take a leading batch dimension of 1
(x [1, C, T], each state [1, ...]): an export traces them so, and its graph then has no squeeze or
unsqueeze around every conv.

    causal conv            state: its last `dilation * (k - 1) - (stride - 1)` input samples
                           (the left padding offline adds, then the real past)
    causal transposed conv state: the `k - stride` outputs that overlap the next input frame, bias-free
                           (made under `portable()`: its last ceil(k / stride) - 1 input frames)
    elementwise            no state (activations)
    chain, residual        their children's states, concatenated in order

The pattern is that of kyutai-labs/moshi `moshi/modules/conv.py` (StreamingConv1d,
StreamingConvTranspose1d), with the state outside the module so one model serves any number of
streams at once. A step holds the layer's weights as they are when it is made (weight norm folded
in, some rearranged): a stream makes its steps when it is made and on `reset()`, so reset a stream
after changing the model's weights.

A step may also delay its output (`delay` samples, the inverse STFT's overlap: its last outputs are
final only once later frames arrived); `flush(state)` then returns those last samples at the end of
the stream. Only the last step of a chain may delay.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from telucodec.errors import ModelError

State = list[torch.Tensor]
NO_STATE: State = []  # what a step without state is given (and gives back)

_PORTABLE = [False]  # set by `portable()`, read when a step is made (torch.onnx.is_in_onnx_export()
                     # costs ~9 us a call, as much as a small conv: not something to ask per step)


@contextlib.contextmanager
def portable() -> Iterator[None]:
    """Within it, steps use only ops an ONNX graph has (`F.conv1d`, `F.conv_transpose1d`, DFT
    bases for the inverse STFT) instead of the faster CPU forms: what an export traces."""
    _PORTABLE[0] = True
    try:
        yield
    finally:
        _PORTABLE[0] = False


def is_portable() -> bool:
    return _PORTABLE[0]


# layers that act on each sample by itself: no state, the module is called as it is
ELEMENTWISE = (nn.ELU, nn.LeakyReLU, nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Identity)


class Step(Protocol):
    n_state: int   # how many tensors `init` returns
    delay: int     # output samples held back until later input (0 for all but an inverse STFT)

    def init(self, device: torch.device | str) -> State: ...

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]: ...

    def flush(self, state: State) -> torch.Tensor | None: ...


def conv_any_rank(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1,
                  dilation: int = 1, groups: int = 1) -> torch.Tensor:
    """A 1-D conv (no padding) of x [.., C, T], or of x [1, C, 1, T] as the 2-D conv it equals
    (a graph of 4-D steps: `rank4_ready`)."""
    if x.dim() == 4:
        return F.conv2d(x, weight[:, :, None], bias, (1, stride), 0, (1, dilation), groups)
    return F.conv1d(x, weight, bias, stride, 0, dilation, groups)


class ConvStep:
    """A causal Conv1d: x [Cin, n * stride] -> [Cout, n]; state [Cin, context].

    A push of a frame or two gives each conv a handful of positions, where `F.conv1d` is slow on
    the CPU for some shapes (oneDNN's set-up: ~100 us for a depthwise k = 3 conv over 20 positions
    on one thread, 6x what the same sums cost as three multiply-adds). So depthwise convs run as
    one multiply-add per tap (under `portable()` too: onnxruntime is as slow there), 1x1 and
    grouped convs as a (batched) matrix product; dense k > 1 convs, and the others of a step made
    under `portable()`, stay `F.conv1d`. The form is picked
    once, when the step is made (`self.step` is that form's method)."""

    delay = 0

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1, dilation: int = 1,
                 groups: int = 1):
        self.weight, self.bias = weight.detach(), None if bias is None else bias.detach()
        self.stride, self.dilation, self.groups = stride, dilation, groups
        cout, per_group, k = weight.shape
        self.k, self.channels = k, per_group * groups
        self.context = dilation * (k - 1) - (stride - 1)
        if self.context < 0:
            raise ModelError(f"streaming: a conv of kernel {k} with stride {stride} skips input samples")
        self.n_state = 1 if self.context else 0
        bias_col = (torch.zeros(cout, 1, device=weight.device, dtype=weight.dtype) if bias is None
                    else self.bias.reshape(cout, 1))
        if groups == self.channels == cout and stride == 1:   # depthwise: a multiply-add per tap
            # (onnxruntime too runs a depthwise conv as one tiny matrix product per channel)
            self.kind, self._run = "taps", self._taps
            self.taps = [self.weight[:, 0, j].reshape(cout, 1).contiguous() for j in range(k)]
            self.bias_col = bias_col.contiguous()
        elif is_portable() or (groups == 1 and k > 1):
            self.kind, self._run = "conv", self._conv
        elif groups == 1:  # 1x1
            self.kind, self._run = "matmul", self._matmul
            self.w_flat, self.bias_col = self.weight.reshape(cout, per_group).contiguous(), bias_col.contiguous()
        else:  # [g, Cout/g, Cin/g * k] @ columns [g, Cin/g * k, n] + bias [g, Cout/g, 1]
            self.kind, self._run = "grouped", self._grouped
            self.w_groups = self.weight.reshape(groups, cout // groups, per_group * k).contiguous()
            self.bias_col = bias_col.reshape(groups, cout // groups, 1).contiguous()

    def init(self, device: torch.device | str) -> State:
        return [torch.zeros(self.channels, self.context, device=device)] if self.context else []

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if not self.context:
            return self._run(x, x.shape[-1]), state
        window = torch.cat([state[0], x], dim=-1)
        return self._run(window, x.shape[-1]), [window[..., x.shape[-1]:]]

    def _conv(self, window: torch.Tensor, _: int) -> torch.Tensor:
        return conv_any_rank(window, self.weight, self.bias, self.stride, self.dilation, self.groups)

    def _taps(self, window: torch.Tensor, n: int) -> torch.Tensor:
        d, taps = self.dilation, self.taps
        y = torch.addcmul(self.bias_col, taps[0], window[..., :n])
        for j in range(1, self.k):
            y.addcmul_(taps[j], window[..., j * d: j * d + n])
        return y

    def _matmul(self, window: torch.Tensor, _: int) -> torch.Tensor:
        return torch.addmm(self.bias_col, self.w_flat, window)

    def _grouped(self, window: torch.Tensor, _: int) -> torch.Tensor:
        g, k, per_group = self.groups, self.k, self.channels // self.groups
        if k == 1 and self.stride == 1:
            cols = window.reshape(g, per_group, window.shape[-1])
        else:
            taps = window.unfold(1, self.dilation * (k - 1) + 1, self.stride)  # [Cin, n, span]
            if self.dilation > 1:
                taps = taps[..., :: self.dilation]
            cols = taps.reshape(g, per_group, -1, k).transpose(2, 3).reshape(g, per_group * k, -1)
        y = torch.baddbmm(self.bias_col, self.w_groups, cols)
        return y.view(-1, y.shape[-1])

    def flush(self, state: State) -> None:
        return None


class ConvTransposeStep:
    """A causal ConvTranspose1d (the last k - stride outputs trimmed offline): x [Cin, n] ->
    [Cout, n * stride]; state: the bias-free overlap [Cout, k - stride] the next frame adds to.
    Grouped ones run as a batched matrix product and an overlap-add (`F.fold`), ~2x faster on a
    frame or two than `F.conv_transpose1d`; the others stay that.

    Made under `portable()` (for a graph), it runs as its polyphase form instead: output sample
    t * stride + p is the sum over r of tap p + r * stride applied to input frame t - r, so it is a
    causal conv of kernel m = ceil(k / stride) over the input frames giving Cout * stride channels
    (channel c * stride + p: phase p of output channel c), interleaved into time by a reshape;
    state: the last m - 1 input frames [Cin, m - 1]. onnxruntime runs ConvTranspose by a matrix
    product and col2im on plain layout; the conv takes its blocked (NCHWc) kernels and needs no
    overlap-add nodes: on one frame of telugu-v7's decoder the four transposed convs cost about
    a third of the graph's time before (docs/speed-runtimes.md)."""

    delay = 0

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, groups: int = 1):
        self.weight, self.bias = weight.detach(), None if bias is None else bias.detach()[:, None]
        self.stride, self.groups = stride, groups
        cin, per_group, k = weight.shape
        self.k, self.channels = k, per_group * groups
        self.overlap = k - stride
        if self.overlap < 0:
            raise ModelError(f"streaming: a transposed conv of kernel {k} with stride {stride} leaves gaps")
        self.portable = is_portable()
        if self.portable:
            self._polyphase_weights()
            return
        self.n_state = 1 if self.overlap else 0
        self.as_matmul = groups > 1
        if self.as_matmul:  # [g, Cout/g * k, Cin/g] @ x [g, Cin/g, n] -> each frame's k outputs per channel
            self.w_cols = self.weight.reshape(groups, cin // groups, per_group * k).transpose(1, 2).contiguous()

    def _polyphase_weights(self) -> None:
        """The conv form (see the class): weight [Cout * s, Cin / g, m], channel (c, p) of group
        g from taps p, p + s, ... of the transposed weight, newest input frame last."""
        s, g, m = self.stride, self.groups, -(-self.k // self.stride)
        cin, per_group, _ = self.weight.shape
        padded = F.pad(self.weight, (0, m * s - self.k)).reshape(g, cin // g, per_group, m, s)
        # [g, Cin/g, Cout/g, r, p] -> [g, Cout/g, p, Cin/g, r], r = m - 1 - tap (the newest frame last)
        w = padded.permute(0, 2, 4, 1, 3).flip(-1)
        self.phase_weight = w.reshape(g * per_group * s, cin // g, m).contiguous()
        self.phase_bias = None if self.bias is None else self.bias[:, 0].repeat_interleave(s)
        self.history, self.in_channels = m - 1, cin
        self.n_state = 1 if self.history else 0

    def init(self, device: torch.device | str) -> State:
        if self.portable:
            return [torch.zeros(self.in_channels, self.history, device=device)] if self.history else []
        return [torch.zeros(self.channels, self.overlap, device=device)] if self.overlap else []

    def _polyphase(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        n = x.shape[-1]
        window = torch.cat([state[0], x], dim=-1) if self.history else x
        z = conv_any_rank(window, self.phase_weight, self.phase_bias, groups=self.groups)  # [.., Cout * s, (1,) n]
        lead, mid = (z.shape[:-3], (1,)) if z.dim() == 4 else (z.shape[:-2], ())
        y = z.reshape(*lead, self.channels, self.stride, n).transpose(-1, -2)
        return y.reshape(*lead, self.channels, *mid, n * self.stride), ([window[..., n:]] if self.history else state)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if self.portable:
            return self._polyphase(x, state)
        n = x.shape[-1]
        if self.as_matmul:
            cols = torch.bmm(self.w_cols, x.reshape(self.groups, -1, n))
            length = (n - 1) * self.stride + self.k
            y = F.fold(cols.reshape(self.channels * self.k, n), output_size=(1, length), kernel_size=(1, self.k),
                       stride=(1, self.stride)).view(self.channels, length)
        else:
            y = F.conv_transpose1d(x, self.weight, None, self.stride, groups=self.groups)  # [.., (n-1)s + k]
        if self.overlap:
            y[..., : self.overlap] += state[0]
        n *= self.stride
        out = y[..., :n] if self.bias is None else y[..., :n] + self.bias
        return out, ([y[..., n:]] if self.overlap else state)

    def flush(self, state: State) -> None:
        return None


class ElementwiseStep:
    """An activation, no state: the functional form of the usual ones (no module call), else the module."""

    n_state, delay = 0, 0

    def __init__(self, module: nn.Module):
        self.module = module
        if isinstance(module, nn.LeakyReLU):
            self.fn = functools.partial(F.leaky_relu, negative_slope=module.negative_slope, inplace=module.inplace)
        elif isinstance(module, nn.ELU):
            self.fn = functools.partial(F.elu, alpha=module.alpha, inplace=module.inplace)
        else:
            self.fn = module

    def init(self, device: torch.device | str) -> State:
        return []

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.fn(x), state

    def flush(self, state: State) -> None:
        return None


class LSTMStep:
    """x + LSTM(x) over frames [C, n]: state (h, c), each [layers, C], zeros at the start."""

    n_state, delay = 2, 0

    def __init__(self, lstm: nn.LSTM):
        if lstm.bidirectional or lstm.batch_first or lstm.proj_size:
            raise ModelError("streaming: only a plain one-directional LSTM streams")
        self.lstm = lstm

    def init(self, device: torch.device | str) -> State:
        shape = (self.lstm.num_layers, self.lstm.hidden_size)
        return [torch.zeros(shape, device=device), torch.zeros(shape, device=device)]

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, (h, c) = self.lstm(x.t(), (state[0], state[1]))
        return x + y.t(), [h, c]

    def flush(self, state: State) -> None:
        return None


class ChainStep:
    """Steps run in order; the state is theirs, concatenated."""

    def __init__(self, steps: Sequence[Step]):
        self.steps = list(steps)
        if any(s.delay for s in self.steps[:-1]):
            raise ModelError("streaming: only the last layer of a stack may delay its output")
        self.delay = self.steps[-1].delay if self.steps else 0
        self.counts = [s.n_state for s in self.steps]
        self.n_state = sum(self.counts)
        at, self._spans = 0, []
        for s, n in zip(self.steps, self.counts):
            self._spans.append((s.step, at, at + n))
            at += n

    def init(self, device: torch.device | str) -> State:
        return [t for s in self.steps for t in s.init(device)]

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        out: State = []
        for step, lo, hi in self._spans:
            if lo == hi:
                x = step(x, NO_STATE)[0]
            else:
                x, new = step(x, state[lo:hi])
                out += new
        return x, out

    def flush(self, state: State) -> torch.Tensor | None:
        if not self.delay:
            return None
        return self.steps[-1].flush(state[self.n_state - self.counts[-1]:])


class ResidualStep(ChainStep):
    """x + block(x), the block a chain of stride-1 steps (its output as long as its input)."""

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, out = super().step(x, state)
        return x + y, out


def rank4_ready(step: Step) -> bool:
    """Whether every step of `step` (made under `portable()`) also runs on 4-D tensors
    [1, C, 1, T] with 4-D states [1, C, 1, k]: convs, transposed convs, activations and their
    chains. A graph traced so is 2-D convs end to end, where onnxruntime keeps its blocked conv
    layout without a squeeze and an unsqueeze around every conv (one-frame graphs spend most of
    their time per node)."""
    if isinstance(step, ChainStep):
        return all(rank4_ready(child) for child in step.steps)
    if isinstance(step, ConvStep):
        return step.kind == "conv"  # the per-tap form broadcasts [C, 1] taps: 3-D only
    return isinstance(step, ElementwiseStep) or (isinstance(step, ConvTransposeStep) and step.portable)


def streamer(layer: nn.Module | Step) -> Step:
    """The step of one layer: its own `streamer()` if it has one (padded convs, residual units,
    the LSTM, ConvNeXt blocks, ...), an activation as it is, a Sequential as a chain."""
    if hasattr(layer, "streamer"):
        return layer.streamer()
    if isinstance(layer, ELEMENTWISE):
        return ElementwiseStep(layer)
    if isinstance(layer, nn.Sequential):
        return ChainStep([streamer(m) for m in layer])
    if hasattr(layer, "step") and hasattr(layer, "init"):
        return layer
    if isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d)):
        raise ModelError("streaming needs a causal model (ModelConfig.causal = true)")
    raise ModelError(f"streaming: no streaming rule for {type(layer).__name__}")


def stack_streamer(layers: Sequence[nn.Module | Step]) -> ChainStep:
    """The steps of a layer stack, as one chain."""
    return ChainStep([streamer(layer) for layer in layers])
