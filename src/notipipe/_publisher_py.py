"""Pure-Python fan-out: the annotated twin of ``_publisher_c.pyx`` and the type truth.

The subscriber list is an immutable snapshot (a tuple), replaced copy-on-write under a lock,
together with the fan-out functions generated for it (``_fanout.make_fanout``). ``notify_all``
reads the current function once and calls the observers with no lock held, so an observer may
subscribe, unsubscribe or notify from inside ``update`` and a slow observer never blocks a
subscriber. A change made during a notify takes effect from the next notify.

``notify_all`` and ``notify_many`` are per-publisher functions stored in slots (see
``_fanout.make_entry_points``), not methods: calling them is a plain Python-to-Python call.
What happens when an observer raises (the count, the handler, the throttled default log) is in
``_failures``, shared with the compiled twin.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from notipipe._failures import Failures, ObserverFailures, log_observer_error
from notipipe._fanout import install, make_entry_points
from notipipe._protocols import ErrorHandler, Observer

__all__ = ["Publisher", "log_observer_error"]

type Failed[T] = Callable[[T, Exception], None]


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
        "_failed",
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
        self._failures = Failures()
        self._current: list[Callable[..., object]] = [_nothing, _nothing]
        self.notify_all, self.notify_many = make_entry_points(self._current)
        self._publish((), (), ())

    def _reinit_locks_after_fork(self) -> None:
        """In a forked child: fresh locks (another thread of the parent may have held them)."""
        self._lock = threading.Lock()
        self._failures.lock = threading.Lock()

    def _publish(
        self,
        observers: tuple[Observer[T], ...],
        updates: tuple[Callable[[T], object], ...],
        failed: tuple[Failed[T], ...],
    ) -> None:
        # Under _lock (or in __init__). Readers of the tuples take _lock; notify reads one item
        # of _current, atomically, on every CPython build. The three tuples run in parallel.
        self._observers = observers
        self._updates = updates  # bound methods: no attribute lookup per observer per message
        self._failed = failed  # each observer's ObserverFailures.failed (see _failures)
        install(self._current, updates, failed)

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, observer: Observer[T], /) -> bool:
        """Add ``observer``; return False (and change nothing) if it is already subscribed.

        Identity, not equality, decides "already": each object receives a message once.
        Raises TypeError if ``observer`` has no callable ``update``.
        """
        update = _bound_update(observer)
        failed = ObserverFailures(self._failures, observer).failed
        with self._lock:
            if any(o is observer for o in self._observers):
                return False
            self._publish((*self._observers, observer), (*self._updates, update), (*self._failed, failed))
        return True

    def unsubscribe(self, observer: Observer[T], /) -> bool:
        """Remove ``observer``; return False if it was not subscribed (nothing to remove)."""
        with self._lock:
            observers = self._observers
            for i, o in enumerate(observers):
                if o is observer:
                    updates, failed = self._updates, self._failed
                    self._publish(
                        observers[:i] + observers[i + 1 :],
                        updates[:i] + updates[i + 1 :],
                        failed[:i] + failed[i + 1 :],
                    )
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
        return self._failures.count

    @property
    def error_handler(self) -> ErrorHandler:
        """Called as ``handler(observer, message, error)`` for each failing ``update``.

        ``observer`` is the object that was subscribed. The default, ``log_observer_error``, is
        throttled per observer: the first failure is logged with its traceback, the repeats are
        counted and summarised in one line at most every ``SUMMARY_INTERVAL`` seconds.
        """
        return self._failures.handler

    @error_handler.setter
    def error_handler(self, handler: ErrorHandler) -> None:
        if not callable(handler):
            raise TypeError(f"error_handler must be callable, got {handler!r}")
        self._failures.handler = handler


def _nothing(*_: object) -> None:  # placeholder until the first _publish
    return None
