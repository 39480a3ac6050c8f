"""Starting ``notipipe run`` and ``notipipe serve`` as child processes, for the dashboard tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests._processes import with_sigint

#: Long enough for an interpreter to start and import uvicorn on a busy machine.
START_TIMEOUT = 60.0


class Children:
    """Child processes that are all ended (and reaped) when the test ends, whatever happens."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[str]] = []

    def start(
        self, *args: str, env: dict[str, str] | None = None, sigint_ignored: bool = False
    ) -> subprocess.Popen[str]:
        """``notipipe args...``, with SIGINT at its default (Ctrl-C stops it, see ``stop``) however
        the tests were started; with ``sigint_ignored``, ignored, as in a background job."""
        proc = subprocess.Popen(
            with_sigint([sys.executable, "-m", "notipipe", *args], ignored=sigint_ignored),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._procs.append(proc)
        return proc

    def serve(
        self, db: Path, port: int = 0, *, sigint_ignored: bool = False
    ) -> tuple[subprocess.Popen[str], str]:
        """``notipipe serve`` on ``port`` (0: a free one); returns it and the URL it printed."""
        proc = self.start("serve", "--db", str(db), "--port", str(port), sigint_ignored=sigint_ignored)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the socket listens
        if not line.startswith("notipipe serve: http://"):
            proc.kill()
            _, err = proc.communicate(timeout=START_TIMEOUT)
            raise AssertionError(f"notipipe serve did not start: {line!r} {err!r}")
        return proc, line.split()[2]

    def end_all(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=START_TIMEOUT)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str]:
    """Stop a server with ``sig`` (as Ctrl-C does, by default); its exit status and stderr."""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=START_TIMEOUT)
    return proc.returncode, err


@contextmanager
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.end_all()


def ranges(ids: Sequence[int]) -> list[list[int]]:
    """Sorted ids as ``[[first, last], ...]`` runs, as the page records them."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs
