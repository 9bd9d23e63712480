"""Shared pieces of benchmarks/robustness.py: result rows, a forked sandbox with a per-case time
limit, running the `telucodec` CLI (in a child process or as a real subprocess), dropping root.

Imported as `benchmarks.robustness_common`: robustness.py puts the repository root first on
sys.path before it imports the robustness_* modules.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "te_cv"
NOBODY = 65534
PYTHON = sys.executable


@dataclass
class Row:
    """One line of the report table."""

    area: str
    case: str
    tried: int
    failures: int
    result: str


# ---- a forked child with a per-case time limit ------------------------------------------------

def _child_loop(conn: Any, fn: Callable[[Any], dict], uid: int | None) -> None:
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    tracemalloc.start()
    while True:
        case = conn.recv()
        if case is None:
            return
        tracemalloc.reset_peak()
        try:
            result = fn(case)
        except BaseException as exc:  # anything escaping fn is what we are looking for
            result = {"outcome": "exception", "detail": f"{type(exc).__name__}: {exc}"[:300]}
        result.setdefault("py_peak", tracemalloc.get_traced_memory()[1])
        result.setdefault("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        conn.send(result)


class Sandbox:
    """Runs `fn(case)` in a forked child (which inherits models and imports, so a case costs no
    start-up). A case over `timeout` seconds is a hang: the child is killed and replaced; a child
    that dies (segfault, os._exit) is a crash. `uid` drops root in the child before any case."""

    def __init__(self, fn: Callable[[Any], dict], timeout: float, uid: int | None = None):
        self.fn, self.timeout, self.uid = fn, timeout, uid
        self.proc: Any = None
        self.conn: Any = None
        self.start_rss_kb = 0

    def _start(self) -> None:
        ctx = mp.get_context("fork")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child_loop, args=(child, self.fn, self.uid), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def _stop(self, kill: bool) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            with contextlib.suppress(OSError, BrokenPipeError):
                self.conn.send(None)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()
        self.proc = None

    def __enter__(self) -> Sandbox:
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop(kill=False)

    def run(self, case: Any) -> dict:
        if self.proc is None:
            self._start()
        self.conn.send(case)
        if not self.conn.poll(self.timeout):
            self._stop(kill=True)
            return {"outcome": "hang", "detail": f"no answer within {self.timeout:g} s"}
        try:
            return self.conn.recv()
        except EOFError:
            self.proc.join(5)
            code = self.proc.exitcode
            self._stop(kill=True)
            return {"outcome": "crash", "detail": f"child died (exit code {code})"}


# ---- the CLI -----------------------------------------------------------------------------------

@dataclass
class CliResult:
    rc: int | None  # None: timed out (a hang)
    stdout: str
    stderr: str
    traceback: str = ""  # an exception that escaped main() (in-process runs)


def cli_in_process(argv: Sequence[str]) -> CliResult:
    """`telucodec ARGV` through `cli.main`, stdout/stderr captured; meant to run in a Sandbox."""
    from telucodec.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        return CliResult(None if isinstance(exc, TimeoutError) else 99, out.getvalue(), err.getvalue(),
                         f"{type(exc).__name__}: {exc}"[:300])
    return CliResult(rc, out.getvalue(), err.getvalue())


# What a chmod-000 case run as nobody needs: the interpreter, the package (imported from the
# checkout, as the cases do), the entry point and the example clips.
_NOBODY_PROBE = """
import os, sys
from pathlib import Path
root = Path(sys.argv[1])
import telucodec.cli.commands, telucodec.formats.audio
for path in (root / "train_codec.py", *sorted((root / "examples" / "te_cv").rglob("*.flac"))[:1]):
    path.read_bytes()
print(os.geteuid())
"""


def can_drop_root(python: str = PYTHON, root: Path = ROOT) -> bool:
    """True when we are root and `setpriv` can run `python` as nobody *and* nobody can import the
    package from `root` and read its files (to make chmod 000 mean it). A checkout under a folder
    nobody cannot traverse (a 0700 home, a `mktemp -d` folder) fails this: the cases are then
    reported not testable rather than failing on a path nobody cannot reach."""
    if os.geteuid() != 0:
        return False
    try:
        proc = subprocess.run(drop_root_prefix() + [python, "-c", _NOBODY_PROBE, str(root)], cwd=root,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(root)})
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and proc.stdout.strip() == str(NOBODY)


def drop_root_prefix() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def child_env(home: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if home is not None:
        env.update(HOME=str(home), MPLCONFIGDIR=str(home / ".mpl"))
    return env


def cli_subprocess(argv: Sequence[str], timeout: float, as_nobody: bool = False,
                   home: Path | None = None, preamble: str = "") -> CliResult:
    """`python -m telucodec.cli ARGV` as a real process (optionally as nobody); a run over
    `timeout` is killed and reported with rc None. `preamble`: Python run before main()."""
    if preamble:
        code = f"import sys; {preamble}; from telucodec.cli import main; sys.exit(main(sys.argv[1:]))"
        cmd = [PYTHON, "-c", code, *argv]
    else:
        cmd = [PYTHON, "-m", "telucodec.cli", *argv]
    if as_nobody:
        cmd = drop_root_prefix() + cmd
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env=child_env(home))
    except subprocess.TimeoutExpired as exc:
        return CliResult(None, str(exc.stdout or ""), str(exc.stderr or ""))
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def one_line_error(res: CliResult, command: str, expect: str) -> str:
    """'' when `res` is exit 1 with exactly one stderr line naming `expect`; else what is wrong."""
    if res.rc is None:
        return "hang (killed at the time limit)"
    if res.traceback or "Traceback" in res.stderr:
        return f"traceback: {res.traceback or res.stderr.strip().splitlines()[-1]}"
    lines = res.stderr.strip().splitlines()
    if res.rc != 1:
        return f"exit {res.rc}, expected 1 ({lines[-1] if lines else 'no message'})"
    if len(lines) != 1:
        return f"{len(lines)} stderr lines, expected 1: {lines[:3]}"
    if not lines[0].startswith(f"telucodec {command}: error:") or expect.lower() not in lines[0].lower():
        return f"unclear message (wanted '{expect}'): {lines[0]}"
    return ""


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def make_tiny_model(folder: Path, amplitude: str = "none", seed: int = 0, preset: str = "tiny") -> Path:
    """A random-weight model folder (`preset`, `amplitude`), deterministic for `seed`."""
    from dataclasses import replace

    import torch

    from telucodec.config import get_config
    from telucodec.model.codec import Codec

    torch.manual_seed(seed)
    cfg = get_config(preset)
    cfg = replace(cfg, model=replace(cfg.model, amplitude=amplitude))
    Codec(cfg).save_pretrained(folder)
    return folder
