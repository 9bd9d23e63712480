"""Corpus scale: the flat-memory training index and streaming crops, WebDataset tar shards and
Parquet as inputs, `telucodec shard`, and tokenize on Ray and into Parquet. Real example clips,
real webdataset / pyarrow files, a real local Ray."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from telucodec.cli import main
from telucodec.config import get_config
from telucodec.deploy.tokenize import tokenize_dataset
from telucodec.errors import TelucodecError
from telucodec.evaluation.plan import discover_clips, load_tasks
from telucodec.formats import token_parquet, tokens
from telucodec.formats.audio import load_audio
from telucodec.formats.dataset import Clip, index_audio, load_item
from telucodec.model.codec import Codec
from telucodec.train.crops import (
    LONG_SECONDS,
    CropDataset,
    InMemoryClips,
    RankBatches,
    StreamingClips,
    crop_batches,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return Codec(get_config("tiny")).eval().save_pretrained(tmp_path_factory.mktemp("corpus_model") / "model")


@pytest.fixture(scope="module")
def model(model_dir) -> Codec:
    from telucodec.api import load_model

    return load_model(model_dir)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """The examples packed by `telucodec shard` into several small shards."""
    out = tmp_path_factory.mktemp("shards") / "shards"
    assert main(["shard", "--data_dir", str(EXAMPLES), "--out", str(out), "--shard_mb", "0.3"]) == 0
    return out


def write_parquet(path: Path, rows: list[tuple[str, bytes, str]], rows_per_group: int = 4) -> None:
    """A Parquet file as Hugging Face `datasets` writes an Audio dataset: audio struct<bytes, path>."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = {"audio": {"_type": "Audio"}, "speaker": {"dtype": "string", "_type": "Value"}}
    schema = pa.schema([("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("speaker", pa.string())],
                       metadata={"huggingface": json.dumps({"info": {"features": features}})})
    table = pa.table({"audio": [{"bytes": b, "path": name} for name, b, _ in rows],
                      "speaker": [s for _, _, s in rows]}, schema=schema)
    pq.write_table(table, path, row_group_size=rows_per_group)


def example_rows() -> list[tuple[str, bytes, str]]:
    return [(p.name, p.read_bytes(), p.parent.name) for p in sorted(EXAMPLES.rglob("*.flac"))]


def codes_by_id(out: Path) -> dict[str, np.ndarray]:
    reader = tokens.open(out)
    found = {utt: np.array(reader[utt]) for utt in reader.ids()}
    reader.close()
    return found


# ---- the index ---------------------------------------------------------------------------------
def test_index_takes_durations_from_the_manifest_without_opening_a_file(tmp_path):
    (tmp_path / "list.tsv").write_text("path\tspeaker\tseconds\nnowhere/a.flac\tS1\t3.5\nnowhere/b.flac\tS2\t0.1\n")
    index = index_audio(tmp_path / "list.tsv", durations=True)  # the files do not exist: none was read
    assert len(index) == 1 and index[0].seconds == 3.5 and index[0].speaker == "S1"
    assert index.skipped == [(str(tmp_path / "nowhere/b.flac"), "too short (0.10 s < 0.25 s)")]
    # without a seconds column the header is read (not the audio): lengths match the decoded clips
    folder = index_audio(EXAMPLES / "cv_9e9a356b", durations=True)
    for item in folder:
        assert round(item.seconds * 16000) == load_audio(item.path).size


def test_shards_and_parquet_index_to_the_same_clips(tmp_path, shards):
    write_parquet(tmp_path / "train.parquet", example_rows())
    folder, packed = index_audio(EXAMPLES, durations=True), index_audio(shards, durations=True)
    parquet = index_audio(tmp_path / "train.parquet", durations=True)  # no seconds column: headers read
    assert len(list(shards.glob("shard-*.tar"))) >= 3
    assert [i.key for i in packed] == [str(i.path.relative_to(EXAMPLES).with_suffix("")) for i in folder]
    assert [i.speaker for i in packed] == [i.speaker for i in folder] == [i.speaker for i in parquet]
    np.testing.assert_allclose(parquet.seconds, packed.seconds, atol=1e-3)
    for a, b, c in zip(folder, packed, parquet):
        assert np.array_equal(load_item(a, 16000), load_item(b, 16000))
        assert np.array_equal(load_item(a, 16000), load_item(c, 16000))
    # a brace pattern names the same shards; webdataset itself reads what `telucodec shard` wrote
    pattern = str(shards / "shard-{000000..000002}.tar")
    assert [i.key for i in index_audio(pattern)] == [i.key for i in packed][: len(index_audio(pattern))]
    import webdataset as wds

    first = next(iter(wds.WebDataset(str(shards / "shard-000000.tar"), shardshuffle=False)))
    assert first["__key__"] == packed[0].key and json.loads(first["json"])["id"] == packed[0].key


def test_a_ray_address_nothing_answers_on_is_refused_before_anything_is_written(tmp_path, model_dir, capsys):
    pytest.importorskip("ray")
    assert main(["tokenize", "--data_dir", str(EXAMPLES), "--out", str(tmp_path / "tok"), "--model", str(model_dir),
                 "--engine", "ray", "--ray_address", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ray_address 127.0.0.1:1: nothing answers there" in err[0]
    assert not (tmp_path / "tok").exists()


def test_bad_specs_are_one_line_errors(tmp_path, shards, capsys):
    with pytest.raises(TelucodecError, match="no such shard"):
        index_audio(str(shards / "shard-{000000..000099}.tar"))
    (tmp_path / "mixed").mkdir()
    shutil.copy(next(shards.glob("*.tar")), tmp_path / "mixed")
    write_parquet(tmp_path / "mixed" / "x.parquet", example_rows()[:1])
    with pytest.raises(TelucodecError, match="both .tar shards and .parquet"):
        index_audio(tmp_path / "mixed")
    assert main(["shard", "--data_dir", str(EXAMPLES), "--out", str(shards)]) == 1  # never over shards
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds .tar files" in err[0]


# ---- crops: determinism, shares, bad clips -----------------------------------------------------
def test_streaming_crops_resume_exactly_and_ddp_shares_are_disjoint(shards):
    index = index_audio(shards, durations=True)

    def epoch(start: int, workers: int, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
        ds = CropDataset(StreamingClips(index, 16000), 16000, 24, seed=5, gain_db=3.0)
        ds.set_epoch(2)
        sampler = RankBatches(len(ds), rank, world, batch_size=4, steps=6 // world, start=start)
        return list(crop_batches(ds, sampler, workers))

    whole = epoch(0, workers=0)
    assert torch.equal(torch.cat(epoch(0, workers=2)), torch.cat(whole))  # workers change nothing
    assert torch.equal(torch.cat(epoch(4, workers=1)), torch.cat(whole[4:]))  # a resumed epoch
    shares = [list(RankBatches(24, r, 2, 4, 3)) for r in range(2)]
    flat = [sorted(j for batch in share for j in batch) for share in shares]
    assert set(flat[0]).isdisjoint(flat[1]) and sorted(flat[0] + flat[1]) == list(range(24))
    rank1 = epoch(0, workers=0, rank=1, world=2)
    ds = CropDataset(StreamingClips(index, 16000), 16000, 24, seed=5, gain_db=3.0)
    ds.set_epoch(2)
    assert torch.equal(rank1[0][0], ds[1]) and torch.equal(rank1[0][1], ds[3])  # crops 1, 3, 5, 7


def test_a_crop_read_by_seeking_equals_the_crop_cut_from_the_whole_clip():
    index = index_audio(EXAMPLES, durations=True)
    fresh = CropDataset(StreamingClips(index, 16000), 16000, 40, seed=3)  # decodes each clip whole first
    seeking = CropDataset(StreamingClips(index, 16000), 16000, 40, seed=3)
    seeking.source.checked[:] = True  # as if every clip had been checked already: reads only the crop
    for i in range(40):
        assert torch.equal(fresh[i], seeking[i])


def test_a_long_file_is_cropped_by_reading_only_the_crop(tmp_path, example_clips):
    wav = np.concatenate([load_audio(c) for c in example_clips[:12]])  # > 60 s
    sf.write(tmp_path / "long.wav", wav, 16000, subtype="FLOAT")
    streamed = CropDataset(StreamingClips(index_audio(tmp_path, durations=True), 16000), 16000, 6, seed=1)
    assert streamed.source.index.seconds[0] > LONG_SECONDS
    in_memory = CropDataset(InMemoryClips([Clip(tmp_path / "long.wav", "", wav)]), 16000, 6, seed=1)
    for i in range(6):
        assert torch.equal(streamed[i], in_memory[i])


def corrupt_member(src: Path, dst: Path, victim: str) -> None:
    """Copy a shard, replacing one audio member's bytes with garbage of the same size."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for info in tin.getmembers():
            data = tin.extractfile(info).read()
            if info.name == victim:
                data = b"RIFF" + b"\x07" * (info.size - 4)
            tout.addfile(info, io.BytesIO(data))


def test_a_corrupt_tar_member_is_found_when_read_and_listed(tmp_path, shards, model, capsys):
    data = tmp_path / "bad_shards"
    data.mkdir()
    first, *others = sorted(shards.glob("*.tar"))
    for other in others:
        shutil.copy(other, data)
    victim = tarfile.open(first).getnames()[0]  # a clip of speaker cv_9e9a356b
    corrupt_member(first, data / first.name, victim)
    # crops: the corrupt clip is drawn past, reported with the batch and never read again
    index = index_audio(data, durations=True)
    ds = CropDataset(StreamingClips(index, 16000), 16000, 40, seed=0)
    found: list = []
    assert len(list(crop_batches(ds, RankBatches(40, 0, 1, 8, 5), 0, found))) == 5
    assert [(name, "not a readable" in reason) for _, name, reason in found] == [(f"{data / first.name}:{victim}", True)]
    # training lists it in skipped.tsv at the end of the epoch in which it was first read
    rc = main(["train", "--data_dir", str(data), "--checkpoint_dir", str(tmp_path), "--experiment_name", "t",
               "--config", "tiny", "--batch_size", "8", "--num_epochs", "1", "--steps_per_epoch", "4", "--quiet",
               "--num_workers", "1", "--val_speakers", "cv_ce579334"])
    assert rc == 0 and "found unusable while reading" in capsys.readouterr().out
    listed = (tmp_path / "t" / "skipped.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[0] for line in listed] == [f"{data / first.name}:{victim}"]
    # tokenize skips and counts it
    summary = tokenize_dataset(data, tmp_path / "tok", model, kbps=2.0)
    assert summary["skipped"] == 1 and summary["tokenized"] == len(index) - 1


def test_a_silent_clip_is_found_when_first_read(tmp_path, example_clips):
    shutil.copy(example_clips[0], tmp_path / "a.flac")
    sf.write(tmp_path / "silent.wav", np.zeros(16000 * 5, dtype=np.float32), 16000)
    index = index_audio(tmp_path, durations=True)
    assert len(index) == 2 and not index.skipped  # its header is fine
    ds = CropDataset(StreamingClips(index, 16000), 16000, 16, seed=0)
    found: list = []
    assert len(list(crop_batches(ds, RankBatches(16, 0, 1, 4, 4), 0, found))) == 4
    assert [(Path(n).name, r) for _, n, r in found] == [("silent.wav", "silent (RMS below -80 dBFS)")]


# ---- tokenize: archives, Parquet out, Ray ------------------------------------------------------
@pytest.fixture(scope="module")
def serial(tmp_path_factory, model) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("serial") / "tokens"
    tokenize_dataset(EXAMPLES, out, model, kbps=2.0)
    return codes_by_id(out)


def test_shards_and_parquet_give_the_folders_codes(tmp_path, shards, model, serial):
    tokenize_dataset(shards, tmp_path / "from_shards", model, kbps=2.0)
    got = codes_by_id(tmp_path / "from_shards")
    assert got.keys() == serial.keys()
    for utt in got:
        np.testing.assert_array_equal(got[utt], serial[utt])
    rows = [(str(p.relative_to(EXAMPLES)), p.read_bytes(), p.parent.name) for p in sorted(EXAMPLES.rglob("*.flac"))]
    rows.insert(3, ("broken/clip.flac", b"fLaC" + bytes(300), "x"))
    (tmp_path / "hf" / "data").mkdir(parents=True)
    write_parquet(tmp_path / "hf" / "data" / "train-00000-of-00001.parquet", rows)
    summary = tokenize_dataset(tmp_path / "hf", tmp_path / "from_parquet", model, kbps=2.0)
    assert summary["skipped"] == 1 and summary["tokenized"] == len(serial)
    skipped = (tmp_path / "from_parquet" / "skipped.tsv").read_text()
    assert "train-00000-of-00001.parquet:broken/clip.flac" in skipped
    got = codes_by_id(tmp_path / "from_parquet")
    assert got.keys() == serial.keys()
    for utt in got:
        np.testing.assert_array_equal(got[utt], serial[utt])


def parquet_codes(out: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(out / token_parquet.DATA_DIR)
    assert {"id", "speaker", "seconds", "n_q", "codes"} <= set(table.column_names)
    assert str(table.schema.field("codes").type) == "list<element: list<element: uint16>>"
    ids, cells = table.column("id").to_pylist(), table.column("codes").combine_chunks()
    return {utt: token_parquet.codes_of(cells[n]) for n, utt in enumerate(ids)}


def test_parquet_output_resumes_and_reads_back(tmp_path, model, serial, model_dir):
    out = tmp_path / "pq"
    first = tokenize_dataset(EXAMPLES, out, model, kbps=2.0, fmt="parquet", shard_bytes=2000)
    assert first["tokenized"] == first["utterances"] == len(serial) and first["shards"] >= 3
    got = parquet_codes(out)
    assert got.keys() == serial.keys() and all(np.array_equal(got[u], serial[u]) for u in got)
    assert tokenize_dataset(EXAMPLES, out, model, kbps=2.0, fmt="parquet")["tokenized"] == 0  # all done
    parts = sorted((out / token_parquet.DATA_DIR).glob("*.parquet"))
    parts[0].unlink()
    assert tokenize_dataset(EXAMPLES, out, model, kbps=2.0, fmt="parquet")["tokenized"] >= 1
    assert parquet_codes(out).keys() == serial.keys()
    # a shards folder is not mixed with Parquet tokens
    assert main(["tokenize", "--data_dir", str(EXAMPLES), "--out", str(out), "--model", str(model_dir),
                 "--kbps", "2"]) == 1


@pytest.mark.slow
def test_ray_engine_on_a_local_two_cpu_ray_equals_the_serial_codes(tmp_path, shards, model, serial):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = tokenize_dataset(shards, tmp_path / "ray_pq", model, kbps=2.0, workers=2, engine="ray",
                                   fmt="parquet")
        assert summary["tokenized"] == len(serial)
        got = parquet_codes(tmp_path / "ray_pq")
        assert list(got) == list(serial)  # input order kept
        assert all(np.array_equal(got[u], serial[u]) for u in serial)
        tokenize_dataset(EXAMPLES, tmp_path / "ray_shards", model, kbps=2.0, workers=2, engine="ray")
        again = codes_by_id(tmp_path / "ray_shards")
        assert again.keys() == serial.keys() and all(np.array_equal(again[u], serial[u]) for u in serial)
    finally:
        ray.shutdown()


# ---- eval reads archives too -------------------------------------------------------------------
def test_eval_plans_the_same_clips_from_shards_as_from_the_folder(tmp_path, shards):
    def plan(data: Path) -> list[tuple[str, str, int]]:
        tasks, _ = load_tasks(data, discover_clips(data, tmp_path / "out"), None, None, lambda m: None, 16000)
        return [(t.name, t.speaker, t.wav.size) for t in tasks]

    assert plan(shards) == plan(EXAMPLES)
