"""What reading a stream's weights costs per frame on this core, before any graph runs (issue 35).

A one-frame streaming graph reads every weight of its network once per push, and the encoder
every codebook a bitrate keeps. When they exceed the core's cache, that traffic alone bounds the
push: this times a float32 matrix-vector product (BLAS sgemv, memory-bound and vectorized) over
exactly as many bytes as the model's encoder + kept codebooks and its decoder, per frame:

    loopback   encoder bytes then decoder bytes, each frame (one thread runs both sides)
    alone      the encoder's bytes over and over (a sender), the decoder's (a receiver)
    in cache   1 MiB over and over (fits L2: the same kernel's speed when memory is not the limit)

Budget for reference: 100x real time at 20 ms pushes is 200 us a frame.

    OMP_NUM_THREADS=1 python benchmarks/memory_floor.py --model telugu-v7 --kbps 6
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import telucodec

MIB = 1 << 20


def per_call_us(fn, calls: int = 2000, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.thread_time() - start) / calls)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model (default: the shipped one)")
    ap.add_argument("--kbps", type=float, default=6.0, help="the codebooks the stream encoder searches")
    a = ap.parse_args()
    model = telucodec.load_model(a.model)
    n_q = model.n_q_for_kbps(a.kbps)
    books = n_q * model.config.quantizer.codebook_size * model.config.model.latent_dim
    enc_floats = sum(p.numel() for p in model.encoder.parameters()) + books
    dec_floats = sum(p.numel() for p in model.decoder.parameters())
    rng = np.random.default_rng(0)
    enc = rng.random((enc_floats // 64, 64), dtype=np.float32)
    dec = rng.random((dec_floats // 64, 64), dtype=np.float32)
    small = rng.random((MIB // 4 // 64, 64), dtype=np.float32)
    v = rng.random(64, dtype=np.float32)
    loopback = per_call_us(lambda: (enc @ v, dec @ v))
    enc_alone, dec_alone, cached = per_call_us(lambda: enc @ v), per_call_us(lambda: dec @ v), per_call_us(lambda: small @ v)
    print(f"{model.config.name}, {a.kbps:g} kbps (n_q {n_q}): encoder weights + {n_q} codebooks "
          f"{enc.nbytes / MIB:.2f} MiB, decoder weights {dec.nbytes / MIB:.2f} MiB (float32)")
    print("reading them once per frame, one thread (us a frame; 200 us = 100x real time at 20 ms):")
    print(f"  loopback (encoder then decoder)  {loopback:6.0f}")
    print(f"  encoder alone                    {enc_alone:6.0f}")
    print(f"  decoder alone                    {dec_alone:6.0f}")
    print(f"  1 MiB in cache                   {cached:6.0f}  ({MIB / cached / 1e3:.0f} GB/s; "
          f"the encoder's bytes at that speed: {enc.nbytes / MIB * cached:.0f} us)")


if __name__ == "__main__":
    main()
