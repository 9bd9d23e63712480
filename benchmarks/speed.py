"""Speed: encode and decode real-time factors of every preset (random weights) on real speech, on
1 and 2 threads, side by side with Opus (opus-tools, 1 thread) and SNAC 24 kHz (random weights)
as anchors, and optionally trained model folders, an ONNX export and Lyra v2's TFLite graphs
(`--lyra 6`).

    nice -n 10 .venv/bin/python benchmarks/speed.py
    .venv/bin/python benchmarks/speed.py --presets tiny,spectral --seconds 30 --threads 1,2 \
        --model runs/x/model --model runs/y/model --onnx runs/x/onnx
    nice -n 5 .venv/bin/python benchmarks/speed.py --presets "" --threads 1 --lyra 6 --runtimes \
        --cli_seconds 600 --ray_tokenize 8 --streaming          # the runtimes side by side (below)

`--runtimes` times each `--model` (default: the shipped model) through both runtimes of
`telucodec/deploy/runtimes.py` (`torch`, `onnx`: the ONNX export, made once into `--cache`) as rows
of the same table, next to Lyra's TFLite graphs (`--lyra`) and Opus. `--cli_seconds S` runs the
CLI's default path on an S-second file as a user would (fresh processes, OMP_NUM_THREADS=1: wall
time with start-up, peak RSS, which runtime `auto` chose; the first call makes the export) and
with `--runtime torch`. `--ray_tokenize N` tokenizes N copies of examples/ through Ray on 2 CPUs
with each runtime (audio hours per wall hour). `--streaming` adds the stateful streams' rows
(20 ms and 80 ms chunks, torch and the streaming ONNX graphs), each side timed on its own pass as
a call runs it (the sender encodes, the receiver decodes) and as Lyra's row is timed, plus a
"loopback" row at 20 ms with both sides push by push in one thread (`benchmarks/streaming_cost.py`'s
loop; its own table has the rest); Lyra's row runs its graphs frame by frame (20 ms), so it is the
streaming rows' anchor as well. `--cpu_time` times in-process rows
by the thread's CPU time: on a machine that other processes share, the fair clock.

RTF = compute seconds per second of audio (lower is faster; 0.01 = 100x faster than real time, the
"xRT" columns),
the best of `--repeats` runs after one warm-up. "x Opus" = RTF / Opus RTF at 1 thread. Opus is
timed as two subprocesses (opusenc, opusdec), so its numbers include process start-up (a few ms).
Weights do not change speed, so random-weight presets time the architectures we train.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"
SR = 16000

# hubertsiuzdak/snac_24khz's config.json (0.98 kbps, 19.8 M parameters); built here with random
# weights, so nothing is downloaded.
SNAC_24KHZ = dict(sampling_rate=24000, encoder_dim=48, encoder_rates=[2, 4, 8, 8], decoder_dim=1024,
                  decoder_rates=[8, 8, 4, 2], attn_window_size=None, codebook_size=4096, codebook_dim=8,
                  vq_strides=[4, 2, 1], noise=True, depthwise=True)


@dataclass
class Row:
    system: str
    threads: int
    encode_rtf: float | None
    decode_rtf: float | None
    note: str = ""


def example_speech(seconds: float) -> np.ndarray:
    """The example clips concatenated (float32 mono 16 kHz), cut (or repeated) to `seconds`."""
    from telucodec.formats.audio import load_audio

    wav = np.concatenate([load_audio(p, SR) for p in sorted(EXAMPLES.rglob("*.flac"))])
    n = int(seconds * SR)
    return np.tile(wav, -(-n // wav.size))[:n]


CLOCK = time.perf_counter  # --cpu_time: time.thread_time (this thread's CPU seconds)


def best_time(fn: Callable[[], object], repeats: int, clock: Callable[[], float] | None = None) -> float:
    clock = clock or CLOCK
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def time_codec(name: str, model, wav: np.ndarray, kbps: float, threads: int, repeats: int) -> Row:
    seconds = wav.size / SR
    codes = model.encode(wav, SR, kbps)
    enc = best_time(lambda: model.encode(wav, SR, kbps), repeats)
    dec = best_time(lambda: model.decode(codes), repeats)
    params = sum(p.numel() for p in getattr(model, "model", model).parameters()) / 1e6  # a runtime's model
    return Row(name, threads, enc / seconds, dec / seconds, f"{params:.1f} M params, n_q {codes.n_q} = {codes.kbps_nominal:g} kbps")


def time_snac(wav: np.ndarray, threads: int, repeats: int) -> Row:
    import snac
    import soxr

    torch.manual_seed(0)
    model = snac.SNAC(**SNAC_24KHZ).eval()
    x = torch.from_numpy(soxr.resample(wav, SR, 24000).astype(np.float32)).view(1, 1, -1)  # not timed
    with torch.inference_mode():
        codes = model.encode(x)
        enc = best_time(lambda: model.encode(x), repeats)
        dec = best_time(lambda: model.decode(codes), repeats)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    seconds = wav.size / SR
    return Row("snac-24khz (random)", threads, enc / seconds, dec / seconds, f"{params:.1f} M params, 0.98 kbps")


def time_onnx(directory: Path, wav: np.ndarray, kbps: float, threads: int, repeats: int) -> Row:
    from telucodec.deploy.onnx_runtime import OnnxCodec

    codec = OnnxCodec(directory, threads=threads)
    frame_kbps = codec.config["codebook_bits"] * codec.config["frame_rate"] / 1000
    n_q = max(1, min(codec.n_q, int(kbps / frame_kbps + 1e-9)))
    clip = codec.encode(wav, n_q)
    enc = best_time(lambda: codec.encode(wav, n_q), repeats)
    dec = best_time(lambda: codec.decode(clip.codes, clip.side, clip.num_samples), repeats)
    seconds = wav.size / SR
    return Row(f"onnx {directory.name}", threads, enc / seconds, dec / seconds, f"onnxruntime, n_q {n_q}")


def time_opus(wav: np.ndarray, kbps: float, repeats: int) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        src, enc_path, dec_path = Path(tmp) / "in.wav", Path(tmp) / "x.opus", Path(tmp) / "out.wav"
        sf.write(str(src), wav, SR, subtype="PCM_16")
        encode = ["opusenc", "--quiet", "--bitrate", f"{kbps:g}", "--framesize", "20", str(src), str(enc_path)]
        decode = ["opusdec", "--quiet", "--float", "--rate", str(SR), str(enc_path), str(dec_path)]
        # subprocesses: their CPU time is not this thread's, so the wall clock whatever --cpu_time says
        enc = best_time(lambda: subprocess.run(encode, check=True), repeats, time.perf_counter)
        dec = best_time(lambda: subprocess.run(decode, check=True), repeats, time.perf_counter)
        actual = enc_path.stat().st_size * 8 / (wav.size / SR) / 1000
    seconds = wav.size / SR
    return Row("opus (opus-tools)", 1, enc / seconds, dec / seconds, f"{kbps:g} kbps nominal, {actual:.2f} actual")


def time_lyra_tflite(wav: np.ndarray, kbps: float, repeats: int) -> Row:
    """Lyra v2's own TFLite graphs (ai-edge-litert, 1 thread), frame by frame as the library runs
    them: encoder + quantizer encode, then quantizer decode + decoder."""
    from ai_edge_litert.interpreter import Interpreter

    from telucodec.evaluation.baselines import LYRA_FRAME, LYRA_STAGES, lyra_model_dir

    folder = lyra_model_dir()
    stages = next(s for k, s in LYRA_STAGES.items() if abs(k - kbps) < 1e-6)
    frames = wav[: wav.size // LYRA_FRAME * LYRA_FRAME].reshape(-1, LYRA_FRAME)

    def runner(name: str, signature: str | None = None):
        return Interpreter(model_path=str(folder / name), num_threads=1).get_signature_runner(signature)

    def encode() -> list[np.ndarray]:
        enc, quant = runner("soundstream_encoder.tflite"), runner("quantizer.tflite", "encode")
        n = np.array(stages, dtype=np.int32)
        return [quant(input_frames=enc(input_audio=f[None])["output_0"], num_quantizers=n)["output_0"] for f in frames]

    indices = encode()

    def decode() -> None:
        dec, quant = runner("lyragan.tflite"), runner("quantizer.tflite", "decode")
        for idx in indices:
            dec(input_audio=quant(encoding_indices=idx)["output_0"])

    seconds = frames.size / SR
    return Row("lyra v2 (tflite)", 1, best_time(encode, repeats) / seconds, best_time(decode, repeats) / seconds,
               f"{kbps:g} kbps, ai-edge-litert, frame by frame")


def snac_status() -> str | None:
    """None when SNAC can run here, else why not (we never install it from here)."""
    if importlib.util.find_spec("snac") is None:
        return ("snac is not installed; `pip install --dry-run snac` shows whether it would keep this torch "
                f"({torch.__version__}); install it only if so")
    return None


def print_table(rows: list[Row], opus: Row | None, seconds: float) -> None:
    def fmt(v: float | None, width: int, spec: str) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:{width}{spec}}"

    clock = "thread CPU time" if CLOCK is time.thread_time else "wall clock"
    print(f"\nreal speech, {seconds:.1f} s (examples/te_cv); RTF = compute s / audio s ({clock}), lower is faster")
    print(f"{'system':30s} {'thr':>3s} {'enc RTF':>9s} {'dec RTF':>9s} {'enc xRT':>8s} {'dec xRT':>8s} "
          f"{'enc xOpus':>10s} {'dec xOpus':>10s}  note")
    for r in rows:
        enc_ratio = r.encode_rtf / opus.encode_rtf if opus and r.encode_rtf else None
        dec_ratio = r.decode_rtf / opus.decode_rtf if opus and r.decode_rtf else None
        enc_rt = 1 / r.encode_rtf if r.encode_rtf else None
        dec_rt = 1 / r.decode_rtf if r.decode_rtf else None
        print(f"{r.system:30s} {r.threads:3d} {fmt(r.encode_rtf, 9, '.4f')} {fmt(r.decode_rtf, 9, '.4f')} "
              f"{fmt(enc_rt, 8, '.0f')} {fmt(dec_rt, 8, '.0f')} "
              f"{fmt(enc_ratio, 10, '.1f')} {fmt(dec_ratio, 10, '.1f')}  {r.note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small,base,spectral")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", action="append", default=[],
                        help="also time this model folder or checkpoint (repeatable: side by side)")
    parser.add_argument("--onnx", default=None, help="also time this `telucodec export-onnx` folder with onnxruntime")
    parser.add_argument("--no-snac", action="store_true", help="skip the SNAC anchor")
    parser.add_argument("--lyra", type=float, default=0.0,
                        help="also time Lyra v2's TFLite graphs at this bitrate (3.2, 6 or 9.2; 0 = skip)")
    parser.add_argument("--runtimes", action="store_true",
                        help="time each --model (default: the shipped model) through the torch and onnx runtimes")
    parser.add_argument("--cli_seconds", type=float, default=0.0,
                        help="time the CLI's default path (and --runtime torch) on a file this long (0 = skip)")
    parser.add_argument("--ray_tokenize", type=int, default=0,
                        help="tokenize this many copies of examples/ through Ray on 2 CPUs per runtime (0 = skip)")
    parser.add_argument("--streaming", action="store_true",
                        help="add the stateful streams' rows (20 and 80 ms chunks; torch and the streaming ONNX graphs)")
    parser.add_argument("--cpu_time", action="store_true",
                        help="time in-process rows by this thread's CPU time (time.thread_time), not the wall clock: "
                             "on a shared machine other processes then do not count (every engine here computes "
                             "on the calling thread at 1 thread; Opus, a subprocess, stays wall time)")
    parser.add_argument("--cache", default=None,
                        help="$TELUCODEC_CACHE_DIR for the ONNX exports (default: a temporary folder)")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if args.cpu_time else time.perf_counter
    cache = tempfile.TemporaryDirectory()  # exports made here are timed from scratch, never a user's cache
    os.environ["TELUCODEC_CACHE_DIR"] = args.cache or cache.name
    os.environ.pop("TELUCODEC_RUNTIME", None)

    from telucodec.api import load_model
    from telucodec.config import get_config
    from telucodec.model.codec import Codec

    wav = example_speech(args.seconds)
    threads = [int(t) for t in args.threads.split(",") if t]
    models = []
    for preset in [p for p in args.presets.split(",") if p]:
        torch.manual_seed(0)
        models.append((f"{preset} (random)", Codec(get_config(preset)).eval()))
    runtime_models = [(path, load_model(path)) for path in (args.model or [None])] if (
        args.runtimes or args.cli_seconds or args.ray_tokenize or args.streaming) else []
    if not args.runtimes:
        for path in args.model:
            models.append(("/".join(Path(path).resolve().parts[-2:]), load_model(path)))

    skipped = []
    opus = None
    if shutil.which("opusenc") and shutil.which("opusdec"):
        opus = time_opus(wav, args.kbps, args.repeats)
    else:
        skipped.append("opus: opusenc/opusdec not installed (apt-get install opus-tools)")
    snac_why = "--no-snac" if args.no_snac else snac_status()
    if snac_why:
        skipped.append(f"snac: {snac_why}")
    onnx_why = None
    if args.onnx:
        if importlib.util.find_spec("telucodec.deploy.onnx_runtime") is None or importlib.util.find_spec("onnxruntime") is None:
            onnx_why = "telucodec.deploy.onnx_runtime or onnxruntime is not available"
        elif not (Path(args.onnx) / "config.json").is_file():
            onnx_why = f"{args.onnx} is not an export folder (no config.json)"
        if onnx_why:
            skipped.append(f"onnx: {onnx_why}")

    import speed_runtimes as RT  # benchmarks/ is on sys.path when this runs as a script ...
    here = Path(__file__).resolve().parent  # ... and then off it: its bottleneck.py would shadow the
    sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != here]  # package pandas imports

    cli = RT.cli_rows(example_speech(args.cli_seconds), SR, runtime_models[0][0], args.kbps) if args.cli_seconds else []
    rows = [opus] if opus else []
    if args.lyra:
        rows.append(time_lyra_tflite(wav, args.lyra, args.repeats))
    for n in threads:
        torch.set_num_threads(n)
        for name, model in models:
            rows.append(time_codec(name, model, wav, args.kbps, n, args.repeats))
            print(f"  timed {name} on {n} thread(s)", file=sys.stderr)
        for path, model in runtime_models if args.runtimes else []:
            from telucodec.deploy.runtimes import choose_runtime
            from telucodec.model.loading import shipped_model_name

            label = (Path(path).name if path else shipped_model_name(model.model_id) or "shipped")[:18]
            for runtime in ("torch", "onnx"):
                chosen = choose_runtime(model, runtime, model_path=path, threads=n)
                rows.append(time_codec(f"{label} {chosen.name}", chosen, wav, args.kbps, n, args.repeats))
                if chosen.name != runtime:
                    skipped.append(f"{label} {runtime}: {chosen.note}")
        if args.streaming and n == 1:
            for _path, model in runtime_models[:1]:
                found = RT.streaming_rows(model, wav, SR, args.kbps, args.repeats, clock=CLOCK)
                if isinstance(found, str):
                    skipped.append(f"streaming: {found}")
                for label, enc, dec in [] if isinstance(found, str) else found:
                    note = (("onnxruntime, deploy/onnx_streaming.py" if "(onnx" in label else "Codec.stream_encoder/decoder")
                            + (", both sides push by push" if "loopback" in label else ", each side on its own"))
                    rows.append(Row(label, 1, enc, dec, note))
        if not snac_why:
            rows.append(time_snac(wav, n, args.repeats))
        if args.onnx and not onnx_why:
            rows.append(time_onnx(Path(args.onnx), wav, args.kbps, n, args.repeats))

    print_table(rows, opus, wav.size / SR)
    RT.print_cli_rows(cli)
    if args.ray_tokenize:
        torch.set_num_threads(1)
        RT.print_ray_rows(RT.ray_tokenize_rows(runtime_models[0][1], runtime_models[0][0], args.ray_tokenize, args.kbps))
    print(f"torch {torch.__version__}; this machine has {os.cpu_count()} CPU core(s)")
    for line in skipped:
        print(f"skipped {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
