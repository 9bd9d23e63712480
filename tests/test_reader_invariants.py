"""Issue 33 item 10 and the readers' invariant: every reader of data from strangers (an audio file,
a WebDataset tar shard, its JSON sidecars, a Parquet file, a manifest) either returns data or
raises the telucodec error family with one line naming the file, and allocates no more than a
bounded multiple of the bytes it was given. Checked on generated damage to real small files (cut
short, bytes flipped or overwritten, header, footer and page-header fields set to extreme values),
each read in a worker process limited to 2 GB of address space (tests/reader_worker.py); a
damaged shard is skipped and listed by tokenize and training, which go on."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import parquet_surgery as surgery
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reader_worker import MEMORY_LIMIT, ReaderWorker

from telucodec.formats import thrift_compact as tc

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"
CASES = settings(max_examples=int(os.environ.get("TELUCODEC_READER_CASES", "120")), deadline=None,
                 suppress_health_check=list(HealthCheck), derandomize=False)
EXTREME = st.sampled_from([0, 1, -1, 7, 2**31 - 1, -(2**31), 2**32, 2**40, 2**62, 2**63 - 1, -(2**63)])


def _clip(seconds: float, offset: int = 0) -> np.ndarray:
    wav, _ = sf.read(sorted(EXAMPLES.rglob("*.flac"))[0], dtype="float32")
    return wav[16000 + offset: 16000 + offset + int(seconds * 16000)]


def _audio_bytes(fmt: str, subtype: str, seconds: float = 0.1, offset: int = 0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, _clip(seconds, offset), 16000, format=fmt, subtype=subtype)
    return buf.getvalue()


# ---- small real files ---------------------------------------------------------------------------
def _parquet_bases(seconds: float = 0.3) -> list[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flac = [_audio_bytes("FLAC", "PCM_16", seconds, 4000 * i) for i in range(4)]
    wav = _audio_bytes("WAV", "PCM_16", seconds / 2)
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    tables = [
        (pa.table({"audio": pa.array([{"bytes": b, "path": f"spk/c{i}.flac"} for i, b in enumerate(flac)], struct),
                   "speaker": ["a", "b", "a", None]}), {"compression": "snappy", "row_group_size": 2}),
        (pa.table({"audio": pa.array([wav, flac[0], None], pa.binary()), "seconds": [seconds] * 3}),
         {"compression": "zstd", "use_dictionary": False, "data_page_version": "2.0"}),
        (pa.table({"audio": pa.array([{"bytes": flac[1], "path": "same.flac"}] * 6, struct),
                   "speaker": pa.array([1, 2, 3, 1, 2, 3], pa.int32()), "duration": [seconds] * 6}),
         {"compression": "gzip", "row_group_size": 3}),
        (pa.table({"audio": pa.array([{"bytes": b, "path": f"c{i}.flac"} for i, b in enumerate(flac[:2])], struct)}),
         {"compression": "none"}),
    ]
    out = []
    for table, options in tables:
        buf = io.BytesIO()
        pq.write_table(table, buf, write_statistics=False, **options)
        out.append(buf.getvalue())
    return out


def _tar_bytes(members: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tar_bases() -> list[bytes]:
    flac, wav = _audio_bytes("FLAC", "PCM_16", 0.3), _audio_bytes("WAV", "PCM_16", 0.3)
    meta = json.dumps({"id": "spk/a", "speaker": "spk", "seconds": 0.3}).encode()
    return [_tar_bytes([("spk/a.flac", flac), ("spk/a.json", meta), ("b.wav", wav)]),
            _tar_bytes([("x" * 120 + "/c.flac", flac), ("x" * 120 + "/c.json", meta)], tarfile.PAX_FORMAT),
            _tar_bytes([("d.wav", wav), ("d.json", b'{"speaker": 3}'), ("e.flac", flac)], tarfile.GNU_FORMAT)]


def _audio_bases() -> list[tuple[str, bytes]]:
    out = [(".wav", _audio_bytes("WAV", "PCM_16")), (".wav", _audio_bytes("WAV", "FLOAT")),  # 0.1 s: small
           (".flac", _audio_bytes("FLAC", "PCM_16")), (".ogg", _audio_bytes("OGG", "VORBIS"))]
    try:
        out.append((".mp3", _audio_bytes("MP3", "MPEG_LAYER_III")))
    except Exception:  # a libsndfile without MP3 writing
        pass
    return out


PARQUET, TARS, AUDIO = _parquet_bases(), _tar_bases(), _audio_bases()


# ---- damage -------------------------------------------------------------------------------------
@st.composite
def byte_damage(draw, data: bytes) -> bytes:
    """Cut short, flip bytes, or overwrite a run with random or extreme bytes."""
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "fill"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    out = bytearray(data)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
        return bytes(out)
    at = draw(st.integers(0, len(out) - 1))
    run = draw(st.binary(min_size=1, max_size=16)) if kind == "splice" else bytes([draw(st.sampled_from([0, 0x7F, 0xFF]))]) * draw(st.integers(1, 16))
    out[at: at + len(run)] = run
    return bytes(out[: len(data)])


@st.composite
def damaged_parquet(draw) -> bytes:
    data = draw(st.sampled_from(PARQUET))
    kind = draw(st.sampled_from(["bytes", "footer", "page", "page", "footer"]))
    if kind == "bytes":
        return draw(byte_damage(data))
    if kind == "footer":
        footer, _ = surgery.footer_of(data)
        path = draw(st.sampled_from(surgery.int_paths(footer)))
        surgery.set_int(footer, path, draw(EXTREME | st.integers(-(2**63), 2**63 - 1)))
        return surgery.with_footer(data, footer)
    page = draw(st.sampled_from(surgery.pages_of(data)))
    path = draw(st.sampled_from(surgery.int_paths(page.header)))
    old = surgery.get_int(page.header, path)
    surgery.set_int(page.header, path, draw(EXTREME | st.sampled_from([old * 1000, old + 1, old - 1, old * 2**20])))
    return surgery.with_page_header(data, page, page.header)


def _tar_header_field(data: bytes, member: int, field: str, value: bytes) -> bytes:
    """Overwrite a field of the `member`-th header block (checksum recomputed, so tarfile takes it)."""
    spans = {"size": (124, 12), "mode": (100, 8), "name": (0, 100), "type": (156, 1), "mtime": (136, 12)}
    headers, pos = [], 0
    while pos + 512 <= len(data) and data[pos: pos + 512].strip(b"\0"):
        headers.append(pos)
        size = tarfile.nti(data[pos + 124: pos + 136])
        pos += 512 + (size + 511) // 512 * 512
    out = bytearray(data)
    start = headers[member % len(headers)]
    off, width = spans[field]
    out[start + off: start + off + width] = value[:width].ljust(width, b"\0")
    block = out[start: start + 512]
    block[148:156] = b" " * 8
    out[start + 148: start + 156] = b"%06o\0 " % sum(block)
    return bytes(out)


@st.composite
def damaged_tar(draw) -> bytes:
    data = draw(st.sampled_from(TARS))
    if draw(st.booleans()):
        return draw(byte_damage(data))
    field = draw(st.sampled_from(["size", "size", "mode", "name", "type", "mtime"]))
    value = draw(st.sampled_from([b"77777777777", b"\x80" + b"\xff" * 11, b"\xff" * 12, b"-1", b"0",
                                  b"x" * 12, b"L", b"x", b"S", b"K", b"00000001000"]) | st.binary(max_size=12))
    return _tar_header_field(data, draw(st.integers(0, 7)), field, value)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=20)


@st.composite
def sidecar(draw) -> bytes:
    kind = draw(st.sampled_from(["json", "fields", "bytes", "deep", "huge"]))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "fields":
        keys = st.sampled_from(["id", "speaker", "seconds", "duration"])
        return json.dumps(draw(st.dictionaries(keys, JSON_VALUES, max_size=4))).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":
        n = draw(st.integers(100, 200_000))
        return b"[" * n + b"]" * draw(st.sampled_from([0, n]))
    return draw(st.sampled_from([b'{"seconds": 1e999}', b'{"seconds": ' + b"9" * 5000 + b"}", b'{"seconds": -1}',
                                 b'{"seconds": NaN}', b'{"speaker": "' + b"s" * 3_000_000 + b'"}', b'\xff\xfe{"a": 1}',
                                 b'{"id": "\\ud800", "speaker": "\\udc80"}']))


@st.composite
def manifest(draw, clips: list[Path]) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".tsv", ".csv"]))
    sep = "\t" if suffix == ".tsv" else ","
    columns = draw(st.lists(st.sampled_from(["path", "speaker", "seconds", "duration", "x"]), min_size=1, max_size=4))
    cell = st.one_of(st.sampled_from([str(c) for c in clips[:3]] + ["", "nowhere.flac", "/dev/zero", "/", ".", "..",
                                      "a\x00b.wav", "nan", "inf", "-1", "1e999", "0.3", "9" * 400, '"', "x" * 5000]),
                     st.text(max_size=30))
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=len(columns) + 1), max_size=6))
    text = "\n".join(sep.join(r) for r in [columns, *rows])
    data = text.encode(errors="surrogatepass") if draw(st.booleans()) else draw(byte_damage(text.encode(errors="ignore") or b"path"))
    return suffix, data


# ---- the properties -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def worker():
    w = ReaderWorker()
    yield w
    w.close()


def _one_line_naming(message: str, name: str) -> bool:
    return "\n" not in message and name in message


def assert_data_or_named_error(answer: dict, path: Path) -> None:
    event(f"{answer['outcome']}, {'some' if answer.get('items') else 'no'} items, "
          f"{'listed as damaged' if any(n == str(path) for n, _ in answer.get('skipped', [])) else 'not listed'}")
    assert answer["outcome"] != "crash", answer["messages"][0]
    for message in answer["messages"]:
        assert _one_line_naming(message, str(path)), message
    for name, reason in answer.get("skipped", []):
        assert name.startswith(str(path)) and reason and "\n" not in reason, (name, reason)


@CASES
@given(data=damaged_parquet())
def test_every_damaged_parquet_file_reads_as_data_or_a_named_error(data, worker, tmp_path_factory):
    path = tmp_path_factory.mktemp("pq") / "train-00000-of-00001.parquet"
    path.write_bytes(data)
    assert_data_or_named_error(worker.read("parquet", path), path)


@CASES
@given(data=damaged_tar())
def test_every_damaged_tar_shard_reads_as_data_or_a_named_error(data, worker, tmp_path_factory):
    path = tmp_path_factory.mktemp("tar") / "shard-000000.tar"
    path.write_bytes(data)
    assert_data_or_named_error(worker.read("tar", path), path)


@CASES
@given(meta=sidecar())
def test_every_json_sidecar_reads_as_data_or_a_named_error(meta, worker, tmp_path_factory):
    path = tmp_path_factory.mktemp("sidecar") / "shard-000000.tar"
    path.write_bytes(_tar_bytes([("k.flac", _audio_bytes("FLAC", "PCM_16", 0.3)), ("k.json", meta),
                                 ("m.wav", _audio_bytes("WAV", "PCM_16", 0.3))]))
    answer = worker.read("tar", path)
    assert_data_or_named_error(answer, path)
    assert answer["outcome"] == "data" and f"{path}:m.wav" in answer["names"]  # the other sample is kept


@CASES
@given(base=st.sampled_from(AUDIO), data=st.data())
def test_every_damaged_audio_file_reads_as_data_or_a_named_error(base, data, worker, tmp_path_factory):
    suffix, original = base
    path = tmp_path_factory.mktemp("audio") / f"clip{data.draw(st.sampled_from([suffix, suffix, '.wav', '.flac']))}"
    path.write_bytes(data.draw(byte_damage(original)))
    assert_data_or_named_error(worker.read("audio", path), path)


@CASES
@given(data=st.data())
def test_every_manifest_reads_as_data_or_a_named_error(data, worker, example_clips, tmp_path_factory):
    suffix, text = data.draw(manifest(example_clips))
    path = tmp_path_factory.mktemp("manifest") / f"list{suffix}"
    path.write_bytes(text)
    answer = worker.read("manifest", path)
    event(f"{answer['outcome']}, {'some' if answer.get('items') else 'no'} items")
    assert answer["outcome"] != "crash", answer["messages"][0]
    for message in answer["messages"]:  # a listed clip's error names the clip, the manifest's the manifest
        assert "\n" not in message and message.split(": ")[0], message


def test_the_worker_catches_a_reader_that_allocates_without_bound(worker, tmp_path):
    """The harness can fail: a reader asked for more than the limit is a crash, not data."""
    answer = worker.read("audio", tmp_path / "x.wav")
    assert answer["outcome"] == "error"
    code = f"import numpy; numpy.ones({MEMORY_LIMIT // 8 + 1})"
    proc = subprocess.run([sys.executable, "-c", "import resource; resource.setrlimit(resource.RLIMIT_AS, "
                           f"({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n" + code], capture_output=True, text=True)
    assert proc.returncode != 0 and "MemoryError" in proc.stderr


def test_a_file_name_that_is_not_utf8_is_indexed_read_and_listed(tmp_path, example_clips):
    """Linux file names are bytes: one that is not UTF-8 is a file like any other (found by the
    fuzzer as a tar member name; the index could not hold it)."""
    import shutil

    from telucodec.formats.dataset import index_audio, load_item, write_skipped

    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.flac")
    shutil.copy(example_clips[0], odd)
    (tmp_path / "empty.wav").write_bytes(b"")
    index = index_audio(tmp_path, durations=True)
    assert [item.name for item in index] == [odd] and load_item(index[0], 16000).size > 0
    write_skipped(tmp_path / "skipped.tsv", [(odd, "a reason")])
    assert "caf\\xe9.flac\ta reason" in (tmp_path / "skipped.tsv").read_text()


# ---- tokenize and training skip a damaged shard, list it and go on --------------------------------
def _named_damage() -> dict[str, bytes]:
    """One file for each kind of damage a reader must survive (Parquet's Thrift field ids)."""
    base = PARQUET[0]
    footer, _ = surgery.footer_of(base)
    surgery.set_field(footer, [3], 2**62)                      # FileMetaData.num_rows
    groups, _ = surgery.footer_of(base)
    surgery.set_field(groups, [4, 0, 3], 2**31 - 1)            # row_groups[0].num_rows
    page = next(p for p in surgery.pages_of(base) if tc.get(p.header, 1) == 2)  # a dictionary page
    surgery.set_field(page.header, [2], 2**31 - 1)             # its uncompressed_page_size
    data_page = next(p for p in surgery.pages_of(base) if tc.get(p.header, 1) == 0)
    surgery.set_field(data_page.header, [5, 1], 2**31 - 1)     # data_page_header.num_values
    return {"truncated": base[: len(base) // 2], "not-parquet": b"PAR1" + bytes(64) + b"PAR1",
            "rows": surgery.with_footer(base, footer), "group-rows": surgery.with_footer(base, groups),
            "page-size": surgery.with_page_header(base, page, page.header),
            "page-values": surgery.with_page_header(base, data_page, data_page.header)}


@pytest.fixture(scope="module")
def mixed_parquet(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    folder = tmp_path_factory.mktemp("mixed") / "data"
    folder.mkdir()
    good = _parquet_bases(seconds=0.6)
    (folder / "good-0.parquet").write_bytes(good[0])
    (folder / "good-1.parquet").write_bytes(good[3])
    damaged = _named_damage()
    for name, data in damaged.items():
        (folder / f"bad-{name}.parquet").write_bytes(data)
    return folder, damaged


def _limited_run(code: str, memory: int = 4 * 2**30) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    # The child leaves by os._exit once its work is printed: under the address-space cap, a native
    # thread pool's teardown at interpreter exit aborted once ("terminate called without an active
    # exception", after the results were out). The test judges the reading, not the teardown; a
    # crash while reading still fails it.
    code = textwrap.dedent(code) + "\nimport os as _os, sys as _sys\n_sys.stdout.flush()\n_os._exit(0)\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, preexec_fn=limit, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                           "ARROW_DEFAULT_MEMORY_POOL": "system",
                                                           "PYTHONPATH": str(ROOT)})


def test_each_kind_of_damage_is_a_listed_shard(mixed_parquet, worker):
    folder, damaged = mixed_parquet
    for name in damaged:
        path = folder / f"bad-{name}.parquet"
        answer = worker.read("parquet", path)
        assert answer["outcome"] == "data", (name, answer["messages"])
        assert str(path) in [n for n, _ in answer["skipped"]], (name, answer)


def test_tokenize_skips_and_lists_damaged_parquet_files_and_goes_on(mixed_parquet, tmp_path):
    from telucodec.config import get_config
    from telucodec.model.codec import Codec

    folder, damaged = mixed_parquet
    torch.manual_seed(0)
    model = Codec(get_config("tiny")).eval().save_pretrained(tmp_path / "model")
    out = tmp_path / "tokens"
    proc = _limited_run(f"""
        import sys
        from telucodec.cli import main
        sys.exit(main(["tokenize", "--data_dir", {str(folder)!r}, "--out", {str(out)!r}, "--model", {str(model)!r},
                       "--kbps", "2"]))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = {line.split("\t")[0]: line for line in (out / "skipped.tsv").read_text().splitlines()[1:]}
    for name in damaged:
        assert str(folder / f"bad-{name}.parquet") in listed, (name, sorted(listed))
    assert "tokenized 6 files" in proc.stdout, proc.stdout  # 4 rows + 2 rows of the good files


def test_training_skips_and_lists_damaged_parquet_files_and_goes_on(mixed_parquet, tmp_path):
    folder, damaged = mixed_parquet
    proc = _limited_run(f"""
        import json
        from telucodec.config import get_config
        from telucodec.train.data import prepare_training_data
        data = prepare_training_data({str(folder)!r}, get_config("tiny"), load_val=True, log=lambda m: None)
        print(json.dumps({{"train": len(data.train), "val": len(data.val), "skipped": data.skipped}}))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    listed = [name for name, _ in got["skipped"]]
    for name in damaged:
        assert str(folder / f"bad-{name}.parquet") in listed, (name, got["skipped"])
    assert got["train"] + got["val"] >= 4
