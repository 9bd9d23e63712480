"""What streaming costs next to offline coding, on one thread: real-time factors side by side.

    .venv/bin/python benchmarks/streaming_cost.py [--model telugu-v5] [--seconds 10] [--repeats 3] [--no_onnx]

Runs in one process, one thread, on the same clip: offline `encode` + `decode`; the stateful
streams (`Codec.stream_encoder()` / `stream_decoder()`, each push runs only its new frames) at 20 ms
and 80 ms chunks; and the streams as they were before (bd3c12d: each push re-ran the model over
its receptive field of past frames, ~25 frames for telugu-v5), re-implemented here as
`RerunEncoder` / `RerunDecoder`; and, with onnxruntime installed, the streaming ONNX graphs
(`deploy/onnx_streaming_export.py`, exported to a temporary folder first) run by
`deploy/onnx_streaming.py` with one onnxruntime thread. A real-time factor is audio seconds / compute seconds (higher
is faster), the best of `--repeats` runs; compute seconds are the thread's CPU time
(`time.thread_time`), so other processes on a shared machine do not count (on an idle core it is
the wall time; `--wall` measures that instead). The decoder is fed the codes each audio chunk produced,
as a live call would. Every stream's codes are checked equal to offline's, its audio within 1e-5.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import telucodec
from telucodec.formats.audio import load_audio
from telucodec.model.streaming import decoder_frames, encoder_context_frames

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "te_cv"


class RerunEncoder:
    """The old stream encoder: keeps `context` frames of past audio and re-encodes them each push."""

    def __init__(self, model, kbps=None):
        self.model, self.hop, self.n_q = model, model.hop, model.n_q_for_kbps(kbps)
        self.context = encoder_context_frames(model.encoder, model.hop)
        self.buffer, self.ctx = torch.zeros(0), 0

    @torch.no_grad()
    def push(self, wav):
        self.buffer = torch.cat([self.buffer, torch.as_tensor(wav, dtype=torch.float32).clamp(-1, 1)])
        new = (self.buffer.shape[0] - self.ctx) // self.hop
        if new == 0:
            return torch.zeros(self.n_q, 0, dtype=torch.long)
        end = self.ctx + new * self.hop
        latent = self.model.encoder(self.buffer[:end].view(1, 1, -1))[..., self.ctx // self.hop:]
        codes = self.model.quantizer.encode(latent, self.n_q)[0]
        keep = min(self.context * self.hop, end)
        self.buffer, self.ctx = self.buffer[end - keep:], keep
        return codes

    def flush(self):
        pending = self.buffer.shape[0] - self.ctx
        return self.push(torch.zeros((-pending) % self.hop)) if pending else torch.zeros(self.n_q, 0, dtype=torch.long)


class RerunDecoder:
    """The old stream decoder: keeps `context` frames of past codes and re-decodes them each push."""

    def __init__(self, model):
        self.model, self.hop = model, model.hop
        self.context, self.lookahead = decoder_frames(model.decoder)
        self.codes, self.ctx = None, 0

    @torch.no_grad()
    def _run(self, ready):
        latent = self.model.quantizer.decode(self.codes[None])
        wav = self.model.decoder(latent)[0, 0, self.ctx * self.hop: (self.ctx + ready) * self.hop]
        total = self.ctx + ready
        keep = min(self.context, total)
        self.codes, self.ctx = self.codes[:, total - keep:], keep
        return wav

    def push(self, codes):
        self.codes = codes if self.codes is None else torch.cat([self.codes, codes], dim=1)
        ready = self.codes.shape[1] - self.ctx - self.lookahead
        return self._run(ready) if ready > 0 else torch.zeros(0)

    def flush(self):
        pending = 0 if self.codes is None else self.codes.shape[1] - self.ctx
        return self._run(pending) if pending > 0 else torch.zeros(0)


def clip_of(seconds: float, rate: int) -> np.ndarray:
    pieces, total = [], 0
    for path in sorted(EXAMPLES.rglob("*.flac")):
        pieces.append(load_audio(path, rate))
        total += len(pieces[-1])
        if total >= seconds * rate:
            break
    return np.concatenate(pieces)[: int(seconds * rate)].astype(np.float32)


CLOCK = time.thread_time


def stream(enc, dec, wav: np.ndarray, chunk: int) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(codes, audio, encoder seconds, decoder seconds) of one live-style pass."""
    codes, audio, t_enc, t_dec = [], [], 0.0, 0.0
    for start in range(0, len(wav) + 1, chunk):
        t0 = CLOCK()
        c = enc.push(wav[start: start + chunk]) if start < len(wav) else enc.flush()
        t1 = CLOCK()
        audio.append(dec.push(c))
        t_dec += CLOCK() - t1
        t_enc += t1 - t0
        codes.append(c)
    t0 = CLOCK()
    audio.append(dec.flush())
    t_dec += CLOCK() - t0
    return torch.cat(codes, dim=1), torch.cat(audio), t_enc, t_dec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder or shipped name (default: the shipped model)")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per figure, best kept (default 3)")
    ap.add_argument("--wall", action="store_true", help="time by the wall clock, not the thread's CPU time")
    ap.add_argument("--no_onnx", action="store_true", help="skip the streaming ONNX graphs")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.wall else time.thread_time
    torch.set_num_threads(1)
    model = telucodec.load_model(args.model)
    wav = clip_of(args.seconds, model.sample_rate)
    seconds = len(wav) / model.sample_rate

    offline_codes = model.encode(wav)
    offline_wav = model.decode(offline_codes)
    enc_t = min(_timed(lambda: model.encode(wav)) for _ in range(args.repeats))
    dec_t = min(_timed(lambda: model.decode(offline_codes)) for _ in range(args.repeats))
    rows = [("offline", "whole clip", enc_t, dec_t)]
    paths = [("stateful (now)", lambda: (model.stream_encoder(), model.stream_decoder())),
             ("re-run (before)", lambda: (RerunEncoder(model), RerunDecoder(model)))]
    if not args.no_onnx and importlib.util.find_spec("onnxruntime"):
        from telucodec.deploy.onnx_streaming import OnnxStreamDecoder, OnnxStreamEncoder
        from telucodec.deploy.onnx_streaming_export import export_streaming_onnx

        folder = Path(tempfile.mkdtemp(prefix="streaming_cost_onnx_"))
        export_streaming_onnx(model, folder)
        paths.append(("onnx stateful", lambda: (_Torchless(OnnxStreamEncoder(folder)),
                                                _Torchless(OnnxStreamDecoder(folder)))))
    for chunk_ms in (20, 80):
        chunk = model.sample_rate * chunk_ms // 1000
        for name, make in paths:
            best = None
            for _ in range(args.repeats):
                codes, audio, te, td = stream(*make(), wav, chunk)
                assert torch.equal(codes, offline_codes.codes), f"{name}: codes differ from offline"
                err = float((audio[: len(offline_wav)] - offline_wav).abs().max())
                assert err <= 1e-5, f"{name}: audio differs from offline by {err:.2e}"
                best = (te, td) if best is None or te + td < sum(best) else best
            rows.append((name, f"{chunk_ms} ms chunks", *best))

    clock = "wall clock" if args.wall else "thread CPU time"
    print(f"model {model.config.name} ({model.model_id}), {seconds:.1f} s clip, 1 thread, {clock}, best of {args.repeats}")
    print(f"{'path':<16} {'chunks':<14} {'encode xRT':>10} {'decode xRT':>10} {'both xRT':>9} {'cost / offline':>14}")
    both_offline = rows[0][2] + rows[0][3]
    for name, chunks, te, td in rows:
        print(f"{name:<16} {chunks:<14} {seconds / te:>10.1f} {seconds / td:>10.1f} {seconds / (te + td):>9.1f} "
              f"{(te + td) / both_offline:>13.2f}x")
    for chunk_ms in (20, 80):
        now = next(r for r in rows if r[0].startswith("stateful") and r[1].startswith(f"{chunk_ms} "))
        old = next(r for r in rows if r[0].startswith("re-run") and r[1].startswith(f"{chunk_ms} "))
        print(f"{chunk_ms} ms: stateful is {(old[2] + old[3]) / (now[2] + now[3]):.1f}x faster than re-run")
    if len(paths) > 2:
        shutil.rmtree(folder, ignore_errors=True)


class _Torchless:
    """An ONNX stream, its numpy outputs as tensors for the comparison (converted outside the clock
    would be fairer still; the conversion shares memory and costs ~1 us)."""

    def __init__(self, stream):
        self.stream = stream

    def push(self, x):
        return torch.from_numpy(np.asarray(self.stream.push(np.asarray(x))))

    def flush(self):
        return torch.from_numpy(np.asarray(self.stream.flush()))


def _timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


if __name__ == "__main__":
    main()
