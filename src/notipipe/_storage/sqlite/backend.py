"""The SQLite backend as the registry sees it: any target that is not a URL (a file, ``":memory:"``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import TYPE_CHECKING, Final, cast

from notipipe._errors import ConfigurationError
from notipipe._storage.interface import StoreOptions
from notipipe._storage.sqlite.file import check_existing
from notipipe._storage.sqlite.store import MessageStore

if TYPE_CHECKING:
    from notipipe._storage.backend import DurableHandle, StoredRow, SubscriptionInfo
    from notipipe._storage.group_commit import GroupCommitStore, Row
    from notipipe._storage.prune import PruneRequest

__all__ = ["BACKEND", "SqliteBackend"]


def _no_durable_names(target: str) -> ConfigurationError:
    # The registry imports this module: it is asked on use, for the backends it holds now.
    from notipipe._storage import durable_targets

    return ConfigurationError(
        f"durable subscribers need a backend that keeps durable names ({durable_targets()});"
        f" {target} is a SQLite {'in-memory database' if target == ':memory:' else 'file'}"
    )


class SqliteBackend:
    """A SQLite file: its writers commit one at a time, so ids follow commits and a follower
    reads by id; it keeps no durable names."""

    name = "sqlite"
    schemes: tuple[str, ...] = ()
    options = frozenset(f.name for f in fields(StoreOptions))
    options_hint = ""
    #: A file has no wake-up: a follower asks again this often.
    follow_poll = 0.1
    ids_follow_commits = True
    keeps_durable_names = False

    def claims(self, target: str) -> bool:
        # The fallback: the registry asks it last, and only for a target that is no URL.
        return True

    def normalize(self, target: str) -> str:
        return target if target == ":memory:" else os.path.abspath(target)

    def shown(self, target: str) -> str:
        return target

    def check(self, target: str) -> None:
        check_existing(target)

    def exists(self, target: str) -> bool:
        return target == ":memory:" or os.path.exists(target)

    def open(
        self,
        target: str,
        options: StoreOptions,
        to_rows: Callable[[list[object]], list[Row]],
        on_commit: Callable[[list[object], list[int]], object] | None,
    ) -> GroupCommitStore:
        return MessageStore(target, to_rows, options, on_commit=on_commit)

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
        # By id, through the connection's own store (so ":memory:" is followed too, and each
        # read first commits what this process queued).
        last = after_id
        while not stop.is_set():
            rows = open_store().after(last, page)
            if rows:
                last = int(rows[-1][0])  # type: ignore[call-overload]
                yield rows
            if len(rows) < page:
                stop.wait(poll)

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
        raise _no_durable_names(target)

    def subscriptions(self, target: str) -> list[SubscriptionInfo]:
        raise _no_durable_names(target)

    def delete_subscription(self, target: str, name: str, *, force: bool) -> bool:
        raise _no_durable_names(target)

    def reset_subscription(
        self, target: str, name: str, *, after_id: int | None, since: float | None, force: bool
    ) -> bool:
        raise _no_durable_names(target)

    def prune(self, target: str, open_store: Callable[[], GroupCommitStore], request: PruneRequest) -> int:
        # No durable names to keep alerts for: keep_undelivered keeps nothing more.
        from notipipe._storage.sqlite.prune import prune_file, prune_memory

        if target == ":memory:":
            return prune_memory(cast("MessageStore", open_store()), request)
        if not os.path.exists(target):
            return 0  # nothing stored, and nothing created
        return prune_file(target, request)


BACKEND: Final = SqliteBackend()


if TYPE_CHECKING:
    from notipipe._storage.backend import Backend

    _checked: Backend = BACKEND
