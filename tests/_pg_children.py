"""Programs the PostgreSQL tests run in child processes: ``python -m tests._pg_children NAME ...``.

Each prints what it has done, one line at a time and flushed, so that the test can wait for a
chosen moment (and kill the child there). The twin comes from the environment
(``NOTIPIPE_NO_EXTENSIONS``), as for users.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from notipipe import DatabaseConnection, SMSMessage

PROGRAMS: dict[str, Callable[..., None]] = {}


def program(fn: Callable[..., None]) -> Callable[..., None]:
    PROGRAMS[fn.__name__] = fn
    return fn


def say(*parts: object) -> None:
    print(*parts, flush=True)


@program
def write(url: str, tag: str, count: str, chunk: str) -> None:
    """Wait for a line on stdin (the start signal), then save ``count`` alerts in chunks of
    ``chunk`` (bodies ``"<tag> <i>"``, in order) and flush."""
    db = DatabaseConnection(url, max_delay=0.001)
    say("ready", os.getpid())
    sys.stdin.readline()
    n, step = int(count), int(chunk)
    for start in range(0, n, step):
        db.save_many([SMSMessage(body=f"{tag} {i}") for i in range(start, min(n, start + step))])
    db.flush()
    say("done", os.getpid())
    db.close()


@program
def stall_in_copy(url: str, count: str) -> None:
    """Save ``count`` alerts in one batch and stop in the middle of its COPY, once half of the
    rows have gone to the server, to be killed there. The store's own write path is used; only
    psycopg's ``write_row`` (C psycopg: a row at a time) and ``write`` (pure psycopg: the store
    packs the rows, a thousand a write) are wrapped, to stop."""
    from psycopg import Copy

    real_write_row, real_write = Copy.write_row, Copy.write
    rows, writes = [0], [0]

    def stall(copy: Copy) -> None:
        copy.connection.pgconn.flush()
        say("stalled", os.getpid(), copy.connection.info.backend_pid)
        time.sleep(3600)

    def write_row_then_stall(self: Copy, row: Any) -> None:
        real_write_row(self, row)
        rows[0] += 1
        if rows[0] == int(count) // 2:
            stall(self)

    def write_then_stall(self: Copy, data: Any) -> None:
        real_write(self, data)
        writes[0] += 1
        if writes[0] == 3:  # the header, then two thousand rows
            stall(self)

    Copy.write_row = write_row_then_stall  # type: ignore[method-assign]
    Copy.write = write_then_stall  # type: ignore[method-assign, assignment]
    db = DatabaseConnection(url, max_delay=0.001, batch_size=int(count))
    db.save_many([SMSMessage(body=f"doomed {i}") for i in range(int(count))])
    time.sleep(3600)


if __name__ == "__main__":
    PROGRAMS[sys.argv[1]](*sys.argv[2:])
