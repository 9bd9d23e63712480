"""The runtime half of `benchmarks/speed.py` (`--runtimes`, `--cli_seconds`, `--ray_tokenize`,
`--streaming`): PyTorch against the ONNX export (telucodec/deploy/runtimes.py) in one process, the
CLI's default path as a user runs it (fresh processes: wall time and peak RSS), tokenize through
Ray on two CPUs with each runtime, and the streaming rows of `benchmarks/streaming_cost.py`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"


@dataclass
class ProcessRow:
    what: str
    runtime: str
    wall_s: float
    audio_s: float
    peak_rss_mb: float
    note: str = ""


def _run_measured(cmd: list[str], env: dict[str, str]) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in MB, stderr) of one child process (its own rusage)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, wall, usage.ru_maxrss / 1024, err.read().decode(errors="replace")


def cli_rows(wav: np.ndarray, sample_rate: int, model: str | None, kbps: float) -> list[ProcessRow]:
    """`telucodec encode` / `decode` of one long file as fresh processes on one thread
    (OMP_NUM_THREADS=1): the default path (auto, the first call making the export), then
    `--runtime torch`. The runtime is read from the command's own `runtime: ...` line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("TELUCODEC_RUNTIME", None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.wav"
        sf.write(str(src), wav, sample_rate, subtype="PCM_16")
        seconds = wav.size / sample_rate
        base = [sys.executable, "-m", "telucodec.cli"]
        model_args = ["--model", model] if model else []
        plan = [("encode, first call (auto)", ["encode", str(src), f"{tmp}/a.tcd", "--kbps", f"{kbps:g}"]),
                ("encode (default: auto)", ["encode", str(src), f"{tmp}/b.tcd", "--kbps", f"{kbps:g}"]),
                ("decode (default: auto)", ["decode", f"{tmp}/b.tcd", f"{tmp}/b.wav"]),
                ("encode --runtime torch", ["encode", str(src), f"{tmp}/c.tcd", "--kbps", f"{kbps:g}", "--runtime", "torch"]),
                ("decode --runtime torch", ["decode", f"{tmp}/c.tcd", f"{tmp}/c.wav", "--runtime", "torch"])]
        for what, args in plan:
            rc, wall, rss, err = _run_measured(base + args + model_args, env)
            if rc != 0:
                raise SystemExit(f"telucodec {' '.join(args)} failed:\n{err[-2000:]}")
            line = next((x for x in err.splitlines() if x.startswith("runtime: ")), "runtime: ?")
            runtime = line.split()[1]
            note = "made the ONNX export" if "made in" in line else ""
            rows.append(ProcessRow(what, runtime, wall, seconds, rss, note))
        same = Path(f"{tmp}/b.tcd").read_bytes() == Path(f"{tmp}/c.tcd").read_bytes()
        rows[-1].note = f".tcd from default and torch byte-identical: {same}"
    return rows


def print_cli_rows(rows: list[ProcessRow]) -> None:
    if not rows:
        return
    print(f"\nthe CLI's default path, one long file ({rows[0].audio_s:.0f} s), each a fresh process, "
          "OMP_NUM_THREADS=1 (wall includes start-up and model load)")
    print(f"{'command':30s} {'runtime':>7s} {'wall s':>7s} {'xRT':>6s} {'peak RSS MB':>12s}  note")
    for r in rows:
        print(f"{r.what:30s} {r.runtime:>7s} {r.wall_s:7.1f} {r.audio_s / r.wall_s:6.0f} {r.peak_rss_mb:12.0f}  {r.note}")


def ray_tokenize_rows(model, model_path: str | None, copies: int, kbps: float) -> list[tuple[str, dict]]:
    """`tokenize --engine ray` over `copies` copies of examples/ (distinct ids, symlinks), on a
    local Ray with 2 CPUs (2 actors x 0.5 CPU, as tokenize_ray sizes them), once per runtime."""
    import ray

    from telucodec.deploy.tokenize import tokenize_dataset

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        for n in range(copies):  # file symlinks: a directory symlink is not followed when listing
            for clip in sorted(EXAMPLES.rglob("*.flac")):
                link = data / f"rep{n:03d}" / clip.relative_to(EXAMPLES)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(clip)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            for runtime in ("torch", "onnx"):
                summary = tokenize_dataset(data, Path(tmp) / f"tokens-{runtime}", model, kbps=kbps, workers=2,
                                           engine="ray", runtime=runtime, model_path=model_path)
                rows.append((runtime, summary))
        finally:
            ray.shutdown()
    return rows


def print_ray_rows(rows: list[tuple[str, dict]]) -> None:
    if not rows:
        return
    s = rows[0][1]
    print(f"\ntokenize --engine ray on 2 CPUs (2 actors x 0.5 CPU, 1 thread each): {s['tokenized']} files, "
          f"{s['audio_seconds'] / 3600:.3f} h of audio (wall includes Ray's pipeline and actor start)")
    print(f"{'runtime':8s} {'wall s':>7s} {'audio h / wall h':>17s}  note")
    for runtime, s in rows:
        print(f"{runtime:8s} {s['seconds']:7.1f} {s['audio_hours_per_hour']:17.0f}  {s['runtime_note']}")


def each_side(enc, dec, wav: np.ndarray, chunk: int, clock) -> tuple[float, float]:
    """(encoder seconds, decoder seconds) of one stream, each side timed on its own as it runs in
    a call (the sender encodes, the receiver decodes) and as Lyra's row is timed: every chunk
    pushed through the encoder, then every push's codes through the decoder."""
    t0 = clock()
    codes = [enc.push(wav[start: start + chunk]) for start in range(0, len(wav), chunk)] + [enc.flush()]
    t_enc = clock() - t0
    t0 = clock()
    for c in codes:
        dec.push(c)
    dec.flush()
    return t_enc, clock() - t0


def streaming_rows(model, wav: np.ndarray, sample_rate: int, kbps: float, repeats: int,
                   chunks_ms: tuple[int, ...] = (20, 80), clock=time.perf_counter) -> list[tuple[str, float, float]] | str:
    """Stateful streams at each of `chunks_ms`, each side timed on its own (`each_side`), and at
    the first chunk size also both sides push by push in one thread ("loopback":
    `benchmarks/streaming_cost.py`'s `stream` loop, where each side's weights leave the cache
    while the other runs), best of `repeats` by `clock`: PyTorch's (`Codec.stream_encoder()` /
    `stream_decoder()`) and, with onnxruntime, the streaming ONNX graphs
    (`deploy/onnx_streaming_export.py`, exported to a temporary folder first, run by
    `deploy/onnx_streaming.py`). [(label, encode RTF, decode RTF)], or why not (a str). The
    streaming benchmark's own table has more."""
    try:  # by its path: benchmarks/ stays off sys.path (its bottleneck.py shadows the package pandas uses)
        spec = importlib.util.spec_from_file_location("streaming_cost", Path(__file__).resolve().parent / "streaming_cost.py")
        streaming_cost = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(streaming_cost)
    except Exception as exc:  # the module is another benchmark's, and may change
        return f"benchmarks/streaming_cost.py cannot be imported ({exc})"
    if not hasattr(streaming_cost, "stream"):
        return "benchmarks/streaming_cost.py has no stream() loop"
    streaming_cost.CLOCK = clock  # the same clock as the other rows
    makers = [("torch", lambda: (model.stream_encoder(kbps), model.stream_decoder()))]
    folder = None
    if importlib.util.find_spec("onnxruntime") is not None:
        from telucodec.deploy.onnx_streaming import OnnxStreamDecoder, OnnxStreamEncoder
        from telucodec.deploy.onnx_streaming_export import export_streaming_onnx

        folder = tempfile.mkdtemp(prefix="speed_streaming_onnx_")
        try:
            export_streaming_onnx(model, folder)
            n_q = model.n_q_for_kbps(kbps)
            makers.append(("onnx", lambda: (streaming_cost._Torchless(OnnxStreamEncoder(folder, n_q=n_q)),
                                            streaming_cost._Torchless(OnnxStreamDecoder(folder)))))
        except Exception as exc:  # a model the streaming export refuses: the torch rows alone
            print(f"  streaming onnx skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    seconds = wav.size / sample_rate
    rows = []
    try:
        for chunk_ms in chunks_ms:
            chunk = sample_rate * chunk_ms // 1000
            for name, make in makers:
                best = min((each_side(*make(), wav, chunk, clock) for _ in range(repeats)), key=sum)
                rows.append((f"stream {chunk_ms} ms ({name})", best[0] / seconds, best[1] / seconds))
                if chunk_ms == chunks_ms[0]:  # both sides in one thread, push by push
                    best = min((streaming_cost.stream(*make(), wav, chunk)[2:] for _ in range(repeats)), key=sum)
                    rows.append((f"stream {chunk_ms} ms ({name}, loopback)", best[0] / seconds, best[1] / seconds))
    except Exception as exc:  # a model that cannot stream (non-causal, amplitude lufs)
        return f"{type(exc).__name__}: {exc}"
    finally:
        if folder is not None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    return rows
