"""Issue 33 item 14: what `--help` says about an option is what the option does: a flag the help
calls required is required (and shown so in the usage line), and the Lyra sentence of `eval`
matches where Lyra's models come from when no flag is given."""

from __future__ import annotations

import argparse
import re

import pytest

from telucodec.cli import build_parser
from telucodec.evaluation import baselines

REQUIRED_WORDS = re.compile(r"\(required\)|\bis required\b|\bmust be given\b", re.IGNORECASE)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _usage(sub: argparse.ArgumentParser) -> str:
    return " ".join(sub.format_usage().split())


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_an_option_the_help_calls_required_is_required_and_shown_so(command: str) -> None:
    sub = _subparsers()[command]
    usage = _usage(sub)
    for action in sub._actions:
        if not action.option_strings or action.help is argparse.SUPPRESS:
            continue
        flag = action.option_strings[0]
        says_required = bool(REQUIRED_WORDS.search(action.help or ""))
        assert says_required <= action.required, f"{command} {flag}: help says required, argparse does not"
        if action.required:
            assert f"[{flag}" not in usage and flag in usage, f"{command} {flag}: usage shows it as optional"
    if any(a.required for a in sub._actions):
        with pytest.raises(SystemExit) as exc:
            sub.parse_args([])  # nothing given: a usage error, not a job started without its input
        assert exc.value.code == 2


def test_eval_without_data_dir_is_a_usage_error_naming_it(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["eval", "--out", "somewhere"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--data_dir" in err and "required" in err


def _lyra_help() -> str:
    sub = _subparsers()["eval"]
    action = next(a for a in sub._actions if "--lyra_models" in a.option_strings)
    return " ".join(sub._get_formatter()._expand_help(action).split())


def test_eval_help_says_where_lyra_comes_from_without_the_flag(monkeypatch) -> None:
    """With neither --lyra_models nor $TELUCODEC_LYRA_MODELS, Lyra runs from the copy in the
    package when it is complete: the help must say that, and may say it is skipped only if not."""
    monkeypatch.delenv(baselines.LYRA_ENV, raising=False)
    text = _lyra_help()
    fallback = baselines.lyra_model_dir()
    shipped = fallback == baselines.SHIPPED_LYRA and all(
        (fallback / name).is_file() for name in baselines.LYRA_FILES)
    assert baselines.LYRA_ENV in text
    says_skipped = bool(re.search(r"skipped when neither|skipped unless|skipped if neither", text))
    says_shipped = "telucodec/third_party/lyra" in text
    assert says_skipped == (not shipped), text
    assert says_shipped == shipped, text
    if shipped and baselines._lyra_problem(fallback) is None:  # the behaviour the help describes
        assert baselines.available_baselines(["lyra"]) == (["lyra"], [])
