"""The Lyra v2 port: converter, parity with Lyra's own TFLite graphs, streaming, fine-tuning.

Floors are the figures measured on the example clips (benchmarks/lyra_parity.py: feature SNR
22.1-23 dB, audio SNR 21.8-26 dB over the 15 clips; the port's PESQ-WB is above the graphs', which
run their later layers on int8 activations), rounded down.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from telucodec.api import load_model
from telucodec.errors import ModelError
from telucodec.evaluation import baselines
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec
from telucodec.model.lyra_import import import_lyra

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "telucodec" / "pretrained" / "lyra-v2"
pytestmark = pytest.mark.skipif(importlib.util.find_spec("tflite") is None
                                or importlib.util.find_spec("ai_edge_litert") is None,
                                reason="needs the lyra extra (tflite, ai-edge-litert)")


def _parity():
    spec = importlib.util.spec_from_file_location("lyra_parity", ROOT / "benchmarks" / "lyra_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lyra() -> Codec:
    return load_model("lyra-v2")


@pytest.fixture(scope="module")
def clip(example_clips: list[Path]) -> np.ndarray:
    wav = load_audio(example_clips[0], 16000)[: 4 * 16000]
    return (np.round(wav * 32768) / 32768).astype(np.float32)


def test_converter_rebuilds_the_shipped_folder(tmp_path: Path) -> None:
    out = tmp_path / "lyra"
    model = import_lyra(baselines.SHIPPED_LYRA, out)
    assert (out / "LICENSE").read_text() == (baselines.SHIPPED_LYRA / "LICENSE").read_text()
    assert "Apache License" in (out / "NOTICE").read_text()
    shipped, fresh = load_file(str(SHIPPED / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert shipped.keys() == fresh.keys() and all(torch.equal(shipped[k], fresh[k]) for k in shipped)
    assert Codec.from_pretrained(out).model_id == load_model("lyra-v2").model_id
    assert model.config.model.encoder == "soundstream" and model.max_n_q == 46


def test_converter_refuses_a_folder_without_the_graphs(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="missing soundstream_encoder.tflite"):
        import_lyra(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_port_matches_the_tflite_graphs(lyra: Codec, clip: np.ndarray) -> None:
    row = _parity().clip_parity(lyra, clip, kbps=(6.0,))
    assert row["feature_snr_db"] >= 21.0
    assert row["audio_snr_db"] >= 20.0
    # the float port is not worse than the int8 graphs through the whole 6 kbps pipeline
    assert row["pesq_port_6"] >= row["pesq_tflite_6"] - 0.05


def test_quantizer_picks_lyras_indices(lyra: Codec, clip: np.ndarray) -> None:
    from ai_edge_litert.interpreter import Interpreter

    features, _ = baselines.lyra_reference(clip[: len(clip) // 320 * 320])
    encode = Interpreter(model_path=str(baselines.SHIPPED_LYRA / "quantizer.tflite")).get_signature_runner("encode")
    theirs = np.stack([encode(input_frames=v[None, None], num_quantizers=np.array(30, np.int32))["output_0"][:30, 0, 0]
                       for v in features])
    ours = lyra.quantizer.encode(torch.from_numpy(features.T.copy())[None], 30)[0].T.numpy()
    assert (ours[:, :4] == theirs[:, :4]).all()      # the first stages exactly
    assert (ours == theirs).mean() > 0.99            # later ones up to float ties


def test_offline_equals_streaming(lyra: Codec, clip: np.ndarray) -> None:
    codes = lyra.encode(clip, 16000, kbps=6)
    offline = lyra.decode(codes).numpy()
    enc, dec = lyra.stream_encoder(kbps=6), lyra.stream_decoder()
    pieces, streamed = [], []
    for start in range(0, len(clip), 777):
        pieces.append(enc.push(clip[start:start + 777]))
        streamed.append(dec.push(pieces[-1]).numpy())
    pieces.append(enc.flush())
    streamed += [dec.push(pieces[-1]).numpy(), dec.flush().numpy()]
    assert torch.equal(torch.cat(pieces, dim=1), codes.codes)
    assert np.abs(np.concatenate(streamed)[: len(offline)] - offline).max() < 1e-5
    assert enc.latency_samples + dec.latency_samples == 320  # 20 ms: one frame, no lookahead


def test_init_from_lyra_fine_tunes_with_its_recipe(tmp_path: Path) -> None:
    """The seed's command plus `--init_from lyra-v2`: the converted model's own config is used
    (encoder frozen), and a few steps on the example clips lower the validation loss."""
    cmd = [sys.executable, str(ROOT / "train_codec.py"), "--data_dir", str(ROOT / "examples" / "te_cv"),
           "--checkpoint_dir", str(tmp_path), "--experiment_name", "ft", "--init_from", "lyra-v2",
           "--batch_size", "4", "--num_epochs", "3", "--steps_per_epoch", "4", "--learning_rate", "3e-4",
           "--warmup_steps", "1", "--threads", "1", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "init_from lyra-v2: loaded 220 of the model's 220 tensors" in proc.stdout  # every weight
    assert "frozen: encoder" in proc.stdout and "serves 0.2 to 9.2 kbps" in proc.stdout
    rows = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    trained = load_model(tmp_path / "ft" / "model")
    start = load_model("lyra-v2")
    assert all(torch.equal(a, b) for a, b in zip(trained.encoder.state_dict().values(),
                                                 start.encoder.state_dict().values()))
    assert any(not torch.equal(a, b) for a, b in zip(trained.decoder.state_dict().values(),
                                                     start.decoder.state_dict().values()))
