"""RVQ beam search at the encoder, measured side by side in one run (issue 34, lever 3).

Same model, same bitstream and decoder; only how the encoder picks codes changes (beam 1 is the
greedy nearest-entry search). For each bitrate and beam: PESQ-WB, STOI, RMS ratio on the clips,
the latent's quantization error (dB relative to the latent's energy), and the encode speed as a
real-time factor on one thread, plus each beam's speed as a ratio to greedy measured in the same
run.

    python benchmarks/beam_search.py --data_dir state/heldout_te.tsv --clips 24 --beams 1,4,16 \
        --kbps 1.5,3,6 [--model telucodec/pretrained/telugu-v5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import telucodec
from telucodec.evaluation.metrics import pesq_wb, rms_ratio, stoi
from telucodec.formats.dataset import discover, load_item


def latent_error_db(model: telucodec.Codec, wav: np.ndarray, codes: torch.Tensor) -> float:
    """Quantization error of `codes` [n, F] against the unquantized latent, dB re its energy."""
    with torch.no_grad():
        x = torch.from_numpy(wav).view(1, 1, -1)
        side = model.amplitude.side_info(x)
        x = model.amplitude.normalize_with(x, side, 0)
        x = torch.nn.functional.pad(x, (0, codes.shape[-1] * model.hop - x.shape[-1]))
        latent = model.encoder(x)[0]
        q = model.quantizer.decode(codes[None])[0]
    return 10 * float(torch.log10(((latent - q) ** 2).sum() / (latent ** 2).sum()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped default)")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--beams", default="1,4,16")
    ap.add_argument("--kbps", default="1.5,3,6")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = telucodec.load_model(args.model)
    files = discover(args.data_dir)
    step = max(1, len(files) // args.clips)
    files = files[::step][: args.clips]  # spread over the speakers in the list
    wavs = [load_item(f, model.sample_rate) for f in files]
    seconds = sum(w.size for w in wavs) / model.sample_rate
    beams = [int(b) for b in args.beams.split(",")]
    rows = []
    for kbps in [float(k) for k in args.kbps.split(",")]:
        for beam in beams:
            pesq, st, level, lat, spent = [], [], [], [], 0.0
            for wav in wavs:
                t0 = time.perf_counter()
                codes = model.encode(wav, model.sample_rate, kbps, beam=beam)
                spent += time.perf_counter() - t0
                ref, deg = wav, np.clip(model.decode(codes).numpy()[: wav.size], -1.0, 1.0)  # the eval's way
                pesq.append(pesq_wb(ref, deg))
                st.append(stoi(ref, deg))
                level.append(rms_ratio(ref, deg))
                lat.append(latent_error_db(model, wav, codes.codes))
            rows.append({"kbps": kbps, "beam": beam, "pesq_wb": float(np.mean(pesq)), "stoi": float(np.mean(st)),
                         "rms_ratio": float(np.mean(level)), "latent_error_db": float(np.mean(lat)),
                         "encode_x_realtime": seconds / spent})
    greedy = {r["kbps"]: r for r in rows if r["beam"] == 1}
    print(f"{len(wavs)} clips, {seconds:.0f} s, model {model.model_id}, 1 thread")
    print("| kbps | beam | PESQ-WB | STOI | RMS ratio | latent error dB | encode x real time | speed vs beam 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["encode_x_realtime"] / greedy[r["kbps"]]["encode_x_realtime"] if r["kbps"] in greedy else float("nan")
        print(f"| {r['kbps']:g} | {r['beam']} | {r['pesq_wb']:.3f} | {r['stoi']:.3f} | {r['rms_ratio']:.3f} | "
              f"{r['latent_error_db']:.2f} | {r['encode_x_realtime']:.0f}x | {ratio:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"clips": [str(p.path) for p in files], "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
