"""Delivery to an async observer: a bounded per-observer queue drained on its asyncio loop.

Shared by both publisher twins. The fan-out sees an ``AsyncDelivery`` as an ordinary observer:
its ``update`` (and ``update_many``) run in the publishing thread, append to the queue and, only
when no drain is pending, wake the loop with one ``call_soon_threadsafe``. The drain, a task on
the loop, awaits the observer's coroutine for each queued item, one at a time, in queue order,
until the queue is empty; only then does the next publish wake the loop again. So a burst of
messages costs one wake-up, not one per message.

Why a deque and not an ``asyncio.Queue``: asyncio objects may only be touched from their loop's
thread, and handing each message over with ``call_soon_threadsafe`` is exactly the per-message
cost this module avoids. The common path takes no lock: ``deque.append`` and ``popleft`` are
atomic on every CPython build (free-threaded included, where each deque has its own mutex).
Who wakes the loop is decided by ``_flag``, a lock used as an atomic test-and-set: a publisher
that acquires it without blocking schedules a drain; the drain holds it until it finds the queue
empty, releases it, then looks at the queue once more and takes it back if a message slipped in
(else that publisher took it and woke the loop). So no message is left behind and no burst wakes
the loop twice. ``_lock`` (with the condition ``_room``) serialises only the slow path: a full
queue, the counts, ending; it is never held while user code runs, nor while a publisher waits
for room (``Condition.wait`` releases it).

Overflow, when the queue holds ``queue_size`` items: "wait" blocks the publisher until the drain
has emptied half of it; "drop_oldest" drops the oldest item and counts it in ``dropped``. A
publish from the loop's own thread never waits (the loop could not drain while its thread is
blocked): there, "wait" drops the oldest item too, and counts it. Anywhere else "wait" never
drops: a publisher given room appends even if racers filled it meanwhile. A batch
(``update_many``) takes one slot and counts as its length when dropped. The bound is checked
without the lock, so publishers in several threads that race for the last place may pass it by
one each.

Whatever an observer's coroutine raises is reported (``failed``) and delivery goes on: an
``Exception`` as it is; any other ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``, a
``CancelledError`` from a cancelled inner await) wrapped in an ``AsyncObserverError`` whose
cause it is, since error handlers take an ``Exception``. Only the drain's own cancellation (the
loop shutting down) ends a drain early; it hands the flag back, and a publisher waiting for room
takes it again on its next check and wakes the loop, so a lost drain never strands it.

A loop that is closed (seen by any later publish, even while a wake-up is pending), or that
stops running while a publisher waits for room, ends the subscription: the error handler is
told (a ``LoopClosedError``), the queued items are dropped and counted, and later publishes skip
this observer until the publisher forgets it. So does a fork: the loop's thread stays in the
parent, so in a child every inherited async subscription is ended (fresh locks, nothing
delivered) and the child's first publish to it reports a ``LoopClosedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["AsyncDelivery", "AsyncObserverError", "LoopClosedError"]

_log = logging.getLogger("notipipe")

#: Seconds between checks, while a publisher waits for room, that the loop is still running.
_LOOP_CHECK = 0.05


class LoopClosedError(RuntimeError):
    """An async observer's event loop was closed or stopped: its subscription has ended."""


class AsyncObserverError(RuntimeError):
    """An async observer raised a ``BaseException`` that is not an ``Exception`` (its cause)."""


class _Batch:
    """A queued ``update_many`` batch (one queue slot; counts as its length when dropped)."""

    __slots__ = ("messages",)

    def __init__(self, messages: tuple[object, ...]) -> None:
        self.messages = messages


def _count(item: object) -> int:
    return len(item.messages) if type(item) is _Batch else 1


class AsyncDelivery:
    """The publisher-side stand-in for one async observer (see the module docstring)."""

    __slots__ = (
        "__weakref__",
        "_ended",
        "_failed",
        "_flag",
        "_forked",
        "_lock",
        "_loop",
        "_next_report",
        "_observer",
        "_on_end",
        "_overflow",
        "_queue",
        "_ref",
        "_room",
        "_scheduled",
        "_size",
        "_task",
        "_waiting",
        "dropped",
    )

    def __init__(
        self,
        observer: object,
        loop: asyncio.AbstractEventLoop,
        *,
        weak: bool,
        queue_size: int,
        overflow: str,
        failed: Callable[[object, Exception], None],
        on_end: Callable[[], None],
    ) -> None:
        # The observer's coroutine methods are looked up per item on the loop, so that a weak
        # subscription (``_ref``, and no ``_observer``) holds no bound method.
        self._observer: Any = None if weak else observer
        self._ref = weakref.ref(observer) if weak else None
        self._loop = loop
        self._size = queue_size
        self._overflow = overflow
        self._failed = failed
        self._on_end = on_end
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._waiting = 0  # publishers waiting for room: the drain notifies only if any
        self._queue: deque[Any] = deque()  # messages, and batches as _Batch
        self._flag = threading.Lock()  # held from a wake-up until the drain finds no more
        self._scheduled = False  # a hint that _flag is held (read without any lock)
        self._ended = False
        self._forked = False  # ended by a fork, not yet reported (see _after_fork_in_child)
        self._task: asyncio.Task[None] | None = None  # the running drain (kept from the GC)
        #: Messages dropped by the overflow policy or when the subscription ended.
        self.dropped = 0
        self._next_report = 1  # the drop count at which the next warning is logged
        _DELIVERIES.add(self)

    # -- the publishing side (any thread) -----------------------------------------------------

    def update(self, message: object, /) -> None:
        queue = self._queue
        if len(queue) >= self._size or self._ended:
            self._put(message)
            return
        queue.append(message)
        # The plain read first: while a drain runs, a publisher does not touch the flag.
        if not self._scheduled and self._flag.acquire(False):
            self._scheduled = True
            self._wake(message)
        elif self._loop.is_closed():  # closed with a wake-up pending: that drain never runs
            self._end(message)

    def update_many(self, messages: tuple[object, ...], /) -> None:
        self.update(_Batch(messages))

    def _wake(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._start)
        except RuntimeError:  # the loop is closed
            self._end(item)

    def _put(self, item: object) -> None:
        # A full queue (or an ended subscription): apply the overflow policy, under the lock.
        report = gone = False
        with self._lock:
            if self._ended:
                forked, self._forked = self._forked, False
                ended = True
            else:
                forked = ended = False
                queue = self._queue
                # Off the loop's thread, "wait" never drops: given room, it appends, even past
                # the bound if racers on the fast path filled the place meanwhile.
                wait = self._overflow == "wait" and not self._on_loop_thread()
                if self._loop.is_closed():  # e.g. closed before the pending drain could start
                    gone = True
                elif len(queue) >= self._size and wait:
                    waited = self._wait_for_room()
                    ended = waited == "ended"  # by another thread while this one waited
                    gone = waited == "gone"
                if not (gone or ended):
                    if len(queue) >= self._size and not wait:
                        report = self._drop_oldest()
                    queue.append(item)
            total = self.dropped
        if forked:  # the first publish in a forked child reports the end
            self._report_end(item, "runs in the parent process (this is a forked child)")
        if ended:
            return
        if gone:
            self._end(item)
            return
        if report:
            _log.warning(
                "async observer %r: queue full, %d message(s) dropped so far", self.observer(), total
            )
        if not self._scheduled and self._flag.acquire(False):
            self._scheduled = True
            self._wake(item)
        elif self._loop.is_closed():
            self._end(item)

    def _drop_oldest(self) -> bool:
        # Under _lock: drop (and count) the oldest item; True if a warning is due.
        with contextlib.suppress(IndexError):  # the drain emptied it meanwhile
            self.dropped += _count(self._queue.popleft())
        if self.dropped < self._next_report:
            return False
        while self._next_report <= self.dropped:
            self._next_report *= 10
        return True

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
            # No drain pending (the last one was cancelled before it emptied the queue): take
            # the flag and wake the loop, else this publisher would wait for nothing.
            if not self._scheduled and self._flag.acquire(False):
                self._scheduled = True
                try:
                    self._loop.call_soon_threadsafe(self._start)
                except RuntimeError:  # closed just now
                    return "gone"
            self._waiting += 1
            try:
                self._room.wait(_LOOP_CHECK)
            finally:
                self._waiting -= 1
        return "ended" if self._ended else "room"

    def _drop_all(self) -> bool:
        # Under _lock: end, drop (and count) what is queued, release waiting publishers.
        # True if this call ended it.
        first = not self._ended
        self._ended = True
        self._forked = False
        self.dropped += sum(_count(item) for item in self._queue)
        self._queue.clear()
        self._room.notify_all()
        return first

    def _end(self, item: object) -> None:
        """End this subscription: drop what is queued, report, ask the publisher to forget it."""
        with self._lock:
            first = self._drop_all()
        if first:
            self._report_end(item, "is closed or stopped")

    def _report_end(self, item: object, why: str) -> None:
        message = item.messages if type(item) is _Batch else item
        self._failed(message, LoopClosedError(f"event loop {self._loop!r} {why}"))
        self._on_end()

    def close(self) -> None:
        """Unsubscribed: drop (and count) what is queued and deliver nothing more."""
        with self._lock:
            self._drop_all()

    def _forget(self) -> None:
        # The observer is gone: stop quietly (no report), as a weak subscription does.
        with self._lock:
            first = self._drop_all()
        if first:
            self._on_end()

    def observer(self) -> object:
        """The observer, or None once a weakly subscribed one has been collected."""
        return self._observer if self._ref is None else self._ref()

    # -- the loop side ---------------------------------------------------------------------------

    def _start(self) -> None:
        self._task = task = self._loop.create_task(self._drain())
        task.add_done_callback(self._drained)

    def _drained(self, task: asyncio.Task[None]) -> None:
        # A drain that ended without finding the queue empty still holds the flag. Cancelled
        # (even before it started, as the loop shuts down): hand the flag back, so that the
        # next publish, or the next check of a publisher waiting for room, wakes the loop again
        # or finds it gone; a new drain now would outlive a shutdown. Ended by something else
        # (a BaseException from an error handler): what is queued is not stranded, drain again.
        if task is self._task:
            self._task = None
            if self._scheduled:
                if self._queue and not task.cancelled() and not self._ended:
                    self._loop.call_soon(self._start)
                    return
                self._scheduled = False
                self._flag.release()

    async def _drain(self) -> None:
        queue, flag = self._queue, self._flag
        strong, ref, failed = self._observer, self._ref, self._failed
        observer: Any
        # Waiting publishers are woken once half the queue is free, not per message taken: a
        # full queue would otherwise cost a thread switch each way for every message.
        low = self._size // 2
        while True:
            try:
                item = queue.popleft()
            except IndexError:
                self._scheduled = False
                flag.release()
                if self._waiting:
                    self._make_room()
                # A publisher that appended after the popleft but saw the hint still set
                # left the wake-up to this drain: look once more.
                if not queue or not flag.acquire(False):
                    self._task = None
                    return
                self._scheduled = True
                continue
            if self._waiting and len(queue) <= low:
                self._make_room()
            if self._ended:  # ended (closed or unsubscribed): deliver nothing more
                self._count_dropped(item)  # taken just before it ended: not in that count
                continue
            observer = strong if ref is None else ref()
            if observer is None:  # a weak subscription whose observer was collected
                self._forget()
                self._count_dropped(item)
                continue
            try:
                if type(item) is _Batch:
                    await observer.update_many(item.messages)
                else:
                    await observer.update(item)
            except Exception as error:  # noqa: BLE001 - isolated and reported, as for sync observers
                failed(item.messages if type(item) is _Batch else item, error)
            except BaseException as error:
                # This drain's own cancellation (the loop shutting down) ends it; anything else
                # is the observer's failure, reported like any other (see the module docstring).
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                wrapped = AsyncObserverError(f"async observer raised {type(error).__name__}: {error}")
                wrapped.__cause__ = error
                failed(item.messages if type(item) is _Batch else item, wrapped)

    def _make_room(self) -> None:
        with self._lock:
            self._room.notify_all()

    def _count_dropped(self, item: object) -> None:
        with self._lock:
            self.dropped += _count(item)

    def _after_fork_in_child(self) -> None:
        # Only this thread survived the fork: locks another thread held stay held forever, and
        # the loop's thread (with any drain) is gone although the loop still looks running.
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._flag = threading.Lock()
        self._scheduled = False
        self._waiting = 0
        self._task = None
        if not self._ended:
            self._ended = self._forked = True
            # Dropped (and counted) now; reported by the first publish (no user code in a hook).
            self.dropped += sum(_count(item) for item in self._queue)
            self._queue.clear()


#: Every delivery, so that a forked child can end them all.
_DELIVERIES: weakref.WeakSet[AsyncDelivery] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for delivery in list(_DELIVERIES):
        delivery._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
