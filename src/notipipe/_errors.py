"""notipipe's exceptions: one base class, and errors that name the path and the reason."""

from __future__ import annotations

__all__ = [
    "AlertsPrunedError",
    "ConfigurationError",
    "NotipipeError",
    "ReentrancyError",
    "ServerTooOldError",
    "StorageClosedError",
    "StorageError",
    "StreamMismatchError",
]


class NotipipeError(Exception):
    """Base class of notipipe's own errors."""


class StorageError(NotipipeError):
    """The database cannot be opened, is not notipipe's, or a write failed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[StorageError], tuple[str, ...], dict[str, object]]:
        # An exception is pickled as its class, ``args`` and ``__dict__``; here ``args`` is the
        # joined message, which ``__init__`` cannot take back: rebuild it from its parts (so an
        # error raised in a worker process reaches the parent as itself).
        return type(self), (self.path, self.reason), self.__dict__


class StorageClosedError(StorageError):
    """Saving or reading after ``close()``."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "the database connection is closed")

    def __reduce__(self) -> tuple[type[StorageError], tuple[str, ...], dict[str, object]]:
        return type(self), (self.path,), self.__dict__


class ConfigurationError(NotipipeError, ValueError):
    """``DatabaseConnection(...)`` asked for a configuration other than the one in use."""


class ReentrancyError(NotipipeError, RuntimeError):
    """A call that would wait on itself, e.g. ``flush()`` from an ``after_commit`` observer."""


class ServerTooOldError(ConfigurationError):
    """The database server is older than the release its backend relies on (the message names both)."""


class StreamMismatchError(ConfigurationError):
    """A NATS stream exists with limits other than the URL gives, or without notipipe's subject."""


class AlertsPrunedError(NotipipeError):
    """Told once to a durable subscription's error handler (the message is None): a prune
    deleted alerts its name had not been delivered yet (``count`` of them)."""

    def __init__(self, name: str, count: int) -> None:
        super().__init__(f"durable name {name!r}: {count} alerts pruned before delivery")
        self.name = name
        self.count = count

    def __reduce__(self) -> tuple[type[AlertsPrunedError], tuple[str, int], dict[str, object]]:
        return type(self), (self.name, self.count), self.__dict__
