"""benchmarks/level_sweep.py (issue 34 item 5 preparation): one row per input level, one column per
bitrate, a finite ratio in every cell; a bad flag is a one-line error."""

from __future__ import annotations

import re

from conftest import load_benchmark


def _sweep():
    return load_benchmark("level_sweep")


def test_level_sweep_prints_one_table_of_ratios(capsys) -> None:
    sweep = _sweep()
    assert sweep.main(["--clips", "2", "--seconds", "0.6", "--levels=-40,-3", "--kbps", "1.5,6"]) == 0
    out = capsys.readouterr().out
    assert "amplitude " in out and "| input peak dBFS | 1.5 kbps | 6 kbps |" in out
    assert "PESQ-WB" not in out
    rows = [line for line in out.splitlines() if re.match(r"\| -\d", line)]
    assert [r.split("|")[1].strip() for r in rows] == ["-40", "-3"]
    for row in rows:
        means = [float(cell.split()[0]) for cell in row.strip("|").split("|")[1:]]
        assert len(means) == 2 and all(0.0 < m < 10.0 for m in means), row


def test_level_sweep_pesq_adds_a_table_of_quality_by_level(capsys) -> None:
    sweep = _sweep()
    assert sweep.main(["--clips", "1", "--seconds", "1.0", "--levels=-40,-3", "--kbps", "6", "--pesq"]) == 0
    out = capsys.readouterr().out
    ratios, pesq = out.split("PESQ-WB, mean over clips")
    rows = [line for line in pesq.splitlines() if re.match(r"\| -\d", line)]
    assert [r.split("|")[1].strip() for r in rows] == ["-40", "-3"]
    assert all(1.0 <= float(r.split("|")[2].split()[0]) <= 4.65 for r in rows), rows


def test_level_sweep_refuses_bad_flags_in_one_line(capsys) -> None:
    sweep = _sweep()
    assert sweep.main(["--levels=-10,3"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--levels" in err
