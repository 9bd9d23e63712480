"""Issue 33 item 12: `telucodec eval` skips the clips training rejects (silent, too short) instead
of averaging them into its tables, and says which it skipped; the metrics that divide by a
reference level never put inf into a table, whatever the input."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from telucodec.cli import main
from telucodec.config import get_config
from telucodec.evaluation import metrics
from telucodec.evaluation.evaluate import evaluate, summarize
from telucodec.evaluation.plan import System
from telucodec.formats.audio import load_audio, write_wav
from telucodec.formats.dataset import MIN_SECONDS, SILENCE_RMS
from telucodec.model.codec import Codec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "te_cv"
CLIPS = ("cv_9e9a356b/common_voice_te_42973999.flac", "cv_ce579334/common_voice_te_43406783.flac")
RATE = 16000
TABLE_KEYS = ("systems", "per_speaker", "clips", "duration_s")


@pytest.fixture(scope="module")
def codec() -> Codec:
    """An untrained tiny model: deterministic, fast, and bad enough that any extra clip moves its means."""
    import torch

    torch.manual_seed(0)
    return Codec(get_config("tiny")).eval()


@pytest.fixture(scope="module")
def speech() -> dict[str, np.ndarray]:
    """One second of each example clip, at 16 kHz."""
    return {rel: load_audio(EXAMPLES / rel, RATE)[RATE // 2: RATE // 2 + RATE] for rel in CLIPS}


def _write_clean(root: Path, speech: dict[str, np.ndarray]) -> None:
    for rel, wav in speech.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_wav((root / rel).with_suffix(".wav"), wav, RATE)


def _run(root: Path, out: Path, codec: Codec) -> dict:
    return evaluate(root, out, model=codec, kbps=(1.5,), baselines=(), report_clips=0, progress=False,
                    log=lambda _line: None)


@pytest.fixture(scope="module")
def clean_run(codec: Codec, speech: dict[str, np.ndarray], tmp_path_factory) -> tuple[dict, str]:
    """results.json and results.md of the two speech clips alone."""
    root = tmp_path_factory.mktemp("clean")
    _write_clean(root / "data", speech)
    results = _run(root / "data", root / "out", codec)
    return results, (root / "out" / "results.md").read_text()


# A junk clip: (kind, seconds, level, sample rate, file type, where it sits)
JUNK = st.tuples(
    st.sampled_from(["zeros", "near_silent", "short_speech", "short_zeros"]),
    st.floats(0.0, 3.0),
    st.floats(0.0, 0.7),
    st.sampled_from([8000, 16000, 22050, 48000]),
    st.sampled_from([("WAV", "PCM_16", ".wav"), ("WAV", "FLOAT", ".wav"), ("FLAC", "PCM_16", ".flac")]),
    st.sampled_from(["cv_9e9a356b", "cv_ce579334", "junk_speaker", ""]),
)


def _junk_audio(kind: str, seconds: float, level: float, rate: int, speech: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Audio that training's `load_clip` refuses: silent (RMS under SILENCE_RMS, with margin for
    16-bit rounding and resampling) or shorter than MIN_SECONDS."""
    if kind in ("short_speech", "short_zeros"):
        n = max(1, int(seconds / 3.0 * (MIN_SECONDS - 0.02) * rate))
        if kind == "short_zeros":
            return np.zeros(n, dtype=np.float32)
        import soxr

        return soxr.resample(speech, RATE, rate)[:n].astype(np.float32)
    n = max(int(MIN_SECONDS * rate) + 1, int((0.3 + seconds) * rate))
    if kind == "zeros":
        return np.zeros(n, dtype=np.float32)
    noise = rng.standard_normal(n)
    return (noise / np.sqrt(np.mean(noise ** 2)) * level * SILENCE_RMS).astype(np.float32)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=(Phase.explicit, Phase.reuse, Phase.generate))  # each case is an eval run: no shrinking
@given(junk=st.lists(JUNK, min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_silent_and_too_short_clips_change_no_table_figure_and_are_listed(
        junk, seed, codec: Codec, speech: dict[str, np.ndarray], clean_run: tuple[dict, str]) -> None:
    clean_results, clean_md = clean_run
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        _write_clean(root, speech)
        names = []
        for n, (kind, seconds, level, rate, (fmt, subtype, suffix), folder) in enumerate(junk):
            path = root / folder / f"junk{n}_{kind}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, _junk_audio(kind, seconds, level, rate, speech[CLIPS[0]], rng), rate,
                      audio_format=fmt, subtype=subtype)
            names.append(str(path))
        out = Path(tmp) / "out"
        results = _run(root, out, codec)
        for key in TABLE_KEYS:
            assert results[key] == clean_results[key], key
        assert sorted(s["path"] for s in results["skipped"]) == sorted(names)
        assert results["clips_skipped"] == len(names)
        assert all(s["reason"].startswith(("silent", "too short", "no audio samples")) for s in results["skipped"])
        md = (out / "results.md").read_text()
        page = (out / "report.html").read_text()
        assert f"Skipped {len(names)} clip" in md and f"Skipped {len(names)} clip" in page
        for name in names:
            assert Path(name).name in md and Path(name).name in page
        assert md.split("\nSkipped")[0] == clean_md  # every table line as without the junk


def test_cli_prints_the_skipped_clips_with_the_table(codec: Codec, speech: dict[str, np.ndarray],
                                                      tmp_path: Path, capsys) -> None:
    _write_clean(tmp_path / "data", speech)
    write_wav(tmp_path / "data" / "cv_ce579334" / "silence.wav", np.zeros(RATE, dtype=np.float32), RATE)
    model_dir = codec.save_pretrained(tmp_path / "model")
    assert main(["eval", "--data_dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--model",
                 str(model_dir), "--kbps", "1.5", "--baselines", "none", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Skipped 1 clip" in printed and "silence.wav: silent" in printed
    assert json.loads((tmp_path / "out" / "results.json").read_text())["clips_skipped"] == 1


# ---- the metrics that divide by a level, on any input -------------------------------------------

SIGNAL = st.tuples(st.integers(1, 6000), st.sampled_from([0.0, 1e-12, 1e-7, 1e-5, 1e-3, 0.3, 1.0]),
                   st.sampled_from(["noise", "spike", "sine", "dc"]))


def _signal(spec: tuple[int, float, str], n: int, rng: np.random.Generator) -> np.ndarray:
    _, level, shape = spec
    if shape == "noise":
        x = rng.standard_normal(n)
    elif shape == "spike":
        x = np.zeros(n)
        x[rng.integers(0, n)] = 1.0
    elif shape == "sine":
        x = np.sin(2 * np.pi * 200 * np.arange(n) / RATE)
    else:
        x = np.ones(n)
    return (level * x).astype(np.float32)


@settings(max_examples=200, deadline=None)
@given(ref=SIGNAL, deg=SIGNAL, rate=st.sampled_from([8000, 16000, 24000]), seed=st.integers(0, 2**16))
def test_level_dividing_metrics_are_finite_or_an_unscored_nan_on_any_input(ref, deg, rate, seed) -> None:
    """RMS ratio, SI-SDR, SNR and mel distance are always finite; PESQ and STOI are finite or nan
    (counted as unscored), never inf and never an exception, down to one-sample and silent inputs."""
    rng = np.random.default_rng(seed)
    n = ref[0]
    scores = metrics.score_all(_signal(ref, n, rng), _signal(deg, deg[0], rng), rate)
    for key in ("rms_ratio", "si_sdr_db", "snr_db", "mel_distance"):
        assert math.isfinite(scores[key]), (key, scores[key])
    for key in ("pesq_wb", "stoi"):
        assert not math.isinf(scores[key]), (key, scores[key])
    assert math.isnan(scores["stoi"]) or -1.0 <= scores["stoi"] <= 1.0
    rows = [{"system": "x", "setting": "1", "duration_s": n / rate, "bytes": 10, "clipped": 0, **scores}]
    entry = summarize(rows, [System("x", "1", 1.0)])[0]
    assert not any(isinstance(v, float) and math.isinf(v) for v in entry.values()), entry


def test_eval_never_scores_a_reference_whose_level_the_ratios_would_divide_by(
        codec: Codec, speech: dict[str, np.ndarray], clean_run: tuple[dict, str], tmp_path: Path) -> None:
    """The issue's case: one digitally silent clip among speech made the overall RMS ratio 233."""
    _write_clean(tmp_path / "data", speech)
    write_wav(tmp_path / "data" / "cv_ce579334" / "zeros.wav", np.zeros(2 * RATE, dtype=np.float32), RATE)
    results = _run(tmp_path / "data", tmp_path / "out", codec)
    assert results["systems"] == clean_run[0]["systems"], results["systems"]

