"""The NATS JetStream backend object (``notipipe._storage.backend.Backend``): ``nats://`` URLs.

The durable subscriptions (``durable_subscription``, ``subscriptions``) are the ``subscribers``
module's (JetStream durable consumers).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from notipipe._storage.nats.client import import_nats, is_nats_url, parse_target, redact

if TYPE_CHECKING:
    from notipipe._storage.backend import StoredRow
    from notipipe._storage.group_commit import GroupCommitStore, Row
    from notipipe._storage.interface import StoreOptions

__all__ = ["BACKEND", "NatsBackend"]


class NatsBackend:
    name: Final = "nats"
    schemes: Final = ("nats",)
    options: Final = frozenset({"batch_size", "max_delay", "deliver", "busy_timeout"})
    #: An idle follower asks the stream for news this often (one small request each time).
    follow_poll: Final = 0.05
    ids_follow_commits: Final = True

    def claims(self, target: str) -> bool:
        return is_nats_url(target)

    def normalize(self, target: str) -> str:
        return target

    def shown(self, target: str) -> str:
        return redact(target)

    def check(self, target: str) -> None:
        """A malformed URL (``ValueError`` naming the expected form) or no nats-py
        (``ConfigurationError``: pip install 'notipipe[nats]')."""
        parse_target(target)
        import_nats()

    def exists(self, target: str) -> bool:
        return True  # a reader finds what the stream holds; a missing stream is made empty

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
        self, target: str, after_id: int, page: int, poll: float, stop: threading.Event
    ) -> Iterator[list[StoredRow]]:
        from notipipe._storage.nats.follow import follow_rows

        return follow_rows(target, after_id, page, poll, stop)


BACKEND: Final = NatsBackend()
