"""The writer every notipipe store shares: a queue, one writer thread, group commits.

Producers in any number of threads call ``put``/``put_many``, which only append to a queue. One
writer thread owns the writing connection: it drains the queue in batches (at most
``batch_size`` messages) and commits each batch as one transaction. A batch is committed once it
is full or once its oldest message has waited ``max_delay`` seconds, at any rate of arrival, and
at once while a ``flush``, a read or ``close`` waits for it.

The promises (back-pressure, ``flush``, reports of refused rows and of trouble, a writer that
never dies silently, fork) are the same for every backend, so they live here once;
``MessageStore`` (SQLite) and ``PgMessageStore`` (PostgreSQL) supply the connection, the
transaction and the SQL. What a backend calls a *wait* (SQLite: another process holds the lock;
PostgreSQL: the server cannot be reached) is retried silently until ``busy_timeout`` and then
logged; other trouble is retried and reported by ``flush``; a refused row is dropped alone,
unless the database refuses every row of a batch and also a row it took before (a schema change:
that is the database's trouble, retried and reported, and the alerts are kept). A batch that runs
into the server's time limit is split, and the writer keeps to the size that fits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

from notipipe._errors import ReentrancyError, StorageClosedError, StorageError
from notipipe._limits import TIME_LIMIT
from notipipe._metrics import CommitTimes, StoreCounters
from notipipe._storage.interface import DEFAULT_OPTIONS, StoreOptions
from notipipe._storage.pending import Pending
from notipipe._storage.urls import redact, scrub

if TYPE_CHECKING:
    from notipipe._storage.interface import Storage

__all__ = ["GroupCommitStore", "Row", "describe", "leak"]

_log = logging.getLogger("notipipe")

#: (kind, created_at, priority, address, subject, body): one stored message.
type Row = tuple[str, float, int, str, str, str]

#: The writer's backoff while the database is busy or failing: from the first to the last value.
_BACKOFF_FIRST: Final = 0.005
#: Batches that may wait for the writer before producers block (the default ``max_pending``),
#: beyond those an overlapping writer has in flight (``_window`` more on such a backend).
_QUEUED_BATCHES: Final = 4
#: After a batch ran into the server's time limit, the writer keeps to the size that fit, and goes
#: back to its batch_size once this long (seconds) passed without another, so that a limit lifted
#: (or a timeout that was a lock wait, not the batch's size) costs no more than this.
_GROW_EVERY: Final = 60.0


def _probe_rows() -> list[Row]:
    """Two alerts that tell "the database refuses these alerts" from "it refuses every row": an
    e-mail and an SMS of now, each with text of its own (a uniqueness rule, or one about a kind,
    a time or a number, cannot refuse both)."""
    token = f"notipipe probe {uuid.uuid4().hex}"
    now = time.time()
    return [("email", now, 1, "probe@example.com", token, token), ("sms", now, 1, "+15550000000", "", token)]


def _is_duplicate(error: BaseException) -> bool:
    """A uniqueness rule refused a row: that row's trouble, never every row's."""
    return getattr(error, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in str(error)


def describe(error: BaseException) -> str:
    """The reason the database gave, e.g. "database or disk is full"."""
    return str(error).strip() or type(error).__name__


class _WriteProblem:
    """What currently stops the writer from committing (a wait, or other trouble)."""

    __slots__ = ("busy", "error", "since", "warned")

    def __init__(self, error: BaseException, busy: bool) -> None:
        self.error = error
        self.busy = busy
        self.since = time.monotonic()
        self.warned = False


class _EveryRowRefusedError(Exception):
    """The database refused every row of a batch, and a row it accepted before too: a schema
    change (a NOT NULL column without a default, a trigger that raises), not bad alerts. The
    batch is kept and retried like any other trouble."""

    def __init__(self, refusal: BaseException) -> None:
        super().__init__(
            "the database refuses every row, also alerts made to test it (a schema change?):"
            f" {describe(refusal)}"
        )
        self.refusal = refusal


class _Connection(Protocol):
    """What the shared code does with a backend's connection (sqlite3's or psycopg's)."""

    def close(self) -> None: ...


class _Started:
    """A batch taken off the queue, its rows built (and, by an overlapping backend, sent)."""

    __slots__ = ("batch", "built", "rows", "taken")

    def __init__(
        self, batch: list[object], rows: list[Row | None], built: dict[int, BaseException], taken: float
    ) -> None:
        self.batch = batch
        self.rows = rows
        self.built = built
        self.taken = taken  # when the writer took the batch: the commit latency is timed from then


#: The largest id either backend stores (SQLite's row id, PostgreSQL's bigint).
_MAX_ID = 2**63 - 1
_COLUMNS: Final = "id, kind, created_at, priority, address, subject, body"


class GroupCommitStore(ABC):
    """A queue of messages with a group-committing writer thread; subclasses write and read.

    ``to_rows`` turns a batch of messages into ``Row``s; ``on_commit``, if given, is called by the
    writer thread with each committed batch and the stored ids of its messages (0 for a message
    that could not be stored), with no lock held: that is how observers are told only after
    storage.

    Back-pressure: once ``max_pending`` messages wait for the writer, a producer blocks until the
    writer catches up; that bounds memory and the storage delay. The default is four batches,
    plus, on a backend that sends batches ahead (``_overlap``), the ``_window`` it may have in
    flight: those count as pending too, and without room beyond them every commit would stall the
    producers until the writer, idle meanwhile, had a whole batch again.
    """

    #: The longest pause between two attempts while the database is busy or failing.
    _backoff_last: ClassVar[float] = 0.5
    #: Read SQL: the table and the parameter placeholder of the backend.
    _table: ClassVar[str]
    _param: ClassVar[str]
    #: The writing connection (guarded by ``_write_lock``) and the reading one (``_read_lock``),
    #: each None until opened; a backend narrows their type.
    _conn: _Connection | None
    _reader: _Connection | None

    def __init__(
        self,
        path: str,
        to_rows: Callable[[list[object]], list[Row]],
        options: StoreOptions = DEFAULT_OPTIONS,
        *,
        on_commit: Callable[[list[Any], list[int]], object] | None = None,
        max_pending: int | None = None,
    ) -> None:
        batch_size = options.batch_size
        if max_pending is None:
            max_pending = (_QUEUED_BATCHES + (self._window if self._overlap else 0)) * batch_size
        if type(max_pending) is not int or max_pending < batch_size:
            raise ValueError(f"max_pending must be an int >= batch_size ({batch_size}), got {max_pending!r}")
        self.max_pending = max_pending
        # ``path`` as given (a server's URL may carry a password) and as any message shows it.
        self._given = path
        self.path = redact(path)
        self.options = options
        # The options the producers and the writer thread read most, at hand.
        self.batch_size = batch_size
        self.max_delay: float = options.max_delay
        self.busy_timeout: float = options.busy_timeout
        self._to_rows = to_rows
        self._on_commit = on_commit
        self._conn = None
        self._reader = None
        self._new_locks()
        self._pending: Pending[object] = Pending(batch_size)
        self._oldest = 0.0  # monotonic time the oldest pending message was queued
        self._enqueued = 0  # messages ever put; guarded by _cond
        self._committed = 0  # messages ever taken off the queue and settled (stored or dropped)
        self._stored = 0  # messages ever committed to the database
        # Counted by the writer once per committed batch, under _cond (see counters()).
        self._refused_rows = 0  # messages the database refused
        self._batches = 0  # transactions committed
        self._commit_times = CommitTimes()
        self._flush_waiters = 0
        self._problem: _WriteProblem | None = None  # a retried failure, current
        self._failed_attempts = 0  # writes that failed, ever: "has it failed again since?"
        self._dropped: list[tuple[object, BaseException]] = []  # rows refused, not yet reported
        self._news: BaseException | None = None  # an after_commit observer's exit; reported once
        self._crash: StorageError | None = None  # why the writer stopped, if it did
        self._closed = False
        self._fit = options.batch_size  # the most rows one transaction takes (see _split)
        self._fit_since = 0.0  # monotonic time _fit last changed
        self._shrunk: BaseException | None = None  # a split's reason, until a batch commits
        self._writer: threading.Thread | None = None
        self._writer_ident: int | None = None
        _STORES.add(self)

    # -- producers -----------------------------------------------------------------------------

    def put(self, message: object) -> None:
        """Queue one message for the next group commit."""
        if self._writer is None:
            self._ensure_writer()
        with self._cond:
            self._wait_for_room()
            if not self._pending:
                self._oldest = time.monotonic()
                self._cond.notify_all()  # the writer may be idle, waiting with no timeout
            self._pending.append(message)
            self._enqueued += 1
            if len(self._pending) == self.batch_size:
                self._cond.notify_all()

    def put_many(self, messages: Iterable[object]) -> int:
        """Queue a batch; return how many messages it held."""
        batch = list(messages)  # queued as it is (see Pending): a copy the caller cannot change
        if not batch:
            return 0
        if self._writer is None:
            self._ensure_writer()
        with self._cond:
            self._wait_for_room()
            was_empty = not self._pending
            if was_empty:
                self._oldest = time.monotonic()
            self._pending.extend(batch)
            self._enqueued += len(batch)
            if was_empty or len(self._pending) >= self.batch_size:
                self._cond.notify_all()
        return len(batch)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every message put before this call is committed (durable).

        Raises ``TimeoutError`` if ``timeout`` ran out (a busy database is waited for),
        ``StorageError`` if the file has other trouble right now, if messages were refused since
        the last report, or if the writer failed.
        """
        if self._on_writer_thread():
            raise ReentrancyError(
                f"{self.path}: flush() was called from the writer thread (an after_commit observer);"
                " it would wait on itself. Everything delivered to it is already committed."
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._enqueued
            attempts = self._failed_attempts
            self._flush_waiters += 1
            self._cond.notify_all()  # the writer retries at once, even in the midst of a backoff
            try:
                while self._committed < target:
                    self._raise_if_failed()
                    if self._failing_since(attempts):
                        raise self._problem_error()
                    if self._writer is None or not self._writer.is_alive():
                        raise StorageClosedError(self.path)
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        why = (
                            f" ({self._describe(self._problem.error)} for {self._problem_age():.1f} s)"
                            if self._problem is not None
                            else ""
                        )
                        raise TimeoutError(
                            f"{self.path}: {target - self._committed} messages not yet stored{why}"
                        )
                    self._cond.wait(remaining)
                self._raise_if_failed()
            finally:
                self._flush_waiters -= 1

    @property
    def durable(self) -> int:
        """How many messages this store has committed since it was opened."""
        with self._cond:
            return self._stored

    @property
    def pending(self) -> int:
        """How many messages are queued and not yet committed."""
        with self._cond:
            return self._enqueued - self._committed

    def counters(self) -> StoreCounters:
        """What this store has counted since it opened, read at one instant."""
        with self._cond:
            return StoreCounters(
                saved=self._enqueued,
                committed=self._stored,
                refused=self._refused_rows,
                # Not ``pending`` (below): a committed batch stays there until its after_commit
                # observers have heard of it, and would be counted twice.
                pending=self._enqueued - self._stored - self._refused_rows,
                batches=self._batches,
                commit_seconds=self._commit_times.snapshot(),
            )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Commit what is queued, stop the writer and close the file. Idempotent.

        Raises ``StorageError`` if anything accepted could not be stored (and says why).
        """
        with self._cond:
            first = not self._closed
            self._closed = True
            self._cond.notify_all()
        with self._read_lock:
            self._close_reader()
        writer = self._writer
        if writer is not None and self._on_writer_thread():
            return  # an after_commit observer closed us: the writer drains and closes on return
        if writer is not None:
            writer.join()
        self._close_writer_conn()
        if first:
            with self._cond:
                lost = self._enqueued - self._committed
                if lost:
                    cause = self._crash.__cause__ if self._crash is not None else None
                    self._crash = StorageError(
                        self.path, f"{lost} alerts could not be stored before closing: {self._lost_why()}"
                    )
                    self._crash.__cause__ = cause
                self._raise_if_failed()

    def _lost_why(self) -> str:
        """Why alerts still queued at close could not be stored (called with ``_cond`` held)."""
        if self._crash is not None:
            return self._crash.reason
        if self._problem is not None:
            return self._describe(self._problem.error)
        return "the writer stopped"

    # -- reading -------------------------------------------------------------------------------

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run a read-only query, after committing what this process has queued.

        From the writer thread (an ``after_commit`` observer) nothing is waited for: everything
        it has been told of is committed already.
        """
        if self._closed:
            raise StorageClosedError(self.path)
        if self._writer is not None and not self._on_writer_thread():
            self._wait_for_queued()
        return self._read(sql, params)

    # The reads DatabaseConnection offers, in the backend's SQL. Rows are
    # (id, kind, created_at, priority, address, subject, body).

    def last(self, n: int) -> list[tuple[object, ...]]:
        """The ``n`` most recently stored rows, oldest first."""
        t, p = self._table, self._param
        return self.query(
            f"SELECT * FROM (SELECT {_COLUMNS} FROM {t} ORDER BY id DESC LIMIT {p}) AS recent ORDER BY id",
            (n,),
        )

    def after(self, message_id: int, limit: int) -> list[tuple[object, ...]]:
        """Up to ``limit`` rows stored with an id above ``message_id``, in id order."""
        t, p = self._table, self._param
        sql = f"SELECT {_COLUMNS} FROM {t} WHERE id > {p} ORDER BY id LIMIT {p}"
        return self.query(sql, (message_id, limit))

    def id_before_time(self, since: float) -> int:
        """The id just before the first alert created at or after ``since``; the last id if none
        is (0: nothing stored). A row whose time is no alert's (another tool's NaN, infinity or
        1e300, which sort after every time) starts nothing: readers skip it."""
        t, p = self._table, self._param
        rows = self.query(
            f"SELECT (SELECT min(id) FROM {t} WHERE created_at >= {p} AND created_at < {p}),"
            f" (SELECT max(id) FROM {t})",
            (since, float(TIME_LIMIT)),
        )
        first, last = rows[0] if rows else (None, None)
        if isinstance(first, int):
            return first - 1
        return last if isinstance(last, int) else 0

    def count_between(self, after_id: int, upto_id: int) -> int:
        """Rows stored with an id above ``after_id`` and up to ``upto_id``."""
        t, p = self._table, self._param
        rows = self.query(f"SELECT count(*) FROM {t} WHERE id > {p} AND id <= {p}", (after_id, upto_id))
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def count_by_kind(self) -> dict[str, int]:
        rows = self.query(f"SELECT kind, count(*) FROM {self._table} GROUP BY kind ORDER BY kind")
        return {str(kind): int(n) for kind, n in rows}  # type: ignore[call-overload]

    def count_by_priority(self) -> dict[int, int]:
        rows = self.query(f"SELECT priority, count(*) FROM {self._table} GROUP BY priority ORDER BY priority")
        return {int(priority): int(n) for priority, n in rows}  # type: ignore[call-overload]

    def count_by_kind_and_priority(self, upto_id: int | None) -> dict[tuple[str, int], int]:
        t, p = self._table, self._param
        rows = self.query(
            f"SELECT kind, priority, count(*) FROM {t} WHERE id <= {p} "
            "GROUP BY kind, priority ORDER BY kind, priority",
            (_MAX_ID if upto_id is None else upto_id,),
        )
        return {(str(kind), int(pr)): int(n) for kind, pr, n in rows}  # type: ignore[call-overload]

    def time_range(self) -> tuple[float | None, float | None]:
        """The earliest and latest ``created_at`` stored (None, None if nothing is). Only Unix
        times count: another tool's row (infinite, negative, text) is no alert's time."""
        rows = self.query(
            f"SELECT min(created_at), max(created_at) FROM {self._table}"
            f" WHERE created_at >= 0 AND created_at < {self._param}",
            (TIME_LIMIT,),
        )
        if not rows:
            return None, None
        first, last = rows[0]
        return (
            float(first) if isinstance(first, (int, float)) else None,
            float(last) if isinstance(last, (int, float)) else None,
        )

    @abstractmethod
    def size_bytes(self) -> int:
        """Bytes the stored alerts take in the database."""

    def origins(self) -> list[tuple[str, int, int]]:
        """(host, processes, alerts) per host that saved alerts, if the backend records origins."""
        return []

    @abstractmethod
    def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        """Run one read-only query on the backend's reading connection."""

    def _wait_for_queued(self) -> None:
        """Before a read: let what this process queued be committed, waiting at most
        ``busy_timeout``; then the read shows what is committed. Never raises: the reports are
        flush()'s and close()'s, and a file that cannot be written can still be read."""
        deadline = time.monotonic() + self.busy_timeout
        with self._cond:
            target = self._enqueued
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while (
                    self._committed < target
                    and self._crash is None
                    and (self._problem is None or self._problem.busy)
                    and self._writer is not None
                    and self._writer.is_alive()
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            finally:
                self._flush_waiters -= 1

    # -- opening -------------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        with self._open_lock:
            if self._writer_started():
                return
            if self._closed:
                raise StorageClosedError(self.path)
            self._open_writer()
            writer = threading.Thread(
                target=self._write_loop, name=f"notipipe-writer:{self.path}", daemon=True
            )
            writer.start()
            self._writer = writer

    def _writer_started(self) -> bool:  # re-read under _open_lock (another thread may have won)
        return self._writer is not None

    def _on_writer_thread(self) -> bool:
        return self._writer_ident == threading.get_ident()

    # -- what a backend supplies -------------------------------------------------------------------

    @abstractmethod
    def _open_writer(self) -> None:
        """Open the writing connection (raise ``StorageError`` if the database cannot be used)."""

    def _close_writer_conn(self) -> None:
        """Close the writing connection, if open."""
        with self._write_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _close_reader(self) -> None:
        """Close the reading connection, if open (called with ``_read_lock`` held)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    #: True for a backend whose ``_start_write`` starts a batch's write and returns at once (NATS:
    #: the publishes go out, the acknowledgements come later): the writer then takes and starts
    #: the next batches, those ready, before it waits for the one before; batches still commit
    #: one at a time, in order. Such a backend never splits a batch (``_is_too_big``).
    _overlap: ClassVar[bool] = False
    #: With ``_overlap``: the most batches started and not yet committed (the one awaited and
    #: those sent behind it). They count as pending: ``max_pending`` bounds them too.
    _window: ClassVar[int] = 2

    def _start_write(self, rows: list[Row | None], refused: dict[int, BaseException]) -> None:  # noqa: B027
        """Start writing ``rows`` without waiting (``_write_lock`` held; only if ``_overlap``);
        ``_write`` finishes it. Trouble here is left for ``_write`` to meet and report."""

    @abstractmethod
    def _write(self, rows: list[Row | None], refused: dict[int, BaseException]) -> list[int]:
        """Store ``rows`` in one transaction (``_write_lock`` held); return their ids (read only
        with ``on_commit``: without it a backend may return none).

        A None row was refused already; a row the database refuses is added to ``refused`` and
        gets id 0. Raise to have the whole batch retried.
        """

    @abstractmethod
    def _is_retryable(self, error: BaseException) -> bool:
        """True for trouble with the database or the machine (retry the batch), False for a bug."""

    @abstractmethod
    def _is_wait(self, error: BaseException) -> bool:
        """True if ``error`` means "wait" (busy, unreachable) rather than trouble to report."""

    def _before_write(self) -> None:  # noqa: B027 - optional: most backends need nothing here
        """Called by the writer thread before each batch, with no lock held."""

    @abstractmethod
    def _probe(self, row: Row) -> BaseException | None:
        """Write ``row`` in a transaction that is rolled back (``_write_lock`` held); the error if
        the database refuses it, None if it takes it. Raise for any other trouble."""

    def _is_too_big(self, error: BaseException) -> bool:
        """True if ``error`` is the server's time limit ending an attempt (a smaller batch fits)."""
        return False

    def _forget_connections(self) -> None:
        """In a forked child: drop the inherited connections without closing them (see leak)."""
        for conn in (self._conn, self._reader):
            if conn is not None:
                leak(conn)
        self._conn = self._reader = None

    # -- the writer thread ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        self._writer_ident = threading.get_ident()
        try:
            ahead: deque[_Started] = deque()  # started behind the one awaited (overlapping)
            while True:
                started = ahead.popleft() if ahead else None
                if started is None:
                    batch = self._next_batch()
                    if not batch:
                        return  # closed and drained, or closed while the file keeps failing
                    if self._overlap:
                        started = self._start(batch)
                if started is None:
                    done = self._commit(batch)
                else:
                    self._start_ahead(ahead)
                    done = self._finish(started, behind=ahead)
                if done is None:
                    self._log_lost()
                    return
                batch, ids = done  # the batch may have been split: what was committed
                if self._on_commit is not None:
                    self._deliver(batch, ids)
                with self._cond:  # settled: flush() returns once observers have heard of it
                    self._committed += len(batch)
                    self._cond.notify_all()
        except BaseException as error:  # noqa: BLE001 - nothing may end this thread unreported
            _log.critical("notipipe writer for %s stopped", self.path, exc_info=error)
            crash = StorageError(
                self.path, f"the writer stopped: {type(error).__name__}: {self._describe(error)}"
            )
            crash.__cause__ = self._cause(error)
            with self._cond:
                self._crash = self._crash or crash
                self._cond.notify_all()
        finally:
            self._writer_ident = None  # thread ids are reused: no later thread is the writer
            if self._closed or self._crash is not None:
                self._close_writer_conn()

    def _start_ahead(self, ahead: deque[_Started]) -> None:
        """An overlapping backend sends the next batches, those due now, while the answer of the
        one before them is awaited: up to ``_window`` batches started in all."""
        while len(ahead) < self._window - 1:
            ready = self._ready_batch()
            if not ready:
                return
            ahead.append(self._start(ready))

    def _log_lost(self) -> None:
        """Closed while the database kept failing: what is lost is logged here too, since a
        close() from the writer thread itself (an after_commit observer) cannot raise it."""
        with self._cond:
            lost = self._enqueued - self._committed
            why = self._lost_why()
        _log.error("notipipe: %s closed with %d alerts not stored: %s", self.path, lost, why)

    def _next_batch(self) -> list[object]:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return []
            # Let the batch fill, but never past max_delay after its oldest message was queued.
            deadline = self._oldest + self.max_delay
            limit = self._fit
            while len(self._pending) < limit and not self._closed and not self._flush_waiters:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._take()

    def _ready_batch(self) -> list[object]:
        """The next batch if it is due now (full, past ``max_delay``, waited for by a flush or a
        read, or closing); else nothing. Never waits."""
        with self._cond:
            n = len(self._pending)
            due = n >= self._fit or (
                n > 0
                and (
                    self._closed
                    or self._flush_waiters > 0
                    or time.monotonic() >= self._oldest + self.max_delay
                )
            )
            return self._take() if due else []

    def _take(self) -> list[object]:
        # Called with _cond held.
        batch = self._pending.take(self._fit)
        if self._pending:
            self._oldest = float("-inf")  # they have waited a whole batch already: no delay
        return batch

    def _start(self, batch: list[object]) -> _Started:
        """The batch's rows; an overlapping backend starts sending them."""
        taken = time.monotonic()
        rows, built = self._rows(batch)
        self._before_write()
        if self._overlap:
            with self._write_lock:
                self._start_write(rows, dict(built))
        return _Started(batch, rows, built, taken)

    def _commit(self, batch: list[object]) -> tuple[list[object], list[int]] | None:
        """Commit ``batch``: see ``_finish``."""
        return self._finish(self._start(batch), behind=())

    def _finish(self, started: _Started, behind: Sequence[_Started]) -> tuple[list[object], list[int]] | None:
        """Commit the started batch, retrying while the database is busy or failing; return what was
        committed and the stored ids (see ``_write``): the whole batch, or the front of it that
        fits in the server's time limit (the rest goes back to the front of the queue).

        Returns None only if the store was closed while the database kept failing (close()
        reports what was lost); the batch goes back to the front of the queue, ``behind`` (the
        next batches, started already) after it.
        """
        batch, rows, built = started.batch, started.rows, started.built
        delay = _BACKOFF_FIRST
        while True:
            refused = dict(built)  # each attempt finds the rows the database refuses anew
            started_closed = self._closed
            try:
                with self._write_lock:
                    self._check_still_refusing()
                    ids = self._write(rows, refused)
                    self._check_refusals(rows, refused)
            except BaseException as error:
                if not (isinstance(error, _EveryRowRefusedError) or self._is_retryable(error)):
                    raise
                if len(batch) > 1 and self._is_too_big(error):
                    assert not behind, "an overlapping backend never splits a batch"
                    batch, rows, built = self._split(batch, rows, built, error)
                    continue
                if not self._wait_out(error, delay, give_up=started_closed):
                    with self._cond:
                        for later in reversed(behind):
                            self._pending.push_front(later.batch)
                        self._pending.push_front(batch)
                    return None
                delay = min(delay * 2, self._backoff_last)
                continue
            break
        self._settle(batch, refused, started.taken)
        return batch, ids

    def _settle(self, batch: list[object], refused: dict[int, BaseException], taken: float) -> None:
        """Account for a committed batch (taken off the queue at ``taken``), and log what
        changed (with no lock held: logging handlers are the application's code)."""
        seconds = time.monotonic() - taken
        with self._cond:
            recovered = self._problem if self._problem is not None and self._problem.warned else None
            age = self._problem_age()
            self._problem = None
            self._stored += len(batch) - len(refused)
            self._refused_rows += len(refused)
            self._batches += 1
            self._commit_times.observe(seconds)
            for i in sorted(refused):
                self._dropped.append((batch[i], refused[i]))
        if recovered is not None:
            _log.warning(
                "notipipe: %s is writable again after %.1f s (%s)",
                self.path,
                age,
                self._describe(recovered.error),
            )
        self._learn_fit(len(batch))
        for i in sorted(refused):
            _log.error("notipipe: %s refused alert %r: %s", self.path, batch[i], self._describe(refused[i]))

    def _rows(self, batch: list[object]) -> tuple[list[Row | None], dict[int, BaseException]]:
        """Rows for the batch; a message whose row cannot be built is refused alone."""
        try:
            return list(self._to_rows(batch)), {}
        except Exception:  # noqa: BLE001 - find the culprit(s) one by one
            rows: list[Row | None] = []
            refused: dict[int, BaseException] = {}
            for i, message in enumerate(batch):
                try:
                    rows.append(self._to_rows([message])[0])
                except Exception as error:  # noqa: BLE001 - reported by flush/close
                    rows.append(None)
                    refused[i] = error
            return rows, refused

    # -- a refusal of every row, a batch too big for the server's time limit ------------------------

    def _check_refusals(self, rows: list[Row | None], refused: dict[int, BaseException]) -> None:
        """Raise ``_EveryRowRefusedError`` if the database refused every row it was given and
        refuses the probe alerts as well (``_write_lock`` held).

        A lone bad alert (its batch may hold only it) is refused while a probe goes in: that
        alert is dropped alone, as ever.
        """
        if not refused:
            return  # the common case, at once: no pass over the batch
        given = [i for i, row in enumerate(rows) if row is not None]
        if not given or any(i not in refused for i in given):
            return
        refusal = self._refuses_every_row()
        if refusal is not None:
            raise _EveryRowRefusedError(refusal) from refused[given[0]]

    def _check_still_refusing(self) -> None:
        """While the database refuses every row, ask it with the probes alone before writing the
        batch again (which finds each refused row one by one): a retry costs two rows."""
        problem = self._problem
        if problem is not None and isinstance(problem.error, _EveryRowRefusedError):
            refusal = self._refuses_every_row()
            if refusal is not None:
                raise _EveryRowRefusedError(refusal) from problem.error.__cause__

    def _refuses_every_row(self) -> BaseException | None:
        """The database's refusal if it refuses both probe alerts (not by a uniqueness rule)."""
        first: BaseException | None = None
        for row in _probe_rows():
            refusal = self._probe(row)
            if refusal is None or _is_duplicate(refusal):
                return None
            first = first or refusal
        return first

    def _split(
        self,
        batch: list[object],
        rows: list[Row | None],
        built: dict[int, BaseException],
        error: BaseException,
    ) -> tuple[list[object], list[Row | None], dict[int, BaseException]]:
        """The batch ran into the server's time limit: keep its front half for the next attempt,
        put the rest back at the front of the queue, and take no more than that from now on."""
        n = len(batch) // 2
        with self._cond:
            self._pending.push_front(batch[n:])
            self._oldest = float("-inf")
        self._fit = n
        self._fit_since = time.monotonic()
        self._shrunk = error
        return batch[:n], rows[:n], {i: e for i, e in built.items() if i < n}

    def _learn_fit(self, committed: int) -> None:
        """After a commit: say once which size fit, and after ``_GROW_EVERY`` without another
        timeout go back to ``batch_size`` (a limit lifted is noticed; one still there costs a
        few splits)."""
        shrunk, self._shrunk = self._shrunk, None
        if shrunk is not None:
            _log.warning(
                "notipipe: a batch ran into the time limit of %s (%s); writing at most %d alerts per"
                " transaction",
                self.path,
                self._describe(shrunk),
                self._fit,
            )
        elif (
            self._fit < self.batch_size
            and committed >= self._fit
            and time.monotonic() - self._fit_since >= _GROW_EVERY
        ):
            self._fit = self.batch_size
            self._fit_since = time.monotonic()

    def _wait_out(self, error: BaseException, delay: float, *, give_up: bool) -> bool:
        """Record a failed attempt and sleep ``delay``; False, at once, if ``give_up`` (the
        attempt began after close()) and the trouble is other than a wait (which close() waits
        out too)."""
        with self._cond:
            problem = self._problem
            busy = self._is_wait(error)
            if problem is None or problem.busy != busy:
                problem = self._problem = _WriteProblem(error, busy)
            problem.error = error
            self._failed_attempts += 1
            # Several processes on one file take turns at the lock, a server restarts: a short
            # wait is normal and not logged; one past busy_timeout, or any other trouble, is.
            warn = not problem.warned and (not problem.busy or self._problem_age() >= self.busy_timeout)
            problem.warned = problem.warned or warn
            waiting = self._enqueued - self._committed
            self._cond.notify_all()  # flush() and blocked producers re-check the problem
            if give_up and not problem.busy:
                return False
        if warn:  # no lock held: logging handlers are the application's code
            _log.warning(
                "notipipe: cannot write to %s (%s); %d alerts wait and are retried",
                self.path,
                self._describe(error),
                waiting,
            )
        with self._cond:
            self._cond.wait(delay)
        return True

    def _deliver(self, batch: list[object], ids: list[int]) -> None:
        assert self._on_commit is not None
        try:
            self._on_commit(batch, ids)
        except BaseException as error:  # noqa: BLE001 - the writer must outlive its observers
            _log.error(
                "notipipe: an after_commit observer raised %s on the writer thread; the alerts are"
                " stored, the rest of this batch's delivery was skipped",
                type(error).__name__,
                exc_info=error,
            )
            with self._cond:
                self._news = self._news or error
                self._cond.notify_all()

    # -- state checks ----------------------------------------------------------------------------

    def _wait_for_room(self) -> None:
        # Called with _cond held. A batch larger than max_pending still goes in, alone. The
        # writer thread itself (an after_commit observer saving) never waits: it would wait on
        # itself.
        self._check_open()
        if self._on_writer_thread():
            return
        attempts = self._failed_attempts
        while self._enqueued - self._committed >= self.max_pending:
            if self._failing_since(attempts):
                raise self._problem_error()
            self._cond.notify_all()
            self._cond.wait()
            self._check_open()

    def _failing_since(self, attempts: int) -> bool:
        """True if a write failed, for a reason other than a busy lock, after ``attempts``."""
        return self._problem is not None and not self._problem.busy and self._failed_attempts > attempts

    def _problem_age(self) -> float:
        return 0.0 if self._problem is None else time.monotonic() - self._problem.since

    def _problem_error(self) -> StorageError:
        assert self._problem is not None
        return StorageError(
            self.path,
            f"{self._describe(self._problem.error)} ({self._enqueued - self._committed} alerts wait in memory"
            f" and are retried; failing for {self._problem_age():.1f} s)",
        )

    def _describe(self, error: BaseException) -> str:
        """The reason a driver gave, as a message may show it: a driver may repeat the URL it was
        given, password and all."""
        return scrub(describe(error), self._given)

    def _cause(self, error: BaseException) -> BaseException | None:
        """``error``, to chain to the error raised for it, unless its text shows what
        ``_describe`` hides (then the chain would show it)."""
        return error if self._describe(error) == describe(error) else None

    def _check_open(self) -> None:
        if self._crash is not None:
            raise self._crash
        if self._closed:
            raise StorageClosedError(self.path)

    def _raise_if_failed(self) -> None:
        """Raise what flush()/close() must report: news once (refused rows, an observer's exit),
        a stopped writer every time."""
        dropped, self._dropped = self._dropped, []
        if dropped:
            message, error = dropped[0]
            raise StorageError(
                self.path,
                f"{len(dropped)} alert(s) could not be stored; the first, {message!r}:"
                f" {self._describe(error)}",
            ) from self._cause(error)
        news, self._news = self._news, None
        if news is not None:
            raise StorageError(
                self.path,
                f"an after_commit observer raised {type(news).__name__}({news}) on the writer thread;"
                " the alerts were stored, the rest of that batch's delivery was skipped",
            ) from news
        if self._crash is not None:
            raise self._crash

    # -- fork ------------------------------------------------------------------------------------

    def _new_locks(self) -> None:
        # _write_lock guards the writing connection, _read_lock the reading one; on a backend
        # whose calls take library-wide locks (SQLite) a fork waits for both (see _before_fork),
        # so that a child never inherits one of those held. A backend whose calls wait on the
        # network takes none at fork: a fork must not wait on a server.
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())

    def _before_fork(self) -> None:
        # The order every other path takes them in: read, open, write.
        self._read_lock.acquire()
        self._open_lock.acquire()
        self._write_lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._write_lock.release()
        self._open_lock.release()
        self._read_lock.release()

    def _after_fork_in_child(self) -> None:
        # The child has no writer thread, and connections must not cross a fork: keep the
        # inherited ones referenced forever (closing them could touch the parent's file state,
        # or end the parent's server session) and leave this store closed. What was queued
        # belongs to the parent, which commits it.
        self._forget_connections()
        self._writer = None
        self._writer_ident = None
        self._new_locks()
        self._pending = Pending[object](self.batch_size)
        self._enqueued = self._committed = 0
        self._closed = True


_STORES: weakref.WeakSet[GroupCommitStore] = weakref.WeakSet()
#: The stores locked by the before-fork handler, for the after-fork handlers to release: the
#: same ones, whatever other threads created meanwhile.
_FORKING: list[GroupCommitStore] = []


def leak(conn: object) -> None:
    """Keep a connection inherited across fork alive until the process ends, even at exit.

    Closing it (which finalising the object does) could checkpoint or unlink files the parent
    still uses, or end the server session whose socket the parent shares; a reference count that
    never drops to zero means it is never finalised.
    """
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))


def _before_fork() -> None:
    _FORKING[:] = list(_STORES)
    for store in _FORKING:
        store._before_fork()


def _after_fork_in_parent() -> None:
    for store in _FORKING:
        store._after_fork_in_parent()
    _FORKING.clear()


def _after_fork_in_child() -> None:
    for store in _FORKING:
        store._after_fork_in_child()
    _FORKING.clear()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


if TYPE_CHECKING:

    def _implements_storage(store: GroupCommitStore) -> Storage:  # checked by mypy, never run
        return store
