"""The rate-distortion beam against the plain beam, side by side in one run (issue 34).

Same model, bitstream and decoder; for each bitrate, one beam width, and each of: the plain beam
(codes by squared error alone) and the beam told its rate (`fit_kbps`: bits weighed against
error, `model/rd_search.py`) at each `--shares` (RD_SHARE; the shipped value is marked), both
fitted to the actual rate by rate control: PESQ-WB, STOI, the stages rate control sends per
frame, the files' actual kbps, and the encode time (search + rate control, one thread) as a ratio
to the plain beam's measured in the same run.

    python benchmarks/rd_search.py --data_dir state/heldout_te.tsv --every 1 --beam 16 \
        --kbps 1.5,3,6 --shares 0.3,0.6 [--model M] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import telucodec
from telucodec.api import decompress
from telucodec.deploy.runtimes import TorchRuntime
from telucodec.evaluation.metrics import pesq_wb, stoi
from telucodec.formats.dataset import index_audio, load_clip
from telucodec.formats.rate import encode_to_rate, fit_to_rate
from telucodec.model import rd_search


def measure(model, wavs, kbps: float, beam: int, share: float | None) -> dict[str, float]:
    """share None: the plain beam; else the rate-distortion beam at RD_SHARE = share."""
    pesq, st, stages, actual, spent = [], [], [], [], 0.0
    shipped, rd_search.RD_SHARE = rd_search.RD_SHARE, share if share is not None else rd_search.RD_SHARE
    try:
        for wav in wavs:
            t0 = time.perf_counter()
            if share is None:
                choice = fit_to_rate(model.encode_prefixes(wav, model.sample_rate, None, beam), kbps, strict=False)
            else:
                choice = encode_to_rate(TorchRuntime(model, beam=beam), wav, model.sample_rate, kbps, strict=False)
            spent += time.perf_counter() - t0
            out, _ = decompress(choice.data, model, runtime="torch")
            out = np.clip(out[: wav.size], -1, 1)
            pesq.append(pesq_wb(wav, out))
            st.append(stoi(wav, out))
            stages.append(float(np.mean(choice.codes.frame_counts)))
            actual.append(choice.kbps_actual)
    finally:
        rd_search.RD_SHARE = shipped
    return {"pesq_wb": float(np.mean(pesq)), "stoi": float(np.mean(st)), "stages": float(np.mean(stages)),
            "kbps_actual": float(np.mean(actual)), "seconds": spent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--model", default=None, help="model folder or name (default: the shipped default)")
    ap.add_argument("--every", type=int, default=3, help="every Nth clip")
    ap.add_argument("--beam", type=int, default=16)
    ap.add_argument("--kbps", default="1.5,3,6")
    ap.add_argument("--shares", default=str(rd_search.RD_SHARE))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = telucodec.load_model(args.model).eval()
    wavs = [load_clip(item, model.sample_rate).wav for item in list(index_audio(args.data_dir))[:: args.every]]
    rows = []
    for kbps in [float(k) for k in args.kbps.split(",")]:
        plain = measure(model, wavs, kbps, args.beam, None)
        rows.append({"kbps": kbps, "search": "plain beam", **plain, "time_ratio": 1.0})
        for share in [float(s) for s in args.shares.split(",")]:
            rd = measure(model, wavs, kbps, args.beam, share)
            mark = " (shipped)" if share == rd_search.RD_SHARE else ""
            rows.append({"kbps": kbps, "search": f"rd share {share:g}{mark}", **rd, "time_ratio": rd["seconds"] / plain["seconds"]})
        for row in rows[-1 - len(args.shares.split(",")):]:
            print(f"{row['kbps']:>4g} kbps  {row['search']:<22} PESQ-WB {row['pesq_wb']:.3f}  STOI {row['stoi']:.3f}  "
                  f"stages {row['stages']:.2f}  {row['kbps_actual']:.3f} kbps  encode time x{row['time_ratio']:.2f}", flush=True)
    print(f"{len(wavs)} clips, beam {args.beam}, model {model.model_id}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"clips": len(wavs), "beam": args.beam, "model_id": model.model_id, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
