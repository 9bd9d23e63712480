"""Fuzzing for benchmarks/robustness.py: mutated .tcd files through the parser and the decoder,
mutated WAV/FLAC containers through load_audio, each case in a forked child with a time limit."""

from __future__ import annotations

import os
import random
import struct
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from benchmarks.robustness_common import (
    Row,
    Sandbox,
)
from telucodec.api import load_model
from telucodec.errors import AudioError, ModelError
from telucodec.formats.audio import load_audio
from telucodec.formats.bitstream import FORMAT_VERSION, BitstreamError, read_bitstream, write_bitstream

# ==== bitstream fuzzing ==========================================================================

HEADER = struct.Struct("<4sBB8sIQBBHBBII")  # the documented layout, spelled out independently
FIELD_NAMES = ("magic", "version", "flags", "model_id", "sample_rate", "num_samples", "n_q",
               "codebook_bits", "frame_rate", "side_kind", "side_bits", "side_count", "payload_length")
FIELD_MAX = (None, 0xFF, 0xFF, None, 2**32 - 1, 2**64 - 1, 0xFF, 0xFF, 0xFFFF, 0xFF, 0xFF, 2**32 - 1, 2**32 - 1)
CASE_SECONDS = 10.0            # a case slower than this is a hang
MAX_CASE_PY_BYTES = 64 << 20   # tracemalloc peak allowed for one case (files are a few KB)
MAX_RSS_GROWTH_MB = 256        # growth of the fuzzing child's peak RSS over all cases

_FUZZ_MODELS: dict[str, Any] = {}  # read by the forked child


def refix_crc(data: bytes) -> bytes:
    body, payload = data[: HEADER.size], data[HEADER.size + 4:]
    return body + struct.pack("<I", zlib.crc32(payload, zlib.crc32(body))) + payload


def _flip_bits(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b) * 8)
        b[i // 8] ^= 0x80 >> (i % 8)
    return bytes(b)


def _extreme(rng: random.Random, old: int, top: int) -> int:
    value = rng.choice([0, 1, 2, top, top - 1, top // 2 + 1, rng.randrange(top + 1),
                        old + 1, max(old - 1, 0), old * 2, old // 2])
    return min(max(value, 0), top)


def _overwrite_field(rng: random.Random, data: bytes) -> bytes:
    fields = list(HEADER.unpack_from(data, 0))
    i = rng.choice([j for j, top in enumerate(FIELD_MAX) if top is not None])
    fields[i] = _extreme(rng, fields[i], FIELD_MAX[i])
    payload = data[HEADER.size + 4:]
    claimed = fields[12]
    if rng.random() < 0.5 and claimed <= 1 << 20:  # make the payload as long as the header says
        payload = (payload + rng.randbytes(max(0, claimed - len(payload))))[:claimed]
    return refix_crc(HEADER.pack(*fields) + b"\0\0\0\0" + payload)


def _payload_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        if len(b) > 44:
            b[rng.randrange(44, len(b))] = rng.randrange(256)
    return refix_crc(bytes(b))


def _random_bytes(rng: random.Random, _data: bytes) -> bytes:
    body = rng.randbytes(rng.randrange(0, 2000))
    if rng.random() < 0.5:
        body = b"TLCD" + bytes([FORMAT_VERSION]) + body
        return refix_crc(body) if len(body) >= 44 else body
    return body


MUTATORS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "truncation": lambda rng, d: d[: rng.randrange(len(d))],
    "bit flips (CRC stale)": _flip_bits,
    "bit flips, CRC recomputed": lambda rng, d: refix_crc(_flip_bits(rng, d)),
    "header field = extreme value, CRC recomputed": _overwrite_field,
    "payload bytes overwritten, CRC recomputed": _payload_bytes,
    "random bytes (half with a valid magic/version)": _random_bytes,
}


def _fuzz_case(case: dict) -> dict:
    """Parse and decode one mutated file the way `telucodec decode` does."""
    model = _FUZZ_MODELS[case["model"]]
    try:
        codes = read_bitstream(case["data"], expected_model_id=model.model_id)
    except BitstreamError:
        return {"outcome": "BitstreamError"}
    try:
        wav = model.decode(codes)
    except ModelError as exc:
        return {"outcome": "ModelError", "detail": str(exc)[:120]}
    right = wav.shape[0] == codes.num_samples and bool(torch.isfinite(wav).all())
    return {"outcome": "decoded" if right else "wrong_length"}


def seed_files(models: dict[str, Path], clip: Path, seconds: float = 3.0) -> list[tuple[str, bytes]]:
    """(model name, .tcd bytes) for a real clip: each model, plain and entropy coded."""
    out = []
    for name, folder in models.items():
        model = load_model(folder)
        _FUZZ_MODELS[name] = model
        wav = load_audio(clip, model.sample_rate)[: int(seconds * model.sample_rate)]
        codes = model.encode(wav, model.sample_rate)
        out += [(name, write_bitstream(codes)), (name, write_bitstream(codes, entropy=True))]
    return out


def fuzz_bitstream(models: dict[str, Path], clip: Path, n: int, seed: int = 0) -> list[Row]:
    seeds = seed_files(models, clip)
    rng = random.Random(seed)
    per_kind: dict[str, Counter] = {k: Counter() for k in MUTATORS}
    worst_py, first_rss, last_rss, examples = 0, None, 0, []
    with Sandbox(_fuzz_case, CASE_SECONDS) as box:
        for i in range(n):
            kind = list(MUTATORS)[i % len(MUTATORS)]
            name, data = seeds[rng.randrange(len(seeds))]
            res = box.run({"model": name, "data": MUTATORS[kind](rng, data)})
            per_kind[kind][res["outcome"]] += 1
            worst_py = max(worst_py, res.get("py_peak", 0))
            if "maxrss_kb" in res:
                first_rss = res["maxrss_kb"] if first_rss is None else first_rss
                last_rss = res["maxrss_kb"]
            if res["outcome"] not in ("BitstreamError", "ModelError", "decoded") and len(examples) < 3:
                examples.append(f"{kind}: {res['outcome']} {res.get('detail', '')}")
    rss_growth = (last_rss - (first_rss or 0)) / 1024
    rows = []
    for kind, c in per_kind.items():
        bad = sum(v for k, v in c.items() if k not in ("BitstreamError", "ModelError", "decoded"))
        detail = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
        rows.append(Row("bitstream fuzz", kind, sum(c.values()), bad, detail))
    mem_bad = int(worst_py > MAX_CASE_PY_BYTES) + int(rss_growth > MAX_RSS_GROWTH_MB)
    rows.append(Row("bitstream fuzz", "memory and time per case", n, mem_bad,
                    f"peak Python allocation per case {worst_py / 2**20:.1f} MB (limit {MAX_CASE_PY_BYTES >> 20}); "
                    f"child RSS growth over all cases {rss_growth:.0f} MB (limit {MAX_RSS_GROWTH_MB}); "
                    f"time limit {CASE_SECONDS:g} s per case"
                    + (f"; e.g. {examples}" if examples else "")))
    return rows


# ==== audio container fuzzing ===================================================================

AUDIO_MAX_SAMPLES = 10 * 16000  # the seeds are 1 s: a mutation may not make much more of them


def _audio_case(case: dict) -> dict:
    """load_audio on one mutated file, with file descriptor 2 captured: C libraries must not
    print (the CLI promises one line)."""
    path = Path(case["path"])
    path.write_bytes(case["data"])
    with tempfile.TemporaryFile() as err:
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        try:
            wav = load_audio(path, 16000)
        except AudioError:
            wav = None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        noise = err.read().decode(errors="replace").strip()
    if noise:
        return {"outcome": "stderr output", "detail": noise.splitlines()[0][:120]}
    if wav is None:
        return {"outcome": "AudioError"}
    ok = wav.dtype == np.float32 and wav.size <= AUDIO_MAX_SAMPLES and bool(np.all(np.abs(wav) <= 1.0))
    return {"outcome": "read" if ok else f"bad array ({wav.dtype}, {wav.size} samples)"}


def _audio_mutation(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    kind = rng.choice(["header u32 = extreme", "header bytes random", "truncation", "bit flips"])
    b = bytearray(data)
    if kind == "header u32 = extreme":
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(0, min(60, len(b) - 4))
            b[at: at + 4] = struct.pack("<I", rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32)]))
    elif kind == "header bytes random":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(0, min(64, len(b)))] = rng.randrange(256)
    elif kind == "truncation":
        del b[rng.randrange(1, len(b)):]
    else:
        b = bytearray(_flip_bits(rng, bytes(b)))
    return kind, bytes(b)


def fuzz_audio(folder: Path, clip: Path, n: int, seed: int = 0) -> list[Row]:
    """Mutated WAV (PCM16 and float) and FLAC files through `load_audio` in a forked child with
    a time limit: each must be refused with AudioError or read as a short float32 array in [-1, 1]."""
    folder.mkdir(parents=True, exist_ok=True)
    x = load_audio(clip, 16000)[:16000]
    seeds = {}
    for name, fmt, subtype in (("pcm16.wav", "WAV", "PCM_16"), ("float.wav", "WAV", "FLOAT"), ("clip.flac", "FLAC", None)):
        sf.write(folder / name, x, 16000, format=fmt, subtype=subtype)
        seeds[name] = (folder / name).read_bytes()
    rng = random.Random(seed)
    outcomes: dict[str, Counter] = {}
    examples = []
    with Sandbox(_audio_case, CASE_SECONDS) as box:
        for i in range(n):
            name = list(seeds)[i % len(seeds)]
            kind, data = _audio_mutation(rng, seeds[name])
            res = box.run({"path": str(folder / f"case{Path(name).suffix}"), "data": data})
            outcomes.setdefault(f"{name}: {kind}", Counter())[res["outcome"]] += 1
            if res["outcome"] not in ("AudioError", "read") and len(examples) < 3:
                examples.append(f"{name} {kind}: {res['outcome']} {res.get('detail', '')}")
    tried = sum(sum(c.values()) for c in outcomes.values())
    bad = sum(v for c in outcomes.values() for k, v in c.items() if k not in ("AudioError", "read"))
    total = sum(outcomes.values(), Counter())
    return [Row("audio container fuzz", "mutated WAV (PCM16, float) and FLAC files (header u32 = extreme, "
                "random header bytes, truncation, bit flips) through load_audio", tried, bad,
                ", ".join(f"{k} {v}" for k, v in sorted(total.items()))
                + f"; time limit {CASE_SECONDS:g} s per case" + (f"; e.g. {examples}" if examples else ""))]
