"""Run the data readers on one file after another in a separate process under a memory limit
(RLIMIT_AS), so that a file that makes a reader allocate without bound fails the test instead of
taking the machine down. `ReaderWorker` is the test side; run as a script, this file is the worker:
one JSON request per line on stdin ({"reader": ..., "path": ...}), one JSON answer per line.

An answer's "outcome" is "data" (the reader returned), "error" (it raised the telucodec error
family: "message" is the one line) or "crash" (anything else, MemoryError included: "message" is
the traceback). pyarrow uses the system allocator here, so the limit counts what is allocated
rather than what mimalloc reserves up front.
"""

from __future__ import annotations

import json
import os
import resource
import select
import subprocess
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 2 * 2**30
READERS = ("audio", "tar", "parquet", "manifest")


def _run(reader: str, path: str) -> dict:
    from telucodec.errors import TelucodecError
    from telucodec.formats.audio import audio_seconds, load_audio
    from telucodec.formats.dataset import index_audio, load_item

    def call(fn, *args):
        try:
            return "data", fn(*args)
        except TelucodecError as exc:
            return "error", str(exc)

    if reader == "audio":
        results = [call(load_audio, path), call(audio_seconds, path)]
        return {"outcome": "data" if any(r[0] == "data" for r in results) else "error",
                "messages": [r[1] for r in results if r[0] == "error"]}
    outcome, index = call(index_audio, path, True)
    if outcome == "error":
        return {"outcome": "error", "messages": [index]}
    messages = []
    for item in list(index)[:16]:  # every member's bytes too (a corrupt one is an AudioError)
        kind, value = call(load_item, item, 16000)
        if kind == "error":
            messages.append(value)
    return {"outcome": "data", "items": len(index), "skipped": index.skipped, "messages": messages,
            "names": [item.name for item in list(index)[:16]]}


def serve() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = _run(request["reader"], request["path"])
        except BaseException:  # noqa: BLE001 (the point: anything else is a finding)
            answer = {"outcome": "crash", "messages": [traceback.format_exc()[-3000:]]}
        answer["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class ReaderWorker:
    """The test side: `worker.read(reader, path)` -> the answer; a worker that dies or hangs is
    an answer too ("crash"), and the next request starts a fresh one."""

    def __init__(self, timeout: float = 120.0):
        self.proc: subprocess.Popen | None = None
        self.timeout = timeout

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "ARROW_DEFAULT_MEMORY_POOL": "system",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        return subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)

    def read(self, reader: str, path: str | Path) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"reader": reader, "path": str(path)}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            return {"outcome": "crash", "messages": [f"the worker died or hung over {self.timeout:g} s on {path}"]}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


if __name__ == "__main__":
    serve()
