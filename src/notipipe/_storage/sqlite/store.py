"""``MessageStore``: every accepted alert kept in SQLite, written by one thread in group commits.

The queue, the writer thread and its promises are ``GroupCommitStore``'s (``group_commit``), shared
with the PostgreSQL store; this module is the SQLite side: each batch is one transaction in WAL
mode.

What the writer promises, and how:

* Durable once committed: with ``synchronous=NORMAL`` (the default) a committed batch survives
  ``kill -9``; with ``FULL`` also power loss. ``flush()`` returns once everything put before it
  is committed.
* A busy or locked database (another process writing, a maintenance job) is a wait, not a
  failure: the writer keeps its batch and retries with backoff for as long as it takes, the
  queue's bound holds producers back meanwhile, and ``flush(timeout)`` raises ``TimeoutError``.
  So is a lock held while a file of an older layout waits to be migrated: the writer migrates it
  (``migrate``) in the same attempt as its first batch, retried the same way.
* Other trouble with the file (a full disk, an I/O error) is retried the same way, and reported:
  ``flush()`` and a producer that would have to wait raise ``StorageError`` naming SQLite's own
  reason, while the queued alerts stay queued for the next attempt.
* One bad row never costs its batch: the batch goes in as multi-row INSERT statements; if SQLite
  refuses a row, the transaction is rolled back and the batch written again row by row, and only
  the rows it refuses are dropped, each reported by the next ``flush``/``close``. If it refuses
  every row, and two alerts made to test it too (a trigger that raises), that is the database's
  trouble: the batch is kept and retried like a full disk.
* The writer thread never dies silently: whatever escapes (an ``after_commit`` observer raising
  ``SystemExit``, say) is caught, logged, and raised by the next ``flush``/``close``.

Reads use their own read-only connection on a file (WAL readers never block the writer), so a
store that is only read needs no write access and starts no writer thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from types import ModuleType
from typing import ClassVar, Final

from notipipe import _sqlite_py
from notipipe._errors import StorageClosedError, StorageError
from notipipe._select import EmailMessage, SMSMessage, all_of_types, twin
from notipipe._sqlite_py import Inserter, insert_sql
from notipipe._storage.group_commit import GroupCommitStore, Row, leak
from notipipe._storage.sqlite.file import (
    SCHEMA_VERSION,
    Migrated,
    describe,
    migrate,
    open_reader,
    open_writer,
)

__all__ = ["MessageStore", "Row"]

_log = logging.getLogger("notipipe")

_COLUMNS = 6
#: Rows per INSERT statement (bounded again by the connection's variable limit): past a few
#: hundred rows a longer statement only costs more.
_ROWS_PER_STATEMENT = 500
#: SQLite's primary result codes for "someone else holds the lock".
_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
#: How long one checkpoint attempt past wal_limit waits for other connections, in milliseconds.
_CHECKPOINT_WAIT_MS: Final = 100


def inserter_twin(name: str | None = None) -> ModuleType:
    """The row writer twin ``name`` ("c" or "py"); by default the one this process selects, as
    ``_select`` selects the message twins."""
    return twin(_sqlite_py, name)


#: The row writer of this process.
INSERTER: Final = inserter_twin()
#: The messages whose rows the inserter reads from their fields.
_READ_FROM_FIELDS: Final = frozenset({EmailMessage, SMSMessage})
#: One INSERT of n rows (the name the tests know).
_insert_sql: Final = insert_sql


def _is_busy(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _BUSY_CODES


def _is_file_trouble(error: BaseException) -> bool:
    """True for errors about the database file or the machine (retry the batch), False for a
    refused row."""
    return isinstance(error, (sqlite3.OperationalError, MemoryError)) or type(error) is sqlite3.DatabaseError


class MessageStore(GroupCommitStore):
    """A SQLite-backed queue of messages with a group-committing writer thread (see
    ``GroupCommitStore``), in WAL mode.

    Nothing is opened until it is needed: the writing connection and its thread on the first
    ``put``, a read-only connection on the first read of a file.
    """

    _table: ClassVar[str] = "messages"
    _param: ClassVar[str] = "?"
    _conn: sqlite3.Connection | None
    _reader: sqlite3.Connection | None
    #: Writes the batches' rows on ``_conn`` (guarded by ``_write_lock`` with it).
    _inserter: Inserter | None = None
    #: Monotonic time of the next allowed checkpoint attempt (see ``_bound_wal``).
    _next_checkpoint: float = 0.0
    #: Rows per INSERT statement, lowered to the writing connection's variable limit.
    _rows_per_statement: int = _ROWS_PER_STATEMENT
    #: The writing file's layout until the writer has migrated it (see ``_migrate``).
    _layout: int = SCHEMA_VERSION
    #: What the writer's migration did, to be logged once no lock is held (see ``_commit``).
    _migrated: Migrated | None = None

    # -- reading -------------------------------------------------------------------------------

    def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        if self.path == ":memory:":  # one connection holds the whole database
            self._ensure_writer()
            with self._write_lock:
                return self._run(self._live_conn(), sql, params)
        with self._read_lock:
            if self._closed:
                raise StorageClosedError(self.path)
            if self._reader is None:
                if not os.path.exists(self.path):
                    # Nothing stored yet: an empty database answers, and nothing is created.
                    empty, _ = open_writer(":memory:", self.options)
                    try:
                        return self._run(empty, sql, params)
                    finally:
                        empty.close()
                self._reader = open_reader(self.path, self.busy_timeout)
            return self._run(self._reader, sql, params)

    def _run(
        self, conn: sqlite3.Connection, sql: str, params: tuple[object, ...]
    ) -> list[tuple[object, ...]]:
        try:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as error:
                if not str(error).startswith(_NOT_UTF8):
                    raise
                return _run_lenient(conn, sql, params)
        except sqlite3.Error as error:  # "database disk image is malformed", locked too long...
            raise StorageError(self.path, f"reading failed: {describe(error)}") from None

    def file_size(self) -> int:
        """Bytes on disk: the database file plus its WAL (0 for an in-memory store)."""
        if self.path == ":memory:":
            return 0
        total = 0
        for p in (self.path, self.path + "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(p)
        return total

    def size_bytes(self) -> int:
        return self.file_size()

    def run_on_writer(self, work: Callable[[sqlite3.Connection], object]) -> object:
        """``work`` on the writing connection, under the writer's lock: how ``":memory:"`` (one
        connection holds it) is pruned, a small step at a time."""
        self._ensure_writer()
        with self._write_lock:
            return work(self._live_conn())

    # -- the connections -------------------------------------------------------------------------

    def _open_writer(self) -> None:
        conn, self._layout = open_writer(self.path, self.options)
        limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_statement = max(1, min(_ROWS_PER_STATEMENT, limit // _COLUMNS))
        inserter = INSERTER.Inserter(conn, self._rows_per_statement, EmailMessage, SMSMessage)
        with self._write_lock:
            self._conn = conn
            self._inserter = inserter
        # Waits for a lock held by others are the writer's own, with backoff (see _commit).
        conn.execute("PRAGMA busy_timeout=50")

    def _close_writer_conn(self) -> None:
        # The inserter's prepared statements first: a connection closed with statements of its
        # own still open keeps its file open until they are finalized.
        with self._write_lock:
            if self._inserter is not None:
                self._inserter.close()
                self._inserter = None
        super()._close_writer_conn()

    def _forget_connections(self) -> None:
        if self._inserter is not None:
            leak(self._inserter)  # its statements belong to the inherited connection: never finalized
            self._inserter = None
        super()._forget_connections()

    def _live_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageClosedError(self.path)
        return self._conn

    def _is_retryable(self, error: BaseException) -> bool:
        return _is_file_trouble(error)

    def _is_wait(self, error: BaseException) -> bool:
        return _is_busy(error)

    def _before_write(self) -> None:
        self._bound_wal()

    def _commit(self, batch: list[object]) -> tuple[list[object], list[int]] | None:
        try:
            return super()._commit(batch)
        finally:
            self._log_migration()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Migrate a file of an older layout (``_write_lock`` held), as the first step of a write:
        SQLite's errors, a lock held by someone else above all, are the batch's to wait out."""
        if self._layout >= SCHEMA_VERSION:
            return
        done = migrate(conn, self.path)
        self._layout = SCHEMA_VERSION
        if done is not None:
            self._migrated = done

    def _log_migration(self) -> None:
        """On the writer thread, with no lock held (logging handlers are the application's code)."""
        done, self._migrated = self._migrated, None
        if done is not None:
            done.log()

    # -- writing ---------------------------------------------------------------------------------

    def _rows(self, batch: list[object]) -> tuple[list[Row | None], dict[int, BaseException]]:
        """The batch as the inserter takes it: an e-mail or SMS of the selected classes as it is
        (its row is read from its fields while it is bound), any other message as its row; one
        whose row cannot be built is refused alone."""
        if all_of_types(batch, _READ_FROM_FIELDS):
            return batch, {}  # type: ignore[return-value]
        if _READ_FROM_FIELDS.isdisjoint(map(type, batch)):
            return super()._rows(batch)  # none is read from its fields: no places to keep
        others = [i for i, m in enumerate(batch) if type(m) is not EmailMessage and type(m) is not SMSMessage]
        rows, refused = super()._rows([batch[i] for i in others])
        items: list[object] = list(batch)
        for i, row in zip(others, rows, strict=True):
            items[i] = row
        return items, {others[k]: error for k, error in refused.items()}  # type: ignore[return-value]

    def _write(self, rows: list[Row | None], refused: dict[int, BaseException]) -> list[int]:
        """One transaction for the batch: fast multi-row statements, or row by row if refused."""
        conn = self._live_conn()
        self._migrate(conn)
        try:
            conn.execute("BEGIN IMMEDIATE")
            if refused:
                ids = self._insert_one_by_one(conn, rows, refused)
            else:
                try:
                    ids = self._live_inserter().insert(rows)  # type: ignore[arg-type]
                except BaseException as error:
                    if _is_file_trouble(error):
                        raise
                    # SQLite refused a row: start over row by row, to find and drop only it.
                    _rollback(conn)
                    conn.execute("BEGIN IMMEDIATE")
                    ids = self._insert_one_by_one(conn, rows, refused)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return ids

    def _check_refusals(self, rows: list[Row | None], refused: dict[int, BaseException]) -> None:
        if refused:  # with nothing refused, not every row was: no need to look at each row
            super()._check_refusals(rows, refused)

    def _live_inserter(self) -> Inserter:
        if self._inserter is None:
            raise StorageClosedError(self.path)
        return self._inserter

    def _probe(self, row: Row) -> BaseException | None:
        """Whether SQLite takes ``row`` now: inserted, then rolled back."""
        conn = self._live_conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(insert_sql(1), row)
            except sqlite3.Error as error:
                if _is_file_trouble(error):
                    raise
                return error
            return None
        finally:
            _rollback(conn)

    def _insert_one_by_one(
        self, conn: sqlite3.Connection, rows: list[Row | None], refused: dict[int, BaseException]
    ) -> list[int]:
        ids: list[int] = []
        sql = insert_sql(1)
        for i, item in enumerate(rows):
            if item is None:
                ids.append(0)
                continue
            try:
                # An e-mail or SMS of the selected classes is still the message (see _rows).
                row = item if type(item) is tuple else item._row()  # type: ignore[attr-defined]
                ids.append(int(conn.execute(sql, row).lastrowid or 0))
            except BaseException as error:
                if _is_file_trouble(error):
                    raise
                refused[i] = error
                ids.append(0)
        return ids

    def _bound_wal(self) -> None:
        """Keep the WAL bounded when other processes write the same file.

        SQLite's automatic checkpoint is passive: while other connections keep transactions open
        back to back it never reaches the end of the WAL, which then grows without limit. So a
        writer finding the WAL past ``wal_limit`` checkpoints (TRUNCATE) before it writes again.
        Every notipipe process on the file does the same, so they stop adding to the WAL and one
        checkpoint gets through. Only a reader that keeps one transaction open for longer than
        ``busy_timeout`` (no checkpoint can pass it) makes them write on, retrying each second.
        """
        if self.path == ":memory:":
            return
        deadline: float | None = None
        while time.monotonic() >= self._next_checkpoint:
            try:
                size = os.path.getsize(self.path + "-wal")
            except OSError:
                return
            if size <= self.options.wal_limit:
                return
            blocked = self._checkpoint()
            if blocked is None:
                return
            now = time.monotonic()
            deadline = now + self.busy_timeout if deadline is None else deadline
            if now >= deadline:
                self._next_checkpoint = now + 1.0
                _log.warning(  # no lock held: logging handlers are the application's code
                    "notipipe: the WAL of %s is %d MiB and a checkpoint cannot pass (%s);"
                    " writing on, retrying each second",
                    self.path,
                    size >> 20,
                    describe(blocked),
                )

    def _checkpoint(self) -> BaseException | None:
        """One TRUNCATE checkpoint, waiting briefly for others; what blocked it, if anything."""
        with self._write_lock:
            conn = self._live_conn()
            try:
                conn.execute(f"PRAGMA busy_timeout={_CHECKPOINT_WAIT_MS}")
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as error:
                return error
            finally:
                conn.execute("PRAGMA busy_timeout=50")
        return sqlite3.OperationalError("another connection kept its transaction open") if busy else None


#: How sqlite3 says a TEXT value is not UTF-8 (another tool stored it); the whole fetch fails.
_NOT_UTF8: Final = "Could not decode to UTF-8"


def _run_lenient(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
    """The query again, its text decoded with the bytes that are not UTF-8 kept as lone
    surrogates: the row holding them then fails to become a message and is skipped alone (see
    ``DatabaseCore``), rather than every read failing. Only after such a failure: a text factory
    in Python costs every value of every read."""
    conn.text_factory = _lenient_text
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.text_factory = str


def _lenient_text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite has already rolled back after some errors (a full disk on COMMIT): rolling back
    # again would raise "no transaction is active" and hide the real reason.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
