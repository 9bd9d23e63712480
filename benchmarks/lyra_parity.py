#!/usr/bin/env python
"""The PyTorch port of Lyra v2 against Lyra's own TFLite graphs, clip by clip, in one run.

    python benchmarks/lyra_parity.py [--model lyra-v2] [--data_dir examples/te_cv] [--clips N]

Per clip (cut to whole 20 ms frames, rounded to the int16 grid as Lyra's library does):
- feature SNR: the port's encoder latent against `soundstream_encoder.tflite` run frame by frame;
- audio SNR: the port's decoder against `lyragan.tflite`, both fed Lyra's own features;
- PESQ-WB of the whole pipeline at 3.2 / 6 / 9.2 kbps (Lyra's quantizer: 16 / 30 / 46 stages),
  port (`telucodec encode/decode --model lyra-v2`) minus TFLite (the `eval` baseline `lyra`).
What limits the SNRs: the graphs run their later layers on int8 activations (QUANTIZE /
DEQUANTIZE around them); the port computes those layers in float32 with the dequantized weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import numpy as np
import torch

from telucodec.api import load_model
from telucodec.evaluation import baselines, metrics
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec

ROOT = Path(__file__).resolve().parents[1]
KBPS = (3.2, 6.0, 9.2)


def snr(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - x).astype(np.float64) ** 2)))


@torch.no_grad()
def clip_parity(model: Codec, wav: np.ndarray, kbps: tuple[float, ...] = KBPS) -> dict[str, float]:
    """Feature and audio SNR (dB) against the graphs, and PESQ-WB differences port - TFLite per bitrate."""
    frames = len(wav) // baselines.LYRA_FRAME
    wav = np.round(np.clip(wav[: frames * baselines.LYRA_FRAME], -1, 32767 / 32768) * 32768) / 32768
    features, audio = baselines.lyra_reference(wav)
    latent = model.encoder(torch.from_numpy(wav).view(1, 1, -1))[0].T.numpy()
    decoded = model.decoder(torch.from_numpy(features.T.copy())[None])[0, 0].numpy()
    out = {"feature_snr_db": snr(features, latent), "audio_snr_db": snr(audio, decoded)}
    for k in kbps:
        port = model.decode(model.encode(wav, model.sample_rate, kbps=k)).numpy()
        ref = baselines.run_lyra(wav, k).audio
        out[f"pesq_port_{k:g}"] = metrics.pesq_wb(wav, port)
        out[f"pesq_tflite_{k:g}"] = metrics.pesq_wb(wav, ref)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--model", default="lyra-v2")
    p.add_argument("--data_dir", default=str(ROOT / "examples" / "te_cv"))
    p.add_argument("--clips", type=int, default=0, help="at most this many clips (0 = all)")
    a = p.parse_args()
    torch.set_num_threads(1)
    model = load_model(a.model)
    paths = sorted(q for q in Path(a.data_dir).rglob("*") if q.suffix in (".flac", ".wav"))
    rows = [clip_parity(model, load_audio(q, 16000)) for q in paths[: a.clips or None]]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    print(f"{len(rows)} clips from {a.data_dir}, model {a.model}")
    print(f"feature SNR {mean['feature_snr_db']:.1f} dB (min {min(r['feature_snr_db'] for r in rows):.1f}); "
          f"audio SNR {mean['audio_snr_db']:.1f} dB (min {min(r['audio_snr_db'] for r in rows):.1f})")
    print("| kbps | PESQ-WB port | PESQ-WB TFLite | port - TFLite |\n|---|---|---|---|")
    for k in KBPS:
        port, ref = mean[f"pesq_port_{k:g}"], mean[f"pesq_tflite_{k:g}"]
        print(f"| {k:g} | {port:.3f} | {ref:.3f} | {port - ref:+.3f} |")


if __name__ == "__main__":
    main()
