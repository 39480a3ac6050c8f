"""Weak subscriptions: they end when the observer is collected, without deadlocking. Both twins."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Any

import pytest

from notipipe import _fanout
from tests._loops import PATIENCE, Recorder, loop_thread
from tests.conftest import Impl

pytestmark = pytest.mark.twin


class Listener:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def update(self, message: Any) -> None:
        self.log.append(message)


class CyclicListener(Listener):
    """Only the cyclic GC can free it (it refers to itself)."""

    def __init__(self, log: list[Any]) -> None:
        super().__init__(log)
        self.me = self


class Slotted:
    __slots__ = ()

    def update(self, message: Any) -> None:
        pass


def test_a_weak_subscription_delivers_and_does_not_keep_the_observer(impl: Impl) -> None:
    pub = impl.Publisher()
    log: list[Any] = []
    observer = Listener(log)
    assert pub.subscribe(observer, weak=True) is True
    assert pub.subscribe(observer, weak=True) is False
    pub.notify_all(1)
    assert pub.observers == (observer,)
    alive = weakref.ref(observer)
    del observer  # no cycle: freed at once unless the publisher holds it
    assert alive() is None
    assert pub.observers == ()
    pub.notify_all(2)
    assert log == [1]


def test_a_strong_subscription_keeps_the_observer(impl: Impl) -> None:
    # The check above can fail: without weak=True, the publisher holds the observer.
    pub = impl.Publisher()
    observer = Listener([])
    pub.subscribe(observer)
    alive = weakref.ref(observer)
    del observer
    assert alive() is not None


def test_a_collected_observer_is_purged_on_the_next_publish(impl: Impl) -> None:
    pub = impl.Publisher()
    log: list[Any] = []
    keep = Listener(log)
    pub.subscribe(Listener([]), weak=True)  # collected at once
    pub.subscribe(keep)
    pub.notify_all("x")
    pub.notify_many(["y"])
    assert pub.observers == (keep,)
    assert pub.unsubscribe(keep) is True
    assert pub.observers == ()
    assert log == ["x", "y"]


def test_a_weak_update_many_gets_batches(impl: Impl) -> None:
    class Batched(Listener):
        def update_many(self, messages: tuple[Any, ...]) -> None:
            self.log.append(messages)

    pub = impl.Publisher()
    log: list[Any] = []
    observer = Batched(log)
    pub.subscribe(observer, weak=True)
    pub.notify_many([1, 2])
    del observer
    pub.notify_many([3])
    assert log == [(1, 2)]


def test_an_object_without_weakref_support_is_refused(impl: Impl) -> None:
    pub = impl.Publisher()
    with pytest.raises(TypeError, match="weak reference"):
        pub.subscribe(Slotted(), weak=True)
    assert pub.observers == ()


def test_a_weak_async_observer_ends_when_collected(impl: Impl) -> None:
    pub = impl.Publisher()
    observer, other = Recorder(expected=1), Recorder(expected=2)
    with loop_thread() as lt:
        pub.subscribe(observer, loop=lt.loop, weak=True)
        pub.subscribe(other, loop=lt.loop)
        pub.notify_all(1)
        assert observer.done.wait(PATIENCE)
        got = observer.got
        lt.run(asyncio.sleep(0))  # the drain lets go of the observer
        del observer
        gc.collect()
        pub.notify_all(2)
        assert other.done.wait(PATIENCE)
    assert got == [1]
    assert pub.observers == (other,)


def _subscribe_while_the_gc_frees_a_weak_observer(impl: Impl) -> bool:
    """Free a weakly subscribed observer inside a subscribe's locked region, on its thread.

    Both twins build the new snapshot's fan-out (``_fanout.make_fanout``) with the writers' lock
    held; a collection there runs the observer's weakref callback in that region. True if the
    subscribe returned (a callback that takes the lock would wait for itself forever).
    """
    pub = impl.Publisher()
    log: list[Any] = []
    pub.subscribe(CyclicListener(log), weak=True)  # garbage at once, but only the GC frees it
    returned = threading.Event()

    def subscribe() -> None:
        pub.subscribe(Listener(log))
        returned.set()

    threading.Thread(target=subscribe, daemon=True).start()
    if not returned.wait(PATIENCE):
        return False
    pub.notify_all("after")
    assert len(pub.observers) == 1
    assert log == ["after"]
    return True


def test_gc_inside_the_locked_region_does_not_deadlock(impl: Impl, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fanout = _fanout.make_fanout
    collected: list[int] = []

    def collecting(*args: Any) -> Any:
        collected.append(gc.collect())
        return make_fanout(*args)

    monkeypatch.setattr(_fanout, "make_fanout", collecting)
    gc.disable()  # only the collection in the locked region frees it
    try:
        assert _subscribe_while_the_gc_frees_a_weak_observer(impl)
    finally:
        gc.enable()
    assert any(collected)  # the observer was indeed freed in there
