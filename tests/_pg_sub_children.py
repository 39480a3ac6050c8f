"""Processes for the durable-subscriber tests: ``python -m tests._pg_sub_children NAME ARGS...``.

``writer`` commits batches in a random order with other writers, holding each transaction open a
random time before its commit (so a lower id often commits later). ``subscriber`` delivers a
durable subscription into a file, one ``id body`` line per message, flushed as it goes; it may
kill itself (SIGKILL) inside an ``update``, between the update calls and the cursor's commit.
The twin comes from the environment (``NOTIPIPE_NO_EXTENSIONS``), as for users.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import notipipe._database
from notipipe import DatabaseConnection
from tests._pg_rows import begin_batch, commit_batch


def say(*parts: object) -> None:
    print(*parts, flush=True)


def writer(dsn: str, name: str, batches: str, size: str, seed: str) -> None:
    """``batches`` transactions of ``size`` alerts with bodies ``NAME SEQ``, SEQ in save order."""
    rng = random.Random(int(seed))
    seq = 0
    for _ in range(int(batches)):
        bodies = [f"{name} {seq + i}" for i in range(int(size))]
        seq += int(size)
        conn, _ids = begin_batch(dsn, bodies)
        time.sleep(rng.uniform(0, 0.03))  # the fault injected: a commit that comes late
        commit_batch(conn)
    say("done")


class _ToFile:
    def __init__(self, out: str, die_after: int) -> None:
        self._file = open(out, "a", buffering=1)  # noqa: SIM115 - open for the process's life
        self._die_after = die_after
        self._count = 0

    def update(self, message: Any) -> None:
        self._file.write(f"{message.id} {type(message).__name__} {message.body}\n")
        self._file.flush()
        self._count += 1
        if self._count == self._die_after:
            os.kill(os.getpid(), signal.SIGKILL)


def subscriber(url: str, name: str, out: str, die_after: str = "0", page: str = "1000") -> None:
    """Deliver ``name`` into ``out`` until stdin closes; SIGKILL itself at message ``die_after``."""
    notipipe._database.DURABLE_PAGE = int(page)
    db = DatabaseConnection(url)
    observer = _ToFile(out, int(die_after))
    db.subscribe(observer, durable_name=name)
    say("subscribed")
    sys.stdin.read()
    assert db.unsubscribe(observer)
    db.close()
    say("stopped")


PROGRAMS: dict[str, Callable[..., None]] = {"writer": writer, "subscriber": subscriber}

if __name__ == "__main__":
    PROGRAMS[sys.argv[1]](*sys.argv[2:])
