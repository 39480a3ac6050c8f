"""``DatabaseConnection``: the one process-wide publisher, and the store of every alert.

Built from two pieces: ``DatabaseCore`` (storage and configuration, in Python) and the selected
``Publisher`` (compiled or pure fan-out), under ``ThreadSafeSingletonMeta``. Keeping the core a
mixin lets the test-suite assemble the same class over either publisher twin.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Never, Self, cast

from notipipe import _messages_py
from notipipe._errors import ConfigurationError, StorageClosedError
from notipipe._protocols import Observer
from notipipe._select import EmailMessage, Publisher, SMSMessage
from notipipe._singleton import ThreadSafeSingletonMeta
from notipipe._sqlite_file import DEFAULT_WAL_LIMIT, Synchronous, check_existing
from notipipe._store import MessageStore, Row

__all__ = ["DatabaseConnection", "DatabaseCore", "Delivery", "StoreStats"]

#: "immediate": observers get a message as it is saved, storage follows within ``max_delay``.
#: "after_commit": observers get it from the writer thread once it is durable.
type Delivery = Literal["immediate", "after_commit"]

type StoredMessage = EmailMessage | SMSMessage


# Both twins' classes are storable, whichever one this process selected.
_ROWS: frozenset[type] = frozenset(
    {_messages_py.EmailMessage, _messages_py.SMSMessage, EmailMessage, SMSMessage}
)


def _to_rows(batch: list[StoredMessage]) -> list[Row]:
    # Each message class builds its own row (in C for the compiled twin): the writer thread
    # spends its time in SQLite, not here.
    return [m._row() for m in batch]


def _check_storable(message: object) -> None:
    if type(message) not in _ROWS:
        raise TypeError(
            f"cannot store {type(message).__name__} {message!r}: expected EmailMessage or SMSMessage"
        )


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What ``DatabaseConnection.stats()`` reports."""

    path: str
    total: int
    by_kind: dict[str, int]
    first_at: float | None
    last_at: float | None
    size_bytes: int


class DatabaseCore:
    """The connection's own behaviour; mixed in before a ``Publisher`` twin."""

    # The classes that reads return (the test-suite swaps in the other twin's).
    _email_cls: ClassVar[type[EmailMessage]] = EmailMessage
    _sms_cls: ClassVar[type[SMSMessage]] = SMSMessage

    if TYPE_CHECKING:
        import asyncio

        from notipipe._protocols import AsyncObserver, Overflow

        # The database broadcasts whatever it is given (text alerts, EmailMessage, SMSMessage),
        # so it accepts any observer: Observer[Never] is the supertype of every Observer[T].
        # A typed channel, where the checker matches observers to messages, is Publisher[T].
        def subscribe(
            self,
            observer: Observer[Never] | AsyncObserver[Never],
            /,
            *,
            weak: bool = False,
            loop: asyncio.AbstractEventLoop | None = None,
            queue_size: int = 1024,
            overflow: Overflow = "wait",
        ) -> bool: ...
        def unsubscribe(self, observer: Observer[Never] | AsyncObserver[Never], /) -> bool: ...
        def dropped(self, observer: Observer[Never] | AsyncObserver[Never], /) -> int: ...

        notify_all: Callable[[object], None]
        notify_many: Callable[[Iterable[object]], int]

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        synchronous: Synchronous = "NORMAL",
        batch_size: int = 10_000,
        max_delay: float = 0.05,
        deliver: Delivery = "immediate",
        busy_timeout: float = 5.0,
        wal_limit: int = DEFAULT_WAL_LIMIT,
    ) -> None:
        """Configure the store; only the first ``DatabaseConnection(...)`` gets here.

        ``path``: a SQLite file, or ``":memory:"``; default ``$NOTIPIPE_DB``, else in memory, so
        that merely using the library never leaves files behind (the ``notipipe`` command
        defaults to ``notipipe.db``). ``busy_timeout``: seconds that opening and reading wait for
        a lock another connection holds; the writer itself never gives up (see ``flush``), and
        logs a warning once a lock has kept it waiting this long. ``wal_limit``: bytes of
        write-ahead log after which a commit checkpoints and truncates it.

        Nothing is opened here. The first save or read opens the file, and fixes the
        configuration: until then a ``DatabaseConnection(...)`` with arguments may replace a
        configuration made with none (a dashboard subscribed at import time, say). A file given
        here is checked at once, so a path that cannot be used is refused now, with nothing
        written.
        """
        super().__init__()
        config = _Config.make(
            path,
            synchronous=synchronous,
            batch_size=batch_size,
            max_delay=max_delay,
            deliver=deliver,
            busy_timeout=busy_timeout,
            wal_limit=wal_limit,
        )
        self._config_lock = threading.Lock()
        self._config = config
        # A configuration of defaults only may still be replaced, until first use.
        self._provisional = config == _Config.make(None)
        self._store: MessageStore | None = None
        self._closed = False
        if not self._provisional:
            check_existing(config.path)
        _CONNECTIONS.add(self)
        ref = weakref.ref(self)

        def close_at_exit() -> None:  # queued alerts reach the file on a normal exit
            db = ref()
            if db is not None:
                db.close()

        self._atexit = close_at_exit
        atexit.register(close_at_exit)

    def _check_singleton_args(self, *args: Any, **kwargs: Any) -> None:
        # Called by the metaclass when DatabaseConnection(...) is called again with arguments.
        wanted = _Config.make(*args, **kwargs)
        with self._config_lock:
            if wanted == self._config:
                return
            if self._provisional and self._store is None and not self._closed:
                check_existing(wanted.path)
                self._config = wanted
                self._provisional = False
                return
            current = self._config
        raise ConfigurationError(
            f"{type(self).__name__} is already open with {current.describe()}; "
            f"close() it before opening {wanted.describe()}"
        )

    def _open(self) -> MessageStore:
        """The store, opened (lazily) with the configuration as it is now, which fixes it."""
        with self._config_lock:
            if self._store is None:
                if self._closed:
                    raise StorageClosedError(self._config.path)
                c = self._config
                self._provisional = False
                self._store = MessageStore(
                    c.path,
                    _to_rows,  # type: ignore[arg-type]
                    synchronous=c.synchronous,
                    batch_size=c.batch_size,
                    max_delay=c.max_delay,
                    busy_timeout=c.busy_timeout,
                    wal_limit=c.wal_limit,
                    on_commit=self._deliver_committed if c.deliver == "after_commit" else None,
                )
            return self._store

    def _deliver_committed(self, batch: list[StoredMessage], ids: list[int]) -> None:
        # On the writer thread, once the batch is durable: observers get each message with the
        # id it was stored under (a refused one, id 0, is not delivered: it was not stored).
        self.notify_many([_with_id(m, i) for m, i in zip(batch, ids, strict=True) if i])

    # -- saving --------------------------------------------------------------------------------

    def save(self, message: StoredMessage, /, *, durable: bool = False) -> None:
        """Store ``message`` and broadcast it to the observers.

        With the default ``deliver="immediate"`` observers see it at once and it is committed
        within ``max_delay``; ``durable=True`` returns only once it is committed.
        """
        _check_storable(message)
        (self._store or self._open()).put(message)
        if self._config.deliver == "immediate":
            self.notify_all(message)
        if durable:
            self._open().flush()

    def save_many(self, messages: Iterable[StoredMessage], /, *, durable: bool = False) -> int:
        """Store a batch and broadcast it; return how many messages it held."""
        batch = list(messages)
        for message in batch:  # all checked before any is queued
            _check_storable(message)
        (self._store or self._open()).put_many(batch)
        if self._config.deliver == "immediate":
            self.notify_many(batch)
        if durable:
            self._open().flush()
        return len(batch)

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything saved before this call is committed (survives ``kill -9``).

        A database locked by another connection is waited for; ``timeout`` (seconds) bounds the
        wait with ``TimeoutError``. Raises ``StorageError`` naming the reason if the file has
        other trouble now (a full disk: the alerts stay queued and are retried), if alerts were
        refused since the last report, or if an ``after_commit`` observer raised
        ``BaseException`` on the writer thread; ``ReentrancyError`` if called from that thread.
        """
        store = self._store
        if store is not None:
            store.flush(timeout)
        elif self._closed:
            raise StorageClosedError(self._config.path)

    def close(self) -> None:
        """Commit what is queued and close the file; a later ``DatabaseConnection()`` reopens.

        Saving or reading through this object afterwards raises ``StorageClosedError``.
        """
        atexit.unregister(self._atexit)
        with self._config_lock:
            self._closed = True
            store = self._store
        try:
            if store is not None:
                store.close()
        finally:
            cls = type(self)
            if (
                isinstance(cls, ThreadSafeSingletonMeta)
                and ThreadSafeSingletonMeta._instances.get(cls) is self
            ):
                ThreadSafeSingletonMeta.reset_instance(cast("ThreadSafeSingletonMeta", cls))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- state -----------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file, or ``":memory:"``."""
        return self._config.path

    @property
    def durable_count(self) -> int:
        """Messages committed by this connection since it opened (they survive ``kill -9``)."""
        return 0 if self._store is None else self._store.durable

    @property
    def pending_count(self) -> int:
        """Messages saved but not yet committed."""
        return 0 if self._store is None else self._store.pending

    @property
    def closed(self) -> bool:
        return self._closed

    # -- reading (each read first commits what this process queued) -----------------------------
    # A file is read through a read-only connection of its own: reading needs no write access,
    # starts no writer thread, and never blocks a writer. An after_commit observer may read too.

    def count_by_kind(self) -> dict[str, int]:
        """Stored messages per kind, e.g. ``{"email": 700, "sms": 300}``."""
        rows = self._open().query("SELECT kind, count(*) FROM messages GROUP BY kind ORDER BY kind")
        return {str(kind): int(n) for kind, n in rows}  # type: ignore[call-overload]

    def count_by_kind_and_priority(self, upto_id: int | None = None) -> dict[tuple[str, int], int]:
        """Stored messages per ``(kind, priority)``, e.g. ``{("email", 3): 700, ("sms", 1): 300}``.

        With ``upto_id``, only those stored under an id up to it: one consistent count to
        continue from with ``after(upto_id)`` while another process keeps writing.
        """
        if upto_id is not None:
            _check_count("upto_id", upto_id)
        rows = self._open().query(
            "SELECT kind, priority, count(*) FROM messages WHERE id <= ? "
            "GROUP BY kind, priority ORDER BY kind, priority",
            (MAX_ID if upto_id is None else upto_id,),
        )
        return {(str(kind), int(p)): int(n) for kind, p, n in rows}  # type: ignore[call-overload]

    def last(self, n: int = 10) -> list[StoredMessage]:
        """The ``n`` most recently stored messages, oldest first."""
        _check_count("n", n)
        rows = self._open().query(
            f"SELECT * FROM (SELECT {_COLUMNS} FROM messages ORDER BY id DESC LIMIT ?) ORDER BY id", (n,)
        )
        return [self._message(r) for r in rows]

    def after(self, message_id: int, limit: int = 1000) -> list[StoredMessage]:
        """Up to ``limit`` messages stored after ``message_id``, in storage order."""
        _check_count("message_id", message_id)
        _check_count("limit", limit)
        rows = self._open().query(
            f"SELECT {_COLUMNS} FROM messages WHERE id > ? ORDER BY id LIMIT ?", (message_id, limit)
        )
        return [self._message(r) for r in rows]

    def stats(self) -> StoreStats:
        """Totals per kind, first and last alert time, and the size on disk."""
        by_kind = self.count_by_kind()
        first, last = self._open().query("SELECT min(created_at), max(created_at) FROM messages")[0]
        return StoreStats(
            self.path,
            sum(by_kind.values()),
            by_kind,
            first if isinstance(first, float) else None,
            last if isinstance(last, float) else None,
            self._open().file_size(),
        )

    def _message(self, row: tuple[object, ...]) -> StoredMessage:
        id_, kind, created_at, priority, address, subject, body = row
        common = {"priority": priority, "created_at": created_at, "id": id_}
        if kind == "email":
            return self._email_cls(address, subject, body, **common)  # type: ignore[arg-type]
        return self._sms_cls(address, body, **common)  # type: ignore[arg-type]


_COLUMNS = "id, kind, created_at, priority, address, subject, body"
#: SQLite's largest row id.
MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class _Config:
    path: str
    synchronous: Synchronous
    batch_size: int
    max_delay: float
    deliver: Delivery
    busy_timeout: float
    wal_limit: int

    @classmethod
    def make(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        synchronous: Synchronous = "NORMAL",
        batch_size: int = 10_000,
        max_delay: float = 0.05,
        deliver: Delivery = "immediate",
        busy_timeout: float = 5.0,
        wal_limit: int = DEFAULT_WAL_LIMIT,
    ) -> _Config:
        """Check every option (ValueError/TypeError naming it) and resolve the path."""
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        if type(batch_size) is not int or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not _is_seconds(max_delay, 60):
            raise ValueError(f"max_delay must be 0..60 seconds, got {max_delay!r}")
        if deliver not in ("immediate", "after_commit"):
            raise ValueError(f"deliver must be 'immediate' or 'after_commit', got {deliver!r}")
        if not _is_seconds(busy_timeout, 3600):
            raise ValueError(f"busy_timeout must be 0..3600 seconds, got {busy_timeout!r}")
        if type(wal_limit) is not int or wal_limit < 2**20:
            raise ValueError(f"wal_limit must be an int of at least 1 MiB (1048576), got {wal_limit!r}")
        return cls(
            _resolve(path), synchronous, batch_size, float(max_delay), deliver, float(busy_timeout), wal_limit
        )

    def describe(self) -> str:
        return (
            f"path={self.path!r}, synchronous={self.synchronous}, batch_size={self.batch_size}, "
            f"max_delay={self.max_delay}, deliver={self.deliver}, busy_timeout={self.busy_timeout}, "
            f"wal_limit={self.wal_limit}"
        )


def _is_seconds(value: object, most: float) -> bool:
    return type(value) in (int, float) and 0 <= value <= most  # type: ignore[operator]


def _with_id(message: StoredMessage, stored_id: int) -> StoredMessage:
    """The same message, carrying the id it was stored under (of the message's own twin)."""
    kind, created_at, priority, address, subject, body = message._row()
    cls: Any = type(message)
    if kind == "email":
        copy = cls(address, subject, body, priority=priority, created_at=created_at, id=stored_id)
    else:
        copy = cls(address, body, priority=priority, created_at=created_at, id=stored_id)
    return cast("StoredMessage", copy)


#: Every connection object, so that a forked child can give each a fresh store.
_CONNECTIONS: weakref.WeakSet[DatabaseCore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The inherited store is unusable in the child (its writer thread did not survive the fork;
    # _store closed it already). The same object reopens on first use, with the parent's
    # configuration and subscribers; what the parent had queued is the parent's to commit.
    for db in list(_CONNECTIONS):
        db._config_lock = threading.Lock()
        db._store = None
        cast("Publisher[object]", db)._reinit_locks_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _resolve(path: str | os.PathLike[str] | None) -> str:
    if path is None:
        path = os.environ.get("NOTIPIPE_DB") or ":memory:"
    path = os.fspath(path)
    if not isinstance(cast("object", path), str) or not path:
        raise TypeError(f"path must be a non-empty str or os.PathLike, got {path!r}")
    return path if path == ":memory:" else os.path.abspath(path)


def _check_count(name: str, value: object) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


class DatabaseConnection(DatabaseCore, Publisher[object], metaclass=ThreadSafeSingletonMeta):
    """The process-wide alert publisher and store: every ``DatabaseConnection()`` is one object.

    ``subscribe(observer)`` adds anything with an ``update(message)`` method;
    ``notify_all(message)`` broadcasts one message (not stored); ``save(message)`` stores an
    ``EmailMessage``/``SMSMessage`` and broadcasts it. See ``Publisher`` for the thread-safety
    and error-isolation guarantees, ``DatabaseCore`` for storage.
    """
