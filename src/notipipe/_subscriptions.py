"""One subscription: what the fan-out calls for an observer, built once at subscribe time.

Shared by both publisher twins (subscribing is off the hot path). ``make_subscription`` checks
the observer and the options and returns a ``Subscription``: the callables the generated fan-out
calls (``update``, and ``update_many`` or None), the failure reporter, and how to reach the
observer (``ref()``: the object, or None once a weakly subscribed one has been collected).

* A plain observer: ``update`` is its bound method, nothing in between.
* An async observer (``update`` is a coroutine function): ``update`` is an ``AsyncDelivery``'s,
  which queues the message for the observer's loop (see ``_async``).
* ``weak=True``: the subscription holds the observer through a ``weakref``; ``update`` looks the
  method up on each call and skips a collected observer.

How a subscription ends without a deadlock. A weakref callback runs wherever the collection
happens, which can be inside a publisher's locked region on the same thread (any allocation may
start the cyclic GC); the publisher's lock is not reentrant. So the callback only marks the
subscription dead and the publisher's ``Purge`` pending, taking no lock. The dead subscription
delivers nothing from then on; the publisher drops it from its snapshot on the next subscribe or
unsubscribe, or on the next publish that meets it (``Purge.request``, which only tries the lock).
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from notipipe._async import AsyncDelivery
from notipipe._failures import Failures, ObserverFailures, _Strong

__all__ = ["OVERFLOWS", "Purge", "Subscription", "make_subscription"]

OVERFLOWS = ("wait", "drop_oldest")


class _Purger(Protocol):
    def _purge_dead(self) -> None: ...


class Purge:
    """A publisher's pending removal of dead subscriptions (see the module docstring)."""

    __slots__ = ("_publisher", "pending")

    def __init__(self, publisher: _Purger) -> None:
        # Weak: subscriptions hold this object, and the publisher holds them.
        self._publisher = weakref.ref(publisher)
        self.pending = False

    def request(self) -> None:
        """Ask the publisher to drop dead subscriptions now, if its lock is free."""
        self.pending = True
        publisher = self._publisher()
        if publisher is not None:
            publisher._purge_dead()


class Subscription:
    """One observer's entry in a publisher's snapshot."""

    __slots__ = (
        "__weakref__",
        "_purge",
        "dead",
        "delivery",
        "failed",
        "ref",
        "reporter",
        "update",
        "update_many",
    )

    ref: Callable[[], Any]
    update: Callable[[Any], object]
    update_many: Callable[[Any], object] | None
    failed: Callable[[Any, Exception], None]
    reporter: ObserverFailures
    delivery: AsyncDelivery | None

    def __init__(self, purge: Purge) -> None:
        self._purge = purge
        self.dead = False  # ended: delivers nothing, dropped from the next snapshot
        self.delivery = None
        self.update_many = None

    def end(self) -> None:
        """Mark this subscription dead and ask for it to be dropped (never under its lock)."""
        self.dead = True
        self._purge.request()

    def collected(self, _ref: object) -> None:
        """The weakref callback: mark only (see the module docstring)."""
        self.dead = True
        self._purge.pending = True

    @property
    def dropped(self) -> int:
        return 0 if self.delivery is None else self.delivery.dropped


class _WeakCall:
    """``update`` (or ``update_many``) of a weakly held observer, looked up per call."""

    __slots__ = ("_name", "_ref", "_subscription")

    def __init__(self, ref: Callable[[], Any], name: str, subscription: Subscription) -> None:
        self._ref = ref
        self._name = name
        self._subscription = weakref.ref(subscription)

    def __call__(self, message: object, /) -> object:
        observer = self._ref()
        if observer is None:
            subscription = self._subscription()
            if subscription is not None:
                subscription.end()
            return None
        return getattr(observer, self._name)(message)


def _method(observer: object, name: str) -> Callable[..., object] | None:
    method = getattr(observer, name, None)
    return method if callable(method) else None


def _loop_for(observer: object, loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise TypeError(
                f"{observer!r} has an async update but there is no event loop to run it on: "
                "subscribe from a coroutine running on the loop, or pass loop="
            ) from None
    if loop.is_closed():
        raise ValueError(f"cannot subscribe {observer!r}: its event loop is closed")
    return loop


def make_subscription(
    failures: Failures,
    purge: Purge,
    observer: object,
    *,
    weak: bool,
    loop: asyncio.AbstractEventLoop | None,
    queue_size: int,
    overflow: str,
) -> Subscription:
    """Check ``observer`` and the options; build its subscription (see the module docstring)."""
    update = _method(observer, "update")
    if update is None:
        raise TypeError(
            f"{observer!r} ({type(observer).__name__}) is not an observer: "
            "it needs a callable update(message) method"
        )
    if overflow not in OVERFLOWS:
        raise ValueError(f"overflow must be 'wait' or 'drop_oldest', got {overflow!r}")
    if type(queue_size) is not int or queue_size < 1:
        raise ValueError(f"queue_size must be a positive int, got {queue_size!r}")
    is_async = inspect.iscoroutinefunction(update)
    update_many = _method(observer, "update_many")
    if update_many is not None and inspect.iscoroutinefunction(update_many) != is_async:
        raise TypeError(f"{observer!r}: update_many must be a coroutine function exactly when update is one")
    if is_async:
        loop = _loop_for(observer, loop)

    subscription = Subscription(purge)
    ref: Callable[[], Any] = weakref.ref(observer, subscription.collected) if weak else _Strong(observer)
    subscription.ref = ref
    subscription.reporter = ObserverFailures(failures, observer, weak=weak)
    subscription.failed = subscription.reporter.failed
    if is_async:
        assert loop is not None
        delivery = AsyncDelivery(
            observer,
            loop,
            weak=weak,
            queue_size=queue_size,
            overflow=overflow,
            failed=subscription.failed,
            on_end=subscription.end,
        )
        subscription.delivery = delivery
        subscription.update = delivery.update
        if update_many is not None:
            subscription.update_many = delivery.update_many
    elif weak:
        subscription.update = _WeakCall(ref, "update", subscription)
        if update_many is not None:
            subscription.update_many = _WeakCall(ref, "update_many", subscription)
    else:
        subscription.update = update
        subscription.update_many = update_many
    return subscription


def observer_counts(
    subs: Iterable[Subscription], failures: Failures
) -> tuple[int, tuple[tuple[ObserverFailures, object, int, int], ...]]:
    """A publisher's failures, and ``(reporter, observer, failures, dropped)`` of each of its
    current subscribers (``subs``, in subscription order), the failure counts read at one
    instant (under their lock): what ``DatabaseConnection.metrics`` reports, for both twins'
    ``Publisher._observer_counts``; read, never counted here."""
    live = [(s.reporter, s.ref(), s.dropped) for s in subs if not s.dead]
    with failures.lock:
        total = failures.count
        counts = [reporter.count for reporter, _, _ in live]
    found = [
        (reporter, observer, count, dropped)
        for (reporter, observer, dropped), count in zip(live, counts, strict=True)
        if observer is not None
    ]
    return total, tuple(found)
