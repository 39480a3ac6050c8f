"""Programs for tests/test_store_files_operators.py in child processes: ``python -m tests._operator_children
NAME ...``. Each says what it has done, one flushed line at a time (see ``tests._processes``)."""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from contextlib import closing

from notipipe import DatabaseConnection, SMSMessage
from tests._processes import Programs, say

program = Programs()


@program
def open_and_save(path: str, start_at: str, count: str) -> None:
    """At the wall-clock time ``start_at`` (so that every child opens at once), open the file,
    save ``count`` alerts and flush; say how many were stored, and each log line notipipe wrote."""
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="log %(levelname)s %(message)s")
    while time.time() < float(start_at):
        time.sleep(0.001)
    db = DatabaseConnection(path)
    db.save_many([SMSMessage(body=f"child {i}") for i in range(int(count))], durable=True)
    say("stored", int(count))
    db.close()


@program
def insert_raw(path: str) -> None:
    """Insert rows the way another tool on the previous layout would (no notipipe), one commit at a
    time, about every millisecond; say the id each commit acknowledged, until killed.

    A locked database is retried at once, not after SQLite's busy handler's sleeps: the tool
    takes the lock the moment it is free, as a migration that let go of it in the middle of its
    work would find out.
    """
    with closing(sqlite3.connect(path, isolation_level=None, timeout=0)) as conn:
        say("ready")
        while True:
            try:
                cur = conn.execute(
                    "INSERT INTO messages (kind, created_at, priority, address, subject, body)"
                    " VALUES ('sms', ?, 3, '+15551234567', '', 'raw')",
                    (time.time(),),
                )
            except sqlite3.OperationalError as error:
                if "locked" not in str(error):
                    raise
                continue
            say("committed", cur.lastrowid)
            time.sleep(0.001)


if __name__ == "__main__":
    program.main()
