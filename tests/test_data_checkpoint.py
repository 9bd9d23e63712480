"""Data discovery/splitting and checkpoint safety."""

from __future__ import annotations

import errno
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from telucodec.errors import ModelError, TelucodecError
from telucodec.formats.dataset import AudioItem, Clip, discover, split_validation
from telucodec.model.loading import load_checkpoint
from telucodec.train import checkpoint
from telucodec.train.checkpoint import atomic_torch_save
from telucodec.train.crops import CropDataset


def test_discover_recursive_and_manifest(tmp_path, example_clips):
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(example_clips[0], tmp_path / "a" / "x.flac")
    shutil.copy(example_clips[1], tmp_path / "a" / "b" / "y.FLAC")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a", target_is_directory=True)  # a loop
    found = discover(tmp_path)
    assert sorted(p.path.name for p in found) == ["x.flac", "y.FLAC"]
    (tmp_path / "list.tsv").write_text("path\tspeaker\na/x.flac\tS1\na/b/y.FLAC\tS2\n")
    items = discover(tmp_path / "list.tsv")
    assert [(i.path.name, i.speaker) for i in items] == [("x.flac", "S1"), ("y.FLAC", "S2")]
    with pytest.raises(TelucodecError, match="no such folder"):
        discover(tmp_path / "missing")


def test_split_holds_out_whole_speakers_deterministically():
    items = [AudioItem(Path(f"/d/{s}_{i}.wav"), s) for s in "ABCDEFGH" for i in range(5)]
    train, val = split_validation(items, 0.25, ())
    assert {i.speaker for i in train}.isdisjoint({i.speaker for i in val})
    assert 5 <= len(val) <= 15
    assert split_validation(items, 0.25, ()) == (train, val)
    train2, val2 = split_validation(items, 0.1, ("C", "D"))
    assert {i.speaker for i in val2} == {"C", "D"}


def test_split_by_file_without_speakers():
    items = [AudioItem(Path(f"/d/{i}.wav")) for i in range(20)]
    train, val = split_validation(items, 0.1, ())
    assert len(val) == 2 and len(train) == 18


def test_crops_are_deterministic_per_epoch_and_index():
    clips = [Clip(Path("a"), "", np.random.default_rng(0).standard_normal(40000).astype(np.float32) * 0.1)]
    ds = CropDataset(clips, 16000, 8, seed=3)
    a = ds[2]
    assert torch.equal(a, ds[2]) and a.shape == (1, 16000)
    ds.set_epoch(1)
    assert not torch.equal(a, ds[2])


def test_atomic_save_survives_disk_full(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_torch_save({"format": 1, "model": {"w": torch.ones(3)}, "config": {}}, path)
    before = path.read_bytes()

    def full_disk(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(TelucodecError, match="disk full.*previous one is intact"):
        atomic_torch_save({"format": 1, "model": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(_Payload.target),))


def test_pickle_payload_is_refused_without_running(tmp_path):
    _Payload.target = str(tmp_path / "pwned")
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"format": 1, "model": {}, "x": _Payload()}, f)
    with pytest.raises(ModelError, match="refused"):
        load_checkpoint(bad)
    assert not (tmp_path / "pwned").exists()


def test_non_checkpoint_files_are_refused(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"hello": 1}, tmp_path / "y.pt")
    with pytest.raises(ModelError, match="not a telucodec training checkpoint"):
        load_checkpoint(tmp_path / "y.pt")
    sf.write(tmp_path / "z.wav", np.zeros(10, dtype=np.float32), 16000)
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "z.wav")
