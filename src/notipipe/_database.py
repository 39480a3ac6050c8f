"""``DatabaseConnection``: the one process-wide publisher of alerts.

Built from two pieces: ``DatabaseCore`` (the Python-level behaviour of the connection) and the
selected ``Publisher`` (compiled or pure fan-out), under ``ThreadSafeSingletonMeta``. Keeping the
core a mixin lets the test-suite assemble the same class over either publisher twin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Never

from notipipe._protocols import Observer
from notipipe._select import Publisher
from notipipe._singleton import ThreadSafeSingletonMeta

__all__ = ["DatabaseConnection", "DatabaseCore"]


class DatabaseCore:
    """The connection's own behaviour; mixed in before a ``Publisher`` twin."""

    if TYPE_CHECKING:
        # The database broadcasts whatever it is given (text alerts, EmailMessage, SMSMessage),
        # so it accepts any observer: Observer[Never] is the supertype of every Observer[T].
        # A typed channel, where the checker matches observers to messages, is Publisher[T].
        def subscribe(self, observer: Observer[Never], /) -> bool: ...
        def unsubscribe(self, observer: Observer[Never], /) -> bool: ...

    def __repr__(self) -> str:
        observers: tuple[object, ...] = getattr(self, "observers", ())
        return f"<{type(self).__name__} observers={len(observers)}>"


class DatabaseConnection(DatabaseCore, Publisher[object], metaclass=ThreadSafeSingletonMeta):
    """The process-wide alert publisher: every ``DatabaseConnection()`` is the same object.

    ``subscribe(observer)`` adds anything with an ``update(message)`` method;
    ``notify_all(message)`` delivers one message to every observer, in subscription order;
    ``notify_many(messages)`` delivers a batch. See ``Publisher`` for the thread-safety and
    error-isolation guarantees.
    """
