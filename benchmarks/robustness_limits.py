"""Limits for benchmarks/robustness.py (full run only): peak memory per second of audio at
encode/decode, and eval/tokenize with 2 workers giving exactly the serial results."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benchmarks.robustness_common import PYTHON, ROOT, Row, child_env, first_line
from telucodec.errors import TelucodecError

# ==== memory per second of audio =================================================================

MEMORY_CHILD = """
import sys, threading, time, gc
sys.path[0] = sys.argv[1]
import torch; torch.set_num_threads(1)
from telucodec.api import load_model
from telucodec.formats.audio import load_audio, write_wav
from telucodec.formats.bitstream import read_bitstream, write_bitstream
mode, model_dir, src, dst = sys.argv[2:6]
page = __import__("os").sysconf("SC_PAGE_SIZE")
peak = [0]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
def sample():
    while True:
        peak[0] = max(peak[0], rss()); time.sleep(0.002)
threading.Thread(target=sample, daemon=True).start()
model = load_model(model_dir)
def encode(path, out):
    with open(out, "wb") as f:
        f.write(write_bitstream(model.encode(load_audio(path), 16000)))
def decode(path, out):
    with open(path, "rb") as f:
        write_wav(out, model.decode(read_bitstream(f.read(), model.model_id)).numpy())
op = encode if mode == "encode" else decode
op(sys.argv[6], sys.argv[7])  # warm-up on 1 s: first-call allocations are not a cost of length
gc.collect(); time.sleep(0.05); base = rss(); peak[0] = base
op(src, dst)
time.sleep(0.01)
print(base / 2**20, (peak[0] - base) / 2**20)
"""


def _memory_run(mode: str, model: Path, src: Path, dst: Path, warm: tuple[Path, Path]) -> tuple[float, float]:
    proc = subprocess.run([PYTHON, "-c", MEMORY_CHILD, str(ROOT), mode, str(model), str(src), str(dst),
                           str(warm[0]), str(warm[1])], capture_output=True, text=True, timeout=600, env=child_env())
    if proc.returncode != 0:
        raise TelucodecError(first_line(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"))
    base, extra = proc.stdout.split()
    return float(base), float(extra)


def measure_memory(work: Path, model: Path, clip: Path, seconds: tuple[int, ...]) -> list[Row]:
    """Peak RSS above the loaded (and warmed-up) model while encoding (file -> .tcd) or decoding
    (.tcd -> file) inputs of each length, each run in a fresh process."""
    import numpy as np
    import soundfile as sf

    from telucodec.formats.audio import load_audio

    x = load_audio(clip, 16000)
    sf.write(work / "warm.wav", x[:16000], 16000)
    warm = {"encode": (work / "warm.wav", work / "warm.tcd"), "decode": (work / "warm.tcd", work / "warm_out.wav")}
    results: dict[str, dict[int, tuple[float, float]]] = {"encode": {}, "decode": {}}
    try:
        _memory_run("encode", model, work / "warm.wav", work / "warm.tcd", warm["encode"])
        for s in seconds:
            wav, tcd = work / f"input_{s}s.wav", work / f"input_{s}s.tcd"
            sf.write(wav, np.resize(x, s * 16000), 16000)
            results["encode"][s] = _memory_run("encode", model, wav, tcd, warm["encode"])
            results["decode"][s] = _memory_run("decode", model, tcd, work / "out.wav", warm["decode"])
    except (TelucodecError, subprocess.TimeoutExpired) as exc:
        return [Row("resource limits", "memory per second of audio", 1, 1, str(exc)[:300])]
    lo, hi = sorted(seconds)[-2:]  # both beyond one 24 s window: the per-second cost of length
    rows = []
    for phase, label in (("encode", "encode (file -> .tcd)"), ("decode", "decode (.tcd -> file)")):
        r = results[phase]
        per_s = (r[hi][1] - r[lo][1]) / (hi - lo)
        text = "; ".join(f"{s} s: +{r[s][1]:.1f} MB" for s in seconds)
        rows.append(Row("resource limits", f"peak RSS above the loaded model, {label}", len(seconds), 0,
                        f"{text} (model loaded and warmed up: {r[lo][0]:.0f} MB) -> {per_s:.2f} MB per extra "
                        f"second of audio from {lo} to {hi} s"))
    return rows


# ==== concurrency ================================================================================

def _quiet(_msg: str) -> None:
    pass


def eval_parallel_equals_serial(work: Path, data: Path, model: Path) -> Row:
    from telucodec.evaluation.evaluate import evaluate

    outs = {}
    for w in (1, 2):
        res = evaluate(data, work / f"eval_w{w}", model=model, kbps="1.5", baselines="opus", max_clips=2,
                       workers=w, progress=False, report_clips=0, log=_quiet)
        csv = (work / f"eval_w{w}" / "results.csv").read_text()
        outs[w] = (json.dumps(res["systems"], sort_keys=True), csv, res["clips"])
    same = outs[1] == outs[2]
    systems = ", ".join(s["system"] + (f" {s['setting']}" if s.get("setting") else "")
                        for s in json.loads(outs[1][0]))
    return Row("concurrency", "telucodec eval --workers 2 vs 1 (2 clips, --baselines opus)", 1, int(not same),
               f"results.json systems and results.csv {'identical' if same else 'DIFFER'} "
               f"({outs[1][2]} clips; {systems})")


def tokenize_parallel_equals_serial(work: Path, data: Path, model_dir: Path) -> Row:
    try:
        from telucodec.deploy.tokenize import tokenize_dataset
        from telucodec.formats import tokens
    except ImportError:
        return Row("concurrency", "telucodec tokenize --workers 2 vs 1", 0, 0, "skipped: telucodec.deploy.tokenize missing")
    from telucodec.api import load_model

    model = load_model(model_dir)
    got = {}
    for w in (1, 2):
        tokenize_dataset(data, work / f"tok_w{w}", model, workers=w)
        with tokens.open(work / f"tok_w{w}") as r:
            entries = sorted((e["id"], e["num_samples"], tuple(e["side"])) for e in r.entries())
            got[w] = (entries, {i: r[i].tobytes() for i in r.ids()})
    same = got[1] == got[2]
    return Row("concurrency", "telucodec tokenize --workers 2 vs 1", 1, int(not same),
               f"{len(got[1][0])} utterances; ids, lengths, side info and codes {'identical' if same else 'DIFFER'}")
