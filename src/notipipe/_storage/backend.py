"""What a storage backend is to the rest of notipipe: one object per backend (``Backend``) that
answers every question the facade and the command line would otherwise ask of the path.

``DatabaseConnection`` (the facade) and the CLI never test a path's prefix: they ask the registry
(``notipipe._storage.backend_for``) for the backend of a target and call it. A new backend is a
folder under ``_storage/`` with one object implementing this protocol, plus one line in the
registry.

A *target* is what the user wrote (``--db``, ``$NOTIPIPE_DB``, ``DatabaseConnection(path)``),
after ``normalize``: a SQLite file's absolute path, a server URL (its scheme in lower case).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from notipipe._storage.group_commit import GroupCommitStore, Row
    from notipipe._storage.interface import StoreOptions
    from notipipe._storage.prune import PruneRequest

__all__ = ["Backend", "DurableHandle", "StoredRow", "SubscriptionInfo", "check_durable_name"]

#: The longest durable name: a key in every backend, and shown in messages.
MAX_DURABLE_NAME = 200

#: A row read back: ``(id, kind, created_at, priority, address, subject, body)``.
type StoredRow = tuple[object, ...]


class DurableHandle(Protocol):
    """A running durable subscription (one name, one observer, a thread of its own)."""

    observer: object

    def start(self) -> None: ...
    def stop(self) -> None: ...


class SubscriptionInfo(Protocol):
    """One durable name as ``notipipe subscriptions`` shows it (read-only: a frozen record or
    properties satisfy it)."""

    @property
    def name(self) -> str: ...
    @property
    def last_id(self) -> int | None:
        """The id of the last alert the name's observer acknowledged (0: none yet; None where ids
        do not follow commits, so that no one id marks the position: PostgreSQL)."""
        ...

    @property
    def lag(self) -> int | None:
        """Alerts stored and not yet acknowledged (None where the backend cannot count them cheaply)."""
        ...

    @property
    def oldest_age(self) -> float | None:
        """Seconds since the oldest unacknowledged alert was created (None: none, or not known)."""
        ...

    @property
    def holder(self) -> str | None:
        """Who holds the name now (``pid@host`` or what the backend knows), None if nobody."""
        ...

    @property
    def active(self) -> bool:
        """Whether a process holds the name now."""
        ...


class Backend(Protocol):
    #: Shown in messages and ``notipipe info``: "sqlite", "postgresql", ...
    name: str
    #: URL schemes this backend takes (``postgresql``, ``nats``); empty for plain file paths.
    schemes: tuple[str, ...]
    #: The ``StoreOptions`` fields this backend reads; others must keep their defaults.
    options: frozenset[str]
    #: Why the options it does not read are not needed (shown when one is given), or "".
    options_hint: str
    #: Seconds between a follower's reads when nothing wakes it (``tail --follow``'s default).
    follow_poll: float
    #: Whether ids follow commit order, so "every alert after id N" is exact (the dashboard's
    #: Last-Event-ID resume relies on it).
    ids_follow_commits: bool
    #: Whether the backend keeps durable names (``durable_subscription``, ``subscriptions``).
    keeps_durable_names: bool

    def claims(self, target: str) -> bool:
        """Whether ``target`` is this backend's (by its scheme; the file backend takes the rest)."""
        ...

    def normalize(self, target: str) -> str:
        """The target as connections compare it (a file's absolute path, a URL with its scheme in
        lower case: a driver may not take another)."""
        ...

    def shown(self, target: str) -> str:
        """The target as any message may show it: never a password."""
        ...

    def check(self, target: str) -> None:
        """Refuse now what cannot be used (a file that is not notipipe's, a missing driver)."""
        ...

    def exists(self, target: str) -> bool:
        """Whether reading ``target`` can find alerts without creating anything first."""
        ...

    def open(
        self,
        target: str,
        options: StoreOptions,
        to_rows: Callable[[list[object]], list[Row]],
        on_commit: Callable[[list[object], list[int]], object] | None,
    ) -> GroupCommitStore:
        """The store writing to ``target`` (its writer thread starts on first save)."""
        ...

    def follow_rows(
        self,
        target: str,
        open_store: Callable[[], GroupCommitStore],
        after_id: int,
        *,
        page: int,
        poll: float,
        stop: threading.Event,
    ) -> Iterator[list[StoredRow]]:
        """Pages of rows committed after ``after_id``, blocking in between, until ``stop``.

        ``open_store`` returns the connection's own store (``open``'s), for a backend that reads
        through it (a ``":memory:"`` database has no other reader): called for each read, so that
        a process forked since the last one reads through its own; a server backend may read on
        its own connection and not call it.
        """
        ...

    def id_before_time(self, target: str, open_store: Callable[[], GroupCommitStore], since: float) -> int:
        """The ``after_id`` from which ``follow_rows`` starts at the first alert of ``since``
        (a Unix time) or later: by the alerts' ``created_at`` where the backend stores them in
        order of commit, by the server's time of storing where it keeps that (a log). Nothing
        since: the last stored id, so only alerts stored from now on follow."""
        ...

    def durable_subscription(
        self,
        target: str,
        name: str,
        observer: object,
        to_message: Callable[[StoredRow], object],
        error_handler: Callable[[], object],
        *,
        page: int,
        poll: float,
        message_classes: tuple[type, type] | None = None,
    ) -> DurableHandle:
        """A durable subscription of ``observer`` under ``name`` (not started).

        ``message_classes`` are the (email, sms) classes ``to_message`` builds alerts with, by
        the same calls: a backend may build its alerts straight from what it reads with them.

        Raises ``ConfigurationError`` where the backend keeps no durable names.
        """
        ...

    def subscriptions(self, target: str) -> list[SubscriptionInfo]:
        """Every durable name of ``target``, with its position and lag."""
        ...

    def delete_subscription(self, target: str, name: str, *, force: bool) -> bool:
        """Delete the durable name ``name`` (False: there is none). Refused (``StorageError``
        naming the holder) while a process holds it, unless ``force``: then the holder's hold
        is ended (the backend says how). ``ConfigurationError`` where the backend keeps no
        durable names."""
        ...

    def reset_subscription(
        self, target: str, name: str, *, after_id: int | None, since: float | None, force: bool
    ) -> bool:
        """Move the durable name ``name`` so that its next delivery starts after ``after_id``, or
        at the first alert of ``since`` (a Unix time; exactly one is given), as exactly as the
        backend's ids allow (it says how). False: there is no such name. Held: as for
        ``delete_subscription``."""
        ...

    def prune(self, target: str, open_store: Callable[[], GroupCommitStore], request: PruneRequest) -> int:
        """Delete the alerts created before ``request.before`` in small transactions (none newer);
        how many (``request.dry_run``: how many would go). ``ConfigurationError`` where the
        backend cannot prune."""
        ...


def check_durable_name(name: object) -> str:
    """``name`` if it can be a durable name in every backend, else ``ValueError`` (checked by the
    facade before any backend is asked)."""
    if not isinstance(name, str) or not name or len(name) > MAX_DURABLE_NAME or not name.isprintable():
        raise ValueError(
            f"durable_name must be a non-empty printable str of at most {MAX_DURABLE_NAME} characters,"
            f" got {name!r}"
        )
    return name
