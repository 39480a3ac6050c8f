"""Async observers: delivered on their loop, in order, coalesced, bounded, isolated. Both twins."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import select
import signal
import sys
import threading
import time
import warnings
from collections import deque
from typing import Any

import pytest

from notipipe import _async
from notipipe._async import LoopClosedError
from tests._loops import PATIENCE, LoopThread, Recorder, loop_thread
from tests._processes import wait_until
from tests.conftest import Impl

pytestmark = pytest.mark.twin


class Failing(Recorder):
    """Raises on odd messages (after recording them)."""

    async def update(self, message: Any, /) -> None:
        await super().update(message)
        if message % 2:
            raise ValueError(f"odd {message}")


def failures_of(pub: Any) -> list[tuple[object, object, type[Exception]]]:
    seen: list[tuple[object, object, type[Exception]]] = []
    pub.error_handler = lambda observer, message, error: seen.append((observer, message, type(error)))
    return seen


# -- subscribing ---------------------------------------------------------------------------------


def test_no_loop_is_a_type_error_at_subscribe(impl: Impl) -> None:
    pub = impl.Publisher()
    observer = Recorder()
    with pytest.raises(TypeError, match="no event loop"):
        pub.subscribe(observer)
    assert pub.observers == ()


def test_subscribing_from_a_coroutine_uses_the_running_loop(impl: Impl) -> None:
    pub = impl.Publisher()
    observer = Recorder(expected=2)

    async def main() -> None:
        assert pub.subscribe(observer) is True
        assert pub.subscribe(observer) is False
        pub.notify_all(1)
        pub.notify_all(2)
        while not observer.done.is_set():
            await asyncio.sleep(0)

    asyncio.run(asyncio.wait_for(main(), PATIENCE))
    assert observer.got == [1, 2]


def test_a_closed_loop_is_refused_at_subscribe(impl: Impl) -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(ValueError, match="closed"):
        impl.Publisher().subscribe(Recorder(), loop=loop)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"overflow": "block"}, "overflow must be"),
        ({"queue_size": 0}, "queue_size must be"),
        ({"queue_size": 1.5}, "queue_size must be"),
    ],
)
def test_bad_options_are_refused(impl: Impl, options: dict[str, Any], error: str) -> None:
    with loop_thread() as lt, pytest.raises(ValueError, match=error):
        impl.Publisher().subscribe(Recorder(), loop=lt.loop, **options)


# -- delivery --------------------------------------------------------------------------------------


def test_order_per_observer_across_threads_one_at_a_time(impl: Impl) -> None:
    producers, each = 4, 500
    pub = impl.Publisher()
    observers = [Recorder(expected=producers * each) for _ in range(2)]
    with loop_thread() as lt:
        for observer in observers:
            pub.subscribe(observer, loop=lt.loop, queue_size=64)
        start = threading.Barrier(producers)

        def produce(p: int) -> None:
            start.wait()
            for i in range(each):
                pub.notify_all((p, i))

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for observer in observers:
            assert observer.done.wait(PATIENCE)
    for observer in observers:
        assert not observer.overlapped
        for p in range(producers):
            assert [i for q, i in observer.got if q == p] == list(range(each))


def test_no_message_is_left_behind_when_the_drain_empties_the_queue(impl: Impl) -> None:
    # Producers publish about as fast as the loop drains, so the drain keeps finding the queue
    # empty and handing the wake-up back just as a message arrives: every one must get through.
    producers, each = 3, 3000
    pub = impl.Publisher()
    observer = Recorder(expected=producers * each)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop)
        start = threading.Barrier(producers)

        def produce(p: int) -> None:
            start.wait()
            for i in range(each):
                pub.notify_all((p, i))
                if i % 7 == 0:
                    time.sleep(0)  # let the loop catch up: an empty queue, often

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        delivered = observer.done.wait(PATIENCE)
    assert delivered, f"{len(observer.got)} of {producers * each} delivered"


class RacingDeque(deque[Any]):
    """A queue that, when the drain finds it empty, has a publisher append just then.

    The publisher runs (in its own thread, to completion) after the drain's ``popleft`` found
    nothing for the last time (after its idle turns) and before the drain hands the wake-up
    back: it sees a drain still scheduled and leaves the message to it. The drain must look
    again before it stops.
    """

    publish: Any = None
    empty = 0  # the drain's consecutive finds of an empty queue

    def popleft(self) -> Any:
        try:
            item = super().popleft()
        except IndexError:
            RacingDeque.empty += 1
            if RacingDeque.publish is not None and RacingDeque.empty > _async._IDLE_TURNS:
                publish, RacingDeque.publish = RacingDeque.publish, None
                racer = threading.Thread(target=publish)
                racer.start()
                racer.join()
            raise
        RacingDeque.empty = 0
        return item


@pytest.mark.thread_unsafe(reason="patches the queue class of every async delivery")
def test_a_message_published_as_the_drain_stops_is_delivered(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_async, "deque", RacingDeque)
    pub = impl.Publisher()
    observer = Recorder(expected=2)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop)
        RacingDeque.publish = lambda: pub.notify_all("racer")
        RacingDeque.empty = 0
        pub.notify_all("first")
        delivered = observer.done.wait(PATIENCE)
    assert delivered, observer.got
    assert observer.got == ["first", "racer"]


def test_a_burst_wakes_the_loop_once(impl: Impl) -> None:
    pub = impl.Publisher()
    observer = Recorder(expected=1000)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=1000)
        gate = lt.block()  # the drain cannot start: the whole burst is queued first
        before = lt.loop.wakeups
        for i in range(1000):
            pub.notify_all(i)
        gate.set()
        assert observer.done.wait(PATIENCE)
        assert lt.loop.wakeups - before == 1
        # Once drained, the next burst wakes it again, once. (Drained: the drain has ended, not
        # only delivered the last message; a drain still in its idle turn takes a burst unwoken.)
        assert wait_until(lambda: not lt.run(_drain_tasks()), PATIENCE)
        observer.done.clear()
        observer.expected = 1100
        gate = lt.block()
        before = lt.loop.wakeups
        for i in range(100):
            pub.notify_all(i)
        gate.set()
        assert observer.done.wait(PATIENCE)
        assert lt.loop.wakeups - before == 1
    assert observer.got == [*range(1000), *range(100)]


def test_wait_blocks_the_publisher_until_there_is_room(impl: Impl) -> None:
    pub = impl.Publisher()
    observer = Recorder(expected=5)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=2, overflow="wait")
        gate = lt.block()
        published: list[int] = []
        two = threading.Event()

        def produce() -> None:
            for i in range(5):
                pub.notify_all(i)
                published.append(i)
                if len(published) == 2:
                    two.set()

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        assert two.wait(PATIENCE)
        producer.join(0.2)  # it must still be waiting for room: the loop is held
        blocked = producer.is_alive()
        progress = list(published)
        gate.set()
        assert blocked
        assert progress == [0, 1]
        producer.join(PATIENCE)
        assert observer.done.wait(PATIENCE)
        assert observer.got == [0, 1, 2, 3, 4]
        assert pub.dropped(observer) == 0


def test_drop_oldest_drops_and_counts_exactly(impl: Impl) -> None:
    pub = impl.Publisher()
    observer = Recorder(expected=3)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=3, overflow="drop_oldest")
        gate = lt.block()
        for i in range(10):
            pub.notify_all(i)  # never blocks
        gate.set()
        assert pub.dropped(observer) == 7  # counted as they were dropped, before any drain
        assert observer.done.wait(PATIENCE)
        assert observer.got == [7, 8, 9]
        assert pub.dropped(observer) == 7


def test_wait_from_the_loop_thread_drops_oldest_instead_of_deadlocking(impl: Impl) -> None:
    pub = impl.Publisher()
    observer = Recorder(expected=2)
    dropped: list[int] = []

    async def main() -> None:
        pub.subscribe(observer, queue_size=2, overflow="wait")
        for i in range(5):  # the loop cannot drain while this coroutine runs
            pub.notify_all(i)
        dropped.append(pub.dropped(observer))
        while not observer.done.is_set():
            await asyncio.sleep(0)

    # In a thread of its own: a publisher that waited here would block the loop for good.
    runner = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    runner.start()
    runner.join(PATIENCE)
    assert not runner.is_alive()
    assert dropped == [3]
    assert observer.got == [3, 4]


def test_a_sync_observer_reports_no_drops_and_an_unknown_one_is_an_error(impl: Impl) -> None:
    pub = impl.Publisher()

    class Sync:
        def update(self, message: object) -> None:
            pass

    sync = Sync()
    pub.subscribe(sync)
    assert pub.dropped(sync) == 0
    with pytest.raises(ValueError, match="not subscribed"):
        pub.dropped(Sync())


# -- failures ----------------------------------------------------------------------------------------


def test_failures_are_reported_and_isolated(impl: Impl) -> None:
    pub = impl.Publisher()
    seen = failures_of(pub)
    failing, healthy = Failing(expected=10), Recorder(expected=10)
    sync_got: list[int] = []

    class Sync:
        def update(self, message: int) -> None:
            sync_got.append(message)

    with loop_thread() as lt:
        pub.subscribe(failing, loop=lt.loop)
        pub.subscribe(Sync())
        pub.subscribe(healthy, loop=lt.loop)
        for i in range(10):
            pub.notify_all(i)
        assert failing.done.wait(PATIENCE)
        assert healthy.done.wait(PATIENCE)
        lt.run(asyncio.sleep(0))  # the last failure is reported after its update returns
    assert failing.got == healthy.got == sync_got == list(range(10))
    assert sorted(m for _, m, _ in seen) == [1, 3, 5, 7, 9]  # type: ignore[type-var]
    assert all(o is failing and e is ValueError for o, _, e in seen)
    assert pub.failures == 5


def test_a_closed_loop_ends_the_subscription_with_one_report(impl: Impl) -> None:
    pub = impl.Publisher()
    seen = failures_of(pub)
    observer, other = Recorder(), Recorder(expected=2)
    loop = asyncio.new_event_loop()
    pub.subscribe(observer, loop=loop)
    loop.close()
    with loop_thread() as lt:
        pub.subscribe(other, loop=lt.loop)
        pub.notify_all("a")
        pub.notify_all("b")
        assert other.done.wait(PATIENCE)
    assert seen == [(observer, "a", LoopClosedError)]
    assert pub.observers == (other,)
    assert pub.failures == 1


def test_a_stopped_loop_never_hangs_a_waiting_publisher(impl: Impl) -> None:
    pub = impl.Publisher()
    seen = failures_of(pub)
    observer = Recorder()
    lt = LoopThread()
    pub.subscribe(observer, loop=lt.loop, queue_size=1, overflow="wait")
    gate = lt.block()
    pub.notify_all(0)  # queued: the loop is held
    lt.loop.call_soon_threadsafe(lt.loop.stop)  # runs after the hold: the drain never starts
    finished = threading.Event()

    def produce() -> None:
        pub.notify_all(1)  # full: waits, until it sees that the loop has stopped
        pub.notify_all(2)  # the subscription has ended: skipped
        finished.set()

    threading.Thread(target=produce, daemon=True).start()
    gate.set()
    try:
        assert finished.wait(PATIENCE)
    finally:
        lt.stop()
    assert seen == [(observer, 1, LoopClosedError)]
    assert pub.observers == ()
    assert observer.got == []


def test_unsubscribe_stops_async_delivery(impl: Impl) -> None:
    pub = impl.Publisher()
    observer, other = Recorder(), Recorder(expected=3)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop)
        pub.subscribe(other, loop=lt.loop)
        gate = lt.block()
        pub.notify_all(1)
        pub.notify_all(2)
        assert pub.unsubscribe(observer) is True
        pub.notify_all(3)
        gate.set()
        assert other.done.wait(PATIENCE)
        lt.run(asyncio.sleep(0))
    assert observer.got == []
    assert other.got == [1, 2, 3]


# -- batches ------------------------------------------------------------------------------------------


class BatchRecorder(Recorder):
    def __init__(self, expected: int = 0) -> None:
        super().__init__(expected)
        self.batches: list[tuple[Any, ...]] = []

    async def update_many(self, messages: tuple[Any, ...], /) -> None:
        self.batches.append(messages)
        self.got.extend(messages)
        if len(self.got) >= self.expected:
            self.done.set()


def test_an_async_update_many_gets_each_batch_once(impl: Impl) -> None:
    pub = impl.Publisher()
    observer = BatchRecorder(expected=6)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop)
        assert pub.notify_many(iter([1, 2, 3])) == 3
        pub.notify_all(4)
        assert pub.notify_many([5, 6]) == 2
        assert observer.done.wait(PATIENCE)
    assert observer.batches == [(1, 2, 3), (5, 6)]
    assert observer.got == [1, 2, 3, 4, 5, 6]


def test_update_many_must_match_update_in_being_async(impl: Impl) -> None:
    class Mixed:
        async def update(self, message: object) -> None:
            pass

        def update_many(self, messages: object) -> None:
            pass

    with loop_thread() as lt, pytest.raises(TypeError, match="coroutine function exactly when"):
        impl.Publisher().subscribe(Mixed(), loop=lt.loop)


def test_drops_are_logged_at_the_first_and_each_tenfold(impl: Impl, caplog: pytest.LogCaptureFixture) -> None:
    pub = impl.Publisher()
    observer = Recorder(expected=1)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=1, overflow="drop_oldest")
        gate = lt.block()
        with caplog.at_level(logging.WARNING, logger="notipipe"):
            for i in range(26):
                pub.notify_all(i)
        gate.set()
        assert observer.done.wait(PATIENCE)
    lines = [r.getMessage() for r in caplog.records if r.name == "notipipe"]
    assert len(lines) == 2
    assert "1 message(s) dropped" in lines[0]
    assert "10 message(s) dropped" in lines[1]
    assert pub.dropped(observer) == 25


def test_a_drain_cancelled_before_it_ran_does_not_stall_delivery(impl: Impl) -> None:
    pub = impl.Publisher()
    observer = Recorder(expected=2)
    cancelled: list[str] = []

    def cancel_drains() -> None:
        # Runs after the drain task is created and before its first step.
        for task in asyncio.all_tasks(lt.loop):
            if getattr(task.get_coro(), "__name__", "") == "_drain":
                task.cancel()
                cancelled.append(repr(task))

    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop)
        gate = lt.block()
        pub.notify_all("a")  # queues the wake-up behind the held callback
        lt.loop.call_soon_threadsafe(cancel_drains)
        gate.set()
        lt.run(asyncio.sleep(0))
        assert cancelled
        pub.notify_all("b")  # must wake the loop again
        delivered = observer.done.wait(PATIENCE)
    assert delivered, observer.got
    assert observer.got == ["a", "b"]


# -- faults: a dying drain, a loop closed with a wake-up pending, racing waiters, fork ------------


def _system_exit() -> None:
    raise SystemExit(3)


def _keyboard_interrupt() -> None:
    raise KeyboardInterrupt


async def _cancelled_inner_await() -> None:
    inner = asyncio.get_running_loop().create_future()
    inner.cancel()
    await inner  # CancelledError, while the drain itself is not being cancelled


class RaisesOnOne(Recorder):
    """Records every message, then raises ``raise_`` (a BaseException) on message 1."""

    def __init__(self, expected: int, raise_: Any) -> None:
        super().__init__(expected)
        self.raise_ = raise_

    async def update(self, message: Any, /) -> None:
        await super().update(message)
        if message == 1:
            if asyncio.iscoroutinefunction(self.raise_):
                await self.raise_()
            self.raise_()


@pytest.mark.parametrize(
    ("raise_", "kind"),
    [
        (_system_exit, SystemExit),
        (_keyboard_interrupt, KeyboardInterrupt),
        (_cancelled_inner_await, asyncio.CancelledError),
    ],
)
def test_a_base_exception_from_an_observer_is_reported_and_delivery_goes_on(
    impl: Impl, raise_: Any, kind: type[BaseException]
) -> None:
    pub = impl.Publisher()
    errors: list[tuple[object, object, BaseException]] = []
    pub.error_handler = lambda observer, message, error: errors.append((observer, message, error))
    observer = RaisesOnOne(expected=10, raise_=raise_)
    finished = threading.Event()
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=2, overflow="wait")

        def produce() -> None:
            for i in range(10):  # waits for room again and again, past the failure
                pub.notify_all(i)
            finished.set()

        threading.Thread(target=produce, daemon=True).start()
        assert finished.wait(PATIENCE), f"publisher hung; delivered {observer.got}"
        assert observer.done.wait(PATIENCE), observer.got
    assert observer.got == list(range(10))
    assert [(o, m, type(e)) for o, m, e in errors] == [(observer, 1, _async.AsyncObserverError)]
    assert type(errors[0][2].__cause__) is kind
    assert pub.failures == 1
    assert pub.observers == (observer,)
    assert pub.dropped(observer) == 0


def test_a_waiting_publisher_wakes_the_loop_after_the_drain_was_cancelled(impl: Impl) -> None:
    pub = impl.Publisher()
    observer = Recorder(expected=3)
    cancelled: list[str] = []
    finished = threading.Event()

    def cancel_drains() -> None:
        # Runs after the drain task is created and before its first step.
        for task in asyncio.all_tasks(lt.loop):
            if getattr(task.get_coro(), "__name__", "") == "_drain":
                task.cancel()
                cancelled.append(repr(task))

    def produce() -> None:
        pub.notify_all("b")  # the queue is full: waits for room that only a new drain can make
        pub.notify_all("c")
        finished.set()

    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=1, overflow="wait")
        gate = lt.block()
        pub.notify_all("a")  # queues the wake-up behind the held callback
        lt.loop.call_soon_threadsafe(cancel_drains)
        threading.Thread(target=produce, daemon=True).start()
        gate.set()
        published = finished.wait(PATIENCE)
        delivered = observer.done.wait(PATIENCE)
    assert cancelled
    assert published, f"publisher hung; delivered {observer.got}"
    assert delivered, observer.got
    assert observer.got == ["a", "b", "c"]


def test_a_loop_closed_with_a_wake_up_pending_is_reported_at_the_next_publish(impl: Impl) -> None:
    pub = impl.Publisher()
    seen = failures_of(pub)
    observer = Recorder()
    loop = asyncio.new_event_loop()  # never run: the wake-up stays pending, as if asyncio.run ended
    pub.subscribe(observer, loop=loop)
    pub.notify_all("a")  # queued; wakes the loop (a callback the loop will never run)
    loop.close()  # discards that callback
    pub.notify_all("b")
    pub.notify_all("c")
    assert seen == [(observer, "b", LoopClosedError)]
    assert pub.observers == ()
    assert pub.failures == 1
    assert observer.got == []


class Slow(Recorder):
    """Yields to the loop a few times per message: publishers keep filling the queue meanwhile."""

    async def update(self, message: Any, /) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        await super().update(message)


def test_wait_never_drops_when_publishers_race_for_the_last_place(impl: Impl) -> None:
    producers, each = 8, 200
    pub = impl.Publisher()
    observer = Slow(expected=producers * each)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=2, overflow="wait")
        start = threading.Barrier(producers)

        def produce(p: int) -> None:
            start.wait()
            for i in range(each):
                pub.notify_all((p, i))

        threads = [threading.Thread(target=produce, args=(p,), daemon=True) for p in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(PATIENCE)
        assert not any(t.is_alive() for t in threads), "a publisher hung"
        dropped = pub.dropped(observer)
        delivered = observer.done.wait(PATIENCE)
    assert dropped == 0
    assert delivered, f"{len(observer.got)} of {producers * each} delivered"
    for p in range(producers):
        assert [i for q, i in observer.got if q == p] == list(range(each))


class FillingDeque(deque[Any]):
    """A queue on which a racer takes the place a waiting publisher was just told is free.

    When ``_wait_for_room`` finds room, a racer publishes (in its own thread, to completion, on
    the fast path, which takes no lock) before the waiting publisher appends: the queue is full
    again. ``checked`` is set each time the waiting publisher finds the queue full.
    """

    fill: Any = None
    checked = threading.Event()

    def __len__(self) -> int:
        n = super().__len__()
        if sys._getframe(1).f_code.co_name == "_wait_for_room":
            if n >= 2:
                FillingDeque.checked.set()
            elif FillingDeque.fill is not None:
                fill, FillingDeque.fill = FillingDeque.fill, None
                racer = threading.Thread(target=fill)
                racer.start()
                racer.join(PATIENCE)
        return n  # what the waiting publisher saw, before the racer's append


class HeldOn(Recorder):
    """Blocks its loop on ``message`` until ``release`` is set: the drain takes nothing more."""

    def __init__(self, expected: int, message: object, release: threading.Event) -> None:
        super().__init__(expected)
        self.message = message
        self.release = release

    async def update(self, message: Any, /) -> None:
        if message == self.message:
            self.release.wait(PATIENCE)
        await super().update(message)


@pytest.mark.thread_unsafe(reason="patches the queue class of every async delivery")
def test_wait_appends_past_the_bound_when_a_racer_takes_the_room(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_async, "deque", FillingDeque)
    FillingDeque.checked = threading.Event()
    filled = threading.Event()
    pub = impl.Publisher()
    observer = HeldOn(expected=4, message="a", release=filled)
    finished = threading.Event()

    def fill() -> None:
        pub.notify_all("r")
        filled.set()

    def produce() -> None:
        pub.notify_all("c")  # full: waits until the drain has taken "a"
        finished.set()

    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=2, overflow="wait")
        gate = lt.block()
        pub.notify_all("a")
        pub.notify_all("b")
        threading.Thread(target=produce, daemon=True).start()
        assert FillingDeque.checked.wait(PATIENCE)  # the producer found it full and waits
        FillingDeque.fill = fill
        gate.set()
        published = finished.wait(PATIENCE)
        delivered = observer.done.wait(PATIENCE)
        dropped = pub.dropped(observer)
    assert published
    assert filled.is_set()  # the racer did take the room
    assert dropped == 0
    assert delivered, observer.got
    assert observer.got == ["a", "b", "r", "c"]


class Captured(_async.AsyncDelivery):
    """An ``AsyncDelivery`` that keeps itself where a test can reach it."""

    __slots__ = ()
    made: list[_async.AsyncDelivery] = []  # noqa: RUF012 - the test's own record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        Captured.made.append(self)


class EndingDeque(deque[Any]):
    """A queue that, when the drain takes ``at``, has the subscription end at once."""

    at: object = None
    end: Any = None

    def popleft(self) -> Any:
        item = super().popleft()
        if item == EndingDeque.at and EndingDeque.end is not None:
            end, EndingDeque.end = EndingDeque.end, None
            end()  # between the drain's popleft and its look at whether the subscription ended
        return item


@pytest.mark.thread_unsafe(reason="patches the queue and delivery classes of every async subscription")
def test_an_item_taken_as_the_subscription_ends_is_counted_as_dropped(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notipipe import _subscriptions

    monkeypatch.setattr(_async, "deque", EndingDeque)
    monkeypatch.setattr(_subscriptions, "AsyncDelivery", Captured)
    Captured.made = []
    pub = impl.Publisher()
    observer = Recorder()
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop)
        (delivery,) = Captured.made
        EndingDeque.at = "a"
        EndingDeque.end = lambda: pub.unsubscribe(observer)
        gate = lt.block()
        for message in ("a", "b", "c"):
            pub.notify_all(message)
        gate.set()
        lt.run(asyncio.sleep(0))  # the drain has run
        assert EndingDeque.end is None
    assert observer.got == []
    assert delivery.dropped == 3  # "b" and "c" when it ended, and "a", taken just before


@pytest.mark.forks
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
@pytest.mark.thread_unsafe(reason="forks the process; patches the delivery class")
def test_a_forked_child_ends_inherited_async_subscriptions_and_never_blocks(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notipipe import _subscriptions

    monkeypatch.setattr(_subscriptions, "AsyncDelivery", Captured)
    Captured.made = []
    pub = impl.Publisher()
    seen = failures_of(pub)
    observer = Recorder()
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=2, overflow="wait")
        (delivery,) = Captured.made
        gate = lt.block()
        pub.notify_all("a")
        pub.notify_all("b")  # full, with a drain pending: the loop is held
        # Another thread holds the queue's lock across the fork: the child must not inherit it.
        held, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            with delivery._lock:
                held.set()
                release.wait(PATIENCE)

        holder = threading.Thread(target=hold_lock, daemon=True)
        holder.start()
        assert held.wait(PATIENCE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: that is the test
            pid = os.fork()
        if pid == 0:  # the child: report by exit status only, never return into pytest
            code = 99
            try:
                pub.notify_all("c")  # the queue is full and "wait": must not wait for a lost loop
                pub.notify_all("d")  # ended: skipped
                ok = (
                    seen == [(observer, "c", LoopClosedError)]
                    and pub.observers == ()
                    and delivery.dropped == 2
                    and pub.failures == 1
                )
                code = 0 if ok else 1
            finally:
                os._exit(code)
        release.set()
        holder.join(PATIENCE)
        try:
            exited = _wait_for_child(pid, PATIENCE)
        finally:
            gate.set()
        assert exited == 0, f"child exit status {exited} (1: wrong reports; None: it hung)"
        observer.expected = 2
        assert observer.done.wait(PATIENCE)  # the parent's subscription is untouched
    assert observer.got == ["a", "b"]
    assert seen == []


def _wait_for_child(pid: int, timeout: float) -> int | None:
    """The child's exit status, or None (and the child killed) if it has not exited in time."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_drain_ended_by_a_base_exception_from_the_handler_drains_again(impl: Impl) -> None:
    # A SystemExit from the error handler ends the drain and, as asyncio does with SystemExit,
    # leaves run_forever; an application that catches it and runs its loop again must find the
    # messages still queued delivered, with no new publish to wake the loop.
    pub = impl.Publisher()
    observer = Failing(expected=5)

    def handler(observer: object, message: object, error: Exception) -> None:
        raise SystemExit(message)

    pub.error_handler = handler
    loop = asyncio.new_event_loop()
    escaped: list[object] = []

    def run() -> None:
        while True:
            try:
                loop.run_forever()
            except SystemExit as exit_:
                escaped.append(exit_.code)
                continue
            return

    runner = threading.Thread(target=run, daemon=True)
    gate, busy = threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        gate.wait(PATIENCE)

    loop.call_soon(hold)
    runner.start()
    try:
        assert busy.wait(PATIENCE)
        pub.subscribe(observer, loop=loop)
        for i in (0, 1, 2, 3, 4):  # all queued behind the held callback: one drain for them all
            pub.notify_all(i)
        gate.set()
        delivered = observer.done.wait(PATIENCE)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(PATIENCE)
        loop.close()
    assert escaped == [1, 3]  # each failure ended a drain, and the next one went on
    assert delivered, observer.got
    assert observer.got == [0, 1, 2, 3, 4]


class Stuck(Recorder):
    """Records a message, then awaits something that never comes (until cancelled)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()

    async def update(self, message: Any, /) -> None:
        self.got.append(message)
        self.started.set()
        await asyncio.get_running_loop().create_future()


def test_cancelling_the_drain_itself_stops_it_and_is_no_failure(impl: Impl) -> None:
    # As when the loop shuts down: a CancelledError meant for the drain is not the observer's.
    pub = impl.Publisher()
    seen = failures_of(pub)
    observer = Stuck()

    async def cancel_it() -> bool:
        drains = [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__name__", "") == "_drain"]
        (task,) = drains
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return task.cancelled()

    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop)
        gate = lt.block()
        for message in (0, 1, 2):
            pub.notify_all(message)
        gate.set()
        assert observer.started.wait(PATIENCE)
        assert lt.run(cancel_it())
    assert observer.got == [0]
    assert seen == []


class Awaiting:
    """Awaits a future of its own per message: records what it resumes with, or a cancellation."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[int]] = []
        self.got: list[object] = []
        self.waiting = threading.Event()  # a future is awaited
        self.done = threading.Event()

    async def update(self, message: Any, /) -> None:
        future = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        self.waiting.set()
        try:
            self.got.append((message, await future))
        except asyncio.CancelledError:
            self.got.append((message, "cancelled"))
            self.done.set()
            raise


def test_an_observer_suspended_in_update_gets_what_its_task_sends_and_throws(impl: Impl) -> None:
    # The drain awaits each update as ``await`` would: the value the observer's future resumes
    # it with, and a cancellation of the drain from outside, both reach the observer's code.
    pub = impl.Publisher()
    seen = failures_of(pub)
    observer = Awaiting()

    async def cancel_drain() -> None:
        (task,) = [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__name__", "") == "_drain"]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop)
        pub.notify_all("a")
        assert observer.waiting.wait(PATIENCE)
        observer.waiting.clear()
        lt.loop.call_soon_threadsafe(observer.futures[0].set_result, 42)
        pub.notify_all("b")
        assert observer.waiting.wait(PATIENCE)
        lt.run(cancel_drain())
        assert observer.done.wait(PATIENCE)
    assert observer.got == [("a", 42), ("b", "cancelled")]
    assert seen == []


# -- unsubscribe while publishers append (issue 20, item 12) --------------------------------------


class ClearingDeque(deque[Any]):
    """A queue on which a publisher appends ``late`` while the ending subscription clears it.

    Armed with ``ended`` (true once the subscription has ended), the first look at the queue
    after that (an iteration or a ``popleft``) has a publisher that passed its check just before
    the end append ``late``, in its own thread, to completion: the fast path takes no lock.
    """

    ended: Any = None
    late: object = None

    def _race(self) -> None:
        if ClearingDeque.ended is not None and ClearingDeque.ended():
            ClearingDeque.ended = None
            racer = threading.Thread(target=self.append, args=(ClearingDeque.late,))
            racer.start()
            racer.join(PATIENCE)

    def __iter__(self) -> Any:
        for i, item in enumerate(super().__iter__()):
            yield item
            if i == 0:
                self._race()

    def popleft(self) -> Any:
        item = super().popleft()
        self._race()
        return item


@pytest.mark.thread_unsafe(reason="patches the queue and delivery classes of every async subscription")
def test_unsubscribe_as_a_publisher_appends_clears_and_counts_every_message(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notipipe import _subscriptions

    monkeypatch.setattr(_async, "deque", ClearingDeque)
    monkeypatch.setattr(_subscriptions, "AsyncDelivery", Captured)
    Captured.made = []
    pub = impl.Publisher()
    seen = failures_of(pub)
    observer = Recorder()
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop)
        (delivery,) = Captured.made
        gate = lt.block()
        for message in ("a", "b", "c"):
            pub.notify_all(message)
        ClearingDeque.late = "late"
        ClearingDeque.ended = lambda: delivery._ended
        try:
            removed = pub.unsubscribe(observer)
        finally:
            gate.set()
        raced = ClearingDeque.ended is None
        left = len(delivery._queue)
        dropped = delivery.dropped
        lt.run(asyncio.sleep(0))  # the drain woken by "a" has run
    assert removed is True
    assert raced  # the racer did append while the queue was being cleared
    assert left == 0  # cleared, the late one included
    assert dropped == 4
    assert delivery.dropped == 4
    assert observer.got == []
    assert pub.observers == ()
    assert seen == []


def _unsubscribe_while_threads_publish(impl: Impl) -> None:
    # The loop drains (popleft) and publishers append while unsubscribe clears the queue.
    pub = impl.Publisher()
    seen = failures_of(pub)
    observer = Recorder()
    stop = threading.Event()
    calls = [0] * 4

    def produce(p: int) -> None:
        while not stop.is_set():
            pub.notify_all(p)
            calls[p] += 1

    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=10**9)  # never full: no publisher waits
        delivery = Captured.made[-1]
        producers = [threading.Thread(target=produce, args=(p,), daemon=True) for p in range(len(calls))]
        for t in producers:
            t.start()
        error: BaseException | None = None
        try:
            assert wait_until(lambda: len(delivery._queue) >= 20_000, PATIENCE)
            before = len(observer.got)
            queued = len(delivery._queue)  # each of these is delivered or counted as dropped
            try:
                removed = pub.unsubscribe(observer)
            except RuntimeError as e:
                error = e
            at_return = len(observer.got)
        finally:
            stop.set()
            for t in producers:
                t.join(PATIENCE)
        lt.run(asyncio.sleep(0))  # the drain has run: it counts what raced in after the end
        lt.run(asyncio.sleep(0))
        left = len(delivery._queue)
    delivered = len(observer.got)
    assert error is None, f"unsubscribe raised {error!r}"
    assert removed is True
    assert left == 0
    assert delivered <= at_return + 1  # at most the one in flight as it ended
    assert delivered - before + delivery.dropped >= queued
    assert delivered + delivery.dropped <= sum(calls)
    assert seen == []


@pytest.mark.thread_unsafe(reason="shortens the thread switch interval; patches the delivery class")
def test_unsubscribe_never_fails_while_other_threads_publish(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real threads, no hook: the drain takes and publishers append while unsubscribe clears.
    from notipipe import _subscriptions

    monkeypatch.setattr(_subscriptions, "AsyncDelivery", Captured)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # GIL builds: hand the GIL over often, in mid-clearing too
    try:
        for _ in range(20):
            _unsubscribe_while_threads_publish(impl)
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.thread_unsafe(reason="patches the delivery class of every async subscription")
def test_a_message_waiting_for_room_when_unsubscribed_is_counted_as_dropped(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notipipe import _subscriptions

    monkeypatch.setattr(_subscriptions, "AsyncDelivery", Captured)
    Captured.made = []
    pub = impl.Publisher()
    observer = Recorder()
    finished = threading.Event()

    def produce() -> None:
        pub.notify_all("b")  # full: waits for room, until the subscription ends
        finished.set()

    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=1, overflow="wait")
        (delivery,) = Captured.made
        gate = lt.block()
        pub.notify_all("a")
        threading.Thread(target=produce, daemon=True).start()
        try:
            assert wait_until(lambda: delivery._waiting == 1, PATIENCE)
            assert pub.unsubscribe(observer) is True
            published = finished.wait(PATIENCE)
        finally:
            gate.set()
        lt.run(asyncio.sleep(0))
    assert published
    assert observer.got == []
    assert delivery.dropped == 2  # "a", queued, and "b", which was waiting to be


# -- a drain finalised after its loop was closed under it (issue 20, item 13) ------------------------


async def _collect_garbage() -> None:
    gc.collect()


@pytest.mark.parametrize("collected_on", ["a thread with no loop", "another running loop"])
@pytest.mark.thread_unsafe(reason="collects garbage, and replaces the process-wide unraisable hook")
def test_a_drain_finalised_after_its_loop_was_closed_is_no_failure_and_prints_nothing(
    impl: Impl, collected_on: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gc.collect()  # earlier tests' garbage (their finished drains) is finalised before we listen
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    pub = impl.Publisher()
    seen = failures_of(pub)
    observer = Stuck()
    lt = LoopThread()
    pub.subscribe(observer, loop=lt.loop)
    pub.notify_all(0)
    assert observer.started.wait(PATIENCE)  # the drain awaits inside update(0)
    # This drain's task, by name: what other tests left behind may be finalised meanwhile too (a
    # free-threaded build frees some of it only later), and its log lines are not this test's.
    ours = [f"name='{task.get_name()}'" for task in asyncio.all_tasks(lt.loop)]
    assert ours
    # Stopped and closed from this thread, its tasks left pending, as a careless shutdown does.
    lt.loop.call_soon_threadsafe(lt.loop.stop)
    lt._thread.join(PATIENCE)
    assert not lt._thread.is_alive()
    lt.loop.close()
    pub.notify_all(1)  # the subscription ends, reported once, and the publisher forgets it
    assert seen == [(observer, 1, LoopClosedError)]
    assert pub.observers == ()
    with caplog.at_level(logging.DEBUG):
        # The drain, its task and its delivery are garbage now: finalising them closes the drain.
        if collected_on == "another running loop":
            asyncio.run(_collect_garbage())
        else:
            gc.collect()
    assert seen == [(observer, 1, LoopClosedError)]
    assert pub.failures == 1
    assert [u.exc_value for u in unraisable] == []
    assert [r.getMessage() for r in caplog.records if any(name in r.getMessage() for name in ours)] == []


# -- an observer that cancels its own task (issue 20, item 17) --------------------------------------


class CancelsItself(Recorder):
    """Cancels its own task (the drain) on message 1; ``then_await``: the cancellation ends that
    update (a CancelledError out of it); else the update returns with the request pending."""

    def __init__(self, expected: int, then_await: bool) -> None:
        super().__init__(expected)
        self.then_await = then_await
        #: ``cancelling()`` of the drain's task as each other update starts: the request made
        #: on message 1 is withdrawn once handled, so 0 each time (a timeout there works).
        self.cancelling: list[int] = []

    async def update(self, message: Any, /) -> None:
        task = asyncio.current_task()
        assert task is not None
        if message != 1:
            self.cancelling.append(task.cancelling())
            await asyncio.sleep(0)  # a request still pending would come here
            await super().update(message)
            return
        task.cancel()
        if self.then_await:
            await asyncio.sleep(0)  # the CancelledError comes here
        self.got.append(message)  # reached only with the request left pending


@pytest.mark.parametrize("then_await", [True, False], ids=["cancelled-in-update", "cancel-left-pending"])
def test_an_observer_that_cancels_its_own_task_is_counted_and_the_queue_drains(
    impl: Impl, then_await: bool
) -> None:
    pub = impl.Publisher()
    errors: list[tuple[object, object, BaseException]] = []
    pub.error_handler = lambda observer, message, error: errors.append((observer, message, error))
    observer = CancelsItself(expected=4 if then_await else 5, then_await=then_await)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop)
        gate = lt.block()
        for i in range(5):  # one drain for them all: no later publish wakes the loop again
            pub.notify_all(i)
        gate.set()
        delivered = observer.done.wait(PATIENCE)
        lt.run(asyncio.sleep(0))
        dropped = pub.dropped(observer)
        # The observer's request is withdrawn once handled: cancelling the drain from outside
        # still stops it, as when the loop shuts down.
        drains = lt.run(_drain_tasks())
    assert delivered, f"the queue stalled after the cancelled update; delivered {observer.got}"
    if then_await:
        assert observer.got == [0, 2, 3, 4]
        assert [(o, m, type(e)) for o, m, e in errors] == [(observer, 1, _async.AsyncObserverError)]
        assert type(errors[0][2].__cause__) is asyncio.CancelledError
        assert pub.failures == 1
    else:
        assert observer.got == [0, 1, 2, 3, 4]
        assert errors == []
    assert dropped == 0
    assert observer.cancelling == [0, 0, 0, 0]
    assert drains == []  # the drain found the queue empty and ended, not cancelled


async def _drain_tasks() -> list[str]:
    return [repr(t) for t in asyncio.all_tasks() if getattr(t.get_coro(), "__name__", "") == "_drain"]


# -- after_commit delivery to an observer whose loop waits on the store (issue 20, item 11) ---------


def _flush(db: Any, emails: list[Any]) -> None:
    for email in emails:
        db.save(email)
    db.flush()


def _durable_save(db: Any, emails: list[Any]) -> None:
    for email in emails[:-1]:
        db.save(email)
    db.save(emails[-1], durable=True)


def _saves_past_back_pressure(db: Any, emails: list[Any]) -> None:
    for email in emails:  # more than max_pending (4 * batch_size): put waits for the writer
        db.save(email)
    db.flush()


def _close(db: Any, emails: list[Any]) -> None:
    db.save_many(emails)
    db.close()


def _read(db: Any, emails: list[Any]) -> None:
    db.save_many(emails)
    assert len(db.last(len(emails))) == len(emails)  # waits for what is queued (busy_timeout)


@pytest.mark.parametrize(
    ("call", "count"),
    [(_flush, 2), (_durable_save, 2), (_saves_past_back_pressure, 20), (_close, 3), (_read, 3)],
    ids=["flush", "save-durable", "save-back-pressure", "close", "read"],
)
@pytest.mark.thread_unsafe(reason="opens the DatabaseConnection singleton its other copies use")
def test_a_store_call_on_an_after_commit_observers_loop_never_deadlocks(
    impl: Impl, call: Any, count: int
) -> None:
    # The writer delivers on its own thread; the observer's queue (one place, "wait") is full
    # after one message, and only the loop can empty it: the loop must not wait on the writer
    # meanwhile without the writer giving way.
    # busy_timeout: a read waits that long for the writer, then reads what is committed.
    db = impl.DatabaseConnection(
        ":memory:", deliver="after_commit", batch_size=1, max_delay=0.001, busy_timeout=3600
    )
    observer = Recorder(expected=count)
    returned = threading.Event()
    outcome: list[bool] = []

    async def main() -> None:
        db.subscribe(observer, queue_size=1)  # overflow="wait", the default
        emails = [db._email_cls(recipient=f"r{i}@example.com") for i in range(count)]
        call(db, emails)
        returned.set()
        outcome.append(await asyncio.to_thread(observer.done.wait, PATIENCE))

    runner = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    runner.start()
    hung = not returned.wait(PATIENCE)
    if hung:  # end the wait the writer is stuck in, so that the suite goes on and closes the store
        db.unsubscribe(observer)
        observer.done.set()
    runner.join(PATIENCE)
    assert not hung, f"{call.__name__} on the observer's loop deadlocked with the writer"
    assert not runner.is_alive()
    assert outcome == [True], observer.got
    assert [m.recipient for m in observer.got] == [f"r{i}@example.com" for i in range(count)]
    assert all(m.id > 0 for m in observer.got)
    assert not observer.overlapped


@pytest.mark.thread_unsafe(reason="patches the delivery class of every async subscription")
def test_only_the_writer_passes_the_bound_of_a_loop_that_waits_on_it(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notipipe import _subscriptions

    monkeypatch.setattr(_subscriptions, "AsyncDelivery", Captured)
    Captured.made = []
    pub = impl.Publisher()
    observer = Recorder(expected=3)
    waiting, released, other_done = threading.Event(), threading.Event(), threading.Event()

    async def wait_on_the_writer() -> None:
        with _async.waiting_on_writer():  # as a flush() on the loop does
            waiting.set()
            released.wait(PATIENCE)

    def other() -> None:
        pub.notify_all("b")
        other_done.set()

    def writer() -> None:
        with _async.delivering_for_writer():
            pub.notify_all("w")

    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, queue_size=1)
        (delivery,) = Captured.made
        blocked = asyncio.run_coroutine_threadsafe(wait_on_the_writer(), lt.loop)
        try:
            assert waiting.wait(PATIENCE)
            pub.notify_all("a")  # the queue is full
            threading.Thread(target=other, daemon=True).start()
            assert wait_until(lambda: delivery._waiting == 1, PATIENCE)  # any other publisher waits
            w = threading.Thread(target=writer, daemon=True)
            w.start()
            w.join(PATIENCE)
            writer_passed = not w.is_alive()
            other_waits = delivery._waiting == 1 and not other_done.is_set()
        finally:
            released.set()
        blocked.result(PATIENCE)
        delivered = observer.done.wait(PATIENCE)
    assert writer_passed  # the writer did not wait on the loop that waits for it
    assert other_waits  # the bound still holds for everyone else
    assert delivered, observer.got
    assert observer.got == ["a", "w", "b"]
    assert delivery.dropped == 0
