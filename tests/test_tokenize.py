"""Dataset tokenization: round trip, resume, crash safety, sharding, workers, bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from telucodec.api import load_model
from telucodec.cli import main
from telucodec.config import get_config
from telucodec.deploy.tokenize import tokenize_dataset
from telucodec.errors import TelucodecError
from telucodec.formats import tokens
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec

ROOT = Path(__file__).resolve().parents[1]
SMALL_SHARDS = 4000  # bytes: with n_q 8 about 250 frames (5 s) per shard, so shards roll often


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return Codec(get_config("tiny")).eval().save_pretrained(tmp_path_factory.mktemp("tok_model") / "model")


@pytest.fixture(scope="module")
def model(model_dir) -> Codec:
    return load_model(model_dir)


@pytest.fixture(scope="module")
def examples(example_clips) -> Path:
    return example_clips[0].parents[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, examples, model) -> dict:
    """A plain serial run over the examples: what every other way of running must reproduce."""
    out = tmp_path_factory.mktemp("tok_ref") / "tokens"
    summary = tokenize_dataset(examples, out, model, kbps=2.0)
    return {"out": out, "summary": summary, "contents": _contents(out)}


def _contents(out: Path) -> dict[str, tuple]:
    """id -> (codes, index entry without its place on disk)."""
    reader = tokens.open(out)
    result = {}
    for utt in reader.ids():
        info = {k: v for k, v in reader.info(utt).items() if k not in ("shard", "offset")}
        result[utt] = (np.array(reader[utt]), json.dumps(info, sort_keys=True))
    reader.close()
    return result


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for utt in a:
        np.testing.assert_array_equal(a[utt][0], b[utt][0])
        assert a[utt][1] == b[utt][1]


def test_round_trip_tokenize_load_decode(reference, model, model_dir, examples, tmp_path, capsys):
    summary = reference["summary"]
    assert summary["tokenized"] == summary["utterances"] == 15 and summary["skipped"] == 0
    assert summary["n_q"] == 5 and len(summary["codebook_usage"]) == 5
    assert summary["hours"] == pytest.approx(sum(e[0].shape[1] for e in reference["contents"].values()) / 50 / 3600, rel=0.01)
    reader = tokens.open(reference["out"])
    assert len(reader) == 15 and "cv_ce579334/common_voice_te_43406780" in reader
    for utt in reader.ids()[::4]:
        info = reader.info(utt)
        codes = reader[utt]
        assert codes.dtype == np.uint16 and codes.shape == (5, info["frames"])
        assert set(info) >= {"id", "path", "duration", "num_samples", "frames", "n_q", "shard", "offset",
                             "sha256", "side_kind", "side"}
        expected = model.encode(load_audio(info["path"]), 16000, kbps=2.0)
        np.testing.assert_array_equal(codes, expected.codes.numpy())
        restored = tokens.codes_for(reference["out"], utt, model)
        assert torch.equal(model.decode(restored), model.decode(expected))

    # the CLI: tokenize, then decode one utterance straight from the tokens folder
    out = tmp_path / "cli_tokens"
    assert main(["tokenize", "--data_dir", str(examples), "--out", str(out), "--model", str(model_dir), "--kbps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "15 utterances" in printed and "codebook usage per quantizer: q0:" in printed
    _assert_same(_contents(out), reference["contents"])
    utt = "cv_9e9a356b/common_voice_te_42973999"
    assert main(["decode", "--tokens", str(out), "--id", utt, str(tmp_path / "x.wav"), "--model", str(model_dir)]) == 0
    wav, sr = sf.read(tmp_path / "x.wav", dtype="float32")
    expected = model.decode(tokens.codes_for(out, utt, model)).numpy()
    assert sr == 16000 and wav.shape == expected.shape
    assert np.abs(wav - np.clip(expected, -1, 1)).max() <= 1.0 / 32768 + 1e-6
    assert main(["decode", "--tokens", str(out), "--id", "nope", str(tmp_path / "y.wav"), "--model", str(model_dir)]) == 1


def test_shard_boundaries_and_resume(reference, model, examples, tmp_path):
    out = tmp_path / "tokens"
    first = tokenize_dataset(examples, out, model, kbps=2.0, shard_bytes=SMALL_SHARDS)
    shards = sorted(out.glob("codes-*.npy"))
    assert first["shards"] == len(shards) >= 5
    _assert_same(_contents(out), reference["contents"])
    reader = tokens.open(out)
    for shard in shards:  # each shard is a whole .npy, its utterances back to back
        arr = np.load(shard)
        entries = sorted((e for e in reader.entries() if e["shard"] == shard.name), key=lambda e: e["offset"])
        assert [e["offset"] for e in entries] == list(np.cumsum([0] + [e["frames"] for e in entries[:-1]]))
        assert arr.shape == (5, sum(e["frames"] for e in entries)) and arr.dtype == np.uint16

    # a rerun does nothing; deleting a shard re-tokenizes exactly its utterances
    assert tokenize_dataset(examples, out, model, kbps=2.0, shard_bytes=SMALL_SHARDS)["tokenized"] == 0
    lost = [e["id"] for e in reader.entries() if e["shard"] in (shards[1].name, shards[-1].name)]
    shards[1].unlink()
    shards[-1].unlink()  # its name must not be reused: stale index lines still mention it
    again = tokenize_dataset(examples, out, model, kbps=2.0, shard_bytes=SMALL_SHARDS)
    assert again["tokenized"] == len(lost) and again["already_done"] == 15 - len(lost)
    assert not (out / shards[-1].name).exists()
    _assert_same(_contents(out), reference["contents"])

    # a different model or bitrate is refused instead of mixing codes
    with pytest.raises(TelucodecError, match="n_q"):
        tokenize_dataset(examples, out, model, kbps=1.0)


def test_kill_9_leaves_a_readable_folder_and_resumes(reference, model, model_dir, examples, tmp_path):
    data = tmp_path / "data"  # the examples three times over, under distinct ids
    for rep in range(3):
        for clip in sorted(examples.rglob("*.flac")):
            link = data / f"rep{rep}" / clip.relative_to(examples)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(clip)
    out = tmp_path / "tokens"
    script = (f"import torch; torch.set_num_threads(1)\n"
              f"from telucodec.api import load_model\nfrom telucodec.deploy.tokenize import tokenize_dataset\n"
              f"tokenize_dataset({str(data)!r}, {str(out)!r}, load_model({str(model_dir)!r}), kbps=2.0, "
              f"shard_bytes={SMALL_SHARDS})\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        if (out / "index.jsonl").is_file() and (out / "index.jsonl").stat().st_size > 0:
            break
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no cleanup of any kind
    assert proc.wait() == -9, "the run ended before it could be killed"
    half = _contents(out)  # the index only points into complete shards
    assert 0 < len(half) < 45
    for utt, (codes, _) in half.items():
        np.testing.assert_array_equal(codes, reference["contents"][utt.split("/", 1)[1]][0])
    summary = tokenize_dataset(data, out, model, kbps=2.0, shard_bytes=SMALL_SHARDS)
    assert summary["already_done"] == len(half) and summary["utterances"] == 45
    assert not list(out.glob(".*.tmp"))
    full = _contents(out)
    for utt, (codes, _) in full.items():
        np.testing.assert_array_equal(codes, reference["contents"][utt.split("/", 1)[1]][0])


def test_torn_index_line_and_stale_temp_are_repaired(reference, model, examples, tmp_path):
    out = tmp_path / "tokens"
    tokenize_dataset(examples, out, model, kbps=2.0, shard_bytes=SMALL_SHARDS)
    index = out / "index.jsonl"
    lines = index.read_bytes().splitlines(keepends=True)
    index.write_bytes(b"".join(lines[:-3]) + lines[-3][:40])  # a crash mid-append
    (out / ".codes-00000-of-00001-00099.npy.tmp").write_bytes(b"half a shard")
    assert len(tokens.open(out)) == 12
    summary = tokenize_dataset(examples, out, model, kbps=2.0, shard_bytes=SMALL_SHARDS)
    assert summary["tokenized"] == 3 and summary["utterances"] == 15
    assert not list(out.glob(".*.tmp"))
    _assert_same(_contents(out), reference["contents"])


def test_two_shard_jobs_equal_the_whole(reference, model, examples, tmp_path):
    out = tmp_path / "tokens"
    a = tokenize_dataset(examples, out, model, kbps=2.0, shard=(0, 2))
    b = tokenize_dataset(examples, out, model, kbps=2.0, shard=(1, 2))
    assert (a["tokenized"], b["tokenized"]) == (8, 7)
    names = {p.name.rsplit("-", 1)[0] for p in out.glob("codes-*.npy")}
    assert names == {"codes-00000-of-00002", "codes-00001-of-00002"}
    _assert_same(_contents(out), reference["contents"])


def test_workers_equal_serial(reference, model, examples, tmp_path):
    out = tmp_path / "tokens"
    summary = tokenize_dataset(examples, out, model, kbps=2.0, workers=2)
    assert summary["tokenized"] == 15
    _assert_same(_contents(out), reference["contents"])


def test_bad_files_are_listed_in_skipped_tsv(model, examples, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    clips = sorted(examples.rglob("*.flac"))[:2]
    for clip in clips:
        (data / clip.name).symlink_to(clip)
    (data / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    (data / "truncated.flac").write_bytes(clips[0].read_bytes()[:3000])
    sf.write(data / f"{clips[1].stem}.wav", load_audio(clips[1])[:8000], 16000)  # same id as a .flac
    out = tmp_path / "tokens"
    summary = tokenize_dataset(data, out, model)
    assert summary["tokenized"] == 2 and summary["skipped"] == 3
    rows = [line.split("\t") for line in (out / "skipped.tsv").read_text().splitlines()]
    assert rows[0] == ["path", "reason", "id"]
    assert sorted(r[2] for r in rows[1:]) == sorted(["corrupt", "truncated", clips[1].stem])
    assert all(os.path.isabs(r[0]) and r[1] for r in rows[1:])
    assert "duplicate id" in {r[2]: r[1] for r in rows[1:]}[clips[1].stem]
    assert sorted(tokens.open(out).ids()) == sorted(c.stem for c in clips)
    rerun = tokenize_dataset(data, out, model)  # not retried, not listed twice
    assert rerun["tokenized"] == 0 and rerun["skipped"] == 0
    assert len((out / "skipped.tsv").read_text().splitlines()) == 4
