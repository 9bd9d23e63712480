"""Coverage-guided fuzzing (atheris, i.e. libFuzzer driving Python) of the readers that take
files from strangers, seeded with real files:

    tcd      a .tcd bitstream through `read_codes` (as `telucodec decode` parses it) and `describe`
    audio    an audio file (WAV, FLAC, Ogg, MP3 by its first byte) through `load_audio`
    model    a model folder (config.json + model.safetensors) through `load_model`
    shards   a tokens folder (meta.json + index.jsonl + one shard .npy) through `codes_for`
    tar      a WebDataset .tar shard through `index_audio(durations=True)` and `load_item`
    sidecar  a sample's KEY.json sidecar, in a shard beside its audio, the same way
    parquet  a Hugging Face-layout .parquet file through `index_audio(durations=True)` and `load_item`

    .venv/bin/python benchmarks/fuzz.py tcd --runs 1000000          # one target
    nice -n 19 .venv/bin/python benchmarks/fuzz.py all --runs 20000  # each target in turn

A case fails when it raises anything outside the telucodec error family (`TelucodecError`), breaks
its reader's promise (below), takes over `--timeout` seconds of CPU (CPU time, so a busy shared
machine does not fake hangs; libFuzzer's own wall-clock alarm, 10x that, catches a stuck native
call) or takes the process over `--rss_mb`.
libFuzzer stops at the first failure and writes the input to `--work/TARGET/crash-*`: copy it to
`tests/fuzz_regressions/TARGET/`, where `tests/test_robustness.py` replays every file. The corpus
grown by a run is kept in `--work/TARGET/corpus` and reused by the next.

This file runs twice: the driver (what you start) writes the seeds and starts itself as the
fuzzing child (`--child`), whose libFuzzer report it reads for the summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLE_CLIP = ROOT / "examples" / "te_cv" / "cv_ce579334" / "common_voice_te_43406797.flac"
GOLDEN = ROOT / "tests" / "golden"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MAX_AUDIO_SAMPLES = 30 * 16000  # seeds are 0.25 s: a mutation may not turn them into much more
TARGETS = ("tcd", "audio", "model", "shards", "tar", "parquet", "sidecar")


# ---- bundles: several files in one fuzz input -----------------------------------------------

def pack_files(parts: list[bytes]) -> bytes:
    """Files -> one input: each as a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


def unpack_files(data: bytes, count: int) -> list[bytes]:
    """The inverse, lenient as a fuzzer needs: a length past the end takes what is left, and
    missing files are empty."""
    parts, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(data):
            parts.append(b"")
            continue
        (n,) = struct.unpack_from("<I", data, pos)
        parts.append(data[pos + 4: pos + 4 + n])
        pos += 4 + n
    return parts


# ---- micro model: real files written by the real writer, small enough to fuzz fast -----------

def micro_model():
    """A codec of about 1,300 parameters (the tiny preset, shrunk), so each case loads in ms."""
    import torch

    from telucodec.config import get_config
    from telucodec.model.codec import Codec

    cfg = get_config("tiny")
    cfg = replace(cfg, name="micro", model=replace(cfg.model, channels=2, latent_dim=4, decoder_hidden=8, ratios=(4, 4)),
                  quantizer=replace(cfg.quantizer, n_q=2, codebook_size=4))
    torch.manual_seed(0)
    return Codec(cfg).eval()


# ---- the targets: seeds and one case each ------------------------------------------------------

class Target:
    """`seeds()` -> real inputs; `check(data)` runs one case and raises on a failure."""

    name = ""
    max_len = 4096
    cpu_limit = 1.0  # seconds of CPU one case may take

    def setup(self) -> None:
        """Per-process state (a model, a scratch folder); run before the first case."""

    def seeds(self) -> list[bytes]:
        raise NotImplementedError

    def run(self, data: bytes) -> None:
        raise NotImplementedError

    def check(self, data: bytes) -> None:
        from telucodec.errors import TelucodecError

        start = time.process_time()
        try:
            self.run(data)
        except TelucodecError:
            pass
        spent = time.process_time() - start
        if spent > self.cpu_limit:
            raise AssertionError(f"hang: one case took {spent:.2f} s of CPU (limit {self.cpu_limit:g} s)")


class TcdTarget(Target):
    """The parser as `telucodec decode` and `info` run it (the model-id check is one comparison;
    `Codec.decode`'s own checks on parsed codes are fuzzed by benchmarks/robustness.py)."""

    name, max_len = "tcd", 8192

    def seeds(self) -> list[bytes]:
        import torch

        from telucodec.config import get_config
        from telucodec.formats.audio import load_audio
        from telucodec.formats.bitstream import write_bitstream
        from telucodec.model.codec import Codec

        out = [p.read_bytes() for p in sorted(GOLDEN.glob("*.tcd"))]
        torch.manual_seed(0)
        for amplitude in ("none", "rms"):  # random weights: the codes are real, their values arbitrary
            cfg = get_config("tiny")
            model = Codec(replace(cfg, model=replace(cfg.model, amplitude=amplitude))).eval()
            wav = load_audio(EXAMPLE_CLIP, model.sample_rate)[: 2 * model.sample_rate]
            codes = model.encode(wav, model.sample_rate)
            out += [write_bitstream(codes), write_bitstream(codes, entropy=True)]
        return out

    def run(self, data: bytes) -> None:
        """The input as it is, then with its CRC recomputed: a mutation almost always breaks the
        CRC, and the parser's checks behind it must hold for a forger who fixes it."""
        from telucodec.errors import TelucodecError
        from telucodec.formats.bitstream import HEADER_SIZE

        try:
            self._parse(data)
        except TelucodecError:
            pass
        if len(data) >= HEADER_SIZE:
            body, payload = data[: HEADER_SIZE - 4], data[HEADER_SIZE:]
            self._parse(body + struct.pack("<I", zlib.crc32(payload, zlib.crc32(body))) + payload)

    @staticmethod
    def _parse(data: bytes) -> None:
        from telucodec.formats.bitstream import describe, read_bitstream

        info = describe(data)
        codes = read_bitstream(data, expected_model_id=info["model_id"])
        if tuple(codes.codes.shape) != (info["n_q"], info["num_frames"]) or codes.num_samples != info["num_samples"]:
            raise AssertionError(f"parsed codes {tuple(codes.codes.shape)} disagree with the header {info}")


class AudioTarget(Target):
    """The first byte picks the file's extension (which decides the decoder: soundfile, or
    ffmpeg for an .mp3/.ogg soundfile cannot read). ffmpeg is hidden from the fuzzing process
    (one process per case would cap the rate at ~30/s): that path then raises its AudioError;
    benchmarks/robustness.py runs the real ffmpeg on damaged files."""

    name, max_len = "audio", 16384

    def setup(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fuzz-audio-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))

    def seeds(self) -> list[bytes]:
        import soundfile as sf

        from telucodec.formats.audio import load_audio

        wav = load_audio(EXAMPLE_CLIP, 16000)[16000: 16000 + 4000]
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            for i, (suffix, fmt, subtype) in enumerate(((".wav", "WAV", "PCM_16"), (".wav", "WAV", "FLOAT"),
                                                        (".flac", "FLAC", "PCM_16"), (".ogg", "OGG", "VORBIS"),
                                                        (".mp3", "MP3", "MPEG_LAYER_III"))):
                path = Path(tmp) / f"seed{i}{suffix}"
                try:
                    sf.write(path, wav, 16000, format=fmt, subtype=subtype)
                except Exception:  # an older libsndfile without MP3 writing
                    continue
                out.append(bytes([AUDIO_SUFFIXES.index(suffix)]) + path.read_bytes())
        return out

    def run(self, data: bytes) -> None:
        from telucodec.formats.audio import load_audio

        if not data:
            return
        path = self.folder / f"case{AUDIO_SUFFIXES[data[0] % len(AUDIO_SUFFIXES)]}"
        path.write_bytes(data[1:])
        wav = load_audio(path, 16000)
        if wav.dtype.name != "float32" or wav.ndim != 1 or not 0 < wav.size <= MAX_AUDIO_SAMPLES:
            raise AssertionError(f"load_audio returned {wav.dtype} {wav.shape}")
        if not (abs(wav) <= 1.0).all():
            raise AssertionError("load_audio returned samples outside [-1, 1]")


class ModelTarget(Target):
    name, max_len = "model", 32768

    def setup(self) -> None:
        import torch

        from telucodec.config import PRESETS, get_config
        from telucodec.model.codec import Codec

        self.folder = Path(tempfile.mkdtemp(prefix="fuzz-model-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        # the first model of each family built on the meta device imports and traces for seconds, once
        # per process: do it before the clock runs (a case that is slow every time is still a hang)
        for name in PRESETS:
            with torch.device("meta"):
                Codec(get_config(name))

    def seeds(self) -> list[bytes]:
        from telucodec.model.loading import default_model_dir

        out = []
        with tempfile.TemporaryDirectory() as tmp:
            micro_model().save_pretrained(tmp)
            config, weights = (Path(tmp) / "config.json").read_bytes(), (Path(tmp) / "model.safetensors").read_bytes()
        out.append(pack_files([config, weights]))
        # the shipped model's own config with the micro weights: a real mismatch, refused by name
        out.append(pack_files([(default_model_dir() / "config.json").read_bytes(), weights]))
        return out

    def run(self, data: bytes) -> None:
        from telucodec.api import load_model

        config, weights = unpack_files(data, 2)
        (self.folder / "config.json").write_bytes(config)
        (self.folder / "model.safetensors").write_bytes(weights)
        load_model(self.folder)


class ShardsTarget(Target):
    name, max_len = "shards", 16384

    def setup(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fuzz-shards-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))

    def seeds(self) -> list[bytes]:
        from telucodec.deploy.tokenize import tokenize_dataset
        from telucodec.formats.tokens import INDEX_FILE, META_FILE

        model = micro_model()
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            clips = sorted((ROOT / "examples" / "te_cv").rglob("*.flac"))[:2]
            for clip in clips:
                shutil.copy(clip, data / clip.name)
            tokens = Path(tmp) / "tokens"
            tokenize_dataset(data, tokens, model)
            shard = sorted(tokens.glob("codes-*.npy"))[0]
            out.append(pack_files([(tokens / META_FILE).read_bytes(), (tokens / INDEX_FILE).read_bytes(),
                                   shard.name.encode(), shard.read_bytes()]))
        return out

    def run(self, data: bytes) -> None:
        from telucodec.formats.tokens import INDEX_FILE, META_FILE, TokenReader, codes_for

        meta, index, shard_name, shard = unpack_files(data, 4)
        for old in self.folder.iterdir():
            old.unlink()
        (self.folder / META_FILE).write_bytes(meta)
        (self.folder / INDEX_FILE).write_bytes(index)
        name = shard_name.decode("ascii", errors="replace")
        if re.fullmatch(r"[\w.-]{1,64}", name) and name not in (META_FILE, INDEX_FILE, ".", ".."):
            (self.folder / name).write_bytes(shard)
        with TokenReader(self.folder) as reader:
            ids = reader.ids()[:4]
        for utt_id in ids:
            codes = codes_for(self.folder, utt_id)
            if codes.codes.ndim != 2:
                raise AssertionError(f"codes_for returned shape {tuple(codes.codes.shape)}")


# ---- data readers: tar shards, their JSON sidecars, Parquet ----------------------------------------

def _short_audio(fmt: str, subtype: str, seconds: float = 0.3, offset: int = 0, rate: int = 8000) -> bytes:
    """A slice of an example clip as a small file (seeds for the archive targets): 0.3 s, long
    enough to be indexed (0.25 s at least), at 8 kHz, so that a shard of three fits `max_len`."""
    import io

    import soundfile as sf
    import soxr

    wav, sr = sf.read(EXAMPLE_CLIP, dtype="float32")
    wav = soxr.resample(wav[sr + offset: sr + offset + int(seconds * sr)], sr, rate)
    buf = io.BytesIO()
    sf.write(buf, wav, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def tar_bytes(members: list[tuple[str, bytes]], fmt: int | None = None) -> bytes:
    """An uncompressed tar of `members` (name, bytes), as webdataset's ShardWriter writes them."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT if fmt is None else fmt) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class ArchiveTarget(Target):
    """`index_audio(FILE, durations=True)` (as training indexes; tokenize indexes without durations,
    a subset) and then each indexed member's audio through `load_item`, as training and tokenize
    read it. ffmpeg is hidden as for `audio`. The promise: data, or the telucodec error family in
    one line naming the file; skipped entries name the file too."""

    suffix = ".tar"
    max_members = 8

    def setup(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"fuzz-{self.name}-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))

    def archive(self, data: bytes) -> bytes:
        return data

    def run(self, data: bytes) -> None:
        self.read(data)

    def read(self, data: bytes) -> list[str]:
        """Index and read the case; returns the members indexed."""
        from telucodec.errors import TelucodecError
        from telucodec.formats.dataset import index_audio, load_item

        path = self.folder / f"case{self.suffix}"
        path.write_bytes(self.archive(data))
        try:
            index = index_audio(path, durations=True)
        except TelucodecError as exc:
            self._named(str(exc), path)
            raise
        for name, reason in index.skipped:
            if not name.startswith(str(path)) or "\n" in reason:
                raise AssertionError(f"skipped entry ({name!r}, {reason!r}) does not name the file in one line")
        for item in list(index)[: self.max_members]:
            try:
                wav = load_item(item, 16000)
            except TelucodecError as exc:
                self._named(str(exc), path)
                continue
            if wav.dtype.name != "float32" or wav.ndim != 1 or not 0 < wav.size <= MAX_AUDIO_SAMPLES:
                raise AssertionError(f"load_item returned {wav.dtype} {wav.shape}")
        return [item.member for item in index]

    @staticmethod
    def _named(message: str, path: Path) -> None:
        if str(path) not in message or "\n" in message:
            raise AssertionError(f"error does not name {path} in one line: {message!r}")


class TarTarget(ArchiveTarget):
    name, max_len, suffix = "tar", 16384, ".tar"

    def seeds(self) -> list[bytes]:
        import tarfile

        flac, wav = _short_audio("FLAC", "PCM_16"), _short_audio("WAV", "PCM_U8")
        meta = json.dumps({"id": "spk/a", "speaker": "spk", "seconds": 0.3}).encode()
        return [tar_bytes([("spk/a.flac", flac), ("spk/a.json", meta), ("b.wav", wav)]),
                tar_bytes([("x" * 120 + "/c.flac", flac), ("x" * 120 + "/c.json", meta)], tarfile.PAX_FORMAT),
                tar_bytes([("d.wav", wav), ("d.json", b'{"speaker": 3}'), ("e.flac", flac)], tarfile.GNU_FORMAT)]


class SidecarTarget(ArchiveTarget):
    """The input is a sample's KEY.json, in a shard beside its audio and a second sample (which
    must survive whatever the sidecar holds). The audio is not decoded (the `tar` target does)."""

    name, max_len, suffix, max_members = "sidecar", 16384, ".tar", 0

    def setup(self) -> None:
        super().setup()
        self.audio = _short_audio("FLAC", "PCM_16")

    def archive(self, data: bytes) -> bytes:
        return tar_bytes([("k.flac", self.audio), ("k.json", data), ("m.flac", self.audio),
                          ("m.json", b'{"seconds": 0.3}')])

    def seeds(self) -> list[bytes]:
        return [json.dumps(m).encode() for m in ({"id": "spk/k", "speaker": "spk", "seconds": 0.3}, {"duration": "0.3"},
                                                 {"speaker": ["a", {"b": None}], "id": 7}, {})]

    def run(self, data: bytes) -> None:
        names = self.read(data)
        if "m.flac" not in names:
            raise AssertionError(f"the sample beside the sidecar was lost: {names}")


class ParquetTarget(ArchiveTarget):
    name, max_len, suffix = "parquet", 16384, ".parquet"

    def seeds(self) -> list[bytes]:
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        flac = [_short_audio("FLAC", "PCM_16", offset=4000 * i) for i in range(3)]
        wav = _short_audio("WAV", "PCM_U8")
        struct_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        tables = [
            (pa.table({"audio": pa.array([{"bytes": b, "path": f"spk/c{i}.flac"} for i, b in enumerate(flac)], struct_type),
                       "speaker": ["a", "b", None]}), {"compression": "snappy", "row_group_size": 2}),
            (pa.table({"audio": pa.array([wav, flac[0], None], pa.binary()), "seconds": [0.3, 0.3, 0.3]}),
             {"compression": "zstd", "use_dictionary": False, "data_page_version": "2.0"}),
            (pa.table({"audio": pa.array([{"bytes": flac[1], "path": "same.flac"}] * 4, struct_type),
                       "speaker": pa.array([1, 2, 3, 1], pa.int32()), "duration": [0.3] * 4}),
             {"compression": "gzip", "row_group_size": 2}),
            (pa.table({"audio": pa.array([{"bytes": flac[2], "path": "c.flac"}], struct_type)}), {"compression": "none"}),
        ]
        out = []
        for i, (table, options) in enumerate(tables):
            buf = io.BytesIO()  # statistics copy a binary cell's value (twice) into the metadata: one seed keeps them
            pq.write_table(table, buf, write_statistics=i == len(tables) - 1, **options)
            out.append(buf.getvalue())
        return out


def make_target(name: str) -> Target:
    return {"tcd": TcdTarget, "audio": AudioTarget, "model": ModelTarget, "shards": ShardsTarget, "tar": TarTarget,
            "parquet": ParquetTarget, "sidecar": SidecarTarget}[name]()


# ---- the fuzzing child ---------------------------------------------------------------------------

def child(name: str, libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["telucodec", "tarfile"]):
        import tarfile  # noqa: F401

        import telucodec.formats.archives  # noqa: F401
        import telucodec.formats.audio  # noqa: F401
        import telucodec.formats.bitstream  # noqa: F401
        import telucodec.formats.dataset  # noqa: F401
        import telucodec.formats.parquet_audio  # noqa: F401
        import telucodec.formats.parquet_footer  # noqa: F401
        import telucodec.formats.thrift_compact  # noqa: F401
        import telucodec.formats.tokens  # noqa: F401
        import telucodec.model.loading  # noqa: F401
    if name in ("audio", "tar", "parquet", "sidecar"):  # see AudioTarget
        os.environ["PATH"] = ""
    target = make_target(name)
    target.setup()
    target.cpu_limit = float(os.environ.get("TELUCODEC_FUZZ_CPU_LIMIT", target.cpu_limit))
    # warm up on the corpus first: a first call's lazy imports (torch's, ~seconds) are no hang
    for folder in (Path(a) for a in libfuzzer_args if not a.startswith("-")):
        for path in sorted(folder.iterdir())[:50]:
            target.check(path.read_bytes())
    atheris.Setup([sys.argv[0], *libfuzzer_args], target.check)
    atheris.Fuzz()


# ---- the driver ---------------------------------------------------------------------------------

def _grab(pattern: str, text: str, last: bool = True) -> str | None:
    found = re.findall(pattern, text)
    return (found[-1] if last else found[0]) if found else None


def fuzz(name: str, runs: int, work: Path, timeout: float, rss_mb: int, seed: int, log: Callable[[str], None] = print) -> dict:
    """Seed `work/name/seeds`, fuzz `runs` cases, return (and print) the summary."""
    folder = work / name
    seeds_dir, corpus, artifacts = folder / "seeds", folder / "corpus", folder / "artifacts"
    for d in (seeds_dir, corpus, artifacts):
        d.mkdir(parents=True, exist_ok=True)
    target = make_target(name)
    target.setup()
    seeds = target.seeds()
    for i, data in enumerate(seeds):
        (seeds_dir / f"seed-{i}").write_bytes(data)
    max_len = max(target.max_len, *(len(s) for s in seeds))
    args = [f"-runs={runs}", f"-timeout={max(10, round(10 * timeout))}", f"-rss_limit_mb={rss_mb}", f"-max_len={max_len}",
            f"-seed={seed}", "-print_final_stats=1", f"-artifact_prefix={artifacts}/",
            str(corpus), str(seeds_dir)]
    old_artifacts = set(artifacts.iterdir())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TELUCODEC_FUZZ_CPU_LIMIT": str(timeout)}
    started = time.monotonic()
    log_path = folder / "libfuzzer.log"
    with open(log_path, "w") as out:
        proc = subprocess.run([sys.executable, __file__, name, "--child", "--", *args], stdout=out,
                              stderr=subprocess.STDOUT, env=env, cwd=folder)
    wall = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    done = _grab(r"Done (\d+) runs in (\d+) second", text)
    crashes = sorted(str(p) for p in set(artifacts.iterdir()) - old_artifacts)
    summary = {
        "target": name, "runs_asked": runs, "runs": int(done[0]) if done else None, "seconds": round(wall, 1),
        "execs_per_s": round(int(done[0]) / max(wall, 1e-9)) if done else None,
        "exit_code": proc.returncode, "failures": crashes,
        "timeouts": len(re.findall(r"ERROR: libFuzzer: timeout|AssertionError: hang: ", text)),
        "peak_rss_mb": int(_grab(r"stat::peak_rss_mb:\s+(\d+)", text) or 0) or None,
        "slowest_case_wall_s": int(_grab(r"stat::slowest_unit_time_sec:\s+(\d+)", text) or 0),
        "coverage": int(_grab(r"\bcov: (\d+)", text) or 0), "features": int(_grab(r"\bft: (\d+)", text) or 0),
        "corpus_files": sum(1 for _ in corpus.iterdir()), "seeds": len(seeds), "log": str(log_path),
    }
    ok = proc.returncode == 0 and not crashes and summary["runs"] is not None
    log(f"fuzz {name}: {summary['runs'] or 0:,} runs in {wall:.0f} s ({summary['execs_per_s'] or 0:,}/s), "
        f"{len(crashes)} failures, {summary['timeouts']} hangs over {timeout:g} s of CPU, peak RSS "
        f"{summary['peak_rss_mb']} MB (limit {rss_mb}), coverage {summary['coverage']} edges / "
        f"{summary['features']} features, corpus {summary['corpus_files']} files from {len(seeds)} seeds"
        + ("" if ok else f"; FAILED (exit {proc.returncode}), see {log_path}"))
    if not ok:
        tail = [line for line in text.splitlines() if line.strip()][-40:]
        log("\n".join("  " + line for line in tail))
    return summary


def _rss_mb() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) // 1024


def replay(name: str, cases: int, work: Path, log: Callable[[str], None] = print) -> dict:
    """Run `cases` inputs of the grown corpus (round robin) through the target in a plain loop,
    without libFuzzer: whether memory stays flat case after case (a leak in a reader would not)."""
    corpus = sorted(p for d in ("corpus", "seeds") for p in (work / name / d).glob("*"))
    if not corpus:
        raise SystemExit(f"{work / name}: no corpus yet; fuzz first")
    target = make_target(name)
    target.setup()
    inputs = [p.read_bytes() for p in corpus]
    for data in inputs:  # one pass first: lazy imports and caches settle
        target.check(data)
    start = _rss_mb()
    for i in range(cases):
        target.check(inputs[i % len(inputs)])
    summary = {"target": name, "replayed": cases, "corpus_files": len(inputs), "rss_mb_after_first_pass": start,
               "rss_mb_at_end": _rss_mb()}
    log(f"replay {name}: {cases:,} cases of a {len(inputs)}-file corpus in a plain loop: RSS {start} MB after "
        f"the first pass, {summary['rss_mb_at_end']} MB at the end")
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        child(argv[0], argv[argv.index("--") + 1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", choices=[*TARGETS, "all"], help="the reader to fuzz, or all of them in turn")
    p.add_argument("--runs", type=int, default=1_000_000, help="cases per target (default: %(default)s)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "fuzz",
                   help="seeds, the grown corpus and failing inputs go to WORK/TARGET/ (default: runs/fuzz)")
    p.add_argument("--timeout", type=float, default=1.0, help="CPU seconds one case may take (default: %(default)s)")
    p.add_argument("--rss_mb", type=int, default=2048, help="memory limit of the fuzzing process (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write the summaries here (default: no file)")
    p.add_argument("--replay", type=int, default=0,
                   help="instead of fuzzing, run this many cases of the grown corpus in a plain loop and report "
                        "memory (default: 0, fuzz)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs {args.runs}: need at least 1")
    if args.replay > 0:
        for t in TARGETS if args.target == "all" else (args.target,):
            replay(t, args.replay, args.work)
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("fuzz.py needs atheris: .venv/bin/pip install -e '.[fuzz]' (make install does)", file=sys.stderr)
        return 2
    summaries = [fuzz(t, args.runs, args.work, args.timeout, args.rss_mb, args.seed)
                 for t in (TARGETS if args.target == "all" else (args.target,))]
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2) + "\n")
    return 0 if all(s["exit_code"] == 0 and not s["failures"] and s["runs"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
