"""The PostgreSQL backend as the registry sees it: ``postgresql://`` and ``postgres://`` URLs.

psycopg is imported on use: ``check`` and ``open`` through ``import_psycopg``, ``follow`` and
``subscribers`` (which import it at their top) inside the methods that need them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, cast

from notipipe._storage.postgresql.store import PgMessageStore, import_psycopg
from notipipe._storage.urls import lower_scheme, redact, scheme_of

if TYPE_CHECKING:
    from notipipe._protocols import ErrorHandler
    from notipipe._storage.backend import Backend, DurableHandle, StoredRow, SubscriptionInfo
    from notipipe._storage.group_commit import GroupCommitStore, Row
    from notipipe._storage.interface import StoreOptions
    from notipipe._storage.prune import PruneRequest

__all__ = ["BACKEND", "PostgresqlBackend"]


class PostgresqlBackend:
    """A PostgreSQL database: writers commit concurrently, so ids do not follow commits (a
    follower reads by snapshot windows, woken by each commit); it keeps durable names."""

    name = "postgresql"
    schemes: tuple[str, ...] = ("postgresql", "postgres")
    # Durability is the server's setting (synchronous_commit); the WAL is the server's too.
    options = frozenset({"batch_size", "max_delay", "deliver", "busy_timeout", "retention"})
    options_hint = "the server's synchronous_commit decides durability"
    #: Each commit wakes a follower; without a wake-up it asks again this often.
    follow_poll = 1.0
    ids_follow_commits = False
    keeps_durable_names = True

    def claims(self, target: str) -> bool:
        return scheme_of(target) in self.schemes

    def normalize(self, target: str) -> str:
        return lower_scheme(target)  # libpq reads "PostgreSQL://..." as key=value text

    def shown(self, target: str) -> str:
        return redact(target)

    def check(self, target: str) -> None:
        import_psycopg()

    def exists(self, target: str) -> bool:
        # A server is asked on use; reading creates nothing a later writer would not.
        return True

    def open(
        self,
        target: str,
        options: StoreOptions,
        to_rows: Callable[[list[object]], list[Row]],
        on_commit: Callable[[list[object], list[int]], object] | None,
    ) -> GroupCommitStore:
        return PgMessageStore(target, to_rows, options, on_commit=on_commit)

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
        from notipipe._storage.postgresql.follow import follow_rows

        return follow_rows(target, after_id, page, poll, stop)

    def id_before_time(self, target: str, open_store: Callable[[], GroupCommitStore], since: float) -> int:
        return open_store().id_before_time(since)

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
        from notipipe._storage.postgresql.subscribers import DurableSubscription

        handler = cast("Callable[[], ErrorHandler]", error_handler)
        return DurableSubscription(
            target, name, observer, to_message, handler, page=page, poll=poll, message_classes=message_classes
        )

    def subscriptions(self, target: str) -> list[SubscriptionInfo]:
        from notipipe._storage.postgresql.subscribers import list_subscriptions

        return list(list_subscriptions(target))

    def delete_subscription(self, target: str, name: str, *, force: bool) -> bool:
        from notipipe._storage.postgresql.manage import delete_subscription

        return delete_subscription(target, name, force=force)

    def reset_subscription(
        self, target: str, name: str, *, after_id: int | None, since: float | None, force: bool
    ) -> bool:
        from notipipe._storage.postgresql.manage import reset_subscription

        return reset_subscription(target, name, after_id=after_id, since=since, force=force)

    def prune(self, target: str, open_store: Callable[[], GroupCommitStore], request: PruneRequest) -> int:
        from notipipe._storage.postgresql.prune import prune

        return prune(target, request)


BACKEND: Final = PostgresqlBackend()

if TYPE_CHECKING:
    _checked: Backend = BACKEND
