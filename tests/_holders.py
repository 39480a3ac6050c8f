"""A durable subscription's holder in another process, for the tests of the backends' durable
names (PostgreSQL's and NATS's): started, stopped cleanly, and what it delivered.

The child is a module's ``subscriber`` program (``tests._pg_children``,
``tests._nats_durable_children``): it says ``subscribed`` once its subscription is made, writes
one line per delivered alert to its output file (the alert's id first), and on the end of its
input unsubscribes, says ``stopped`` and exits.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests._processes import kill, spawn

if TYPE_CHECKING:
    from tests.conftest import Impl

__all__ = ["delivered_ids", "holder_process", "stop_holder"]


@contextmanager
def holder_process(
    impl: Impl, module: str, url: str, name: str, out: Path, *options: str
) -> Iterator[subprocess.Popen[str]]:
    """``module``'s subscriber process on ``name``, writing to ``out``, subscribed when this
    yields; killed if still running at the end."""
    proc = spawn(impl, module, "subscriber", url, name, str(out), *options, stdin=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "subscribed\n", (line, proc.stderr.read() if proc.stderr else "")
        yield proc
    finally:
        kill(proc)


def stop_holder(proc: subprocess.Popen[str]) -> str:
    """Stop the holder as its user would (its input closed: it unsubscribes and exits cleanly);
    its stderr."""
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.splitlines()[-1] == "stopped"
    return err


def delivered_ids(out: Path) -> list[int]:
    """The ids of the alerts the holder wrote to ``out``, in delivery order."""
    return [int(line.split(" ", 1)[0]) for line in out.read_text().splitlines()] if out.exists() else []
