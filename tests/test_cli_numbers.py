"""Every numeric flag of every subcommand refuses a bad value in one line naming the flag (exit
2, no traceback): out of its range, nan, inf, a negative number in scientific notation (which
argparse used to take for an option: "expected one argument"), or not a number at all. The flags
are found from the parsers themselves, so a flag added later is covered without editing this file.

`--experiment_name` is refused when it would leave --checkpoint_dir (a path separator, `..`, an
absolute path) or name no folder of its own (empty, `.`), before anything is created."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from telucodec.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def minimal_argv(name: str, parser: argparse.ArgumentParser) -> list[str]:
    """The subcommand with every required argument given a placeholder."""
    positionals = [a for a in parser._actions if not a.option_strings and a.nargs not in ("?", "*")]
    options = [a for a in parser._actions if a.option_strings and a.required]
    argv = [name] + ["x"] * len(positionals)
    for a in options:
        argv += [a.option_strings[0], "x"]
    return argv


def numeric_flags() -> list[tuple[str, str, object]]:
    """(subcommand, flag, its type) for every option that takes a number: a bare int or float
    type, or a checked one (`cli.ranged`, named int or float; a list of numbers with `bounds`)."""
    found = []
    for name, parser in subparsers().items():
        for a in parser._actions:
            numeric = a.type in (int, float) or getattr(a.type, "__name__", "") in ("int", "float") or (
                getattr(a.type, "bounds", None) is not None)
            if a.option_strings and numeric and a.nargs in (None, "?"):
                found.append((name, a.option_strings[0], a.type))
    return found


FLAGS = numeric_flags()


def parse(argv: list[str]) -> tuple[int | None, str]:
    """(exit code, stderr) of parsing `argv`; exit code None when it was accepted."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0), err.getvalue()
    return None, err.getvalue()


def test_the_flags_are_found_and_the_placeholders_parse():
    names = {(cmd, flag) for cmd, flag, _ in FLAGS}
    assert {("train", "--learning_rate"), ("train", "--num_workers"), ("encode", "--kbps"), ("eval", "--kbps"),
            ("tokenize", "--workers"), ("shard", "--shard_mb"), ("demo", "--minutes")} <= names
    for name, parser in subparsers().items():
        assert parse(minimal_argv(name, parser))[0] is None, name


def test_every_numeric_flag_declares_its_range():
    """A numeric flag with a bare int/float type would take nan, inf or any sign."""
    bare = [(cmd, flag) for cmd, flag, kind in FLAGS if getattr(kind, "bounds", None) is None]
    assert bare == []


def out_of_range(bounds: tuple) -> st.SearchStrategy[float]:
    kind, low, high, low_open = bounds
    below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False, allow_infinity=False)
    parts = [below.filter(lambda v: v < low or (low_open and v == low))]
    if high is not None:
        parts.append(st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False))
    return st.one_of(parts)


def spelled(value: float, kind: type) -> st.SearchStrategy[str]:
    """The ways a user writes a number: plain, scientific (e/E), and for an int flag a whole number."""
    forms = [repr(value), f"{value:e}", f"{value:E}", f"{value:.3g}"]
    if kind is int and math.isfinite(value) and value == int(value):
        forms.append(str(int(value)))
    return st.sampled_from(forms)


NOT_FINITE = ["nan", "NaN", "-nan", "inf", "+inf", "-inf", "Infinity", "-Infinity", "1e999", "-1e999"]
NOT_NUMBERS = st.text(st.characters(codec="utf-8", exclude_characters="\x00-"), min_size=0, max_size=8).filter(
    lambda s: not _number(s))


def accepted(bounds: tuple, text: str) -> bool:
    """The declared range, read as the spec: whether `text` is a value the flag should take."""
    kind, low, high, low_open = bounds
    try:
        value = kind(text)
    except ValueError:
        return False
    return math.isfinite(value) and value >= low and not (low_open and value == low) and (high is None or value <= high)


def listed(bounds: tuple, text: str) -> bool:
    """A list of numbers (eval --kbps): comma-separated values in range, or 'none'."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    return [p.lower() for p in parts] == ["none"] or bool(parts) and all(accepted(bounds, p) for p in parts)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@st.composite
def bad_values(draw) -> tuple[str, str, str]:
    cmd, flag, kind = draw(st.sampled_from(FLAGS))
    bounds = getattr(kind, "bounds", None) or (float, -1.0, None, False)  # a bare type: at least refuse < -1
    number_kind = bounds[0]
    choice = draw(st.sampled_from(["range", "not finite", "text", "fraction"]))
    if choice == "range":
        value = draw(spelled(draw(out_of_range(bounds)), number_kind))
    elif choice == "not finite":
        value = draw(st.sampled_from(NOT_FINITE))
    elif choice == "fraction" and number_kind is int:
        value = draw(spelled(draw(st.floats(-1e6, 1e6).filter(lambda v: v != int(v))), float))
    else:
        value = draw(NOT_NUMBERS)
    good = accepted(bounds, value) if getattr(kind, "__name__", "") in ("int", "float") else listed(bounds, value)
    assume(not good)  # a spelling that rounds back into the range is a good value
    return cmd, flag, value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_values())
def test_every_numeric_flag_refuses_bad_values_in_one_line_naming_it(case):
    cmd, flag, value = case
    parser = subparsers()[cmd]
    code, err = parse([*minimal_argv(cmd, parser), flag, value])
    assert code == 2, f"{cmd} {flag} {value!r} was accepted"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert flag in lines[0] and "Traceback" not in err
    if _number(value):  # a number is judged as one, never mistaken for an option
        assert "expected one argument" not in lines[0], lines[0]
        assert "out of range" in lines[0] or "is not" in lines[0], lines[0]


@pytest.mark.parametrize("value", ["-1e-3", "-3E+2", "-.5e1", "-inf", "nan"])
def test_the_train_command_says_the_range_for_a_negative_learning_rate(value):
    """Issue 33 item 17, end to end: `--learning_rate -1e-3` said "expected one argument"."""
    proc = subprocess.run([sys.executable, "-m", "telucodec.cli", "train", "--data_dir", "d", "--checkpoint_dir", "c",
                           "--experiment_name", "e", "--learning_rate", value], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--learning_rate" in lines[0] and "accepted: a number > 0" in lines[0], proc.stderr


# ---- --experiment_name ---------------------------------------------------------------------

SEGMENT = st.text(st.characters(codec="utf-8", exclude_characters="\x00/\\"), min_size=1, max_size=12).filter(
    lambda s: s.strip() not in ("", ".", ".."))


@st.composite
def escaping_names(draw) -> str:
    kind = draw(st.sampled_from(["empty", "dots", "separator", "absolute", "parent"]))
    if kind == "empty":
        return draw(st.sampled_from(["", ".", ".."]))
    if kind == "dots":
        return draw(st.sampled_from(["../", "./", "..\\", "../.."])) + draw(SEGMENT)
    if kind == "separator":
        return draw(SEGMENT) + draw(st.sampled_from(["/", "\\", os.sep])) + draw(SEGMENT)
    if kind == "absolute":
        return "/" + draw(SEGMENT)
    return "/".join([".."] * draw(st.integers(1, 4)) + [draw(SEGMENT)])


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=escaping_names())
def test_an_experiment_name_that_leaves_the_checkpoint_dir_is_refused_before_anything_is_made(tmp_path, name):
    base = tmp_path / "base"
    ckpt = base / "a" / "b" / "ckpt"
    base.mkdir(exist_ok=True)
    before = _tree(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as exc:
        main(["train", "--data_dir", str(ROOT / "examples" / "te_cv"), "--checkpoint_dir", str(ckpt),
              f"--experiment_name={name}", "--config", "tiny", "--num_epochs", "1", "--steps_per_epoch", "1"])
    assert exc.value.code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "--experiment_name" in lines[0], err.getvalue()
    assert _tree(tmp_path) == before  # nothing made, inside --checkpoint_dir or outside it


@settings(max_examples=150, deadline=None)
@given(name=SEGMENT)
def test_an_ordinary_experiment_name_is_taken(name):
    code, err = parse(["train", "--data_dir", "d", "--checkpoint_dir", "c", f"--experiment_name={name}"])
    assert code is None or (len(name.encode()) > 255 and "--experiment_name" in err), err


def test_after_a_refused_name_the_corrected_command_runs(tmp_path):
    ckpt = tmp_path / "ckpt"
    args = ["train", "--data_dir", str(ROOT / "examples" / "te_cv"), "--checkpoint_dir", str(ckpt),
            "--config", "tiny", "--batch_size", "2", "--num_epochs", "1", "--steps_per_epoch", "1", "--quiet"]
    with pytest.raises(SystemExit):
        main([*args, "--experiment_name", "../run"])
    assert not ckpt.exists() and not (tmp_path / "run").exists()
    assert main([*args, "--experiment_name", "run"]) == 0
    assert (ckpt / "run" / "checkpoints" / "last.pt").is_file() and not (tmp_path / "run").exists()
