"""Programs the PostgreSQL tests run in child processes: ``python -m tests._pg_children NAME ...``.

Each prints what it has done, one line at a time and flushed, so that the test can wait for a
chosen moment (and kill the child there). The twin comes from the environment
(``NOTIPIPE_NO_EXTENSIONS``), as for users.

For the durable-subscriber tests: ``writer`` commits batches in a random order with other
writers, holding each transaction open a random time before its commit (so a lower id often
commits later); ``subscriber`` delivers a durable subscription into a file, one ``id body`` line
per message, flushed as it goes; it may kill itself (SIGKILL) inside an ``update``, between the
update calls and the cursor's commit. ``timed_subscriber`` is a slow observer that notes when each
``update`` call starts (``time.monotonic``, which is one clock for every process of the machine).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from typing import Any

import notipipe._database
from notipipe import DatabaseConnection, SMSMessage
from tests._pg_rows import begin_batch, commit_batch
from tests._processes import Programs, say

program = Programs()


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


@program
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


@program
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


class _Timed:
    def __init__(self, out: str, delay: float) -> None:
        self._file = open(out, "a", buffering=1)  # noqa: SIM115 - open for the process's life
        self._delay = delay

    def update(self, message: Any) -> None:
        self._file.write(f"{time.monotonic():.6f} {message.id}\n")
        self._file.flush()
        time.sleep(self._delay)  # the observer's own slowness: a page takes a while


@program
def timed_subscriber(  # noqa: PLR0917 - a child's arguments are its command line's
    url: str, name: str, out: str, delay: str, end: str = "close", page: str = "1000"
) -> None:
    """Deliver ``name`` into ``out`` (``monotonic-time id`` per ``update`` call, written as the
    call starts), each call taking ``delay`` seconds, in pages of ``page``, until stdin closes;
    then ``close()`` the connection (``end="close"``) or just return, leaving it to the atexit
    hook (``"exit"``)."""
    notipipe._database.DURABLE_PAGE = int(page)
    db = DatabaseConnection(url)
    observer = _Timed(out, float(delay))
    db.subscribe(observer, durable_name=name)
    say("subscribed")
    sys.stdin.read()
    if end == "close":
        db.close()
    say("stopping")


if __name__ == "__main__":
    program.main()
