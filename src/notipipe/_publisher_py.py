"""Pure-Python fan-out: the annotated twin of ``_publisher_c.pyx`` and the type truth.

The subscriber list is an immutable snapshot (a tuple), replaced copy-on-write under a lock,
together with the fan-out functions generated for it (``_fanout.make_fanout``). ``notify_all``
reads the current function once and calls the observers with no lock held, so an observer may
subscribe, unsubscribe or notify from inside ``update`` and a slow observer never blocks a
subscriber. A change made during a notify takes effect from the next notify.

``notify_all`` and ``notify_many`` are per-publisher functions stored in slots (see
``_fanout.make_entry_points``), not methods: calling them is a plain Python-to-Python call.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable

from notipipe._fanout import install, make_entry_points
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


def call_error_handler(handler: ErrorHandler, observer: object, message: object, error: Exception) -> None:
    """Pass one failure to ``handler``; if the handler itself raises, log both (never silent)."""
    try:
        handler(observer, message, error)
    except Exception as handler_error:  # noqa: BLE001 - a broken handler must not go silent
        log_observer_error(observer, message, error)
        _log.error("error handler %r failed: %r", handler, handler_error)


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

    __slots__ = (
        "__weakref__",
        "_current",
        "_error_handler",
        "_failures",
        "_lock",
        "_observers",
        "_updates",
        "notify_all",
        "notify_many",
    )

    #: ``notify_all(message)``: deliver ``message`` to every observer subscribed when the call
    #: starts, in subscription order.
    notify_all: Callable[[T], None]
    #: ``notify_many(messages)``: deliver each message in turn to every observer; return how many
    #: messages were sent. The whole batch goes to the snapshot taken when the call starts.
    notify_many: Callable[[Iterable[T]], int]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._error_handler: ErrorHandler = log_observer_error
        self._failures = 0
        self._current: list[Callable[..., object]] = [_nothing, _nothing]
        self.notify_all, self.notify_many = make_entry_points(self._current)
        self._publish((), ())

    def _publish(
        self, observers: tuple[Observer[T], ...], updates: tuple[Callable[[T], object], ...]
    ) -> None:
        # Under _lock (or in __init__). Readers of the tuples take _lock; notify reads one item
        # of _current, atomically, on every CPython build.
        self._observers = observers
        self._updates = updates  # bound methods: no attribute lookup per observer per message
        install(self._current, updates, _report_failure, weakref.ref(self))

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
            self._publish((*self._observers, observer), (*self._updates, update))
        return True

    def unsubscribe(self, observer: Observer[T], /) -> bool:
        """Remove ``observer``; return False if it was not subscribed (nothing to remove)."""
        with self._lock:
            observers = self._observers
            for i, o in enumerate(observers):
                if o is observer:
                    updates = self._updates
                    self._publish(observers[:i] + observers[i + 1 :], updates[:i] + updates[i + 1 :])
                    return True
        return False

    @property
    def observers(self) -> tuple[Observer[T], ...]:
        """The current subscribers, in subscription order (a snapshot)."""
        return self._observers

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
        call_error_handler(self._error_handler, getattr(update, "__self__", update), message, error)


def _report_failure(
    pub: Publisher[object], update: Callable[[object], object], message: object, error: Exception
) -> None:
    # Called by the generated fan-out functions, which hold no reference to the publisher.
    pub._report(update, message, error)


def _nothing(*_: object) -> None:  # placeholder until the first _publish
    return None
