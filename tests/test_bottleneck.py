"""The bottleneck report (`benchmarks/bottleneck.py`) on two real example clips with a tiny model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from telucodec.config import get_config
from telucodec.model.codec import Codec

ROOT = Path(__file__).resolve().parents[1]


def test_bottleneck_report_figures_are_finite_and_in_range(tmp_path):
    cfg = get_config("tiny")
    cfg = replace(cfg, model=replace(cfg.model, decoder="spectral", spectral_layers=2, spectral_n_fft=640,
                                     amplitude="rms", level_match=True))
    model_dir = Codec(cfg).save_pretrained(tmp_path / "model")
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bottleneck.py"), "--model", str(model_dir),
                           "--data_dir", str(ROOT / "examples" / "te_cv"), "--clips", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "bottleneck.json").read_text())
    rows = report["rows"]
    assert report["clips"] == 2
    assert [f"n_q {i}" for i in range(1, cfg.quantizer.n_q + 1)] == [r for r in rows if r.startswith("n_q")]
    for name in ("unquantized", "decoded_mag+ref_phase", "ref_mag+decoded_phase", "griffin_lim(ref_mag) 512/128",
                 "griffin_lim(ref_mag) 640/320 (decoder's)", "head_mag+ref_phase 640/320", "ref_mag+head_phase 640/320",
                 "head_mag+griffin_lim(head_phase, 16) 640/320"):
        assert name in rows, name
    for name, figures in rows.items():
        assert set(figures) == {"pesq_wb", "stoi", "mel_distance", "lsd_0-1k", "lsd_1-2k", "lsd_2-4k", "lsd_4-8k"}
        assert all(math.isfinite(v) for v in figures.values()), (name, figures)
        assert 1.0 <= figures["pesq_wb"] <= 4.65 and -1.0 <= figures["stoi"] <= 1.0, (name, figures)
        assert all(figures[k] >= 0 for k in figures if k.startswith("lsd") or k == "mel_distance"), (name, figures)
    # the oracles are what they claim: the true magnitude with Griffin-Lim phase is near-transparent,
    # an untrained decoder is not, and its magnitude with the true phase moves toward the reference
    oracle = rows["griffin_lim(ref_mag) 512/128"]
    untrained = rows[f"n_q {cfg.quantizer.n_q}"]
    assert oracle["pesq_wb"] > 3.5 and oracle["pesq_wb"] > untrained["pesq_wb"] + 1.5
    assert oracle["lsd_1-2k"] < untrained["lsd_1-2k"]
    assert rows["ref_mag+decoded_phase"]["mel_distance"] < untrained["mel_distance"]
    assert rows["ref_mag+head_phase 640/320"]["mel_distance"] < untrained["mel_distance"]
    assert "| decoded |" in (out / "bottleneck.md").read_text()
