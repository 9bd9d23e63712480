#!/usr/bin/env python
"""Merge speech sets into one training manifest (absolute paths, speaker ids).

    python scripts/build_manifest.py DATA state/train_manifest.tsv

DATA is a folder of sets (dev_te, train_other, train_multi/...), each with a manifest.tsv
(`path` relative to the set, `speaker`); docs/training-log.md describes the ones used.

Speaker ids are prefixed with the set name so speakers never collide across sets. Validation
speakers are chosen with `--val_speakers` at training time (see docs/training-log.md).
"""

import csv
import sys
from pathlib import Path


def main(data_root: str, out: str) -> None:
    root = Path(data_root).resolve()
    rows = []
    for manifest in sorted(root.rglob("manifest.tsv")):
        set_name = manifest.parent.relative_to(root).as_posix().replace("/", "_")
        with manifest.open(newline="") as f:
            for r in csv.DictReader(f, delimiter="\t"):
                speaker = r.get("speaker") or Path(r["path"]).stem
                rows.append((str((manifest.parent / r["path"]).resolve()), f"{set_name}:{speaker}",
                             r.get("seconds", ""), r.get("license_if_known", "")))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["path", "speaker", "seconds", "license"])
        w.writerows(rows)
    print(f"{out}: {len(rows)} files, {sum(float(r[2] or 0) for r in rows) / 3600:.2f} h, "
          f"{len({r[1] for r in rows})} speakers")


if __name__ == "__main__":
    main(*sys.argv[1:3])
