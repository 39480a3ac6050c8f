"""The NATS JetStream backend object (``notipipe._storage.backend.Backend``): ``nats://`` URLs.

The durable subscriptions (``durable_subscription``, ``subscriptions``) are the ``subscribers``
module's: JetStream durable pull consumers, one pinned holder per name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, cast

from notipipe._errors import NotipipeError
from notipipe._storage.nats.client import NatsClient, import_nats, is_nats_url, parse_target, redact
from notipipe._storage.urls import lower_scheme

if TYPE_CHECKING:
    from notipipe._protocols import ErrorHandler
    from notipipe._storage.backend import Backend, DurableHandle, StoredRow, SubscriptionInfo
    from notipipe._storage.group_commit import GroupCommitStore, Row
    from notipipe._storage.interface import StoreOptions
    from notipipe._storage.prune import PruneRequest

__all__ = ["BACKEND", "NatsBackend"]


class NatsBackend:
    """A JetStream stream: chunks stored in one order, so ids follow commits."""

    name = "nats"
    schemes: tuple[str, ...] = ("nats",)
    # Durability is the server's setting (its sync_interval, the stream's replicas).
    options = frozenset({"batch_size", "max_delay", "deliver", "busy_timeout"})
    options_hint = (
        "the server's sync_interval and the stream's replicas decide durability; the stream's own"
        " max_age (nats://host:port/STREAM?max_age=7d) prunes old alerts in place of retention"
    )
    #: An idle follower asks the stream for news this often (one small request each time).
    follow_poll = 0.05
    ids_follow_commits = True
    keeps_durable_names = True

    def claims(self, target: str) -> bool:
        return is_nats_url(target)

    def normalize(self, target: str) -> str:
        return lower_scheme(target)

    def shown(self, target: str) -> str:
        return redact(target)

    def check(self, target: str) -> None:
        """A malformed URL (``ValueError`` naming the expected form) or no nats-py
        (``ConfigurationError``: pip install 'notipipe[nats]')."""
        parse_target(target)
        import_nats()

    def exists(self, target: str) -> bool:
        # A reading command must not make an empty stream under a mistyped name, so the server is
        # asked. A server that cannot be reached counts as holding it: the command then meets the
        # outage as it would have (a server that answers and refuses us is reported now).
        from notipipe._storage.nats.reader import stream_missing  # as open() imports the store: when used

        client = NatsClient(parse_target(target), "notipipe")
        try:
            client.connect(make_stream=False)
            return not stream_missing(client)
        except NotipipeError:
            raise
        except Exception:  # noqa: BLE001 - not reachable now, or no answer: an outage, not an answer
            return True
        finally:
            client.close()

    def open(
        self,
        target: str,
        options: StoreOptions,
        to_rows: Callable[[list[object]], list[Row]],
        on_commit: Callable[[list[object], list[int]], object] | None,
    ) -> GroupCommitStore:
        from notipipe._storage.nats.store import NatsStore

        return NatsStore(target, to_rows, options, on_commit=on_commit)

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
        # A follower reads on a connection of its own: a store's connection carries its writes.
        from notipipe._storage.nats.follow import follow_rows

        return follow_rows(target, after_id, page, poll, stop)

    def id_before_time(self, target: str, open_store: Callable[[], GroupCommitStore], since: float) -> int:
        # A stream keeps when the server stored each chunk, and finds the first chunk of a time.
        from notipipe._storage.nats.follow import start_after_time

        return start_after_time(target, since)

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
        from notipipe._storage.nats.subscribers import NatsDurableSubscription

        handler = cast("Callable[[], ErrorHandler]", error_handler)
        return NatsDurableSubscription(
            target, name, observer, to_message, handler, page=page, poll=poll, message_classes=message_classes
        )

    def subscriptions(self, target: str) -> list[SubscriptionInfo]:
        from notipipe._storage.nats.subscribers import list_subscriptions

        return list(list_subscriptions(target))

    def delete_subscription(self, target: str, name: str, *, force: bool) -> bool:
        from notipipe._storage.nats.manage import delete_subscription

        return delete_subscription(target, name, force=force)

    def reset_subscription(
        self, target: str, name: str, *, after_id: int | None, since: float | None, force: bool
    ) -> bool:
        from notipipe._storage.nats.manage import reset_subscription

        return reset_subscription(target, name, after_id=after_id, since=since, force=force)

    def prune(self, target: str, open_store: Callable[[], GroupCommitStore], request: PruneRequest) -> int:
        # Whole chunks from the stream's start (see nats.prune): a stream is an append log.
        from notipipe._storage.nats.prune import prune

        return prune(target, request)


BACKEND: Final = NatsBackend()

if TYPE_CHECKING:
    _checked: Backend = BACKEND
