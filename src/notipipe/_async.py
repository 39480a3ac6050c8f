"""Delivery to an async observer: a bounded per-observer queue drained on its asyncio loop.

Shared by both publisher twins. The fan-out sees an ``AsyncDelivery`` as an ordinary observer:
its ``update`` (and ``update_many``) run in the publishing thread, append to the queue and, only
when no drain is pending, wake the loop with one ``call_soon_threadsafe``. The drain, a task on
the loop, awaits the observer's coroutine for each queued item, one at a time, in queue order,
until the queue is empty; only then does the next publish wake the loop again. So a burst of
messages costs one wake-up, not one per message. A drain that finds the queue empty first gives
the loop one turn (``_IDLE_TURNS``) and looks again: a producer still publishing has appended
meanwhile, and the burst goes on without a wake-up from another thread, which costs the loop far
more than a turn.

The compiled twin replaces the two per-message paths with C (``_publisher_c``): ``update`` on
every build, and, on a free-threaded build, the drain, which also takes each native coroutine's
first step itself (``finish_awaiting`` awaits the rest if it suspends). The steps, the state
and the slow paths are this module's: both twins behave alike.

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
for room (``Condition.wait`` releases it). The drain reads one flag per item for the rare cases,
``_stirred`` (a publisher waits for room, or the subscription has ended), written under
``_lock`` with what it stands for.

Overflow, when the queue holds ``queue_size`` items: "wait" blocks the publisher until the drain
has emptied half of it (polling, with naps or yielding the CPU, for up to ``_SPIN`` seconds
before it sleeps on the condition: a publisher put to sleep takes longer to wake than the other
half lasts a drain that keeps up, and the loop would run dry); "drop_oldest" drops the oldest item and counts
it in ``dropped``. A publish from the loop's own thread never waits (the loop could not drain
while its thread is blocked): there, "wait" drops the oldest item too, and counts it. Anywhere
else "wait" never drops: a publisher given room appends even if racers filled it meanwhile. A
batch (``update_many``) takes one slot and counts as its length when dropped. The bound is
checked without the lock, so publishers in several threads that race for the last place may pass
it by one each.

Whatever an observer's coroutine raises is reported (``failed``) and delivery goes on: an
``Exception`` as it is; any other ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``, a
``CancelledError`` from a cancelled inner await, or from the observer cancelling its own task)
wrapped in an ``AsyncObserverError`` whose cause it is, since error handlers take an
``Exception``. The drain runs as a ``_DrainTask``, which tells an observer's cancelling of its
own task (the drain, seen from inside) from a cancellation from outside: the observer's requests
are withdrawn once its update has ended, and the drain goes on with the next message. Only a
cancellation from outside (the loop shutting down) ends a drain early; the message it was
delivering is counted as dropped, and it hands the flag back: a publisher waiting for room takes
it again on its next check and wakes the loop, so a lost drain never strands it. A drain
finalised because its loop was closed under it (``GeneratorExit``, when it is collected) is no
observer's failure: nothing is reported, logged or printed (the ``LoopClosedError`` of the next
publish says it).

A loop that is closed (seen by any later publish, even while a wake-up is pending), or that
stops running while a publisher waits for room, ends the subscription: the error handler is
told (a ``LoopClosedError``), the queued items are dropped and counted, and later publishes skip
this observer until the publisher forgets it. So does a fork: the loop's thread stays in the
parent, so in a child every inherited async subscription is ended (fresh locks, nothing
delivered) and the child's first publish to it reports a ``LoopClosedError``. ``unsubscribe``
ends it too, without a report: what is queued is dropped and counted, and so is what a publisher
that passed its check just before the end appends, or was waiting to append. The queue is then
emptied by ``popleft``, never iterated: the drain and the fast path change it without the lock.

A loop whose thread waits on a store's writer (``waiting_on_writer``: a flush, a durable save, a
save meeting back-pressure, a read, close) cannot drain meanwhile, and the writer delivering
``after_commit`` (``delivering_for_writer``) may be the very publisher waiting for room on it:
each would wait for the other forever. So a publisher that delivers for a writer never waits for
room on such a loop: it queues past ``queue_size`` instead, and drops nothing. How far past is
what the writer commits while the loop's thread waits: about ``max_pending`` for a flush, but a
save meeting back-pressure among other producers may wait, and so let the writer queue, longer.
Any other publisher waits as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterator
from types import TracebackType
from typing import Any, cast

__all__ = [
    "AsyncDelivery",
    "AsyncObserverError",
    "LoopClosedError",
    "delivering_for_writer",
    "waiting_on_writer",
]

_log = logging.getLogger("notipipe")

#: Seconds between checks, while a publisher waits for room, that the loop is still running.
_LOOP_CHECK = 0.05

#: Seconds a publisher waiting for room polls for it before it sleeps (see _spin_for_room).
_SPIN = 0.002

#: Seconds a publisher polling for room naps between looks, when half its queue is at least
#: ``_NAP_HALF`` items: a look at the queue's length takes the cache line the drain writes at
#: every item (and, with the GIL, the interpreter), so looking without pause slows the drain it
#: waits for; half such a queue lasts a drain that keeps up longer than a nap. A smaller queue
#: may empty within a nap: its publisher only yields the CPU between looks.
_NAP = 0.0001
_NAP_HALF = 512

#: Loop turns a drain that found its queue empty waits for more before it ends.
_IDLE_TURNS = 1


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


def _message_of(item: object) -> object:
    return item.messages if type(item) is _Batch else item


def _take_all(queue: deque[Any]) -> int:
    """Empty ``queue``; return how many messages it held.

    By ``popleft``, never by iterating: the drain and publishers on the fast path change the
    queue without the lock, and a deque changed while it is iterated raises.
    """
    taken = 0
    while True:
        try:
            taken += _count(queue.popleft())
        except IndexError:
            return taken


class _DrainTask(asyncio.Task[None]):
    """The drain's task: it counts the cancellations the observer asks of its own task.

    A request made from inside this task (``current_task() is self``) comes from the observer's
    code: it is the observer's, not a shutdown's (see the module docstring). Made directly, not
    by the loop's task factory, which could make a task of another class.
    """

    # A slot: the compiled drain reads it per item straight from the object.
    __slots__ = ("own_cancels",)

    def __init__(self, drain: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(drain, loop=loop)
        #: Cancellations asked from inside this task and not yet withdrawn (0 when none: the
        #: compiled drain compares the slot with the int 0 itself).
        self.own_cancels = 0
        # Destroyed while pending only when its loop was closed under it: that is reported as
        # a LoopClosedError; asyncio's "Task was destroyed but it is pending!" would be noise.
        self._log_destroy_pending = False

    def cancel(self, msg: Any | None = None) -> bool:
        own = asyncio.current_task(self.get_loop()) is self
        cancelled = super().cancel(msg)
        if cancelled and own:
            self.own_cancels += 1
        return cancelled

    def from_outside(self) -> bool:
        """True if a cancellation other than the observer's own is pending or under way."""
        return self.cancelling() > self.own_cancels

    async def withdraw_own_cancels(self) -> None:
        """After an update during which the observer cancelled its own task: let a request that
        has not arrived yet arrive here (absorbed), then withdraw them all, so that
        ``cancelling()`` counts only what comes from outside."""
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            if self.from_outside():
                raise
        for _ in range(self.own_cancels):
            self.uncancel()
        self.own_cancels = 0


@types.coroutine
def finish_awaiting(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Await the rest of ``coro``, started by hand, which has yielded ``yielded`` to its task.

    What ``await`` does past the first step (PEP 380): what the task sends or throws goes to
    ``coro``, what ``coro`` yields goes to the task, until it returns. The compiled drain takes
    the first step itself, so that an update that never suspends costs no awaiting at all.
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as error:  # noqa: BLE001 - handed to the coroutine, as await does
            try:
                yielded = coro.throw(error)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def _wrapped(error: BaseException) -> AsyncObserverError:
    wrapped = AsyncObserverError(f"async observer raised {type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


# -- loops whose thread waits on a store's writer (see the module docstring) ---------------------


class _Waits:
    """The loops whose thread waits on a store's writer now, each with how many such waits."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loops: dict[asyncio.AbstractEventLoop, int] = {}


_WAITS = _Waits()


class _WaitingLoop:
    """``waiting_on_writer()`` for a thread that runs ``loop``: marks it for the wait's length."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __enter__(self) -> None:
        waits = _WAITS
        with waits.lock:
            waits.loops[self._loop] = waits.loops.get(self._loop, 0) + 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        waits = _WAITS
        with waits.lock:
            left = waits.loops.get(self._loop, 0) - 1
            if left > 0:
                waits.loops[self._loop] = left
            else:
                waits.loops.pop(self._loop, None)


_NOT_ON_A_LOOP: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


def waiting_on_writer() -> contextlib.AbstractContextManager[None]:
    """Around a call that may wait on a store's writer: if it runs on an event loop's thread,
    a writer delivering to that loop's async observers does not wait for room meanwhile."""
    loop = asyncio._get_running_loop()
    return _NOT_ON_A_LOOP if loop is None else _WaitingLoop(loop)


class _WriterThread(threading.local):
    delivering = False


_WRITER = _WriterThread()


@contextlib.contextmanager
def delivering_for_writer() -> Iterator[None]:
    """Around a writer thread's ``after_commit`` delivery (see the module docstring)."""
    writer = _WRITER
    before, writer.delivering = writer.delivering, True
    try:
        yield
    finally:
        writer.delivering = before


def _waits_on_this_writer(loop: asyncio.AbstractEventLoop) -> bool:
    """True if ``loop``'s thread waits on a store's writer and this thread is a writer delivering."""
    return loop in _WAITS.loops and _WRITER.delivering


class AsyncDelivery:
    """The publisher-side stand-in for one async observer (see the module docstring)."""

    __slots__ = (
        "__weakref__",
        "_drain_with",
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
        "_stirred",
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
        # True while a publisher waits for room or once ended: the drain's one check per item.
        # Written under _lock with _waiting and _ended, read without it.
        self._stirred = False
        self._forked = False  # ended by a fork, not yet reported (see _after_fork_in_child)
        self._task: asyncio.Task[None] | None = None  # the running drain (kept from the GC)
        #: The compiled twin's drain (``_publisher_c._drain``), set before the first publish;
        #: None: this class's ``_drain``. Both take the same steps.
        self._drain_with: Callable[[AsyncDelivery], Coroutine[Any, Any, None]] | None = None
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
                    waited = self._wait_for_room_for(item)
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

    def _wait_for_room_for(self, item: object) -> str:
        # Under _lock: _wait_for_room, and an item whose wait ended with the subscription is
        # counted as dropped: it passed its check before the end, like those queued then.
        waited = self._wait_for_room()
        if waited == "ended":
            self.dropped += _count(item)
        return waited

    def _wait_for_room(self) -> str:
        # Under _lock (Condition.wait releases it while waiting): "room", "ended" (another
        # thread ended the subscription meanwhile) or "gone" (the loop is closed or stopped).
        while len(self._queue) >= self._size:
            if self._ended:
                return "ended"
            if self._loop.is_closed() or not self._loop.is_running():
                return "gone"
            if _waits_on_this_writer(self._loop):  # the loop waits for this thread: no room comes
                return "room"
            # No drain pending (the last one was cancelled before it emptied the queue): take
            # the flag and wake the loop, else this publisher would wait for nothing.
            if not self._scheduled and self._flag.acquire(False):
                self._scheduled = True
                try:
                    self._loop.call_soon_threadsafe(self._start)
                except RuntimeError:  # closed just now
                    return "gone"
            if self._spin_for_room():
                continue
            self._waiting += 1
            self._stirred = True
            try:
                self._room.wait(_LOOP_CHECK)
            finally:
                self._waiting -= 1
                # Ended meanwhile (by another thread), or other publishers still waiting.
                self._stirred = self._needs_attention()
        return "ended" if self._ended else "room"

    def _spin_for_room(self) -> bool:
        # Under _lock, released meanwhile: poll (yielding the CPU) for up to _SPIN seconds
        # until the drain has emptied half the queue. A drain that keeps up empties it in well
        # under that, and a publisher put to sleep would take longer to wake than the rest of
        # the queue lasts the drain: the loop would run dry and sleep too. True if room came.
        queue, low = self._queue, self._size // 2
        deadline = time.monotonic() + _SPIN
        nap = _NAP if low >= _NAP_HALF else 0.0
        self._lock.release()
        try:
            while len(queue) > low and not self._ended:
                if time.monotonic() > deadline:
                    return False
                if nap:
                    time.sleep(nap)
                else:
                    os.sched_yield()
            return True
        finally:
            self._lock.acquire()

    def _needs_attention(self) -> bool:
        # Under _lock: what ``_stirred`` stands for.
        return self._ended or self._waiting > 0

    def _drop_all(self) -> bool:
        # Under _lock: end, drop (and count) what is queued, release waiting publishers.
        # True if this call ended it.
        first = not self._ended
        self._ended = self._stirred = True
        self._forked = False
        self.dropped += _take_all(self._queue)
        self._room.notify_all()
        return first

    def _end(self, item: object) -> None:
        """End this subscription: drop what is queued, report, ask the publisher to forget it."""
        with self._lock:
            first = self._drop_all()
        if first:
            self._report_end(item, "is closed or stopped")

    def _report_end(self, item: object, why: str) -> None:
        self._failed(_message_of(item), LoopClosedError(f"event loop {self._loop!r} {why}"))
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
        drain = self._drain() if self._drain_with is None else self._drain_with(self)
        self._task = task = _DrainTask(drain, self._loop)
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
        popleft = queue.popleft  # bound once: a method lookup per item is dear on 3.13t
        strong, ref, failed = self._observer, self._ref, self._failed
        task = cast("_DrainTask", asyncio.current_task())
        batch = _Batch
        observer: Any
        # Waiting publishers are woken once half the queue is free, not per message taken: a
        # full queue would otherwise cost a thread switch each way for every message.
        low = self._size // 2
        turns = _IDLE_TURNS
        while True:
            try:
                item = popleft()
            except IndexError:
                if turns:
                    turns -= 1
                    await self._idle_turn()
                    continue
                if self._stop_draining(queue, flag):
                    return
                turns = _IDLE_TURNS
                continue
            turns = _IDLE_TURNS
            # One read per item covers the rare cases: a publisher waiting for room, the end.
            if self._stirred and self._attend(queue, low, item):
                continue
            observer = strong if ref is None else ref()
            if observer is None:  # a weak subscription whose observer was collected
                self._forget()
                self._count_dropped(item)
                continue
            try:
                if type(item) is batch:
                    await observer.update_many(item.messages)
                else:
                    await observer.update(item)
            except Exception as error:  # noqa: BLE001 - isolated and reported, as for sync observers
                failed(_message_of(item), error)
            except GeneratorExit:
                # The drain itself is being finalised (its loop was closed under it): no loop to
                # ask anything of, no lock to take (a collection runs in any thread), nothing
                # to report. The subscription's end reports and counts.
                raise
            except BaseException as error:  # noqa: BLE001 - re-raised by _raised if it is the drain's
                self._raised(task, item, error)
            if task.own_cancels:
                await task.withdraw_own_cancels()

    async def _idle_turn(self) -> None:
        # The drain found the queue empty: give the loop a turn, keeping the flag, before
        # handing it back. A producer still publishing has appended meanwhile, and the burst
        # goes on without a wake-up (one from another thread costs the loop far more).
        if self._waiting:
            self._make_room()
        await asyncio.sleep(0)

    def _attend(self, queue: deque[Any], low: int, item: object) -> bool:
        # The rare cases (``_stirred``): wake waiting publishers once half the queue is free;
        # True if the subscription has ended, and ``item`` is not to be delivered.
        if self._waiting and len(queue) <= low:
            self._make_room()
        if self._ended:  # ended (closed or unsubscribed): deliver nothing more
            self._count_dropped(item)  # taken just before it ended: not in that count
            return True
        return False

    def _raised(self, task: _DrainTask, item: object, error: BaseException) -> None:
        # A cancellation from outside (the loop shutting down) ends the drain, and the message
        # it was delivering is dropped; anything else is the observer's failure, reported like
        # any other, and delivery goes on (see the module docstring).
        if task.from_outside():
            self._count_dropped(item)
            raise error
        self._failed(_message_of(item), _wrapped(error))

    def _stop_draining(self, queue: deque[Any], flag: threading.Lock) -> bool:
        # The drain found the queue empty: hand the flag back; True unless a message slipped in.
        self._scheduled = False
        flag.release()
        if self._waiting:
            self._make_room()
        # A publisher that appended after the popleft but saw the hint still set left the
        # wake-up to this drain: look once more.
        if not queue or not flag.acquire(False):
            self._task = None
            return True
        self._scheduled = True
        return False

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
            self._ended = self._forked = self._stirred = True
            # Dropped (and counted) now; reported by the first publish (no user code in a hook).
            self.dropped += _take_all(self._queue)


#: Every delivery, so that a forked child can end them all.
_DELIVERIES: weakref.WeakSet[AsyncDelivery] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The loops' threads stayed in the parent; another thread may have held the lock.
    _WAITS.lock = threading.Lock()
    _WAITS.loops.clear()
    for delivery in list(_DELIVERIES):
        delivery._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
