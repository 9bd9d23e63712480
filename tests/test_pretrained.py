"""The shipped Telugu model: loads by default, matches its config, and does not regress.

The floors were measured when the model was shipped (docs/training-log.md, session 13: telugu-v7
scored PESQ-WB 3.46 and 3.32, STOI 0.921 and 0.888 on these two clips of a held-out speaker, each
file within 6 kbps actual; telugu-v6 had 2.88 and 2.88) and sit 0.1 PESQ / 0.05 STOI below, so a
broken load, a wrong amplitude path or a damaged weight file fails while run-to-run float noise
does not. telugu-v7 sends each second's level and matches it at decode (amplitude `rms`,
`level_match`): it delivered RMS ratios 0.99 and 0.98 on these clips at 6 kbps, and the test holds
it to the 0.9-1.1 promise.
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
PESQ_FLOOR = {CLIPS[0]: 3.35, CLIPS[1]: 3.22}
STOI_FLOOR = {CLIPS[0]: 0.87, CLIPS[1]: 0.83}
# Quality must rise with bitrate: telugu-v7 scored PESQ-WB 3.464 / 2.434 and 3.323 / 2.171 at
# 6 / 1.5 kbps on these clips (a rise of 1.030 and 1.152, measured 2026-12-07); floors 0.04 below.
RISE_FLOOR = {CLIPS[0]: 0.99, CLIPS[1]: 1.11}


@pytest.fixture(scope="module")
def shipped() -> Codec:
    return telucodec.load_model()


def test_default_model_loads_and_matches_its_config(shipped):
    folder = api.default_model_dir()
    config = json.loads((folder / "config.json").read_text())
    assert shipped.config.to_dict() == Codec.from_pretrained(folder).config.to_dict()
    assert config["model"]["amplitude"] == shipped.amplitude.kind == "rms" and config["model"]["causal"]
    assert config["model"]["level_match"] is True
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
    assert 0.9 <= metrics.rms_ratio(wav, out) <= 1.1


@pytest.mark.parametrize("clip", CLIPS)
def test_shipped_model_quality_rises_with_bitrate(shipped, clip):
    wav = load_audio(EXAMPLES / clip)
    pesq = {}
    for kbps in (1.5, 6):
        out, _ = telucodec.decompress(telucodec.compress(wav, 16000, model=shipped, kbps=kbps), model=shipped)
        pesq[kbps] = metrics.pesq_wb(wav, np.clip(out, -1, 1))
    assert pesq[6] > pesq[1.5] + RISE_FLOOR[clip], pesq


@pytest.mark.parametrize("old_name", ["telugu-v2", "telugu-v3", "telugu-v4", "telugu-v5", "telugu-v6"])
def test_older_bitstreams_are_refused_by_the_default_with_the_model_they_need(shipped, old_name):
    """telugu-v7 replaced telugu-v6 (which replaced v5, v4, v3 and v2) as the default; the older
    models stay shipped, so their files decode with --model NAME and the default refuses them by
    that name."""
    from telucodec.errors import BitstreamError

    assert api.default_model_dir().name == "telugu-v7"
    wav = load_audio(EXAMPLES / CLIPS[0])[:32000]
    old = telucodec.load_model(old_name)
    data = telucodec.compress(wav, 16000, model=old, kbps=3)
    with pytest.raises(BitstreamError, match=old_name):
        telucodec.decompress(data, model=shipped)
    out, sr = telucodec.decompress(data, model=old)
    assert sr == 16000 and out.shape == wav.shape
