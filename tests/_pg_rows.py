"""Writing alerts into a PostgreSQL database as a writer process would, straight through psycopg.

The follow and subscriber tests need control a writer does not give: a transaction held open
before its commit, a commit without its wake-up. Each batch is one transaction that takes its
ids from the identity column in order, like a writer's batch.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import psycopg

from notipipe._storage.postgresql.follow import ensure_schema
from notipipe._storage.postgresql.schema import MESSAGES, WAKEUP_CHANNEL

__all__ = ["Seen", "begin_batch", "commit_batch", "create_schema", "write_batch"]


def create_schema(dsn: str) -> None:
    """Create notipipe's tables in ``dsn``'s database, as a writer's first start does."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn)


def begin_batch(dsn: str, bodies: list[str]) -> tuple[psycopg.Connection[Any], list[int]]:
    """Insert one SMS per body in a transaction left open; its connection and the ids taken."""
    conn = psycopg.connect(dsn)
    ids = []
    for body in bodies:
        got = conn.execute(
            f"INSERT INTO {MESSAGES} (kind, created_at, priority, address, subject, body, origin_host, "
            "origin_pid) VALUES ('sms', %s, 3, '+15550100', '', %s, %s, %s) RETURNING id",
            (time.time(), body, socket.gethostname(), os.getpid()),
        ).fetchone()
        assert got is not None
        ids.append(int(got[0]))
    return conn, ids


def commit_batch(conn: psycopg.Connection[Any], *, notify: bool = True) -> None:
    """Commit, then send the wake-up in a transaction of its own, as writers do."""
    conn.commit()
    if notify:
        conn.execute(f"NOTIFY {WAKEUP_CHANNEL}")
        conn.commit()
    conn.close()


def write_batch(dsn: str, bodies: list[str], *, notify: bool = True) -> list[int]:
    """One SMS per body, committed as one batch (with its wake-up unless ``notify`` is false); the ids."""
    conn, ids = begin_batch(dsn, bodies)
    commit_batch(conn, notify=notify)
    return ids


def write_many(dsn: str, n: int) -> list[int]:
    """``n`` SMS committed by one statement (bodies ``m 1`` to ``m n``), then the wake-up; the ids."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"INSERT INTO {MESSAGES} (kind, created_at, priority, address, subject, body, origin_host, "
            "origin_pid) SELECT 'sms', extract(epoch FROM now()), 3, '+15550100', '', 'm ' || i, %s, %s "
            "FROM generate_series(1, %s) i RETURNING id",
            (socket.gethostname(), os.getpid(), n),
        ).fetchall()
        conn.execute(f"NOTIFY {WAKEUP_CHANNEL}")
    return sorted(int(i) for (i,) in rows)


class Seen:
    """What an observer or a follower was given, for a test to wait on from another thread."""

    def __init__(self) -> None:
        import threading

        self._cond = threading.Condition()
        self.messages: list[Any] = []

    def update(self, message: Any) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def ids(self) -> list[int]:
        with self._cond:
            return [m.id for m in self.messages]

    def wait_for(self, ids: set[int] | list[int], timeout: float = 20.0) -> bool:
        """True once every id in ``ids`` was seen; False if ``timeout`` passes first."""
        wanted = set(ids)
        with self._cond:
            return self._cond.wait_for(lambda: wanted <= {m.id for m in self.messages}, timeout)
