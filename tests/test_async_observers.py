"""Async observers: delivered on their loop, in order, coalesced, bounded, isolated. Both twins."""

from __future__ import annotations

import asyncio
import contextlib
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
    nothing and before the drain hands the wake-up back: it sees a drain still scheduled and
    leaves the message to it. The drain must look again before it stops.
    """

    publish: Any = None

    def popleft(self) -> Any:
        try:
            return super().popleft()
        except IndexError:
            if RacingDeque.publish is not None:
                publish, RacingDeque.publish = RacingDeque.publish, None
                racer = threading.Thread(target=publish)
                racer.start()
                racer.join()
            raise


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
        # Once drained, the next burst wakes it again, once.
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
            if "_drain" in repr(task.get_coro()):
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
            if "_drain" in repr(task.get_coro()):
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
