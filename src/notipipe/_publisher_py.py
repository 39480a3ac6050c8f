"""Pure-Python fan-out: the annotated twin of ``_publisher_c.pyx`` and the type truth.

The subscriber list is an immutable snapshot (a tuple), replaced copy-on-write under a lock.
``notify_all`` reads the current snapshot once and calls the observers with no lock held, so an
observer may subscribe, unsubscribe or notify from inside ``update`` and a slow observer never
blocks a subscriber. A change made during a notify takes effect from the next notify.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from notipipe._protocols import ErrorHandler, Observer

__all__ = ["Publisher", "log_observer_error"]

_log = logging.getLogger("notipipe")


def log_observer_error(observer: object, message: object, error: Exception) -> None:
    """The default error handler: log the failure, with the observer's repr, to ``notipipe``."""
    _log.error(
        "observer %r failed on %r: %s: %s",
        observer,
        message,
        type(error).__name__,
        error,
        exc_info=error,
    )


def _bound_update[T](observer: Observer[T]) -> Callable[[T], object]:
    update = getattr(observer, "update", None)
    if update is None or not callable(update):
        raise TypeError(
            f"{observer!r} ({type(observer).__name__}) is not an observer: "
            "it needs a callable update(message) method"
        )
    return update  # type: ignore[no-any-return]


class Publisher[T]:
    """Delivers each message to every subscribed observer, in subscription order.

    Thread-safe: subscribe, unsubscribe and notify from any thread, including from an observer.
    An observer that raises does not stop delivery to the others; the error goes to
    ``error_handler`` (by default, a log record naming the observer) and ``failures`` counts it.
    """

    __slots__ = ("__weakref__", "_error_handler", "_failures", "_lock", "_observers", "_updates")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Two parallel tuples, always replaced together under _lock; notify reads only _updates,
        # whose bound methods save an attribute lookup per observer per message.
        self._observers: tuple[Observer[T], ...] = ()
        self._updates: tuple[Callable[[T], object], ...] = ()
        self._error_handler: ErrorHandler = log_observer_error
        self._failures = 0

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, observer: Observer[T], /) -> bool:
        """Add ``observer``; return False (and change nothing) if it is already subscribed.

        Identity, not equality, decides "already": each object receives a message once.
        Raises TypeError if ``observer`` has no callable ``update``.
        """
        update = _bound_update(observer)
        with self._lock:
            if any(o is observer for o in self._observers):
                return False
            self._observers = (*self._observers, observer)
            self._updates = (*self._updates, update)
        return True

    def unsubscribe(self, observer: Observer[T], /) -> bool:
        """Remove ``observer``; return False if it was not subscribed (nothing to remove)."""
        with self._lock:
            observers = self._observers
            for i, o in enumerate(observers):
                if o is observer:
                    self._observers = observers[:i] + observers[i + 1 :]
                    self._updates = self._updates[:i] + self._updates[i + 1 :]
                    return True
        return False

    @property
    def observers(self) -> tuple[Observer[T], ...]:
        """The current subscribers, in subscription order (a snapshot)."""
        return self._observers

    # -- delivery ------------------------------------------------------------------------------

    def notify_all(self, message: T, /) -> None:
        """Deliver ``message`` to every observer subscribed when the call starts."""
        for update in self._updates:  # one atomic read of the snapshot; no lock held
            try:
                update(message)
            except Exception as error:  # noqa: BLE001 - isolation is the point
                self._report(update, message, error)

    def notify_many(self, messages: Iterable[T], /) -> int:
        """Deliver each message in turn to every observer; return how many messages were sent.

        The whole batch goes to the snapshot taken when the call starts.
        """
        updates = self._updates
        count = 0
        for message in messages:
            count += 1
            for update in updates:
                try:
                    update(message)
                except Exception as error:  # noqa: BLE001
                    self._report(update, message, error)
        return count

    # -- failures ------------------------------------------------------------------------------

    @property
    def failures(self) -> int:
        """How many ``update`` calls have raised since this publisher was created."""
        return self._failures

    @property
    def error_handler(self) -> ErrorHandler:
        """Called as ``handler(observer, message, error)`` for each failing ``update``."""
        return self._error_handler

    @error_handler.setter
    def error_handler(self, handler: ErrorHandler) -> None:
        if not callable(handler):
            raise TypeError(f"error_handler must be callable, got {handler!r}")
        self._error_handler = handler

    def _report(self, update: Callable[[T], object], message: T, error: Exception) -> None:
        # Off the hot path: only failing deliveries get here.
        with self._lock:
            self._failures += 1
        observer: object = getattr(update, "__self__", update)
        try:
            self._error_handler(observer, message, error)
        except Exception as handler_error:  # noqa: BLE001 - a broken handler must not go silent
            log_observer_error(observer, message, error)
            _log.error("error handler %r failed: %r", self._error_handler, handler_error)
