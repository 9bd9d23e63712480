"""Hostile input for benchmarks/robustness.py: mutated .tcd files, bad audio (through
`telucodec encode` and through a training dataset folder), untrusted model files."""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from benchmarks.robustness_common import (
    NOBODY,
    PYTHON,
    ROOT,
    CliResult,
    Row,
    Sandbox,
    child_env,
    cli_in_process,
    cli_subprocess,
    drop_root_prefix,
    one_line_error,
)
from telucodec.api import load_model
from telucodec.audio import MAX_INPUT_SAMPLE_RATE, MIN_INPUT_SAMPLE_RATE, load_audio
from telucodec.bitstream import FORMAT_VERSION, BitstreamError, read_bitstream, write_bitstream
from telucodec.errors import AudioError, ModelError

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


# ==== bad audio ==================================================================================

@dataclass
class AudioCase:
    label: str
    file: str
    expect: str = ""          # '' = accepted; else a substring of the one-line error / skip reason
    dataset: bool = True      # also placed in the training folder
    preamble: str = ""        # Python run before main() (lowers a limit for the test)
    nobody: bool = False      # needs a non-root user to mean anything


def _wav_header(sr: int, channels: int, bits: int, data_bytes: int) -> bytes:
    riff = min(36 + data_bytes, 2**32 - 1)
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * channels * bits // 8, channels * bits // 8, bits)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", min(data_bytes, 2**32 - 1))


def build_bad_audio(folder: Path, clip: Path) -> list[AudioCase]:
    """Write every bad-audio case into `folder`; returns them with what each should do."""
    folder.mkdir(parents=True, exist_ok=True)
    x = load_audio(clip, 16000)[:16000]  # 1 s of real speech
    pcm = (x * 32767).astype("<i2")
    cases: list[AudioCase] = []

    def add(label: str, file: str, expect: str = "", **kw: Any) -> Path:
        cases.append(AudioCase(label, file, expect, **kw))
        return folder / file

    add("zero-length file", "zero.wav", "empty file").write_bytes(b"")
    sf.write(add("header-only WAV (0 frames)", "header_only.wav", "no audio samples"), x[:0], 16000)
    sf.write(folder / "whole.wav", x, 16000)
    whole = (folder / "whole.wav").read_bytes()
    add("truncated WAV (cut in half; the samples present are used)", "truncated.wav").write_bytes(whole[: len(whole) // 2])
    (folder / "whole.wav").unlink()
    sf.write(folder / "whole.flac", x, 16000)
    flac = (folder / "whole.flac").read_bytes()
    add("truncated FLAC (cut in half)", "truncated.flac", "truncated or corrupt").write_bytes(flac[: len(flac) // 2])
    (folder / "whole.flac").unlink()
    for label, bad in (("NaN", np.nan), ("+Inf", np.inf)):
        y = x.copy()
        y[1000] = bad
        sf.write(add(f"float WAV with a {label} sample", f"{label.strip('+').lower()}.wav", "NaN or infinite"),
                 y, 16000, subtype="FLOAT")
    sf.write(add("8-channel WAV (mixed down)", "ch8.wav"), np.tile(x[:, None], (1, 8)), 16000)
    sf.write(add(f"1 kHz WAV (below the {MIN_INPUT_SAMPLE_RATE // 1000} kHz minimum)", "sr1k.wav", "outside the accepted"), x[:1000], 1000)
    sf.write(add(f"{MAX_INPUT_SAMPLE_RATE // 1000} kHz WAV (the maximum)", "sr384k.wav"),
             np.repeat(x, MAX_INPUT_SAMPLE_RATE // 16000), MAX_INPUT_SAMPLE_RATE)
    too_fast = (MAX_INPUT_SAMPLE_RATE // 16000 + 1) * 16000
    sf.write(add(f"{too_fast // 1000} kHz WAV (above the maximum)", "sr400k.wav", "outside the accepted"),
             np.repeat(x[:4000], too_fast // 16000), too_fast)
    add("WAV header claims 3 h, file holds 0.5 s", "claims_3h.wav").write_bytes(
        _wav_header(16000, 1, 16, 3 * 3600 * 16000 * 2) + pcm[:8000].tobytes())
    add("text renamed .wav", "text.wav", "not a readable audio file").write_text("not audio at all\n" * 20)
    add("PNG renamed .wav", "image.wav", "not a readable audio file").write_bytes(
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    add("text renamed .mp3 (goes to ffmpeg)", "text.mp3", "not decodable audio").write_text("not audio\n" * 20)
    os.mkfifo(add("named pipe (FIFO) named .wav", "fifo.wav", "not a regular file"))
    add("symlink to /dev/zero named .wav", "devzero.wav", "not a regular file").symlink_to("/dev/zero")
    add("symlink loop (loop.wav -> loop.wav)", "loop.wav", "symlink loop").symlink_to("loop.wav")
    unreadable = add("unreadable file (chmod 000)", "unreadable.wav", "permission denied", nobody=True)
    sf.write(unreadable, x, 16000)
    unreadable.chmod(0)
    sf.write(add("2 s WAV over the duration limit (limit lowered to 1 s for this case)", "long.wav",
                 "longer than", dataset=False, preamble="import telucodec.audio as a; a.MAX_INPUT_SECONDS = 1"),
             np.tile(x, 2), 16000)
    return cases


def _expected_samples(path: Path) -> int | None:
    try:
        return int(load_audio(path, 16000).shape[0])
    except Exception:
        return None


def _check_accepted(res: CliResult, out: Path, path: Path, case: AudioCase) -> str:
    if res.rc != 0:
        return f"exit {res.rc}: {res.traceback or res.stderr.strip()[-200:]}"
    want = _expected_samples(path)
    try:
        got = read_bitstream(out.read_bytes()).num_samples
    except (OSError, BitstreamError) as exc:
        return f"no valid output: {exc}"
    if got != want:
        return f"{got} samples encoded, expected {want}"
    if "3 h" in case.label and got > 16000:
        return f"{got} samples: the header's 3 h claim was believed"
    return ""


def _cli_job(job: dict) -> dict:
    """Sandbox body: optional preamble (a fresh child is used for those), then `telucodec ARGV`."""
    if job.get("preamble"):
        exec(job["preamble"], {})
    return {"outcome": "done", "res": cli_in_process(job["argv"])}


def _run_cli(job: dict, box: Sandbox | None, nobody: bool) -> CliResult:
    """A job in `box`, or in a one-off child when it has a preamble or must run as nobody."""
    if box is None or job.get("preamble") or nobody:
        with Sandbox(_cli_job, 120, uid=NOBODY if nobody else None) as one_off:
            r = one_off.run(job)
    else:
        r = box.run(job)
    return r["res"] if r["outcome"] == "done" else CliResult(None, "", "", r.get("detail", ""))


def encode_bad_audio(cases: list[AudioCase], folder: Path, out_dir: Path, model: Path,
                     subprocesses: bool, nobody_ok: bool) -> list[Row]:
    """Each case through `telucodec encode`: a real subprocess (full run) or `cli.main` in a
    forked child (--quick); either way with a time limit, and as nobody for chmod 000."""
    rows = []
    with Sandbox(_cli_job, 120) as box:
        for case in cases:
            if case.nobody and not nobody_ok:
                rows.append(Row("bad audio: encode", case.label, 0, 0,
                                "not testable as root (root reads chmod 000 files; setpriv unavailable)"))
                continue
            out = out_dir / f"{case.file}.tcd"
            argv = ["encode", str(folder / case.file), str(out), "--model", str(model), "--force"]
            if subprocesses:
                res = cli_subprocess(argv, 120, as_nobody=case.nobody, preamble=case.preamble)
            else:
                res = _run_cli({"argv": argv, "preamble": case.preamble}, box, case.nobody)
            problem = (one_line_error(res, "encode", case.expect) if case.expect
                       else _check_accepted(res, out, folder / case.file, case))
            rows.append(Row("bad audio: encode", case.label + (" [as nobody]" if case.nobody else ""), 1,
                            int(bool(problem)), problem or _shown(res, case, out, folder)))
    return rows


def _shown(res: CliResult, case: AudioCase, out: Path, folder: Path) -> str:
    if not case.expect:
        return f"accepted: {read_bitstream(out.read_bytes()).num_samples / 16000:.2f} s encoded"
    return res.stderr.strip().splitlines()[-1].replace(str(folder) + "/", "")


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


# ==== bad audio in a training folder =============================================================

def build_dataset(cases: list[AudioCase], bad: Path, data: Path, clips: list[Path], nobody_ok: bool) -> dict[str, str]:
    """A training folder: real clips, every dataset case, a folder symlink loop. Returns
    {file name: expected skip reason} ('' = used for training)."""
    (data / "nested").mkdir(parents=True)
    expected = {}
    for clip in clips:
        shutil.copy(clip, data / clip.name)
        expected[clip.name] = ""
    for case in cases:
        if not case.dataset or (case.nobody and not nobody_ok):
            continue
        src, dst = bad / case.file, data / case.file
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        elif case.file.startswith("fifo"):
            os.mkfifo(dst)
        elif case.nobody:
            _copy_unreadable(src, dst)
        else:
            shutil.copy(src, dst)
        expected[case.file] = case.expect
    (data / "nested" / "up").symlink_to(data, target_is_directory=True)  # a folder loop
    (data / "nested" / "self").symlink_to("self", target_is_directory=True)
    return expected


def _copy_unreadable(src: Path, dst: Path) -> None:
    src.chmod(0o644)
    shutil.copy(src, dst)
    src.chmod(0)
    dst.chmod(0)


def dataset_bad_audio(cases: list[AudioCase], bad: Path, work: Path, config: Path, clips: list[Path],
                      nobody_ok: bool) -> list[Row]:
    """One `train_codec.py` run (as nobody when possible) over a folder of good and bad files:
    every bad file must be skipped with its reason in skipped.tsv, every good one used."""
    data, ckpt = work / "data", work / "ckpt"
    expected = build_dataset(cases, bad, data, clips, nobody_ok)
    ckpt.mkdir()
    for p in (work, ckpt):
        p.chmod(0o777)
    cmd = [PYTHON, str(ROOT / "train_codec.py"), "--data_dir", str(data), "--checkpoint_dir", str(ckpt),
           "--experiment_name", "bad", "--config", str(config), "--num_epochs", "1", "--steps_per_epoch", "1",
           "--quiet", "--threads", "1"]
    cmd = drop_root_prefix() + cmd if nobody_ok else cmd
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=work, env=child_env(work))
    except subprocess.TimeoutExpired:
        return [Row("bad audio: training folder", "training run over the folder", 1, 1, "hang (killed after 300 s)")]
    if proc.returncode != 0:
        return [Row("bad audio: training folder", "training run over the folder", 1, 1,
                    f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")]
    lines = (ckpt / "bad" / "skipped.tsv").read_text().splitlines()[1:]
    skipped = {Path(p).name: reason for p, reason in (line.split("\t", 1) for line in lines)}
    counts = re.search(r"^data: (\d+) train clips .*?, (\d+) validation clips", proc.stdout, re.M)
    used = int(counts[1]) + int(counts[2]) if counts else -1
    rows = []
    for case in cases:
        if case.file not in expected:
            continue
        reason = skipped.get(case.file, "").replace(str(data) + "/", "") or None
        if case.expect:
            ok = reason is not None and case.expect.lower() in reason.lower()
            result = f"skipped: {reason}" if reason else "NOT skipped"
        else:
            ok, result = reason is None, "used for training" if reason is None else f"skipped: {reason}"
        rows.append(Row("bad audio: training folder", case.label + (" [run as nobody]" if case.nobody else ""),
                        1, int(not ok), result))
    want_used = sum(1 for v in expected.values() if not v)
    extra = sorted(set(skipped) - set(expected))
    rows.append(Row("bad audio: training folder", "folder symlink loops (nested/up -> .., nested/self -> self)",
                    1, int(used != want_used or bool(extra)),
                    f"walk finished; {used} clips used (expected {want_used}: no file read twice), "
                    f"{len(skipped)} skipped" + (f"; unexpected skips {extra}" if extra else "")))
    return rows


# ==== untrusted files ============================================================================

class _Payload:
    """Pickles to a call of Path.touch(marker): runs code the moment it is unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@dataclass
class UntrustedCase:
    label: str
    argv: list[str]
    expect: str
    marker: Path | None = None
    command: str = "decode"


def build_untrusted(work: Path, model_a: Path, model_b: Path, clip: Path) -> tuple[list[UntrustedCase], Path]:
    """Hostile model files and .tcd files; returns the cases and a control pickle (for a check
    that the payload really runs when unpickled the unsafe way)."""
    work.mkdir(parents=True)
    a = load_model(model_a)
    codes = a.encode(load_audio(clip, 16000)[:16000], 16000)
    good_tcd = work / "a.tcd"
    good_tcd.write_bytes(write_bitstream(codes))
    out = str(work / "out.wav")

    def decode_with(model: Path) -> list[str]:
        return ["decode", str(good_tcd), out, "--model", str(model), "--force"]

    config_a = (model_a / "config.json").read_text()

    def variant(name: str, filename: str, data: bytes) -> Path:
        """A copy of model A's folder with one file replaced."""
        folder = work / name
        shutil.copytree(model_a, folder)
        (folder / filename).write_bytes(data)
        return folder

    cases = []
    raw = work / "raw_pickle.pt"
    raw.write_bytes(pickle.dumps({"format": 1, "model": {}, "x": _Payload(work / "pwned_raw")}))
    cases.append(UntrustedCase("checkpoint .pt = raw pickle with a code-running payload", decode_with(raw),
                               "refused", work / "pwned_raw"))
    zipped = work / "torch_zip.pt"
    torch.save({"format": 1, "model": {}, "x": _Payload(work / "pwned_zip")}, zipped)
    cases.append(UntrustedCase("checkpoint .pt = torch.save zip with a code-running payload", decode_with(zipped),
                               "refused", work / "pwned_zip"))
    evil_weights = variant("evil_weights", "model.safetensors", pickle.dumps(_Payload(work / "pwned_st")))
    cases.append(UntrustedCase("model folder: model.safetensors is a pickle payload", decode_with(evil_weights),
                               "not a valid safetensors file", work / "pwned_st"))
    evil_cfg = variant("evil_config", "config.json", pickle.dumps(_Payload(work / "pwned_cfg")))
    cases.append(UntrustedCase("model folder: config.json is a pickle payload", decode_with(evil_cfg),
                               "not a readable JSON config", work / "pwned_cfg"))
    other_arch = variant("other_arch", "config.json", config_a.replace('"channels": 8', '"channels": 12').encode())
    cases.append(UntrustedCase("model folder: weights of another architecture", decode_with(other_arch),
                               "different architecture"))
    cases.append(UntrustedCase(".tcd made by another model", decode_with(model_b), "wrong model"))
    future = work / "future.tcd"
    data = good_tcd.read_bytes()
    future.write_bytes(refix_crc(data[:4] + bytes([FORMAT_VERSION + 1]) + data[5:]))
    cases.append(UntrustedCase(".tcd with a future format version (decode)",
                               ["decode", str(future), out, "--model", str(model_a), "--force"],
                               "newer than this telucodec"))
    cases.append(UntrustedCase(".tcd with a future format version (info)", ["info", str(future)],
                               "newer than this telucodec", command="info"))
    future_cfg = variant("future_config", "config.json", config_a.replace('"version": 1', '"version": 99').encode())
    cases.append(UntrustedCase("model folder with a future config version", decode_with(future_cfg),
                               "newer than this telucodec"))
    control = work / "control.pkl"
    control.write_bytes(pickle.dumps(_Payload(work / "control_marker")))
    return cases, control


def untrusted_files(work: Path, model_a: Path, model_b: Path, clip: Path) -> list[Row]:
    cases, control = build_untrusted(work, model_a, model_b, clip)
    rows = []
    with Sandbox(_cli_job, 120) as box:
        for case in cases:
            res = _run_cli({"argv": case.argv}, box, nobody=False)
            problem = one_line_error(res, case.command, case.expect)
            if case.marker is not None and case.marker.exists():
                problem = f"PAYLOAD RAN ({case.marker.name} created); " + problem
            shown = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
            note = "; payload did not run" if case.marker is not None and not case.marker.exists() else ""
            rows.append(Row("untrusted files", case.label, 1, int(bool(problem)),
                            problem or (shown.replace(str(work) + "/", "") + note)))
    with Sandbox(lambda path: {"outcome": str(pickle.loads(path.read_bytes()))}, 30) as box:
        box.run(control)  # the unsafe way: the payload must run
    ran = (work / "control_marker").exists()
    rows.append(Row("untrusted files", "control: plain pickle.load of the same kind of payload", 1, int(not ran),
                    "the payload ran (so the marker check above is meaningful)" if ran
                    else "the payload did not run: the marker check proves nothing"))
    return rows
