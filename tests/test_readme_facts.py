"""Issue 33 item 13: what the README and the CLI's help say about the shipped model is what the
shipped model is.

Every sentence of README.md and of every `--help` text that names the shipped default model (and
no other shipped model) is searched for checkable claims: its name, amplitude strategy, whether it
sends level side info, `level_match`, quantizer shape, bitrates, sample rate, parameter count,
causality and latency. Each claim found is compared with `telucodec/pretrained/<default>/config.json`
and with the model `telucodec.load_model()` returns. The README must keep stating the core facts
(so the check cannot pass by having nothing to check).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import telucodec
from telucodec.cli import build_parser
from telucodec.model.loading import PRETRAINED_DIR, default_model_dir

ROOT = Path(__file__).resolve().parents[1]
NUM = r"(\d+(?:\.\d+)?)"
MUST_STATE = {"name", "amplitude", "level_side_info", "level_match", "quantizer", "kbps_range", "sample_rate"}


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    """The facts, from config.json and from the loaded model (which must agree)."""
    folder = default_model_dir()
    config = json.loads((folder / "config.json").read_text())
    model = telucodec.load_model()
    mc, qc = config["model"], config["quantizer"]
    assert (model.config.model.amplitude, model.config.model.level_match) == (mc["amplitude"], mc["level_match"])
    assert (model.sample_rate, model.config.quantizer.n_q) == (mc["sample_rate"], qc["n_q"])
    per_codebook = model.kbps_per_codebook()
    return {
        "name": folder.name,
        "amplitude": mc["amplitude"],
        "level_side_info": mc["amplitude"] != "none",
        "level_match": bool(mc["level_match"]),
        "quantizer": (qc["n_q"], qc["codebook_size"]),
        "kbps_range": (per_codebook, qc["n_q"] * per_codebook),
        "kbps_max": qc["n_q"] * per_codebook,
        "sample_rate": model.sample_rate,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "causal": bool(mc["causal"]),
        "latency_ms": 1000 * int(np.prod(mc["ratios"])) / model.sample_rate,
    }


def _other_models(name: str) -> list[str]:
    return [p.name for p in PRETRAINED_DIR.iterdir() if p.is_dir() and p.name != name]


def _subject(name: str) -> re.Pattern[str]:
    return re.compile(r"\bthe shipped (?:default |Telugu )?model\b|\bthe shipped one\b|\bshipped model's\b|"
                      rf"load_model\(\)|\b{re.escape(name)}\b", re.IGNORECASE)


def _sentences(text: str) -> Iterator[str]:
    """Sentences of markdown prose or help text; a table row is one, a code block is one."""
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip().splitlines()
        if lines and all(line.lstrip().startswith("|") for line in lines):  # a table: each row stands alone
            yield from (" ".join(line.split()) for line in lines)
            continue
        flat = " ".join(block.split())
        yield from (s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", flat) if s)


def _kbps_list(s: str) -> list[float]:
    return [float(v) for v in re.findall(NUM + r"(?=(?:(?:, | and | or | / )\d+(?:\.\d+)?)* kbps\b)", s)]


def _side_info(s: str) -> bool | None:
    if re.search(r"\b(?:sends|carries|has|sent) no (?:level )?(?:side info|level)|\bno (?:level )?side info", s):
        return False
    if re.search(r"level (?:travels|is carried|is sent) in the bitstream|\bside info\b|level is carried by", s):
        return True
    return None


# kind -> extractor(sentence) -> claimed value or None
EXTRACTORS: dict[str, Callable[[str], Any]] = {
    "name": lambda s: (m.group(1) if (m := re.search(r"telucodec/pretrained/([\w.-]+)`?.*?\bby default\b", s))
                       else None),
    "amplitude": lambda s: (next(g for g in m.groups() if g) if (m := re.search(
        r"amplitude[^.;]{0,20}?`(none|rms|lufs)`|`(none|rms|lufs)` amplitude|amplitude: (none|rms|lufs)", s))
        else None),
    "level_side_info": _side_info,
    "level_match": lambda s: (m.group(1) == "true" if (m := re.search(r"level_match:? `?(true|false)", s)) else None),
    "quantizer": lambda s: ((int(m.group(1)), int(m.group(2))) if (m := re.search(
        r"\b(\d+) x (\d+) (?:residual )?quantizer", s)) else None),
    "kbps_range": lambda s: ((float(m.group(1)), float(m.group(2))) if (m := re.search(NUM + "-" + NUM + r" kbps", s))
                             else None),
    "kbps_max": lambda s: (float(m.group(1)) if (m := re.search(NUM + r" kbps for the shipped model", s)) else None),
    "sample_rate": lambda s: (int(float(m.group(1)) * 1000) if (m := re.search(NUM + r" kHz\b", s)) else None),
    "params_m": lambda s: (float(m.group(1)) if (m := re.search(NUM + r" M parameters", s)) else None),
    "causal": lambda s: (False if re.search(r"\bnon-causal|\bnot causal", s) else True if re.search(r"\bcausal\b", s)
                         else None),
    "latency_ms": lambda s: (float(m.group(1)) if (m := re.search(NUM + r" ms of algorithmic latency", s)) else None),
}


def _help_texts() -> list[tuple[str, str]]:
    parser = build_parser()
    out = [("telucodec --help", parser.format_help())]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        out.append((f"telucodec {name} --help", p.format_help()))
    return out


def _claims(shipped: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(source, sentence, kind, claimed value) for every claim about the shipped model."""
    subject, others = _subject(shipped["name"]), _other_models(shipped["name"])
    found = []
    for source, text in [("README.md", (ROOT / "README.md").read_text()), *_help_texts()]:
        for s in _sentences(text):
            if not subject.search(s) or any(re.search(rf"\b{re.escape(o)}\b", s) for o in others):
                continue
            for kind, extract in EXTRACTORS.items():
                value = extract(s)
                if value is not None:
                    found.append((source, s, kind, value))
            found += [(source, s, "kbps_served", v) for v in _kbps_list(s)]
    return found


def test_every_statement_about_the_shipped_model_matches_its_config(shipped: dict[str, Any]) -> None:
    wrong = []
    for source, sentence, kind, value in _claims(shipped):
        if kind == "kbps_served":
            lo, hi = shipped["kbps_range"]
            ok = lo <= value <= hi
            truth: Any = f"{lo:g}-{hi:g}"
        else:
            truth = shipped[kind]
            ok = np.allclose(value, truth) if isinstance(truth, tuple | float) else value == truth
        if not ok:
            wrong.append(f"{source}: says {kind} = {value!r}, the shipped model has {truth!r}: {sentence[:220]}")
    assert not wrong, "\n".join(wrong)


def test_the_readme_states_the_shipped_models_core_facts(shipped: dict[str, Any]) -> None:
    """Without this the test above would pass on a README that stopped saying anything checkable."""
    stated = {kind for source, _, kind, _ in _claims(shipped) if source == "README.md"}
    assert MUST_STATE <= stated, f"README.md no longer states: {sorted(MUST_STATE - stated)}"


def test_the_extractors_read_the_claims_they_are_meant_to() -> None:
    """The patterns on sentences written both ways (so a claim cannot slip past unread)."""
    one = "The shipped model has amplitude `none` and `level_match: false`: it sends no level side info."
    two = ("a model with `level_match: true` (the shipped one) with the `rms` amplitude strategy: every 1 s "
           "chunk's level travels in the bitstream (8 bits)")
    assert [EXTRACTORS[k](one) for k in ("amplitude", "level_match", "level_side_info")] == ["none", False, False]
    assert [EXTRACTORS[k](two) for k in ("amplitude", "level_match", "level_side_info")] == ["rms", True, True]
    assert _kbps_list("the shipped model at 1.5, 3 and 6 kbps") == [1.5, 3.0, 6.0]
    assert EXTRACTORS["quantizer"]("a 12 x 1024 residual quantizer") == (12, 1024)
