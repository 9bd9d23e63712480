#!/usr/bin/env python
"""Fit a model's context entropy tables (`telucodec/formats/context_model.py`) on its own codes.

    nice -n 5 .venv/bin/python scripts/fit_entropy_tables.py telucodec/pretrained/telugu-v5 \
        --data_dir state/train_manifest.tsv \
        --val_speakers dev_te:cv_ce579334,dev_te:temd_SPKF05,dev_te:temd_SPKM09,dev_te:temd_SPKF21 \
        --out state/entropy/telugu-v5-ctx

Encodes every clip of the manifest once with the model (all its codebooks; one thread; the codes
are cached under --cache, keyed by the model id and the file list, so a second run costs seconds),
fits the tables on the training speakers' codes only, and prints, for the held-out speakers, the
bytes per second of real .tcd files at 1.5 / 3 / 6 kbps (and every stage count asked for with
--n_q) coded raw, with the per-file static ANS and with the context model (the file the writer
picks: the smallest). `--out` writes a copy of the model folder with `entropy_tables.safetensors`
added (its model id changes: the tables are part of it); without --out only the figures are
printed. `--in_place` adds the tables to MODEL_DIR itself (a shipped model's id would change).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import numpy as np
import torch

from telucodec.formats.bitstream import describe, read_bitstream, write_bitstream, write_smallest
from telucodec.formats.codes import Codes
from telucodec.formats.context_fit import fit_tables, stage_cost_bits
from telucodec.formats.context_tables import TABLES_FILE, ContextTables
from telucodec.formats.dataset import discover, load_item
from telucodec.model.loading import load_model, resolve

DEFAULT_CACHE = Path(__file__).resolve().parents[1] / "state" / "entropy"


def encode_corpus(model_dir: str, data_dir: str, cache: Path) -> dict[str, np.ndarray | list]:
    """{"codes": int16 [n_q, total F], "lengths": [files], "speakers": [files], "paths": [files]},
    every clip of `data_dir` encoded at the model's full n_q; cached in `cache`."""
    model = load_model(model_dir)
    items = discover(data_dir)
    key = hashlib.sha256(json.dumps([model.model_id] + [str(i.path) + i.member for i in items]).encode())
    path = cache / f"codes-{model.model_id}-{key.hexdigest()[:12]}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        return {"codes": z["codes"], "lengths": z["lengths"], "speakers": list(z["speakers"]),
                "paths": list(z["paths"])}
    cache.mkdir(parents=True, exist_ok=True)
    rows, lengths, speakers, paths = [], [], [], []
    t0 = time.perf_counter()
    for n, item in enumerate(items):
        try:
            wav = load_item(item, model.sample_rate)
        except Exception as exc:  # an unreadable clip is left out, and said
            print(f"skipped {item.path}: {exc}", file=sys.stderr)
            continue
        if wav.size == 0:
            continue
        codes = model.encode(wav, model.sample_rate).codes.numpy().astype(np.int16)
        rows.append(codes)
        lengths.append(codes.shape[1])
        speakers.append(item.speaker)
        paths.append(str(item.path) + (f"::{item.member}" if item.member else ""))
        if n % 100 == 0:
            print(f"encoded {n + 1}/{len(items)} clips ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    out = {"codes": np.concatenate(rows, axis=1), "lengths": np.asarray(lengths, dtype=np.int64),
           "speakers": speakers, "paths": paths}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, codes=out["codes"], lengths=out["lengths"], speakers=np.asarray(speakers),
             paths=np.asarray(paths))
    tmp.replace(path)
    return out


def split_clips(corpus: dict, val_speakers: set[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training clips, held-out clips), each [n_q, F_i] int64, split by speaker."""
    ends = np.cumsum(corpus["lengths"])
    clips = np.split(corpus["codes"].astype(np.int64), ends[:-1], axis=1)
    train = [c for c, s in zip(clips, corpus["speakers"]) if s not in val_speakers]
    held = [c for c, s in zip(clips, corpus["speakers"]) if s in val_speakers]
    return train, held


def measure(clips: list[np.ndarray], tables: ContextTables, n_qs: list[int], model_id: str,
            hop: int, sample_rate: int, frame_rate: int, bits: list[int]) -> list[dict]:
    """Bytes per second of real .tcd files of `clips` at each n_q: plain, static ANS (the smaller
    of plain and static ANS: what the writer picked before context coding), context, and what
    `write_smallest` picks now; plus the ideal context code length."""
    seconds = sum(c.shape[1] for c in clips) * hop / sample_rate
    rows = []
    for n_q in n_qs:
        total = {"plain": 0, "static_ans": 0, "context": 0, "smallest": 0}
        picked = {"plain": 0, "static_ans": 0, "context": 0}
        for c in clips:
            codes = Codes(codes=torch.from_numpy(c[:n_q].copy()), num_samples=c.shape[1] * hop, model_id=model_id,
                          sample_rate=sample_rate, frame_rate=frame_rate, codebook_bits=max(bits[:n_q]),
                          stage_bits=tuple(bits[:n_q]) if len(set(bits[:n_q])) > 1 else ())
            plain = write_bitstream(codes)
            ans = write_bitstream(codes, entropy=True)
            ctx = write_bitstream(codes, tables=tables)
            best, _, _ = write_smallest(codes, tables)
            assert torch.equal(read_bitstream(ctx, tables=tables).codes, codes.codes)
            total["plain"] += len(plain)
            total["static_ans"] += min(len(plain), len(ans))
            total["context"] += len(ctx)
            total["smallest"] += len(best)
            picked[describe(best)["coding"]] += 1
        ideal = stage_cost_bits(tables, clips, n_q).sum() / 8 / seconds
        rows.append({"n_q": n_q, "kbps": sum(bits[:n_q]) * frame_rate / 1000, "clips": len(clips), "seconds": seconds,
                     **{f"{k}_Bps": v / seconds for k, v in total.items()}, "ideal_context_Bps": ideal,
                     "saving_vs_plain": 1 - total["smallest"] / total["plain"],
                     "saving_vs_static_ans": 1 - total["smallest"] / total["static_ans"], "picked": picked})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("model_dir", help="model folder (or a shipped model's name)")
    p.add_argument("--data_dir", required=True, help="folder, manifest .tsv, shards ... (as training takes)")
    p.add_argument("--val_speakers", default="", help="held-out speakers (comma-separated): measured, never fitted")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="where the encoded codes are cached")
    p.add_argument("--encode_only", action="store_true", help="only encode and cache the codes")
    p.add_argument("--prev_classes_first", type=int, default=64, help="stage 0: classes of the previous frame's code")
    p.add_argument("--prev_classes", type=int, default=16, help="later stages: classes of the previous frame's code")
    p.add_argument("--stage_classes", type=int, default=16, help="classes of the previous stage's code")
    p.add_argument("--contexts", type=int, default=32, help="contexts per later stage (class pairs merged)")
    p.add_argument("--n_q", default="3,6,12", help="stage counts to measure (comma-separated)")
    p.add_argument("--out", help="write a copy of the model folder with the tables added here")
    p.add_argument("--in_place", action="store_true", help="add the tables to MODEL_DIR itself (its model id changes)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    corpus = encode_corpus(a.model_dir, a.data_dir, Path(a.cache))
    print(f"{corpus['codes'].shape[1]} frames in {len(corpus['lengths'])} clips ({time.perf_counter() - t0:.0f} s)")
    if a.encode_only:
        return 0
    model = load_model(a.model_dir)
    val = {s for s in a.val_speakers.split(",") if s}
    missing = val - set(corpus["speakers"])
    if missing:
        sys.exit(f"--val_speakers: not in {a.data_dir}: {', '.join(sorted(missing))}")
    train, held = split_clips(corpus, val)
    t0 = time.perf_counter()
    tables = fit_tables(train, model.stage_bits, a.prev_classes_first, a.prev_classes, a.stage_classes, a.contexts)
    print(f"fitted on {len(train)} clips of the training speakers in {time.perf_counter() - t0:.0f} s: "
          f"{tables.nbytes() / 1024:.0f} KiB of tables for stages of {tables.stage_bits} bits, digest {tables.digest[:16]}")
    report = {"model": str(a.model_dir), "tables_bytes": tables.nbytes(), "digest": tables.digest, "rates": []}
    if held:
        kw = dict(hop=model.hop, sample_rate=model.sample_rate, frame_rate=model.frame_rate, bits=model.stage_bits)
        rows = measure(held, tables, [int(x) for x in a.n_q.split(",")], model.model_id, **kw)
        report["rates"] = rows
        print(f"held-out speakers: {len(held)} clips, {rows[0]['seconds']:.0f} s; bytes per second of .tcd files")
        print(f"{'kbps':>5} {'n_q':>3} {'plain':>7} {'static':>7} {'context':>7} {'written':>7} {'ideal':>7} "
              f"{'vs plain':>8} {'vs static':>9}  written as")
        for r in rows:
            print(f"{r['kbps']:5g} {r['n_q']:3d} {r['plain_Bps']:7.1f} {r['static_ans_Bps']:7.1f} {r['context_Bps']:7.1f} "
                  f"{r['smallest_Bps']:7.1f} {r['ideal_context_Bps']:7.1f} {100 * r['saving_vs_plain']:7.1f}% "
                  f"{100 * r['saving_vs_static_ans']:8.1f}%  {r['picked']}")
    target = Path(a.model_dir) if a.in_place else Path(a.out) if a.out else None
    if target is not None:
        source = resolve(a.model_dir)
        if not a.in_place:
            if target.exists():
                sys.exit(f"--out {target}: already exists; choose another folder")
            shutil.copytree(source, target)
        tables.save(target / TABLES_FILE)
        with_tables = load_model(target)
        report["model_id"] = with_tables.model_id
        print(f"wrote {target / TABLES_FILE}: model id {model.model_id} -> {with_tables.model_id}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
