"""The shipped Telugu model: loads by default, matches its config, and does not regress.

The floors were measured when the model was shipped (docs/training-log.md, session 12: telugu-v6
scored PESQ-WB 2.88 and 2.88, STOI 0.919 and 0.893 on these two clips of a held-out speaker, each
file within 6 kbps actual; telugu-v5 had 2.73 and 2.82 at 6 kbps nominal) and sit 0.1 PESQ / 0.05
STOI below, so a broken load, a wrong amplitude path or a damaged weight file fails while
run-to-run float noise does not. telugu-v6 codes the level itself (amplitude `none`, Lyra's
design): it delivered RMS ratios 0.90 and 0.95 on these clips at 6 kbps, so the test holds it to
the measured level +-0.08.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import EXAMPLES

import telucodec
from telucodec import api
from telucodec.evaluation import metrics
from telucodec.formats.audio import load_audio
from telucodec.model.codec import Codec

CLIPS = ("cv_ce579334/common_voice_te_43406779.flac", "cv_ce579334/common_voice_te_43406780.flac")
PESQ_FLOOR = {CLIPS[0]: 2.78, CLIPS[1]: 2.78}
STOI_FLOOR = {CLIPS[0]: 0.87, CLIPS[1]: 0.84}
LEVEL = {CLIPS[0]: 0.902, CLIPS[1]: 0.954}  # RMS ratio at 6 kbps, measured 2026-12-07
# Quality must rise with bitrate: telugu-v6 scored PESQ-WB 2.879 / 2.165 and 2.877 / 2.067 at
# 6 / 1.5 kbps on these clips (a rise of 0.714 and 0.810, measured 2026-12-07); floors 0.04 below.
RISE_FLOOR = {CLIPS[0]: 0.67, CLIPS[1]: 0.77}


@pytest.fixture(scope="module")
def shipped() -> Codec:
    return telucodec.load_model()


def test_default_model_loads_and_matches_its_config(shipped):
    folder = api.default_model_dir()
    config = json.loads((folder / "config.json").read_text())
    assert shipped.config.to_dict() == Codec.from_pretrained(folder).config.to_dict()
    assert config["model"]["amplitude"] == shipped.amplitude.kind == "none" and config["model"]["causal"]
    assert (folder / "LICENSE").is_file() and "Lyra v2" in (folder / "NOTICE").read_text()
    assert (folder / "MODEL_CARD.md").read_text().count(shipped.model_id) == 1
    assert (folder / "model.safetensors").stat().st_size < 20e6


@pytest.mark.parametrize("clip", CLIPS)
def test_shipped_model_stays_above_its_quality_floor(shipped, clip):
    wav = load_audio(EXAMPLES / clip)
    out, sr = telucodec.decompress(telucodec.compress(wav, 16000, model=shipped, kbps=6), model=shipped)
    assert sr == 16000 and out.shape == wav.shape
    out = np.clip(out, -1, 1)
    assert metrics.pesq_wb(wav, out) > PESQ_FLOOR[clip]
    assert metrics.stoi(wav, out) > STOI_FLOOR[clip]
    assert abs(metrics.rms_ratio(wav, out) - LEVEL[clip]) < 0.08


@pytest.mark.parametrize("clip", CLIPS)
def test_shipped_model_quality_rises_with_bitrate(shipped, clip):
    wav = load_audio(EXAMPLES / clip)
    pesq = {}
    for kbps in (1.5, 6):
        out, _ = telucodec.decompress(telucodec.compress(wav, 16000, model=shipped, kbps=kbps), model=shipped)
        pesq[kbps] = metrics.pesq_wb(wav, np.clip(out, -1, 1))
    assert pesq[6] > pesq[1.5] + RISE_FLOOR[clip], pesq


@pytest.mark.parametrize("old_name", ["telugu-v2", "telugu-v3", "telugu-v4", "telugu-v5"])
def test_older_bitstreams_are_refused_by_the_default_with_the_model_they_need(shipped, old_name):
    """telugu-v6 replaced telugu-v5 (which replaced v4, v3 and v2) as the default; the older models
    stay shipped, so their files decode with --model NAME and the default refuses them by that name."""
    from telucodec.errors import BitstreamError

    assert api.default_model_dir().name == "telugu-v6"
    wav = load_audio(EXAMPLES / CLIPS[0])[:32000]
    old = telucodec.load_model(old_name)
    data = telucodec.compress(wav, 16000, model=old, kbps=3)
    with pytest.raises(BitstreamError, match=old_name):
        telucodec.decompress(data, model=shipped)
    out, sr = telucodec.decompress(data, model=old)
    assert sr == 16000 and out.shape == wav.shape
