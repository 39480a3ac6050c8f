"""``PgMessageStore``: every accepted alert kept in PostgreSQL, written by one thread per process.

The queue, the group commit, back-pressure and the reports are ``GroupCommitStore``'s, exactly as
for SQLite. Here is what PostgreSQL changes:

* Each batch is one transaction: the rows go in with one ``COPY ... FROM STDIN (FORMAT
  BINARY)``, each with its origin (host and process), and the table gives them their ids in save
  order (its identity's default). With an ``after_commit`` observer, which gets each message with
  its id, the ids are reserved first instead (``nextval`` of the identity, in save order) and
  COPied with the rows. Four round trips a batch: BEGIN (with the reservation, if any), the
  COPY's start and end, and COMMIT with the wake-up (below); each is a wait during which the
  producers hold the GIL.
* The server unreachable (down, restarting, the connection lost) is a *wait*, like a locked
  SQLite file: the writer keeps its batch and reconnects with capped backoff, producers block
  once the queue is full, ``flush(timeout)`` raises ``TimeoutError``, and a warning is logged
  once the outage passes ``busy_timeout``. Other errors are reported by ``flush`` (the server's
  reason in a ``StorageError``) and retried.
* A commit in doubt (the connection died while COMMIT was on its way) is resolved, never
  guessed: the writer notes the transaction id before COMMIT and, once reconnected, asks the
  server (``pg_xact_status``) whether it committed, and checks that the first row the batch wrote
  is there with that transaction id, this process as its origin and its contents (after a crash
  the server may give a lost transaction's id to another); only if it did not commit is the
  batch sent again (with new ids). So every flushed alert is stored exactly once.
* A row the server refuses (text holding NUL, which PostgreSQL's text cannot) is dropped alone:
  the batch is written again row by row, each in a savepoint, and the refused rows are reported
  by the next ``flush``. If it refuses every row, and two alerts made to test it too (another tool
  added a NOT NULL column without a default), the batch is kept and retried as other trouble.
* An error after which this session may never write again, though a new one could (read-only
  after a failover or ``default_transaction_read_only``, a ``statement_timeout`` or
  ``lock_timeout``, an administrator's intervention), costs the session: the next attempt runs
  on a new one. A batch that runs into ``statement_timeout`` is split (``GroupCommitStore``).
* The first connection: a server that cannot be reached or is not ready yet (refused, timed out,
  starting up) is waited for like any later outage; one that answers and refuses this
  connection (a wrong password, an unknown database or role) is an error at once.
* A fork takes none of the store's locks: the writer and the reader hold theirs across round
  trips to the server, and a fork must not wait on a server.
* After each commit a wake-up ``NOTIFY`` goes out in a tiny transaction of its own (inside the
  data transaction it would serialise commits server-wide), sent with the COMMIT in one message
  (the simple protocol runs them in turn, the NOTIFY after the COMMIT has returned); followers
  treat it as a hint. Should the NOTIFY fail, the commit is in doubt and resolved as any other.

psycopg 3 is imported (``import_psycopg``) only when a PostgreSQL store is made or a URL is
checked; ``follow`` and ``subscribers`` import it at their top, and are imported only when used.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Final

from notipipe._errors import ConfigurationError, StorageClosedError, StorageError
from notipipe._storage.group_commit import GroupCommitStore, Row
from notipipe._storage.interface import DEFAULT_OPTIONS, StoreOptions
from notipipe._storage.postgresql.connect import CONNECT_DEFAULTS, connect
from notipipe._storage.postgresql.copy import PACKER, PACKER_COMPILED
from notipipe._storage.postgresql.schema import MESSAGE_COLUMNS, MESSAGES, WAKEUP_CHANNEL, ensure_schema

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgMessageStore", "import_psycopg"]

#: SQLSTATEs that mean "the server is going away or not there yet": wait and reconnect.
_GONE: Final = frozenset({"57P01", "57P02", "57P03"})
#: SQLSTATE classes after which the writing session is replaced before the next attempt: what a
#: new session may not suffer. 25: read-only (a failover to a standby,
#: default_transaction_read_only), a transaction left failed; 53: resources; 55: lock_timeout;
#: 57: statement_timeout, an administrator's cancel or shutdown; 58, XX: the server's own trouble.
_STALE_SESSION: Final = frozenset({"25", "53", "55", "57", "58", "XX"})
#: query_canceled: a statement_timeout (or a cancel) ended the attempt.
_CANCELED: Final = "57014"
#: What the server says when statement_timeout (not an administrator's cancel) ended a statement.
_TIMED_OUT: Final = "statement timeout"
#: SQLSTATE classes of a first connection that no retry mends: 28 (a wrong password, an unknown
#: role, no pg_hba.conf entry), 3D (an unknown database), 42 (no right to create the tables).
_FOR_GOOD: Final = frozenset({"28", "3D", "42"})
#: The COPY column types, in MESSAGE_COLUMNS order (binary COPY needs them exact).
_COPY_TYPES: Final = ("int8", "text", "float8", "int4", "text", "text", "text", "text", "int4")
_COPY_SQL: Final = f"COPY {MESSAGES} ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_PLACEHOLDERS: Final = ", ".join(["%s"] * len(MESSAGE_COLUMNS))
_INSERT_SQL: Final = f"INSERT INTO {MESSAGES} ({', '.join(MESSAGE_COLUMNS)}) VALUES ({_PLACEHOLDERS})"
#: The same three without the id column: the table gives each row its id (see ``_send``).
_COPY_TYPES_NO_ID: Final = _COPY_TYPES[1:]
_COPY_SQL_NO_ID: Final = f"COPY {MESSAGES} ({', '.join(MESSAGE_COLUMNS[1:])}) FROM STDIN (FORMAT BINARY)"
#: Also a row with the id the table gives it, as a probe (rolled back: see ``_probe``).
_INSERT_SQL_NO_ID: Final = (
    f"INSERT INTO {MESSAGES} ({', '.join(MESSAGE_COLUMNS[1:])})"
    f" VALUES ({', '.join(['%s'] * (len(MESSAGE_COLUMNS) - 1))})"
)
#: A batch's transaction begun, and its id (noted before COMMIT: see ``_committed_before``).
_BEGIN_SQL: Final = "BEGIN; SELECT pg_current_xact_id()::text"
#: The same, and the batch's ids reserved (for an ``after_commit`` observer: see ``_send``), from
#: the table's identity sequence (named by the server, {seq} below: a literal, so that it is
#: looked up once, not once per row): the first one alone when they follow one another (no
#: other session took one in between: the common case), else one array, sorted, read as text,
#: which pure-Python psycopg parses in one piece rather than row by row. One message in the
#: simple protocol (no parameters: {n} is the batch's length), so one round trip.
_BEGIN_RESERVING_SQL: Final = (
    "BEGIN; SELECT pg_current_xact_id()::text, CASE WHEN max(v) - min(v) + 1 = count(*)"
    " THEN min(v)::text ELSE array_agg(v ORDER BY v)::text END FROM"
    " (SELECT nextval({seq}::regclass) AS v FROM generate_series(1, {n})) AS reserved"
)
#: The data transaction's COMMIT, then the wake-up in a transaction of its own: one message.
_COMMIT_SQL: Final = f"COMMIT; NOTIFY {WAKEUP_CHANNEL}"
#: Rows packed per write in the pure-Python COPY path.
_PACK_ROWS: Final = 1000

_HINT: Final = (
    "a PostgreSQL URL needs psycopg 3: pip install 'notipipe[postgresql]'"
    " (or 'notipipe[postgresql-binary]' for psycopg's own libpq build, GIL interpreters only)"
)


def import_psycopg() -> ModuleType:
    """psycopg, or ``ConfigurationError`` saying how to install it."""
    try:
        import psycopg
    except ImportError as error:
        raise ConfigurationError(_HINT) from error
    return psycopg


def _is_refused_row(error: BaseException) -> bool:
    """The server (or psycopg) refused a value: data (class 22) or a constraint (class 23)."""
    psycopg = import_psycopg()
    return isinstance(error, (psycopg.DataError, psycopg.IntegrityError))


def _reserved(text: str, n: int) -> list[int]:
    """The ids ``_BEGIN_RESERVING_SQL`` reserved for ``n`` rows: from the first of ``n``
    consecutive ones, or from the array of them all (``{a,b,...}``)."""
    if text.startswith("{"):
        return list(map(int, text[1:-1].split(",")))
    first = int(text)
    return list(range(first, first + n))


class _StillInProgressError(Exception):
    """The transaction of a commit in doubt is still running on the server (its session has not
    ended yet): wait, then ask again."""


class _Attempt:
    """One batch across its attempts: a commit in doubt, and what the server refused."""

    __slots__ = ("ids", "probe", "refused", "rows", "xid")

    def __init__(self, rows: list[Row | None]) -> None:
        self.rows = rows
        self.ids: list[int] = []  # reserved by the last transaction that wrote the batch, if any
        self.xid: str | None = None  # that transaction, while its COMMIT's outcome is unknown
        # One row it wrote, if any: (host, pid, created_at, body).
        self.probe: tuple[str, int, Any, Any] | None = None
        self.refused: dict[int, BaseException] = {}  # rows the server refused in that transaction


class PgMessageStore(GroupCommitStore):
    """A PostgreSQL-backed queue of messages with a group-committing writer thread.

    ``url`` is a libpq URL (``postgresql://user@host/db``; a bare ``postgresql://`` takes libpq's
    ``PG*`` environment). ``path`` shows it without its password.
    """

    _table: ClassVar[str] = MESSAGES
    _param: ClassVar[str] = "%s"
    _conn: psycopg.Connection[Any] | None
    _reader: psycopg.Connection[Any] | None

    def __init__(
        self,
        url: str,
        to_rows: Callable[[list[object]], list[Row]],
        options: StoreOptions = DEFAULT_OPTIONS,
        *,
        on_commit: Callable[[list[Any], list[int]], object] | None = None,
        max_pending: int | None = None,
    ) -> None:
        self._psycopg = import_psycopg()
        self._url = url
        self._attempt: _Attempt | None = None
        self._sequence = ""  # the identity sequence's name as a literal of the writer's server
        self._schema_ready = False  # ensure_schema has succeeded once
        self._host = socket.gethostname()
        # The compiled packer writes the rows' COPY data faster than psycopg's C build formats
        # them (a call and a dumper per field for each row); psycopg's pure-Python build is
        # slower than either packer.
        self._pack = PACKER_COMPILED or self._psycopg.pq.__impl__ == "python"
        super().__init__(url, to_rows, options, on_commit=on_commit, max_pending=max_pending)

    # -- connections -----------------------------------------------------------------------------

    def _connect(self, role: str) -> psycopg.Connection[Any]:
        return connect(self._url, f"notipipe {role}")  # keepalives, timeout: see connect

    def _open_writer(self) -> None:
        """The first connection, made by the first save: an error at once if the server refuses
        it for good; if the server cannot be reached or is not ready, the writer thread connects
        later, waiting as for any outage."""
        with self._write_lock:
            try:
                self._live_conn()
            except self._psycopg.Error as error:
                if self._fails_for_good(error):
                    # A failed connection has no SQLSTATE; a statement refused (the tables') has.
                    what = "cannot create the tables" if error.sqlstate else "cannot connect"
                    raise StorageError(self.path, f"{what}: {self._describe(error)}") from None

    def _fails_for_good(self, error: BaseException) -> bool:
        """Whether a first connection failed for a reason that cannot pass by waiting."""
        psycopg = self._psycopg
        if isinstance(error, psycopg.ProgrammingError):
            return True  # a URL libpq cannot use
        if isinstance(error, psycopg.errors.ConnectionTimeout):
            return False  # no answer in connect_timeout: a ping would wait as long again
        state = getattr(error, "sqlstate", None)
        if state is not None:  # the server answered a statement (creating the tables)
            return state[:2] in _FOR_GOOD
        # libpq gives no SQLSTATE for a failed connection; its ping tells a server that is up
        # and refused us (OK) from one that is out of reach (NO_RESPONSE) or not ready (REJECT).
        ping = psycopg.pq.Ping(psycopg.pq.PGconn.ping(self._ping_conninfo().encode()))
        if ping == psycopg.pq.Ping.OK:
            return not _too_many_clients(error)
        return bool(ping == psycopg.pq.Ping.NO_ATTEMPT)

    def _ping_conninfo(self) -> str:
        """The URL with the connect timeout every connection of notipipe's gets (``connect``)."""
        given = self._psycopg.conninfo.conninfo_to_dict(self._url)
        if "connect_timeout" in given or os.environ.get("PGCONNECT_TIMEOUT"):
            return self._url
        timeout = dict(CONNECT_DEFAULTS)["connect_timeout"]
        return str(self._psycopg.conninfo.make_conninfo(self._url, connect_timeout=timeout))

    def _live_conn(self) -> psycopg.Connection[Any]:
        """The writing connection (``_write_lock`` held), connecting first if there is none, it
        was lost, or its session was given up; the tables are made on the first connection."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._conn = None
            conn = self._connect("writer")
            try:
                if not self._schema_ready:
                    ensure_schema(conn)
                    self._schema_ready = True
                self._sequence = _sequence_literal(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return conn

    def _drop_session(self, error: BaseException) -> None:
        """After an error this session may never recover from (see ``_STALE_SESSION``), the next
        attempt runs on a new one."""
        state = getattr(error, "sqlstate", None)
        conn = self._conn
        if state is not None and state[:2] in _STALE_SESSION and conn is not None:
            conn.close()

    # -- what counts as what ---------------------------------------------------------------------

    def _is_retryable(self, error: BaseException) -> bool:
        return isinstance(error, (self._psycopg.Error, MemoryError, _StillInProgressError))

    def _is_too_big(self, error: BaseException) -> bool:
        """``statement_timeout`` ended the attempt before its COMMIT (a commit in doubt is
        resolved first, never split). An administrator's cancel (``pg_cancel_backend``) has the
        same SQLSTATE but says nothing about the size: the batch is retried whole."""
        attempt = self._attempt
        if attempt is not None and attempt.xid is not None:
            return False
        if not isinstance(error, self._psycopg.Error) or error.sqlstate != _CANCELED:
            return False
        return _TIMED_OUT in (error.diag.message_primary or "")

    def _is_wait(self, error: BaseException) -> bool:
        """The server cannot be reached or is restarting (or a commit in doubt is still running):
        nothing to report before ``busy_timeout``."""
        if isinstance(error, _StillInProgressError):
            return True
        if not isinstance(error, self._psycopg.Error):
            return False
        state = error.sqlstate
        if state is None:
            return isinstance(error, (self._psycopg.OperationalError, self._psycopg.InterfaceError))
        return state.startswith("08") or state in _GONE

    # -- writing ---------------------------------------------------------------------------------

    def _write(self, rows: list[Row | None], refused: dict[int, BaseException]) -> list[int]:
        try:
            return self._write_batch(rows, refused)
        except BaseException as error:
            self._drop_session(error)
            raise

    def _write_batch(self, rows: list[Row | None], refused: dict[int, BaseException]) -> list[int]:
        attempt = self._attempt
        if attempt is None or attempt.rows is not rows:
            attempt = self._attempt = _Attempt(rows)
        conn = self._live_conn()
        if attempt.xid is not None and self._committed_before(conn, attempt):
            ids = attempt.ids
            self._notify(conn)  # its COMMIT's answer was lost, and the wake-up with it perhaps
        else:
            attempt.xid = None
            attempt.refused = dict(refused)
            try:
                ids = self._send(conn, attempt, one_by_one=bool(refused))
            except BaseException as error:
                if not _is_refused_row(error) or conn.broken:
                    raise
                # The server refused a row: start over row by row, to find and drop only it.
                attempt.refused = dict(refused)
                ids = self._send(conn, attempt, one_by_one=True)
        refused.update(attempt.refused)
        self._attempt = None
        if not ids or (not refused and None not in rows):
            return ids  # none reserved: no one asks for them (see _send)
        return [0 if i in refused or row is None else ids[i] for i, row in enumerate(rows)]

    def _probe(self, row: Row) -> BaseException | None:
        """Whether the server takes ``row`` now: inserted with an id of the table's, rolled back."""
        conn = self._live_conn()
        conn.execute("BEGIN")
        try:
            conn.execute(_INSERT_SQL_NO_ID, (*row, self._host, os.getpid()))
        except self._psycopg.Error as error:
            if not _is_refused_row(error) or conn.broken:
                self._drop_session(error)
                raise
            refusal: BaseException = error
            return refusal
        finally:
            self._rollback(conn)
        return None

    def _committed_before(self, conn: psycopg.Connection[Any], attempt: _Attempt) -> bool:
        """Whether the transaction whose COMMIT was in doubt committed (asked once reconnected)."""
        assert attempt.xid is not None
        try:
            row = conn.execute("SELECT pg_xact_status(%s::xid8)", (attempt.xid,)).fetchone()
        except self._psycopg.errors.InvalidParameterValue:
            # "transaction ID ... is in the future": the server crashed before any of it reached
            # its log, and restarted without it. Not committed.
            return False
        status = None if row is None else row[0]
        if status == "in progress":
            raise _StillInProgressError(
                f"the transaction {attempt.xid} of a commit in doubt is still running"
            )
        if status != "committed" or attempt.probe is None:
            return status == "committed"  # aborted, or unknown (NULL): not committed
        # A crash can also give the lost transaction's id to a later one: the batch committed
        # only if a row it wrote is there, with its transaction, its origin and its contents
        # (another writer may share the origin: a second store in this process, or a container
        # with the host's name and the same pid).
        host, pid, created_at, body = attempt.probe
        found = conn.execute(
            f"SELECT 1 FROM {MESSAGES} WHERE xid = %s::xid8 AND origin_host = %s AND origin_pid = %s"
            " AND created_at = %s AND body = %s LIMIT 1",
            (attempt.xid, host, pid, created_at, body),
        ).fetchone()
        return found is not None

    def _send(
        self,
        conn: psycopg.Connection[Any],
        attempt: _Attempt,
        *,
        one_by_one: bool,
    ) -> list[int]:
        """One transaction: write the rows, commit. An ``after_commit`` observer is given each
        message with its id, so the ids are then reserved first, with the transaction; else the
        table gives each row its id as it goes in (the COPY leaves the column out), in the same
        order: as many round trips, less work for the server."""
        rows, refused = attempt.rows, attempt.refused
        reserving = self._on_commit is not None
        try:
            if reserving:
                # Reserved again by each attempt: a server that crashed may hand out the ids of
                # a transaction it lost once more, to anyone.
                cur = conn.execute(_BEGIN_RESERVING_SQL.format(seq=self._sequence, n=len(rows)))
            else:
                cur = conn.execute(_BEGIN_SQL)
            cur.nextset()  # past BEGIN's result
            got = cur.fetchone()
            assert got is not None
            xid = str(got[0])
            # One session's nextval calls increase: sorted, they follow the save order.
            ids = _reserved(str(got[1]), len(rows)) if reserving else None
            attempt.ids = ids or []
            pid = os.getpid()
            if one_by_one:
                positions = [i for i, row in enumerate(rows) if row is not None and i not in refused]
                self._insert_one_by_one(conn, ids, rows, positions, refused, pid=pid)
                first = next((i for i in positions if i not in refused), None)
            else:
                self._copy(conn, ids, rows, self._host, pid)  # refused is empty: see _write_batch
                first = next((i for i, row in enumerate(rows) if row is not None), None)
        except BaseException:
            self._rollback(conn)
            raise
        probe = None if first is None else rows[first]
        attempt.probe = None if probe is None else (self._host, pid, probe[1], probe[5])
        attempt.xid = xid  # from here until COMMIT's answer arrives, the outcome is unknown
        self._send_commit(conn)
        attempt.xid = None
        return attempt.ids

    def _copy(
        self,
        conn: psycopg.Connection[Any],
        ids: list[int] | None,
        rows: Sequence[Row | None],
        host: str,
        pid: int,
    ) -> None:
        """COPY each row of (kind, created_at, priority, address, subject, body) that is not
        None, with its id (or, with ``ids`` None, the table's), host and pid."""
        with conn.cursor() as cur, cur.copy(_COPY_SQL if ids is not None else _COPY_SQL_NO_ID) as copy:
            if not self._pack:
                copy.set_types(list(_COPY_TYPES if ids is not None else _COPY_TYPES_NO_ID))
                # Each row's tuple built once, straight from the batch: every tuple more is
                # an allocation, and more garbage collections, on the writer's per-row path.
                write = copy.write_row
                if ids is None:
                    for row in rows:
                        if row is not None:
                            write((*row, host, pid))
                    return
                for ident, row in zip(ids, rows, strict=True):
                    if row is not None:
                        write((ident, *row, host, pid))
                return
            # Packed here (see copy.py), in pieces, so that the server is busy while the rest is
            # packed.
            pack_rows = PACKER.pack_rows
            copy.write(PACKER.COPY_HEADER)
            for i in range(0, len(rows), _PACK_ROWS):
                piece = None if ids is None else ids[i : i + _PACK_ROWS]
                copy.write(pack_rows(piece, rows[i : i + _PACK_ROWS], host, pid))
            copy.write(PACKER.COPY_TRAILER)

    def _insert_one_by_one(
        self,
        conn: psycopg.Connection[Any],
        ids: list[int] | None,
        rows: list[Row | None],
        positions: list[int],
        refused: dict[int, BaseException],
        *,
        pid: int,
    ) -> None:
        """INSERT the rows at ``positions``, each in a savepoint, with its id (or, with ``ids``
        None, the table's) and origin (``pid``, as the probe names it): a row the server refuses
        is noted in ``refused``, the rest stay."""
        host = self._host
        for position in positions:
            row = rows[position]
            assert row is not None
            conn.execute("SAVEPOINT notipipe_row")
            try:
                if ids is None:
                    conn.execute(_INSERT_SQL_NO_ID, (*row, host, pid))
                else:
                    conn.execute(_INSERT_SQL, (ids[position], *row, host, pid))
            except BaseException as error:
                if not _is_refused_row(error) or conn.broken:
                    raise
                conn.execute("ROLLBACK TO SAVEPOINT notipipe_row")
                refused[position] = error
            else:
                conn.execute("RELEASE SAVEPOINT notipipe_row")

    def _send_commit(self, conn: psycopg.Connection[Any]) -> None:
        """COMMIT, and the wake-up after it (its own method: the fault tests make it fail on
        either side of the server's commit)."""
        conn.execute(_COMMIT_SQL)

    def _rollback(self, conn: psycopg.Connection[Any]) -> None:
        # Idle: BEGIN itself failed, or a multi-statement message already ended the transaction.
        idle = conn.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE
        if not conn.broken and not conn.closed and not idle:
            try:
                conn.execute("ROLLBACK")
            except self._psycopg.Error:
                # The connection died meanwhile: the server rolls back what it holds.
                conn.close()

    def _notify(self, conn: psycopg.Connection[Any]) -> None:
        """Wake followers; a hint only, so a failure costs nothing (the next write reconnects)."""
        try:
            conn.execute(f"NOTIFY {WAKEUP_CHANNEL}")
        except self._psycopg.Error:
            conn.close()

    # -- fork ------------------------------------------------------------------------------------

    def _before_fork(self) -> None:
        """Take no lock: the writer and the reader hold theirs across round trips to the server
        (a COPY waiting for a table lock, say), and a fork must not wait on a server. libpq holds
        no process-wide lock during a call, and the child never uses the connections it inherits
        (``_forget_connections``)."""

    def _after_fork_in_parent(self) -> None:
        """Nothing to release (see ``_before_fork``)."""

    # -- reading ---------------------------------------------------------------------------------

    def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        psycopg = self._psycopg
        with self._read_lock:
            for attempt in (1, 2):
                if self._closed:
                    raise StorageClosedError(self.path)
                try:
                    if self._reader is None or self._reader.closed or self._reader.broken:
                        self._close_reader()
                        self._reader = self._connect("reader")
                    return self._reader.execute(sql, params).fetchall()
                except psycopg.errors.UndefinedTable:
                    return []  # nothing stored yet: the tables come with the first write
                except psycopg.Error as error:
                    # A connection lost since the last read is reopened once, silently.
                    if attempt == 1 and self._is_wait(error):
                        self._close_reader()
                        continue
                    raise StorageError(self.path, f"reading failed: {self._describe(error)}") from None
        raise AssertionError("unreachable")

    def origins(self) -> list[tuple[str, int, int]]:
        rows = self.query(
            f"SELECT origin_host, count(DISTINCT origin_pid), count(*) FROM {MESSAGES}"
            " GROUP BY origin_host ORDER BY origin_host"
        )
        return [(str(host), int(procs), int(n)) for host, procs, n in rows]  # type: ignore[call-overload]

    def size_bytes(self) -> int:
        rows = self.query("SELECT coalesce(pg_total_relation_size(to_regclass(%s)), 0)", (MESSAGES,))
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]


def _too_many_clients(error: BaseException) -> bool:
    """The server is up but out of connection slots (53300, which libpq does not hand on): that
    passes. Read from the server's message, which is English unless its lc_messages says
    otherwise; then the error is reported at once instead."""
    text = str(error)
    return "too many clients" in text or "remaining connection slots are reserved" in text


def _sequence_literal(conn: psycopg.Connection[Any]) -> str:
    """The table's identity sequence, as an SQL literal for ``_BEGIN_RESERVING_SQL``."""
    from psycopg import sql

    row = conn.execute("SELECT pg_get_serial_sequence(%s, 'id')", (MESSAGES,)).fetchone()
    if row is None or row[0] is None:
        raise StorageError(MESSAGES, "the table has no identity sequence for its id column")
    return sql.Literal(str(row[0])).as_string(conn)
