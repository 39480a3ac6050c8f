"""What ``DatabaseConnection`` needs from a backend (``Storage``), and how it configures one
(``StoreOptions``).

Both backends implement ``Storage`` through ``GroupCommitStore`` (``group_commit``):
``MessageStore`` (``sqlite.store``) and ``PgMessageStore`` (``postgresql.store``). Rows read back
are ``(id, kind, created_at, priority, address, subject, body)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Final, Literal, Protocol

__all__ = ["DEFAULT_OPTIONS", "Delivery", "Storage", "StoreOptions", "Synchronous", "is_seconds"]

#: SQLite's ``PRAGMA synchronous``: how hard a commit waits for the disk.
type Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

#: "immediate": observers get a message as it is saved, storage follows within ``max_delay``.
#: "after_commit": observers get it from the writer thread once it is durable.
type Delivery = Literal["immediate", "after_commit"]


#: The longest ``retention``: a hundred years of seconds.
MAX_RETENTION: Final = 100 * 365 * 86400


def is_seconds(value: object, most: float) -> bool:
    """True for an int or float from 0 to ``most`` (a bool is not a number of seconds)."""
    return type(value) in (int, float) and 0 <= value <= most  # type: ignore[operator]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreOptions:
    """How a store writes: ``DatabaseConnection``'s keyword arguments, checked on creation.

    The defaults are written here only; ``DatabaseConnection``'s signature and the stores take
    them from ``DEFAULT_OPTIONS``. A bad value raises ``ValueError`` naming the option.
    """

    #: SQLite only: ``PRAGMA synchronous`` of the writing connection.
    synchronous: Synchronous = "NORMAL"
    #: The most messages one transaction commits.
    batch_size: int = 10_000
    #: Seconds the oldest queued message may wait for its batch to fill.
    max_delay: float = 0.05
    #: When observers hear of a saved message (read by the facade, not by the stores).
    deliver: Delivery = "immediate"
    #: Seconds opening and reading wait for a lock another connection holds (on PostgreSQL:
    #: after how long an outage is logged); past it, a waiting writer logs a warning.
    busy_timeout: float = 5.0
    #: SQLite only: bytes of write-ahead log past which the writer checkpoints and truncates it
    #: before its next batch.
    wal_limit: int = 64 * 1024 * 1024
    #: Seconds an alert is kept: the writing process prunes older ones every so often, on a
    #: thread of its own (``DatabaseConnection.prune``); None keeps every alert.
    retention: float | None = None

    def __post_init__(self) -> None:
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {self.synchronous!r}")
        if type(self.batch_size) is not int or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not is_seconds(self.max_delay, 60):
            raise ValueError(f"max_delay must be 0..60 seconds, got {self.max_delay!r}")
        if self.deliver not in ("immediate", "after_commit"):
            raise ValueError(f"deliver must be 'immediate' or 'after_commit', got {self.deliver!r}")
        if not is_seconds(self.busy_timeout, 3600):
            raise ValueError(f"busy_timeout must be 0..3600 seconds, got {self.busy_timeout!r}")
        if type(self.wal_limit) is not int or self.wal_limit < 2**20:
            raise ValueError(f"wal_limit must be an int of at least 1 MiB (1048576), got {self.wal_limit!r}")
        if self.retention is not None and (
            not is_seconds(self.retention, MAX_RETENTION) or not self.retention
        ):
            raise ValueError(
                f"retention must be None or more than 0 and at most {MAX_RETENTION} seconds,"
                f" got {self.retention!r}"
            )
        # Seconds compare equal however they were spelled (1 and 1.0): one configuration.
        object.__setattr__(self, "max_delay", float(self.max_delay))
        object.__setattr__(self, "busy_timeout", float(self.busy_timeout))
        if self.retention is not None:
            object.__setattr__(self, "retention", float(self.retention))

    def describe(self) -> str:
        """``name=value, ...`` in field order, for messages."""
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


DEFAULT_OPTIONS: Final = StoreOptions()


class Storage(Protocol):
    path: str  # shown in messages; a URL without its password

    def put(self, message: object, /) -> None: ...
    def put_many(self, messages: Iterable[object], /) -> int: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self) -> None: ...

    @property
    def durable(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def closed(self) -> bool: ...

    def last(self, n: int, /) -> list[tuple[object, ...]]: ...
    def after(self, message_id: int, limit: int, /) -> list[tuple[object, ...]]: ...
    def count_by_kind(self) -> dict[str, int]: ...
    def count_by_priority(self) -> dict[int, int]: ...
    def count_by_kind_and_priority(self, upto_id: int | None, /) -> dict[tuple[str, int], int]: ...
    def count_between(self, after_id: int, upto_id: int, /) -> int: ...
    def time_range(self) -> tuple[float | None, float | None]: ...
    def size_bytes(self) -> int: ...
    def origins(self) -> list[tuple[str, int, int]]: ...
