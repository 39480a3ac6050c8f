"""A stand-in for ``subscribe(observer, weak=True, loop=..., queue_size=..., overflow="drop_oldest")``.

Until the async observers land in the publisher, this hands pages from the follower thread to
the event loop the same way: coalesced (one loop wake-up per burst), a bounded queue per
observer that drops its oldest page when full, ``update_many`` awaited one batch at a time, and
the observer held weakly. It is the whole of what the dashboard needs from that API, so plugging
the real one in replaces ``subscribe_async`` and ``unsubscribe_async`` by the publisher's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from notipipe._select import Publisher

__all__ = ["AsyncObserver", "subscribe_async", "unsubscribe_async"]

_log = logging.getLogger("notipipe.dashboard")


class AsyncObserver[T](Protocol):
    async def update(self, message: T, /) -> object: ...
    async def update_many(self, messages: Sequence[T], /) -> object: ...


class _Handoff[T]:
    """The synchronous observer the publisher calls; it queues for the loop and wakes it once."""

    def __init__(self, observer: AsyncObserver[T], loop: asyncio.AbstractEventLoop, queue_size: int) -> None:
        self._observer = weakref.ref(observer)
        self._loop = loop
        self._queue: deque[T] = deque(maxlen=queue_size)  # a full deque drops its oldest
        self._lock = threading.Lock()
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    def update(self, message: T, /) -> None:  # on the publishing thread
        with self._lock:
            self._queue.append(message)
            if self._draining:
                return
            self._draining = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to deliver to
            self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        self._task = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._draining = False
                    return
                batch = list(self._queue)
                self._queue.clear()
            observer = self._observer()
            if observer is None:
                return
            try:
                await observer.update_many(batch)
            except Exception:  # noqa: BLE001 - isolated and logged, as the publisher does
                _log.exception("dashboard observer %r failed", observer)
            del observer


_HANDOFFS: weakref.WeakKeyDictionary[object, _Handoff[object]] = weakref.WeakKeyDictionary()


def subscribe_async[T](
    hub: Publisher[T], observer: AsyncObserver[T], *, loop: asyncio.AbstractEventLoop, queue_size: int
) -> None:
    handoff: _Handoff[T] = _Handoff(observer, loop, queue_size)
    _HANDOFFS[observer] = handoff  # type: ignore[assignment]

    def end(_: object) -> None:  # weak: the subscription ends with the observer
        hub.unsubscribe(handoff)

    weakref.finalize(observer, end, None)
    hub.subscribe(handoff)


def unsubscribe_async[T](hub: Publisher[T], observer: AsyncObserver[T]) -> None:
    handoff = _HANDOFFS.pop(observer, None)
    if handoff is not None:
        hub.unsubscribe(handoff)
