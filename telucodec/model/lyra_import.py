"""Convert Lyra v2's TFLite graphs (google/lyra v1.3.2, Apache-2.0) into a telucodec model folder.

    import_lyra(LYRA_DIR, OUT)   # soundstream_encoder.tflite + lyragan.tflite + quantizer.tflite + LICENSE

Encoder and decoder: the graphs are read with the `tflite` flatbuffer parser. Every CONV_2D,
DEPTHWISE_CONV_2D and TRANSPOSE_CONV op, in the order the graph runs them, gives one conv of
`model/soundstream.py` (the parallel transposed convs that Lyra runs on the parts of a SPLIT are
one grouped conv here). 1-D convs are stored as 2-D ones of width 1: weights [out, k, 1, in/groups]
(depthwise [1, k, 1, C]); int8 weights are dequantized with their per-channel scales and int32
biases with theirs, so the model is float32 throughout. Each op's stride and dilation are checked
against the module it fills, so a graph of another shape is refused rather than misread.

Quantizer: `quantizer.tflite` is a residual VQ of 46 stages x 16 entries of 64 dims. Its tables
are read through its own `decode` signature (one stage set to one entry, all others unused), so
the entries are exactly what Lyra's decoder adds, in Lyra's stage order.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from telucodec.config import CodecConfig, LossConfig, ModelConfig, QuantizerConfig, TrainConfig
from telucodec.errors import ModelError
from telucodec.model.codec import Codec
from telucodec.model.soundstream import ported_layers

LYRA_FILES = ("soundstream_encoder.tflite", "lyragan.tflite", "quantizer.tflite", "LICENSE")
LYRA_STAGES, LYRA_ENTRIES, LYRA_DIM = 46, 16, 64

NOTICE = """This model folder contains weights converted from Lyra v2 (google/lyra, release v1.3.2,
files lyra/model_coeffs/soundstream_encoder.tflite, lyragan.tflite and quantizer.tflite),
Copyright Google LLC, licensed under the Apache License, Version 2.0 (see LICENSE beside this file).

What was done to them: the TFLite graphs were read with the `tflite` flatbuffer parser; int8
weights and int32 biases were dequantized to float32 with their per-channel scales and written,
unchanged otherwise, into the PyTorch modules of telucodec/model/soundstream.py; the quantizer's
46 x 16 tables were read through its decode signature. Converter: telucodec/model/lyra_import.py
(scripts/import_lyra.py).
"""


def lyra_config() -> CodecConfig:
    """Lyra v2 as a telucodec config: SoundStream encoder/decoder, 16 kHz, hop 320, 46 x 4-bit RVQ,
    amplitude `none` (Lyra codes absolute level itself, and `none` streams).

    Its train/loss sections are the fine-tuning recipe `train_codec.py --init_from lyra-v2` uses
    when no `--config` is given: the encoder frozen (its latent is what the quantizer was fitted
    on), the decoder learning at a small rate from the seed's terms (MSE + 15 MSE(RMS)) plus
    multi-resolution mel and STFT losses."""
    model = ModelConfig(encoder="soundstream", decoder="soundstream", channels=64, ratios=(16, 5, 2, 2),
                        latent_dim=LYRA_DIM, causal=True, amplitude="none")
    quantizer = QuantizerConfig(n_q=LYRA_STAGES, codebook_size=LYRA_ENTRIES, kmeans_init=False,
                                dead_code_steps=0)
    train = TrainConfig(learning_rate=1e-4, warmup_steps=100, freeze=("encoder",), pesq_every=1, pesq_clips=4)
    # commitment 0: its gradient reaches only the (frozen) encoder; EMA moves the codebooks
    return CodecConfig(name="lyra-v2", model=model, quantizer=quantizer, loss=LossConfig(commitment=0.0), train=train)


@dataclass
class GraphConv:
    """One conv op of a TFLite graph, as float32 PyTorch weights."""

    kind: str            # "conv" | "depthwise" | "transpose"
    weight: np.ndarray   # PyTorch layout: Conv1d [out, in/groups, k], ConvTranspose1d [in, out/groups, k]
    bias: np.ndarray
    stride: int
    dilation: int


def _tflite():
    try:
        import tflite  # the flatbuffer parser (PyPI `tflite`)
    except ImportError as exc:
        raise ModelError("converting Lyra needs the `tflite` package: pip install 'telucodec[lyra]'") from exc
    return tflite


def _tensor_value(model, graph, index: int) -> np.ndarray:
    """A constant tensor of the graph as float32, dequantized when it is int8/int32."""
    tensor = graph.Tensors(index)
    raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
    dtype = {0: np.float32, 2: np.int32, 9: np.int8}.get(tensor.Type())
    if dtype is None or isinstance(raw, int):
        raise ModelError(f"tensor {tensor.Name().decode()}: not a constant of a known type ({tensor.Type()})")
    value = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(tensor.ShapeAsNumpy()).astype(np.float32)
    quant = tensor.Quantization()
    if dtype is not np.float32 and quant is not None and quant.ScaleLength():
        scale, zero = quant.ScaleAsNumpy().astype(np.float32), quant.ZeroPointAsNumpy().astype(np.float32)
        axis = quant.QuantizedDimension() if scale.size > 1 else 0
        shape = [1] * value.ndim
        shape[axis] = scale.size
        value = (value - zero.reshape(shape)) * scale.reshape(shape)
    return value


def read_graph_convs(path: str | Path) -> list[GraphConv]:
    """Every conv op of a Lyra TFLite graph, in execution order, as PyTorch-layout float weights."""
    tflite = _tflite()
    from tflite.BuiltinOperator import BuiltinOperator

    op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    try:
        model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
        graph = model.Subgraphs(0)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable TFLite model ({exc})") from exc
    producer: dict[int, tuple[str, int]] = {}  # tensor -> (op name, op index) that wrote it
    convs: list[GraphConv] = []
    split_of_last: int | None = None           # the SPLIT feeding the last transposed conv
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        inputs, options = op.InputsAsNumpy(), op.BuiltinOptions()
        for t in op.OutputsAsNumpy():
            producer[int(t)] = (name, i)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts = tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            opts.Init(options.Bytes, options.Pos)
            w = _tensor_value(model, graph, inputs[1])[:, :, 0, :]            # [out, k, in/g] | [1, k, C]
            w = w.transpose(0, 2, 1) if name == "CONV_2D" else w[0].T[:, None, :]
            convs.append(GraphConv("conv" if name == "CONV_2D" else "depthwise", w,
                                   _tensor_value(model, graph, inputs[2]), opts.StrideH(), opts.DilationHFactor()))
            split_of_last = None
        elif name == "TRANSPOSE_CONV":
            opts = tflite.TransposeConvOptions()
            opts.Init(options.Bytes, options.Pos)
            w = _tensor_value(model, graph, inputs[1])[:, :, 0, :].transpose(2, 0, 1)  # [in_g, out_g, k]
            bias = _tensor_value(model, graph, inputs[3])
            source = producer.get(int(inputs[2]), ("", -1))
            split = source[1] if source[0] == "SPLIT" else None
            if split is not None and split == split_of_last:  # another group of the same layer
                last = convs[-1]
                last.weight = np.concatenate([last.weight, w])
                last.bias = np.concatenate([last.bias, bias])
            else:
                convs.append(GraphConv("transpose", w, bias, opts.StrideH(), 1))
            split_of_last = split
    return convs


def load_graph_convs(module: nn.Module, convs: list[GraphConv], source: str) -> None:
    """Copy `convs` into `module`'s convs, in order; any disagreement of count, shape, stride or
    dilation is a ModelError naming the layer."""
    layers = ported_layers(module)
    if len(layers) != len(convs):
        raise ModelError(f"{source}: {len(convs)} conv ops, the module has {len(layers)} convs")
    for n, (layer, conv) in enumerate(zip(layers, convs)):
        want_transpose = isinstance(layer, nn.ConvTranspose1d)
        if want_transpose != (conv.kind == "transpose") or tuple(layer.weight.shape) != conv.weight.shape:
            raise ModelError(f"{source}: conv {n} is a {conv.kind} {conv.weight.shape}, the module's is "
                             f"{type(layer).__name__} {tuple(layer.weight.shape)}")
        if layer.stride[0] != conv.stride or layer.dilation[0] != conv.dilation:
            raise ModelError(f"{source}: conv {n} has stride {conv.stride} dilation {conv.dilation}, the module's "
                             f"{layer.stride[0]} / {layer.dilation[0]}")
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(conv.weight))
            layer.bias.copy_(torch.from_numpy(conv.bias))


def read_lyra_codebooks(path: str | Path) -> np.ndarray:
    """quantizer.tflite -> [46, 16, 64] float32: entry e of stage s is what decoding adds for it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    decode = interpreter.get_signature_runner("decode")
    books = np.zeros((LYRA_STAGES, LYRA_ENTRIES, LYRA_DIM), dtype=np.float32)
    for stage in range(LYRA_STAGES):
        for entry in range(LYRA_ENTRIES):
            idx = np.full((LYRA_STAGES, 1, 1), -1, dtype=np.int32)
            idx[stage] = entry
            out = decode(encoding_indices=idx)
            books[stage, entry] = next(iter(out.values())).reshape(-1)
    return books


def import_lyra(lyra_dir: str | Path, out: str | Path, dtype: torch.dtype = torch.float16) -> Codec:
    """Read the three Lyra graphs in `lyra_dir` and write a telucodec model folder to `out`
    (config.json + model.safetensors in `dtype` + Lyra's LICENSE + NOTICE). Returns the model
    (float32, before the cast: what `out` holds, up to `dtype`'s rounding)."""
    lyra_dir, out = Path(lyra_dir), Path(out)
    missing = [f for f in LYRA_FILES if not (lyra_dir / f).is_file()]
    if missing:
        raise ModelError(f"{lyra_dir}: not a Lyra v2 model folder (missing {', '.join(missing)})")
    model = Codec(lyra_config())
    load_graph_convs(model.encoder, read_graph_convs(lyra_dir / "soundstream_encoder.tflite"),
                     str(lyra_dir / "soundstream_encoder.tflite"))
    load_graph_convs(model.decoder, read_graph_convs(lyra_dir / "lyragan.tflite"), str(lyra_dir / "lyragan.tflite"))
    books = torch.from_numpy(read_lyra_codebooks(lyra_dir / "quantizer.tflite"))
    model.quantizer.set_codebooks(books)
    model.save_pretrained(out, dtype=dtype)
    shutil.copyfile(lyra_dir / "LICENSE", out / "LICENSE")
    (out / "NOTICE").write_text(NOTICE)
    return model.eval()
