"""Pruning a SQLite database: the alerts created before a time, deleted a step at a time.

Each step finds its ids with a read (no lock: a WAL reader blocks no writer), then deletes them
in a write transaction of its own, checking ``created_at`` again, so a writer waits at most for
one step's delete and never for the scan. Ids are ``AUTOINCREMENT`` (layout 2; a file of layout 1
is migrated first), so a deleted newest row never gives its id again: followers miss nothing.
A file is pruned on a connection of its own; ``":memory:"`` (one connection holds it) through
the store's, under its writer's lock for one step at a time.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Final, cast

from notipipe._errors import StorageError
from notipipe._storage.interface import DEFAULT_OPTIONS
from notipipe._storage.sqlite.file import SCHEMA_VERSION, describe, migrate, open_writer

if TYPE_CHECKING:
    from notipipe._storage.prune import PruneRequest
    from notipipe._storage.sqlite.store import MessageStore

__all__ = ["prune_file", "prune_memory"]

#: Runs a piece of work on the pruning connection (for ``":memory:"``: under the writer's lock).
type Run = Callable[[Callable[[sqlite3.Connection], object]], object]

#: Seconds a step's write transaction waits for the lock another connection holds (the writer's
#: batches are small: this is a wait for many of them, not for one).
_LOCK_WAIT: Final = 60.0

_FIND = "SELECT id FROM messages WHERE id > ? AND created_at < ? ORDER BY id LIMIT ?"
_DELETE = "DELETE FROM messages WHERE id BETWEEN ? AND ? AND created_at < ?"
_COUNT = "SELECT count(*) FROM messages WHERE created_at < ?"


def prune_file(path: str, request: PruneRequest) -> int:
    """Prune the file at ``path`` on a connection of its own."""
    try:
        conn, layout = open_writer(path, DEFAULT_OPTIONS)
    except sqlite3.Error as error:
        raise StorageError(path, f"cannot open for pruning: {describe(error)}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout={int(_LOCK_WAIT * 1000)}")
        if layout < SCHEMA_VERSION and not request.dry_run:
            done = migrate(conn, path)  # ids must never be reused once the newest rows go
            if done is not None:
                done.log()
        return _prune(path, lambda work: work(conn), request)
    except sqlite3.Error as error:
        raise StorageError(path, f"pruning failed: {describe(error)}") from None
    finally:
        conn.close()


def prune_memory(store: MessageStore, request: PruneRequest) -> int:
    """Prune an in-memory database through its store's one connection, a step at a time."""
    try:
        return _prune(store.path, store.run_on_writer, request)
    except sqlite3.Error as error:
        raise StorageError(store.path, f"pruning failed: {describe(error)}") from None


def _prune(path: str, run: Run, request: PruneRequest) -> int:
    before = request.before
    if request.dry_run:
        return cast("int", run(partial(_scalar, _COUNT, (before,))))
    done, last = 0, 0
    while True:
        ids: list[int] = run(partial(_ids, (last, before, request.step)))  # type: ignore[assignment]
        if not ids:
            return done
        first, last = ids[0], ids[-1]
        done += cast("int", run(partial(_delete, first=first, last=last, before=before)))
        request.report(done)
        if len(ids) < request.step:
            return done


def _scalar(sql: str, params: tuple[object, ...], conn: sqlite3.Connection) -> object:
    return conn.execute(sql, params).fetchone()[0]


def _ids(params: tuple[object, ...], conn: sqlite3.Connection) -> list[int]:
    return [int(r[0]) for r in conn.execute(_FIND, params)]


def _delete(conn: sqlite3.Connection, *, first: int, last: int, before: float) -> int:
    """One step: the rows from id ``first`` to ``last`` older than ``before``, in one write
    transaction (ids only grow, so no row joins that range after the read that found it)."""
    conn.execute("BEGIN IMMEDIATE")  # waits out another writer's batch (busy_timeout)
    try:
        n = conn.execute(_DELETE, (first, last, before)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return int(n)
