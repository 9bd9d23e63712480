"""Hostile input for benchmarks/robustness.py: bad audio (through `telucodec encode` and through a
training dataset folder) and untrusted model files. Fuzzing is in robustness_fuzz.py."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import struct
import subprocess
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
from benchmarks.robustness_fuzz import refix_crc
from telucodec.api import load_model
from telucodec.formats.audio import MAX_INPUT_SAMPLE_RATE, MIN_INPUT_SAMPLE_RATE, load_audio
from telucodec.formats.bitstream import FORMAT_VERSION, BitstreamError, read_bitstream, write_bitstream

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
                 "longer than", dataset=False, preamble="import telucodec.formats.audio as a; a.MAX_INPUT_SECONDS = 1"),
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
                                "not testable: root reads chmod 000 files, and nobody cannot run Python from this checkout "
                                "(no setpriv, or the checkout sits in a folder nobody cannot enter)"))
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
    counts = re.search(r"^data: (\d+) train clips? .*?, (\d+) validation clips?", proc.stdout, re.M)
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
    future_cfg = variant("future_config", "config.json", re.sub(r'"version": \d+', '"version": 99', config_a).encode())
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
