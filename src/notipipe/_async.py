"""Delivery to an async observer: a bounded per-observer queue drained on its asyncio loop.

Shared by both publisher twins. The fan-out sees an ``AsyncDelivery`` as an ordinary observer:
its ``update`` (and ``update_many``) run in the publishing thread, append to the queue under a
short lock and, only when no drain is pending, wake the loop with one ``call_soon_threadsafe``.
The drain, a task on the loop, awaits the observer's coroutine for each queued item, one at a
time, in queue order, until the queue is empty; only then does the next publish wake the loop
again. So a burst of messages costs one wake-up, not one per message.

Why a lock and a deque and not an ``asyncio.Queue``: asyncio objects may only be touched from
their loop's thread, and handing each message over with ``call_soon_threadsafe`` is exactly the
per-message cost this module avoids. The lock guards the queue, the drain flag and the counts;
it is never held while user code runs, nor while a publisher waits for room (``Condition.wait``
releases it).

Overflow, when the queue holds ``queue_size`` items: "wait" blocks the publisher until the drain
takes one; "drop_oldest" drops the oldest item and counts it in ``dropped``. A publish from the
loop's own thread never waits (the loop could not drain while its thread is blocked): there,
"wait" drops the oldest item too, and counts it. A batch (``update_many``) takes one slot and
counts as its length when dropped.

A loop that is closed, or that stops running while a publisher waits for room, ends the
subscription: the error handler is told (a ``LoopClosedError``), the queued items are dropped
and counted, and later publishes skip this observer until the publisher forgets it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["AsyncDelivery", "LoopClosedError"]

_log = logging.getLogger("notipipe")

#: Seconds between checks, while a publisher waits for room, that the loop is still running.
_LOOP_CHECK = 0.05


class LoopClosedError(RuntimeError):
    """An async observer's event loop was closed or stopped: its subscription has ended."""


class AsyncDelivery:
    """The publisher-side stand-in for one async observer (see the module docstring)."""

    __slots__ = (
        "__weakref__",
        "_ended",
        "_failed",
        "_lock",
        "_loop",
        "_on_end",
        "_overflow",
        "_queue",
        "_ref",
        "_room",
        "_scheduled",
        "_size",
        "_task",
        "dropped",
        "wakeups",
    )

    def __init__(
        self,
        ref: Callable[[], Any],
        loop: asyncio.AbstractEventLoop,
        *,
        queue_size: int,
        overflow: str,
        failed: Callable[[object, Exception], None],
        on_end: Callable[[], None],
    ) -> None:
        # The observer, through a (weak or strong) reference: its coroutine methods are looked
        # up per item on the loop, so a weak subscription holds no bound method.
        self._ref = ref
        self._loop = loop
        self._size = queue_size
        self._overflow = overflow
        self._failed = failed
        self._on_end = on_end
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        # Items: (False, message) or (True, batch).
        self._queue: deque[tuple[bool, Any]] = deque()
        self._scheduled = False  # a drain is pending or running: no wake-up needed
        self._ended = False
        self._task: asyncio.Task[None] | None = None  # the running drain (kept from the GC)
        #: Items dropped by the overflow policy or when the subscription ended (batches count
        #: as their length).
        self.dropped = 0
        #: How many times a publisher woke the loop (one per burst).
        self.wakeups = 0

    # -- the publishing side (any thread) -----------------------------------------------------

    def update(self, message: object, /) -> None:
        self._put(False, message)

    def update_many(self, messages: tuple[object, ...], /) -> None:
        self._put(True, messages)

    def _put(self, batch: bool, item: object) -> None:
        if self._ref() is None:  # a weak subscription whose observer was collected
            self._forget()
            return
        dropped = gone = wake = False
        with self._lock:
            if self._ended:
                return
            queue = self._queue
            if len(queue) >= self._size and self._overflow == "wait" and not self._on_loop_thread():
                waited = self._wait_for_room()
                if waited == "ended":  # by another thread while this one waited
                    return
                gone = waited == "gone"
            if not gone:
                if len(queue) >= self._size:
                    old_batch, old = queue.popleft()
                    self.dropped += len(old) if old_batch else 1
                    dropped = True
                queue.append((batch, item))
                wake = not self._scheduled
                if wake:
                    self._scheduled = True
                    self.wakeups += 1
            total = self.dropped
        if gone:
            self._end(item)
            return
        if dropped:
            _report_drop(self, total)
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._start)
            except RuntimeError:  # the loop is closed
                self._end(item)

    def _on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:  # no loop runs in this thread
            return False

    def _wait_for_room(self) -> str:
        # Under _lock (Condition.wait releases it while waiting): "room", "ended" (another
        # thread ended the subscription meanwhile) or "gone" (the loop is closed or stopped).
        while len(self._queue) >= self._size:
            if self._ended:
                return "ended"
            if self._loop.is_closed() or not self._loop.is_running():
                return "gone"
            self._room.wait(_LOOP_CHECK)
        return "ended" if self._ended else "room"

    def _end(self, message: object) -> None:
        """End this subscription: drop what is queued, report, ask the publisher to forget it."""
        with self._lock:
            first = not self._ended
            if first:
                self._ended = True
                self.dropped += sum(len(item) if batch else 1 for batch, item in self._queue)
                self._queue.clear()
                self._room.notify_all()
        if first:
            self._failed(message, LoopClosedError(f"event loop {self._loop!r} is closed or stopped"))
            self._on_end()

    def close(self) -> None:
        """Unsubscribed: drop (and count) what is queued and deliver nothing more."""
        with self._lock:
            self._ended = True
            self.dropped += sum(len(item) if batch else 1 for batch, item in self._queue)
            self._queue.clear()
            self._room.notify_all()

    def _forget(self) -> None:
        # The observer is gone: stop quietly (no report), as a weak subscription does.
        with self._lock:
            first = not self._ended
            self._ended = True
            self._queue.clear()
            self._room.notify_all()
        if first:
            self._on_end()

    # -- the loop side ---------------------------------------------------------------------------

    def _start(self) -> None:
        self._task = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        lock, queue = self._lock, self._queue
        try:
            while True:
                with lock:
                    if not queue:
                        self._scheduled = False
                        self._task = None
                        return
                    batch, item = queue.popleft()
                    self._room.notify()
                observer = self._ref()
                if observer is None:  # a weak subscription whose observer was collected
                    self._forget()
                    continue
                try:
                    if batch:
                        await observer.update_many(item)
                    else:
                        await observer.update(item)
                except Exception as error:  # noqa: BLE001 - isolated and reported, as for sync observers
                    self._failed(item, error)
        except BaseException:
            # Cancelled (the loop is shutting down): the next publish wakes the loop again, or
            # finds it closed and ends the subscription.
            with lock:
                self._scheduled = False
                self._task = None
            raise


def _report_drop(delivery: AsyncDelivery, total: int) -> None:
    # The first drop and each tenfold after it: enough to see a lagging observer, never a flood.
    n = total
    while n >= 10 and n % 10 == 0:
        n //= 10
    if n == 1:
        _log.warning("async observer queue full: %d message(s) dropped so far (%r)", total, delivery)
