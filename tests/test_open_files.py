"""Issue 33 item 2: readers hold no file open between reads, and an error of the machine (too many
open files, an I/O error, a folder that may not be entered) stops the run with one line naming the
file instead of being counted as a bad clip."""

from __future__ import annotations

import errno
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import as_unprivileged

from telucodec.config import get_config
from telucodec.errors import AudioError, StorageError, TelucodecError
from telucodec.formats import archives, parquet_audio
from telucodec.formats.audio import load_audio
from telucodec.formats.dataset import index_audio, load_item
from telucodec.model.codec import Codec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"
FILES = 150        # Parquet files, ...
FD_LIMIT = 64      # ... well over the open-file limit the readers run under


def short_clips(count: int, seconds: float = 0.5) -> list[bytes]:
    """`count` distinct FLAC clips cut from the example recordings."""
    wav = np.concatenate([sf.read(p, dtype="float32")[0] for p in sorted(EXAMPLES.rglob("*.flac"))])
    n = int(seconds * 16000)
    loud = [w for w in (wav[i: i + n] for i in range(0, wav.size - n, n // 4)) if np.sqrt(np.mean(w ** 2)) > 0.01]
    out = []
    for i in range(count):
        buf = io.BytesIO()
        sf.write(buf, loud[i % len(loud)] * (1 - i / (2 * count)), 16000, format="FLAC")  # distinct clips
        out.append(buf.getvalue())
    return out


def write_parquet_rows(path: Path, rows: list[tuple[str, bytes, str]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("speaker", pa.string())])
    pq.write_table(pa.table({"audio": [{"bytes": b, "path": n} for n, b, _ in rows], "speaker": [s for *_, s in rows]},
                            schema=schema), path)


@pytest.fixture(scope="module")
def many_parquet(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("many_parquet")
    for i, clip in enumerate(short_clips(FILES)):
        write_parquet_rows(folder / f"part-{i:05d}.parquet", [(f"clip{i:05d}.flac", clip, f"spk{i % 7}")])
    return folder


@pytest.fixture(scope="module")
def many_tars(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("many_tars")
    for i, clip in enumerate(short_clips(FILES)):
        with tarfile.open(folder / f"shard-{i:06d}.tar", "w") as tf:
            for name, data in ((f"clip{i:05d}.flac", clip), (f"clip{i:05d}.json", b'{"speaker": "s"}')):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return Codec(get_config("tiny")).eval().save_pretrained(tmp_path_factory.mktemp("fd_model") / "model")


def _limited(code: str, limit: int = FD_LIMIT) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python whose open-file limit is `limit`."""
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, preexec_fn=lower,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("kind", ["parquet", "tar"])
def test_training_reads_more_archives_than_the_open_file_limit(kind, many_parquet, many_tars):
    folder = many_parquet if kind == "parquet" else many_tars
    proc = _limited(f"""
        import json
        from telucodec.formats.dataset import index_audio
        from telucodec.train.crops import CropDataset, RankBatches, StreamingClips, crop_batches
        index = index_audio({str(folder)!r}, durations=True)
        source = StreamingClips(index, 16000)
        read = sum(source.read(k, 0, 4000).size > 0 for k in range(len(index)))  # every file, first read
        again = sum(source.read(k, 100, 4000).size > 0 for k in range(len(index)))  # and a crop of each
        found = []
        ds = CropDataset(source, 4000, 64, seed=0)
        batches = list(crop_batches(ds, RankBatches(64, 0, 1, 8, 8), 0, found))
        print(json.dumps({{"items": len(index), "skipped": index.skipped, "read": read, "again": again,
                           "found": found, "batches": len(batches)}}))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["skipped"] == [] and got["found"] == []
    assert got["items"] == got["read"] == got["again"] == FILES and got["batches"] == 8


def test_tokenize_reads_more_parquet_files_than_the_open_file_limit(many_parquet, model_dir, tmp_path):
    out = tmp_path / "tokens"
    proc = _limited(f"""
        import sys
        from telucodec.cli import main
        sys.exit(main(["tokenize", "--data_dir", {str(many_parquet)!r}, "--out", {str(out)!r},
                       "--model", {str(model_dir)!r}, "--kbps", "2"]))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"tokenized {FILES} files" in proc.stdout, proc.stdout
    assert not (out / "skipped.tsv").is_file() or len((out / "skipped.tsv").read_text().splitlines()) <= 1


# ---- an error of the machine stops the run, naming the file -------------------------------------
def test_running_out_of_file_descriptors_stops_reading_naming_the_file(many_parquet, tmp_path, example_clips):
    """Every reader, with no descriptor left: StorageError (not a skipped clip), one line, the file."""
    tar = tmp_path / "shard.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(example_clips[0], arcname="a.flac")
    proc = _limited(f"""
        import json, os
        from telucodec.errors import StorageError, TelucodecError
        from telucodec.formats.dataset import index_audio, load_item
        from telucodec.formats.audio import load_audio
        parquet, tar = index_audio({str(many_parquet)!r}), index_audio({str(tar)!r})
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        out = {{}}
        for name, call in (("parquet", lambda: load_item(parquet[0], 16000)),
                           ("tar", lambda: load_item(tar[0], 16000)),
                           ("file", lambda: load_audio({str(example_clips[0])!r})),
                           ("index_parquet", lambda: index_audio({str(many_parquet)!r}, durations=True)),
                           ("index_tar", lambda: index_audio({str(tar)!r}, durations=True)),
                           ("index_folder", lambda: index_audio({str(example_clips[0].parent)!r}, durations=True))):
            try:
                call()
                out[name] = "read"
            except TelucodecError as exc:
                out[name] = [type(exc).__name__, str(exc)]
        for fd in held:
            os.close(fd)
        print(json.dumps(out))
    """, limit=40)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, result in got.items():
        assert result != "read" and result[0] == "StorageError", (name, result)
        assert "\n" not in result[1] and "too many open files" in result[1].lower(), (name, result)
    assert str(many_parquet) in got["parquet"][1] and str(tar) in got["tar"][1]
    assert str(example_clips[0]) in got["file"][1]


def _eio_open(victim: str):
    real_open = open

    def fake_open(file, mode="r", *args, **kwargs):
        if str(file) == victim:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(file))
        return real_open(file, mode, *args, **kwargs)
    return fake_open


def test_an_io_error_in_an_archive_is_no_bad_clip(tmp_path, monkeypatch, example_clips):
    tar = tmp_path / "shard.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(example_clips[0], arcname="a.flac")
    write_parquet_rows(tmp_path / "one.parquet", [("a.flac", example_clips[0].read_bytes(), "s")])
    items = [index_audio(tar)[0], index_audio(tmp_path / "one.parquet")[0]]
    for module, path in ((archives, tar), (parquet_audio, tmp_path / "one.parquet")):
        monkeypatch.setattr(module, "open", _eio_open(str(path)), raising=False)
        for call in (lambda p=path: index_audio(p, durations=True), lambda: [load_item(i, 16000) for i in items]):
            with pytest.raises(StorageError, match=f"{path}.*Input/output error"):
                call()
        monkeypatch.undo()


def test_a_folder_that_may_not_be_entered_stops_indexing(example_clips):
    """A folder of the data that cannot be listed is an error naming it (it was silently left out)."""
    top = Path(tempfile.mkdtemp())  # pytest's tmp_path sits in a 0700 folder nobody cannot enter
    top.chmod(0o755)
    data = top / "data"
    (data / "ok").mkdir(parents=True)
    (data / "locked").mkdir()
    shutil.copy(example_clips[0], data / "ok" / "a.flac")
    shutil.copy(example_clips[1], data / "locked" / "b.flac")
    (data / "locked").chmod(0)
    code = f"""
        from telucodec.formats.dataset import index_audio
        from telucodec.errors import StorageError
        try:
            print(len(index_audio({str(data)!r}, durations=True)))
        except StorageError as exc:
            print("StorageError:", exc)
    """
    cmd = as_unprivileged([sys.executable, "-c", textwrap.dedent(code)])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        (data / "locked").chmod(0o755)
        shutil.rmtree(top)
    if proc.returncode != 0:
        pytest.skip(f"cannot run as another user here: {proc.stderr.strip()[-300:]}")
    assert proc.stdout.strip() == f"StorageError: {data / 'locked'}: permission denied (cannot list the folder)"


def test_one_unreadable_clip_is_still_a_skipped_clip(tmp_path, example_clips):
    """The other side of the line: what is wrong with one file (gone, empty, garbage) skips it."""
    (tmp_path / "empty.flac").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"RIFF" + bytes(200))
    shutil.copy(example_clips[0], tmp_path / "good.flac")
    index = index_audio(tmp_path, durations=True)
    assert len(index) == 1 and sorted(Path(p).name for p, _ in index.skipped) == ["empty.flac", "junk.wav"]
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "gone.flac")
    assert not issubclass(StorageError, AudioError) and issubclass(StorageError, TelucodecError)
