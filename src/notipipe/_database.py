"""``DatabaseConnection``: the one process-wide publisher, and the store of every alert.

Built from two pieces: ``DatabaseCore`` (storage and configuration, in Python) and the selected
``Publisher`` (compiled or pure fan-out), under ``ThreadSafeSingletonMeta``. Keeping the core a
mixin lets the test-suite assemble the same class over either publisher twin.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Never, Self, cast

from notipipe import _kinds, _messages_py
from notipipe._async import delivering_for_writer, waiting_on_writer
from notipipe._errors import ConfigurationError, NotipipeError, StorageClosedError, StorageError
from notipipe._kinds import StoredAlert
from notipipe._limits import ID_LIMIT, TIME_LIMIT, id_range_error
from notipipe._metrics import REFUSAL_REASONS, DurableLag, Metrics, StoreCounters, observer_labels
from notipipe._protocols import Message, Observer
from notipipe._retention import Retention, interval_for
from notipipe._select import EmailMessage, Publisher, SMSMessage, all_of_types, kind_rows
from notipipe._singleton import ThreadSafeSingletonMeta
from notipipe._storage.backend import check_durable_name
from notipipe._storage.group_commit import GroupCommitStore, Row
from notipipe._storage.interface import DEFAULT_OPTIONS, Delivery, StoreOptions, Synchronous, is_seconds
from notipipe._storage.prune import PruneRequest
from notipipe._targets import StorageTarget, SubscriptionStatus, resolve

if TYPE_CHECKING:
    from notipipe._storage.backend import Backend, DurableHandle

__all__ = ["DatabaseConnection", "DatabaseCore", "Delivery", "StoreStats"]

_log = logging.getLogger("notipipe")

#: What the store's reads return: the built-ins, a ``StoredAlert`` (a kind this process has not
#: registered), or a registered kind's own class (a ``Message``): narrow it with ``isinstance``
#: or ``match`` on the classes.
type StoredMessage = EmailMessage | SMSMessage | StoredAlert | Message


# Both twins' classes are storable, whichever one this process selected.
_ROWS: frozenset[type] = frozenset(
    {_messages_py.EmailMessage, _messages_py.SMSMessage, EmailMessage, SMSMessage}
)


def _to_rows(batch: list[Any]) -> list[Row]:
    # Each message's row as its class makes it (a registered kind's in one C loop on the compiled
    # twin): the writer thread spends its time in the database, not here. Only storable messages
    # are queued (save and save_many check them).
    return kind_rows(batch)


def _check_storable(message: object) -> None:
    cls = type(message)
    if cls not in _ROWS and not _kinds.is_storable(cls):
        raise TypeError(
            f"cannot store {cls.__name__} {message!r}: expected EmailMessage, SMSMessage or a kind"
            " registered with MessageFactory.register (under a name of its own)"
        )


def _all_storable(batch: list[Message]) -> bool:
    # The batch's types checked in C against every storable class (one small set made per
    # batch): a registered kind's batch is saved at the built-ins' cost.
    return all_of_types(batch, _ROWS | _kinds.storable_classes())


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What ``DatabaseConnection.stats()`` reports."""

    path: str
    total: int
    by_kind: dict[str, int]
    first_at: float | None
    last_at: float | None
    size_bytes: int
    #: PostgreSQL: (host, processes, alerts) per host that saved alerts; SQLite records no origin.
    origins: tuple[tuple[str, int, int], ...] = ()


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
            durable_name: str | None = None,
        ) -> bool: ...
        def unsubscribe(self, observer: Observer[Never] | AsyncObserver[Never], /) -> bool: ...
        def dropped(self, observer: Observer[Never] | AsyncObserver[Never], /) -> int: ...

        notify_all: Callable[[object], None]
        notify_many: Callable[[Iterable[object]], int]

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        synchronous: Synchronous = DEFAULT_OPTIONS.synchronous,
        batch_size: int = DEFAULT_OPTIONS.batch_size,
        max_delay: float = DEFAULT_OPTIONS.max_delay,
        deliver: Delivery = DEFAULT_OPTIONS.deliver,
        busy_timeout: float = DEFAULT_OPTIONS.busy_timeout,
        wal_limit: int = DEFAULT_OPTIONS.wal_limit,
        retention: float | None = DEFAULT_OPTIONS.retention,
    ) -> None:
        """Configure the store; only the first ``DatabaseConnection(...)`` gets here.

        ``path``: a SQLite file, ``":memory:"``, or a server URL (``postgresql://...`` or
        ``postgres://...``: the PostgreSQL backend, see ``_storage.postgresql``); the backend is the
        registry's (``_storage.backend_for``), a URL of a scheme no backend takes raises
        ``ConfigurationError``, and options the backend does not read (``synchronous`` and
        ``wal_limit`` on a server) must keep their defaults; default ``$NOTIPIPE_DB``,
        else in memory, so that merely using the library never leaves files behind (the
        ``notipipe`` command defaults to ``notipipe.db``). ``busy_timeout``: seconds that
        opening and reading wait for a lock another connection holds (on PostgreSQL: after how
        long an outage is logged); the writer itself never gives up (see ``flush``), and
        logs a warning once a lock has kept it waiting this long. ``wal_limit``: bytes of
        write-ahead log past which the writer checkpoints and truncates it before its next batch.
        ``retention``: seconds an alert is kept; from the first save or read this process prunes
        older ones every tenth of it (``prune``, on a thread of its own, stopped by ``close``);
        a NATS stream keeps its own ``max_age`` instead.
        The options and their defaults: ``StoreOptions``.

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
            retention=retention,
        )
        self._config_lock = threading.Lock()
        self._config = config
        # A configuration of defaults only may still be replaced, until first use.
        self._provisional = config == _default_config()
        self._store: GroupCommitStore | None = None
        self._closed = False
        self._durable: list[DurableHandle] = []
        self._retention: Retention | None = None
        # Ids of stored rows that are not alerts, reported already (see _report_unreadable).
        self._unreadable: dict[object, object] = {}
        # Alerts save/save_many refused before the writer took them, by reason (see metrics());
        # counted on the refusing path only, under _config_lock.
        self._refusals: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        if not self._provisional:
            config.check()
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
                wanted.check()
                self._config = wanted
                self._provisional = False
                return
            current = self._config
        raise ConfigurationError(
            f"{type(self).__name__} is already open with {current.describe()}; "
            f"close() it before opening {wanted.describe()}"
        )

    def _open(self) -> GroupCommitStore:
        """The store, opened (lazily) with the configuration as it is now, which fixes it."""
        with self._config_lock:
            if self._store is None:
                if self._closed:
                    raise StorageClosedError(self.path)
                c = self._config
                self._provisional = False
                on_commit = self._deliver_committed if c.options.deliver == "after_commit" else None
                self._store = c.backend.open(c.path, c.options, _to_rows, on_commit)  # type: ignore[arg-type]
                if c.options.retention is not None:
                    self._retention = self._start_retention(c.options.retention)
            return self._store

    def _start_retention(self, retention: float) -> Retention:
        def prune(progress: Callable[[int], None]) -> int:
            return self._prune_before(time.time() - retention, keep_undelivered=False, progress=progress)

        pruner = Retention(prune, interval_for(retention), self.path)
        pruner.start()
        return pruner

    def _deliver_committed(self, batch: list[StoredMessage], ids: list[int]) -> None:
        # On the writer thread, once the batch is durable: observers get each message with the
        # id it was stored under (a refused one, id 0, is not delivered: it was not stored).
        # An async observer whose loop's thread waits on this store gets it without waiting
        # for room (see _async, waiting_on_writer).
        with delivering_for_writer():
            self.notify_many([_with_id(m, i) for m, i in zip(batch, ids, strict=True) if i])

    # -- saving --------------------------------------------------------------------------------

    def save(self, message: Message, /, *, durable: bool = False) -> None:
        """Store ``message`` (an ``EmailMessage``, an ``SMSMessage``, or a kind registered with
        ``MessageFactory.register``) and broadcast it to the observers.

        With the default ``deliver="immediate"`` observers see it at once and it is committed
        within ``max_delay``; ``durable=True`` returns only once it is committed.
        """
        try:
            _check_storable(message)
        except TypeError:
            self._refused("invalid", 1)
            raise
        if self._config.options.deliver == "immediate":
            try:
                (self._store or self._open()).put(message)
            except StorageError as error:
                self._refused(_reason(error), 1)
                raise
            self.notify_all(message)
            if durable:
                self._open().flush()
            return
        # after_commit: the writer delivers, and may wait on an async observer's loop, which
        # may be this thread's (see _async, waiting_on_writer).
        with waiting_on_writer():
            try:
                (self._store or self._open()).put(message)
            except StorageError as error:
                self._refused(_reason(error), 1)
                raise
            if durable:
                self._open().flush()

    def save_many(self, messages: Iterable[Message], /, *, durable: bool = False) -> int:
        """Store a batch and broadcast it; return how many messages it held."""
        batch = list(messages)
        if not all_of_types(batch, _ROWS) and not _all_storable(batch):
            try:
                for message in batch:  # all checked before any is queued; the first bad one explains
                    _check_storable(message)
            except TypeError:
                self._refused("invalid", len(batch))
                raise
        if self._config.options.deliver == "immediate":
            self._put_many(batch)
            self.notify_many(batch)
            if durable:
                self._open().flush()
            return len(batch)
        with waiting_on_writer():  # as in save()
            self._put_many(batch)
            if durable:
                self._open().flush()
        return len(batch)

    def _put_many(self, batch: list[Message]) -> None:
        """Queue a batch for the writer; one the store does not take is counted as refused."""
        try:
            (self._store or self._open()).put_many(batch)
        except StorageError as error:
            self._refused(_reason(error), len(batch))
            raise

    def _refused(self, reason: str, n: int) -> None:
        with self._config_lock:
            self._refusals[reason] += n

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
            with waiting_on_writer():  # see save()
                store.flush(timeout)
        elif self._closed:
            raise StorageClosedError(self.path)

    def close(self) -> None:
        """Commit what is queued and close the file; a later ``DatabaseConnection()`` reopens.

        Saving or reading through this object afterwards raises ``StorageClosedError``.
        """
        atexit.unregister(self._atexit)
        with self._config_lock:
            self._closed = True
            store = self._store
            retention, self._retention = self._retention, None
        try:
            if retention is not None:  # first: on ":memory:" it prunes through the store
                retention.stop()
            self._stop_durable()
            if store is not None:
                with waiting_on_writer():  # see save()
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

    # -- pruning ---------------------------------------------------------------------------------

    def prune(
        self,
        *,
        older_than: float,
        keep_undelivered: bool = False,
        dry_run: bool = False,
        progress: Callable[[int], object] | None = None,
    ) -> int:
        """Delete the alerts created more than ``older_than`` seconds ago; return how many.

        In small transactions (a few thousand alerts each), so writers, followers and durable
        subscribers keep going: a writer waits at most for one of them, and ids never go back
        (so nothing saved afterwards is missed by a follower). An alert created at the cutoff or
        later is never deleted. A durable name that had not been delivered pruned alerts is told
        once (``AlertsPrunedError`` to the error handler; ``subscriptions()``' ``pruned``);
        ``keep_undelivered=True`` deletes only alerts every durable name has been delivered.
        On NATS whole chunks go, from the stream's start: a chunk whose newest alert is older
        than the cutoff, and only with every chunk before it. ``dry_run``: count, delete
        nothing. ``progress`` is called with the running total after each transaction.
        ``StorageError`` if the database cannot be reached.
        """
        if not is_seconds(older_than, TIME_LIMIT):
            raise ValueError(f"older_than must be seconds from 0 on, got {older_than!r}")
        for name, flag in (("keep_undelivered", keep_undelivered), ("dry_run", dry_run)):
            if type(flag) is not bool:
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        return self._prune_before(
            time.time() - older_than, keep_undelivered=keep_undelivered, dry_run=dry_run, progress=progress
        )

    def _prune_before(
        self,
        before: float,
        *,
        keep_undelivered: bool,
        dry_run: bool = False,
        progress: Callable[[int], object] | None,
    ) -> int:
        if self._closed:
            raise StorageClosedError(self.path)
        c = self._config
        request = PruneRequest(
            before=before, keep_undelivered=keep_undelivered, dry_run=dry_run, progress=progress
        )
        return c.backend.prune(c.path, self._open, request)

    # -- state -----------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file, ``":memory:"``, or the server's URL (without its password)."""
        return self._config.shown

    @property
    def target(self) -> StorageTarget:
        """The database as its backend describes it (see ``describe_target``)."""
        return StorageTarget._of(self._config.path, self._config.backend)

    def subscriptions(self) -> list[SubscriptionStatus]:
        """Every durable name of the database, by name, with its position, lag and holder.

        ``ConfigurationError`` where the backend keeps no durable names (a SQLite file);
        ``StorageError`` if the server cannot be reached.
        """
        return self.target.subscriptions()

    def delete_subscription(self, name: str, *, force: bool = False) -> bool:
        """Delete the durable name ``name`` (False: there is none); see
        ``StorageTarget.delete_subscription``."""
        return self.target.delete_subscription(name, force=force)

    def reset_subscription(
        self, name: str, *, to_id: int | None = None, since: float | None = None, force: bool = False
    ) -> bool:
        """Move the durable name ``name`` to start after ``to_id``, or at the first alert of
        ``since`` (False: there is no such name); see ``StorageTarget.reset_subscription``."""
        return self.target.reset_subscription(name, to_id=to_id, since=since, force=force)

    def metrics(self, *, durable: bool = True) -> Metrics:
        """A snapshot of this connection's counters and gauges, the same on every backend.

        Counters run from when this connection opened its store: alerts saved (accepted),
        committed and refused (by reason), batches committed and their commit latency (a
        histogram), observer failures, and each current observer's failures and drops (under a
        label it keeps while subscribed); gauges: alerts pending (saved, neither committed nor
        refused: ``saved == committed + pending + refused["database"]`` in every snapshot), each
        durable name's lag (read from the database now, where the backend keeps durable names;
        left out, with a warning logged, if it cannot be reached, and with ``durable=False``,
        which reads nothing from the database). A durable subscriber's ``update`` failures go
        to its own error handler and are not counted here. A snapshot opens no store and costs
        saving and notifying nothing: the counts are kept where saving and committing counted
        already, or by the writer once per batch. ``notipipe.metrics`` exports it to Prometheus
        and OpenTelemetry.
        """
        store = self._store
        counters = StoreCounters() if store is None else store.counters()
        with self._config_lock:
            refusals = dict(self._refusals)
        refusals["database"] += counters.refused
        publisher = cast("Publisher[object]", self)
        failures, observers = publisher._observer_counts()
        return Metrics(
            backend=self._config.backend.name,
            saved=counters.saved,
            committed=counters.committed,
            refused=tuple((reason, refusals[reason]) for reason in REFUSAL_REASONS),
            pending=counters.pending,
            batches=counters.batches,
            commit_seconds=counters.commit_seconds,
            failures=failures,
            observers=observer_labels(observers),
            durable=self._durable_lag() if durable else (),
        )

    def _durable_lag(self) -> tuple[DurableLag, ...]:
        if not self._config.backend.keeps_durable_names:
            return ()
        try:
            names = self.subscriptions()
        except NotipipeError as error:
            _log.warning("notipipe: %s: metrics without the durable names' lag: %s", self.path, error)
            return ()
        return tuple(DurableLag(s.name, s.lag, s.oldest_age, s.active) for s in names)

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
        with waiting_on_writer():  # a read first waits for what is queued: see save()
            return self._open().count_by_kind()

    def count_by_priority(self) -> dict[int, int]:
        """Stored messages per priority, e.g. ``{1: 40, 3: 900, 5: 60}``."""
        with waiting_on_writer():
            return self._open().count_by_priority()

    def count_by_kind_and_priority(self, upto_id: int | None = None) -> dict[tuple[str, int], int]:
        """Stored messages per ``(kind, priority)``, e.g. ``{("email", 3): 700, ("sms", 1): 300}``.

        With ``upto_id``, only those stored under an id up to it: one consistent count to
        continue from with ``after(upto_id)`` while another process keeps writing.
        """
        if upto_id is not None:
            _check_count("upto_id", upto_id)
        with waiting_on_writer():
            return self._open().count_by_kind_and_priority(upto_id)

    def count_between(self, after_id: int, upto_id: int) -> int:
        """How many messages are stored with an id above ``after_id`` and up to ``upto_id``: exact
        on every backend (ids may leave gaps: pruned rows, a NATS stream's chunk boundaries)."""
        _check_count("after_id", after_id)
        _check_count("upto_id", upto_id)
        with waiting_on_writer():
            return self._open().count_between(after_id, upto_id)

    def last(self, n: int = 10) -> list[StoredMessage]:
        """The ``n`` most recently stored messages, oldest first.

        A row that is not an alert (another tool wrote it: priority 9, say) is logged once and
        skipped, here and in every read; the messages around it are read as before. A row of a
        kind this process has not registered is read as a ``StoredAlert`` (see ``_kinds``).
        """
        _check_count("n", n)
        with waiting_on_writer():
            store = self._open()
            wanted = n
            while True:
                rows = store.last(wanted)
                messages = self._readable(rows)
                if len(messages) >= n or len(rows) < wanted:
                    return messages[max(len(messages) - n, 0) :]
                wanted = min(2 * wanted, _MAX_ID)  # rows were skipped: look further back

    def after(self, message_id: int, limit: int = 1000) -> list[StoredMessage]:
        """Up to ``limit`` messages stored after ``message_id``, in storage order (fewer only
        once there are no more)."""
        _check_count("message_id", message_id)
        _check_count("limit", limit)
        with waiting_on_writer():
            return self._after(message_id, limit)[0]

    def _after(self, message_id: int, limit: int) -> tuple[list[StoredMessage], int, bool]:
        """``after``, and where a caller reading on continues from (past any row skipped), and
        whether the last read came back short (nothing more is stored now)."""
        store = self._open()
        messages: list[StoredMessage] = []
        while limit:
            rows = store.after(message_id, limit)
            page = self._readable(rows)
            if len(messages) + len(page) >= limit:
                messages += page[: limit - len(messages)]
                return messages, messages[-1].id, False
            messages += page
            if rows:
                message_id = int(rows[-1][0])  # type: ignore[call-overload]
            if len(rows) < limit:
                return messages, message_id, True
        return messages, message_id, False

    def stats(self) -> StoreStats:
        """Totals per kind, first and last alert time, and the size on disk."""
        store = self._open()
        with waiting_on_writer():
            by_kind = store.count_by_kind()
            first, last = store.time_range()
        return StoreStats(
            self.path, sum(by_kind.values()), by_kind, first, last, store.size_bytes(), tuple(store.origins())
        )

    # -- following and durable subscribers (each backend's: see _storage.backend) ------------

    def follow(
        self,
        after_id: int = 0,
        *,
        since: float | None = None,
        page: int = 1000,
        poll: float = 1.0,
        stop: threading.Event | None = None,
    ) -> Iterator[list[StoredMessage]]:
        """Yield pages of the messages committed from now on, by any process, each with its id.

        The first page starts after ``after_id`` (0: every stored message first), or, with
        ``since`` (a Unix time) instead, at the first message of that time or later (SQLite and
        PostgreSQL: the first created then, by ``created_at``; a NATS stream: the first chunk
        the server stored then; nothing since: only what is stored from now on); then each
        page holds up to ``page`` messages as they are committed, blocking in between, until
        ``stop`` is set or the iterator is closed. Nothing committed is skipped or repeated;
        each writer's messages come in its save order. A SQLite file is read by id (its
        writers commit one at a time, so ids follow commits), every ``poll`` seconds.
        PostgreSQL is read by snapshot windows (ids do not follow commits across writers:
        see ``_storage.postgresql.follow``), woken by each writer's commit and at least every
        ``poll`` seconds; a lost connection is retried. On PostgreSQL, ``after_id`` filters the
        first window only: a message with a lower id that commits later is still yielded. A
        stored row that is not an alert (another tool wrote it) is logged once and skipped; one of
        a kind this process has not registered is yielded as a ``StoredAlert``.
        """
        _check_count("after_id", after_id)
        if since is not None:
            if after_id:
                raise ValueError("follow() takes after_id or since, not both")
            if type(since) not in (int, float) or not 0 <= since < TIME_LIMIT:
                raise ValueError(f"since must be a Unix time in seconds, got {since!r}")
        if type(page) is not int or page < 1:
            raise ValueError(f"page must be a positive int, got {page!r}")
        if not is_seconds(poll, 3600) or poll == 0:
            raise ValueError(f"poll must be more than 0 and at most 3600 seconds, got {poll!r}")
        # Checked here, at the call: the pages come from a generator, which starts at the first next().
        stop = threading.Event() if stop is None else stop
        return self._follow(after_id, None if since is None else float(since), page, float(poll), stop)

    def _follow(
        self, after_id: int, since: float | None, page: int, poll: float, stop: threading.Event
    ) -> Iterator[list[StoredMessage]]:
        self._open()  # first: opening fixes the configuration read next
        c = self._config
        if since is not None:
            after_id = c.backend.id_before_time(c.path, self._open, since)
        # The store is asked for at each read: a process forked since reads through its own.
        for rows in c.backend.follow_rows(c.path, self._open, after_id, page=page, poll=poll, stop=stop):
            if messages := self._readable(rows):
                yield messages

    def _subscribe_durable(self, observer: Observer[Never], name: str) -> bool:
        check_durable_name(name)
        if self._closed:
            raise StorageClosedError(self.path)
        if not callable(getattr(observer, "update", None)):
            raise TypeError(
                f"{observer!r} ({type(observer).__name__}) is not an observer: "
                "it needs a callable update(message) method"
            )
        if inspect.iscoroutinefunction(observer.update):
            raise TypeError(
                f"{type(observer).__name__}.update is a coroutine function: a durable subscription "
                "calls update on a thread of its own, where nothing would await it"
            )
        with self._config_lock:
            if any(s.observer is observer for s in self._durable):
                return False
        c = self._config
        subscription = c.backend.durable_subscription(
            c.path,
            name,
            observer,
            self._message,
            lambda: cast("Publisher[object]", self).error_handler,
            page=DURABLE_PAGE,
            poll=DURABLE_POLL,
            message_classes=(self._email_cls, self._sms_cls),
        )
        with self._config_lock:
            # Checked again under the lock close() takes: a close() that ran since the check
            # above has already taken its list of subscriptions to stop, without this one.
            if self._closed:
                raise StorageClosedError(self.path)
            if any(s.observer is observer for s in self._durable):
                return False
            self._durable.append(subscription)
        try:
            subscription.start()
        except BaseException:
            with self._config_lock:
                if subscription in self._durable:
                    self._durable.remove(subscription)
            raise
        with self._config_lock:
            closed = self.closed
        if closed:  # close() stopped it before its thread started: no delivery, say so
            subscription.stop()
            raise StorageClosedError(self.path)
        return True

    def _unsubscribe_durable(self, observer: Observer[Never]) -> bool:
        with self._config_lock:
            found = [s for s in self._durable if s.observer is observer]
            for s in found:
                self._durable.remove(s)
        for s in found:  # joined outside the lock: the thread may be inside the observer
            s.stop()
        return bool(found)

    def _stop_durable(self) -> None:
        with self._config_lock:
            found, self._durable[:] = list(self._durable), []
        for s in found:
            s.stop()

    if not TYPE_CHECKING:  # typed above; these dispatch to the durable subscribers

        def subscribe(self, observer, /, *, durable_name=None, **options):
            """Add ``observer``; False if it is already subscribed. See ``Publisher.subscribe``.

            With ``durable_name`` (a backend that keeps durable names, PostgreSQL;
            ``ConfigurationError`` on a SQLite file), a durable
            subscription instead: on a thread of its own, ``observer`` gets every alert
            committed by any writer process, at least once, after it is committed, none
            skipped, each with its stored id, each writer's in its save order. A new name
            starts when this call returns (alerts not yet committed then are delivered); a
            known name resumes from its cursor, which is committed after each page's
            ``update`` calls return, so only a crash between them repeats alerts (that page).
            One process at a time holds a name; others wait as standbys and take over when it
            goes. Failures go to ``error_handler``; ``unsubscribe(observer)`` stops it. The
            full promise: ``notipipe._storage.postgresql.subscribers``.

            With ``deliver="after_commit"``, the writer thread delivers. While code on an async
            observer's loop waits on this store (``flush``, a durable save, a save meeting
            back-pressure, a read, ``close``), the writer does not wait for room in that
            observer's queue (the loop cannot make room until the writer is done): it queues
            past ``queue_size`` instead, and drops nothing.
            """
            if durable_name is None:
                return super().subscribe(observer, **options)
            if options:
                raise TypeError(
                    f"a durable subscription takes no {', '.join(sorted(options))} option: "
                    "it delivers on a thread of its own, from the database"
                )
            return self._subscribe_durable(observer, durable_name)

        def unsubscribe(self, observer, /):
            return self._unsubscribe_durable(observer) or super().unsubscribe(observer)

    def _message(self, row: tuple[object, ...]) -> StoredMessage:
        """The message a stored row holds: an e-mail, an SMS, a registered kind's class, or a
        ``StoredAlert`` (a kind this process has not registered, see ``_kinds.read_row``);
        ``ValueError``/``TypeError`` if it holds none (a row another tool wrote), as the message
        classes check every field."""
        id_, kind, created_at, priority, address, subject, body = row
        if created_at is None:  # the classes take None for "now": a stored alert has its own time
            raise TypeError("created_at: expected float, got NoneType None")
        # Plain keywords, not a dict of them: every read path (last, after, follow, durable
        # subscribers) builds each row's message here.
        if kind == "email":
            return self._email_cls(address, subject, body, priority=priority, created_at=created_at, id=id_)  # type: ignore[arg-type]
        if kind == "sms":
            return self._sms_cls(address, body, priority=priority, created_at=created_at, id=id_)  # type: ignore[arg-type]
        # Any other kind: its registered class, else a StoredAlert (never an error for the kind).
        return _kinds.read_row(row)  # type: ignore[return-value]

    def _readable(self, rows: list[tuple[object, ...]]) -> list[StoredMessage]:
        """The messages of ``rows``, each row that holds none reported once and skipped."""
        messages = [self._readable_row(row) for row in rows]
        return [m for m in messages if m is not None]

    def _readable_row(self, row: tuple[object, ...]) -> StoredMessage | None:
        try:
            return self._message(row)
        except (TypeError, ValueError) as error:
            self._report_unreadable(row, error)
            return None

    def _report_unreadable(self, row: tuple[object, ...], error: Exception) -> None:
        # Once per row: a follower, the dashboard and tail read the same rows again and again.
        # setdefault is atomic, so of two threads reading the row at once exactly one logs.
        reported, mine = self._unreadable, object()
        if reported.setdefault(row[0], mine) is not mine:
            return
        if len(reported) > _UNREADABLE_REMEMBERED:
            reported.clear()  # bounded: a table full of such rows is reported again, not kept
        _log.error(
            "notipipe: %s: skipped row id %s: not an alert notipipe can read (%s); another tool"
            " wrote it? Every read skips it",
            self.path,
            row[0],
            error,
        )


@dataclass(frozen=True, slots=True)
class _Config:
    """What a ``DatabaseConnection`` was opened with: equal configurations are the same one."""

    path: str
    options: StoreOptions
    #: The registry's backend for ``path`` (``_storage.backend_for``).
    backend: Backend = field(compare=False, repr=False)

    @classmethod
    def make(cls, path: str | os.PathLike[str] | None = None, **options: Any) -> _Config:
        """Check every option (ValueError/TypeError naming it) and resolve the path.

        Takes what ``DatabaseCore.__init__`` takes (the metaclass passes a later call's
        arguments here as they were given); the defaults are ``StoreOptions``'.
        """
        checked = StoreOptions(**options)
        resolved, backend = resolve(path)
        unread = [
            f.name
            for f in fields(checked)
            if f.name not in backend.options and getattr(checked, f.name) != getattr(DEFAULT_OPTIONS, f.name)
        ]
        if unread:
            many = len(unread) > 1
            raise ValueError(
                f"{' and '.join(unread)} {'are settings' if many else 'is a setting'} the"
                f" {backend.name} backend does not read; {backend.shown(resolved)} is a {backend.name}"
                f" database: leave {'them' if many else 'it'} out (options a backend does not read"
                f" must keep their defaults{'; ' + backend.options_hint if backend.options_hint else ''})"
            )
        return cls(resolved, checked, backend)

    @property
    def shown(self) -> str:
        return self.backend.shown(self.path)

    def check(self) -> None:
        """Refuse now what the backend cannot use (see ``Backend.check``)."""
        self.backend.check(self.path)

    def describe(self) -> str:
        return f"path={self.shown!r}, {self.options.describe()}"


def _default_config() -> _Config | None:
    """The configuration ``DatabaseConnection()`` would take, None if ``$NOTIPIPE_DB`` names a
    target no backend takes (a path given explicitly does not depend on it)."""
    try:
        return _Config.make(None)
    except ConfigurationError:
        return None


def _reason(error: StorageError) -> str:
    """Why a store did not take alerts: closed, or failing (see ``Metrics.refused``)."""
    return "closed" if isinstance(error, StorageClosedError) else "failing"


def _with_id(message: StoredMessage, stored_id: int) -> StoredMessage:
    """The same message, carrying the id it was stored under (of the message's own twin)."""
    if type(message) not in _ROWS:
        return cast("StoredMessage", _kinds.with_id(message, stored_id))
    kind, created_at, priority, address, subject, body = cast("Any", message)._row()
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
    # the store closed it already). The same object reopens on first use, with the parent's
    # configuration and subscribers; what the parent had queued is the parent's to commit.
    for db in list(_CONNECTIONS):
        db._config_lock = threading.Lock()
        db._store = None
        db._durable = []  # their threads stayed in the parent, which holds their names
        db._retention = None  # its thread stayed in the parent; the child's first use starts one
        cast("Publisher[object]", db)._reinit_locks_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


#: Alerts per page of a durable subscriber: one cursor commit per page, and at most this many
#: delivered again after a crash.
DURABLE_PAGE = 1000
#: Seconds between a durable subscriber's reads when no wake-up arrives, and between a
#: standby's attempts to take the name over.
DURABLE_POLL = 0.5


#: How many skipped rows are remembered as reported (see ``_report_unreadable``).
_UNREADABLE_REMEMBERED = 10_000
#: The highest id either backend stores.
_MAX_ID = 2**63 - 1


def _check_count(name: str, value: object) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if value >= ID_LIMIT:  # past SQLite's and PostgreSQL's integers: a bare OverflowError there
        raise id_range_error(name, value)


class DatabaseConnection(DatabaseCore, Publisher[object], metaclass=ThreadSafeSingletonMeta):
    """The process-wide alert publisher and store: every ``DatabaseConnection()`` is one object.

    ``subscribe(observer)`` adds anything with an ``update(message)`` method;
    ``notify_all(message)`` broadcasts one message (not stored); ``save(message)`` stores an
    ``EmailMessage``/``SMSMessage`` and broadcasts it. See ``Publisher`` for the thread-safety
    and error-isolation guarantees, ``DatabaseCore`` for storage.
    """
