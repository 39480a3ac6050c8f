"""``DatabaseConnection``: the one process-wide publisher, and the store of every alert.

Built from two pieces: ``DatabaseCore`` (storage and configuration, in Python) and the selected
``Publisher`` (compiled or pure fan-out), under ``ThreadSafeSingletonMeta``. Keeping the core a
mixin lets the test-suite assemble the same class over either publisher twin.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Literal, Never, Self, cast

from notipipe import _messages_py
from notipipe._errors import ConfigurationError
from notipipe._protocols import Observer
from notipipe._select import EmailMessage, Publisher, SMSMessage
from notipipe._singleton import ThreadSafeSingletonMeta
from notipipe._store import MessageStore, Row, Synchronous

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
        # The database broadcasts whatever it is given (text alerts, EmailMessage, SMSMessage),
        # so it accepts any observer: Observer[Never] is the supertype of every Observer[T].
        # A typed channel, where the checker matches observers to messages, is Publisher[T].
        def subscribe(self, observer: Observer[Never], /) -> bool: ...
        def unsubscribe(self, observer: Observer[Never], /) -> bool: ...

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
    ) -> None:
        """Open (or create) the store. Only the first ``DatabaseConnection(...)`` gets here.

        ``path``: a SQLite file, or ``":memory:"``; default ``$NOTIPIPE_DB``, else in memory, so
        that merely using the library never leaves files behind (the ``notipipe`` command
        defaults to ``notipipe.db``).
        """
        super().__init__()
        if deliver not in ("immediate", "after_commit"):
            raise ValueError(f"deliver must be 'immediate' or 'after_commit', got {deliver!r}")
        self._deliver: Delivery = deliver
        self._config = (_resolve(path), synchronous, batch_size, max_delay, deliver)
        self._store = MessageStore(
            self._config[0],
            _to_rows,  # type: ignore[arg-type]
            synchronous=synchronous,
            batch_size=batch_size,
            max_delay=max_delay,
            on_commit=self.notify_many if deliver == "after_commit" else None,
        )
        ref = weakref.ref(self)

        def close_at_exit() -> None:  # queued alerts reach the file on a normal exit
            db = ref()
            if db is not None:
                db.close()

        self._atexit = close_at_exit
        atexit.register(close_at_exit)

    def _check_singleton_args(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        synchronous: Synchronous = "NORMAL",
        batch_size: int = 10_000,
        max_delay: float = 0.05,
        deliver: Delivery = "immediate",
    ) -> None:
        # Called by the metaclass when DatabaseConnection(...) is called again with arguments.
        wanted = (_resolve(path), synchronous, batch_size, max_delay, deliver)
        if wanted != self._config:
            raise ConfigurationError(
                f"{type(self).__name__} is already open with path={self._config[0]!r}, "
                f"synchronous={self._config[1]}, batch_size={self._config[2]}, "
                f"max_delay={self._config[3]}, deliver={self._config[4]}; "
                f"close() it before opening path={wanted[0]!r} with other settings"
            )

    # -- saving --------------------------------------------------------------------------------

    def save(self, message: StoredMessage, /, *, durable: bool = False) -> None:
        """Store ``message`` and broadcast it to the observers.

        With the default ``deliver="immediate"`` observers see it at once and it is committed
        within ``max_delay``; ``durable=True`` returns only once it is committed.
        """
        _check_storable(message)
        self._store.put(message)
        if self._deliver == "immediate":
            self.notify_all(message)
        if durable:
            self._store.flush()

    def save_many(self, messages: Iterable[StoredMessage], /, *, durable: bool = False) -> int:
        """Store a batch and broadcast it; return how many messages it held."""
        batch = list(messages)
        for message in batch:  # all checked before any is queued
            _check_storable(message)
        self._store.put_many(batch)
        if self._deliver == "immediate":
            self.notify_many(batch)
        if durable:
            self._store.flush()
        return len(batch)

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything saved before this call is committed (survives ``kill -9``)."""
        self._store.flush(timeout)

    def close(self) -> None:
        """Commit what is queued and close the file; a later ``DatabaseConnection()`` reopens.

        Saving or reading through this object afterwards raises ``StorageClosedError``.
        """
        atexit.unregister(self._atexit)
        try:
            self._store.close()
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
        return self._store.path

    @property
    def durable_count(self) -> int:
        """Messages committed by this connection since it opened (they survive ``kill -9``)."""
        return self._store.durable

    @property
    def pending_count(self) -> int:
        """Messages saved but not yet committed."""
        return self._store.pending

    @property
    def closed(self) -> bool:
        return self._store.closed

    # -- reading (each read first commits what is queued) ----------------------------------------

    def count_by_kind(self) -> dict[str, int]:
        """Stored messages per kind, e.g. ``{"email": 700, "sms": 300}``."""
        rows = self._store.query("SELECT kind, count(*) FROM messages GROUP BY kind ORDER BY kind")
        return {str(kind): int(n) for kind, n in rows}  # type: ignore[call-overload]

    def last(self, n: int = 10) -> list[StoredMessage]:
        """The ``n`` most recently stored messages, oldest first."""
        _check_count("n", n)
        rows = self._store.query(
            f"SELECT * FROM (SELECT {_COLUMNS} FROM messages ORDER BY id DESC LIMIT ?) ORDER BY id", (n,)
        )
        return [self._message(r) for r in rows]

    def after(self, message_id: int, limit: int = 1000) -> list[StoredMessage]:
        """Up to ``limit`` messages stored after ``message_id``, in storage order."""
        _check_count("message_id", message_id)
        _check_count("limit", limit)
        rows = self._store.query(
            f"SELECT {_COLUMNS} FROM messages WHERE id > ? ORDER BY id LIMIT ?", (message_id, limit)
        )
        return [self._message(r) for r in rows]

    def stats(self) -> StoreStats:
        """Totals per kind, first and last alert time, and the size on disk."""
        by_kind = self.count_by_kind()
        first, last = self._store.query("SELECT min(created_at), max(created_at) FROM messages")[0]
        return StoreStats(
            self.path,
            sum(by_kind.values()),
            by_kind,
            first if isinstance(first, float) else None,
            last if isinstance(last, float) else None,
            self._store.file_size(),
        )

    def _message(self, row: tuple[object, ...]) -> StoredMessage:
        id_, kind, created_at, priority, address, subject, body = row
        common = {"priority": priority, "created_at": created_at, "id": id_}
        if kind == "email":
            return self._email_cls(address, subject, body, **common)  # type: ignore[arg-type]
        return self._sms_cls(address, body, **common)  # type: ignore[arg-type]


_COLUMNS = "id, kind, created_at, priority, address, subject, body"


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
