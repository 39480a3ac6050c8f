"""Pure-Python fan-out: the annotated twin of ``_publisher_c.pyx`` and the type truth.

The subscriber list is an immutable snapshot (a tuple of ``_subscriptions.Subscription``: what
the fan-out calls for each observer, plain, async or weak), replaced copy-on-write under a lock,
together with the fan-out functions generated for it (``_fanout.make_fanout``). ``notify_all``
reads the current function once and calls the observers with no lock held, so an observer may
subscribe, unsubscribe or notify from inside ``update`` and a slow observer never blocks a
subscriber. A change made during a notify takes effect from the next notify.

``notify_all`` and ``notify_many`` are per-publisher functions stored in slots (see
``_fanout.make_entry_points``), not methods: calling them is a plain Python-to-Python call. On a
free-threaded build they are properties instead, giving the calling thread's own functions
(``_fanout.PerThread``), so that threads sharing a publisher do not share its functions.
What happens when an observer raises (the count, the handler, the throttled default log) is in
``_failures``, delivery to async observers in ``_async``, and how a subscription is built and
ended (weak ones, without a deadlock) in ``_subscriptions``: all shared with the compiled twin.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from notipipe._failures import Failures, ObserverFailures, log_observer_error
from notipipe._fanout import FREE_THREADED, PerThread, install, make_entry_points
from notipipe._protocols import AsyncObserver, ErrorHandler, Observer, Overflow
from notipipe._subscriptions import Purge, Subscription, make_subscription, observer_counts

__all__ = ["Publisher", "log_observer_error"]


class Publisher[T]:
    """Delivers each message to every subscribed observer, in subscription order.

    Thread-safe: subscribe, unsubscribe and notify from any thread, including from an observer.
    An observer that raises does not stop delivery to the others; the error goes to
    ``error_handler`` (by default, a log record naming the observer) and ``failures`` counts it.
    """

    # Free-threaded: notify_all and notify_many are properties giving the calling thread's own
    # functions (see _fanout.PerThread), not slots holding functions shared by every thread.
    __slots__ = (
        ("__weakref__", "_current", "_failures", "_lock", "_purge", "_subs")
        if FREE_THREADED
        else ("__weakref__", "_current", "_failures", "_lock", "_purge", "_subs", "notify_all", "notify_many")
    )

    #: ``notify_all(message)``: deliver ``message`` to every observer subscribed when the call
    #: starts, in subscription order.
    notify_all: Callable[[T], None]
    #: ``notify_many(messages)``: deliver the batch to every observer subscribed when the call
    #: starts; return how many messages were sent. Observers with ``update_many`` get the whole
    #: batch in one call (after the others have had each message in turn).
    notify_many: Callable[[Iterable[T]], int]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures = Failures()
        self._purge = Purge(self)
        self._current: list[Any] = [_nothing, _nothing]
        if FREE_THREADED:
            self._current.append(PerThread())
        else:
            self.notify_all, self.notify_many = make_entry_points(self._current)
        self._publish(())

    if FREE_THREADED and not TYPE_CHECKING:

        @property
        def notify_all(self) -> Callable[[T], None]:
            return self._current[2].pair()[0]

        @property
        def notify_many(self) -> Callable[[Iterable[T]], int]:
            return self._current[2].pair()[1]

    def _reinit_locks_after_fork(self) -> None:
        """In a forked child: fresh locks (another thread of the parent may have held them)."""
        self._lock = threading.Lock()
        self._failures.lock = threading.Lock()

    def _publish(self, subs: tuple[Subscription, ...]) -> None:
        # Under _lock (or in __init__). Readers of _subs take _lock or read it once; notify reads
        # one item of _current, atomically, on every CPython build.
        self._subs = subs
        updates = tuple(s.update for s in subs)  # bound methods: no lookup per message
        failed = tuple(s.failed for s in subs)  # each observer's ObserverFailures.failed
        batches = tuple(s.update_many for s in subs)
        if any(b is not None for b in batches):
            install(self._current, updates, failed, batches)
        else:
            install(self._current, updates, failed)

    def _purge_dead(self) -> None:
        """Drop ended subscriptions, if the lock is free (see ``_subscriptions``)."""
        if not self._lock.acquire(blocking=False):
            return  # held: whoever holds it, or the next change, drops them
        try:
            self._purge.pending = False
            subs = self._subs
            live = tuple(s for s in subs if not s.dead)
            if len(live) != len(subs):
                self._publish(live)
        finally:
            self._lock.release()

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(
        self,
        observer: Observer[T] | AsyncObserver[T],
        /,
        *,
        weak: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        queue_size: int = 1024,
        overflow: Overflow = "wait",
    ) -> bool:
        """Add ``observer``; return False (and change nothing) if it is already subscribed.

        Identity, not equality, decides "already": each object receives a message once.
        Raises TypeError if ``observer`` has no callable ``update``.

        An observer whose ``update`` is a coroutine function is awaited on ``loop`` (default: the
        loop running in the calling thread; none is a TypeError), one message at a time, in
        publication order, through a queue of ``queue_size`` messages; when it is full,
        ``overflow`` decides: "wait" blocks the publisher until there is room (a publish from
        the loop's own thread drops the oldest instead), "drop_oldest" drops the oldest message
        and counts it (``dropped``). ``loop``, ``queue_size`` and ``overflow`` only matter for
        async observers. An observer with ``update_many(messages)`` gets each ``notify_many``
        batch in one call. ``weak=True``: the subscription ends when ``observer`` is
        garbage-collected (it is held through a weak reference).
        """
        sub = make_subscription(
            self._failures,
            self._purge,
            observer,
            weak=weak,
            loop=loop,
            queue_size=queue_size,
            overflow=overflow,
        )
        with self._lock:
            subs = self._subs
            if any(s.ref() is observer and not s.dead for s in subs):
                return False
            self._purge.pending = False
            self._publish((*(s for s in subs if not s.dead), sub))
        return True

    def unsubscribe(self, observer: Observer[T] | AsyncObserver[T], /) -> bool:
        """Remove ``observer``; return False if it was not subscribed (nothing to remove)."""
        with self._lock:
            for s in self._subs:
                if s.ref() is observer and not s.dead:
                    s.dead = True
                    self._purge.pending = False
                    self._publish(tuple(k for k in self._subs if not k.dead))
                    break
            else:
                return False
        if s.delivery is not None:
            s.delivery.close()  # what it has not awaited yet is dropped
        return True

    @property
    def observers(self) -> tuple[Observer[T] | AsyncObserver[T], ...]:
        """The current subscribers, in subscription order (a snapshot)."""
        found = []
        for s in self._subs:
            observer = s.ref()
            if observer is not None and not s.dead:
                found.append(observer)
        return tuple(found)

    def dropped(self, observer: Observer[T] | AsyncObserver[T], /) -> int:
        """How many messages the overflow policy has dropped for this async observer so far.

        0 for a plain observer. Raises ValueError if ``observer`` is not subscribed.
        """
        for s in self._subs:
            if s.ref() is observer and not s.dead:
                return s.dropped
        raise ValueError(f"{observer!r} is not subscribed")

    def _observer_counts(self) -> tuple[int, tuple[tuple[ObserverFailures, object, int, int], ...]]:
        """See ``_subscriptions.observer_counts``."""
        return observer_counts(self._subs, self._failures)

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
