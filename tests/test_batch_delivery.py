"""Batch delivery: an observer with ``update_many`` gets one call per batch. Both twins."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from notipipe._fanout import UNROLL_LIMIT
from tests.conftest import Impl

pytestmark = pytest.mark.twin


class PerMessage:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def update(self, message: Any) -> None:
        self.got.append(message)


class Batched(PerMessage):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[Any, ...]] = []

    def update_many(self, messages: tuple[Any, ...]) -> None:
        self.batches.append(messages)


class FailingBatch(Batched):
    def update_many(self, messages: tuple[Any, ...]) -> None:
        super().update_many(messages)
        raise RuntimeError("batch refused")


@pytest.mark.parametrize("count", [1, 3, UNROLL_LIMIT + 3])
def test_update_many_is_called_once_per_batch(impl: Impl, count: int) -> None:
    pub = impl.Publisher()
    observers = [Batched() if i % 2 else PerMessage() for i in range(count)]
    for o in observers:
        pub.subscribe(o)
    assert pub.notify_many(m for m in range(5)) == 5  # a generator: read once
    assert pub.notify_many([5, 6]) == 2
    for o in observers:
        if isinstance(o, Batched):
            assert o.batches == [(0, 1, 2, 3, 4), (5, 6)]
            assert o.got == []
        else:
            assert o.got == list(range(7))


def test_notify_all_still_calls_update(impl: Impl) -> None:
    pub = impl.Publisher()
    o = Batched()
    pub.subscribe(o)
    pub.notify_all("x")
    assert o.got == ["x"]
    assert o.batches == []


def test_an_empty_batch_calls_nobody(impl: Impl) -> None:
    pub = impl.Publisher()
    o = Batched()
    pub.subscribe(o)
    assert pub.notify_many([]) == 0
    assert o.batches == []


def test_a_failing_update_many_is_reported_once_with_its_batch(impl: Impl) -> None:
    pub = impl.Publisher()
    seen: list[tuple[object, object, str]] = []
    pub.error_handler = lambda observer, message, error: seen.append((observer, message, str(error)))
    failing, after = FailingBatch(), Batched()
    pub.subscribe(failing)
    pub.subscribe(after)
    pub.notify_many([1, 2, 3])
    assert seen == [(failing, (1, 2, 3), "batch refused")]
    assert pub.failures == 1
    assert after.batches == [(1, 2, 3)]


def test_each_batch_observer_gets_its_own_immutable_batch(impl: Impl) -> None:
    pub = impl.Publisher()
    a, b = Batched(), Batched()
    pub.subscribe(a)
    pub.subscribe(b)
    source = [1, 2]
    pub.notify_many(source)
    source.append(3)
    assert a.batches == b.batches == [(1, 2)]
    assert isinstance(a.batches[0], tuple)


def test_unsubscribing_a_batch_observer_goes_back_to_the_plain_fanout(impl: Impl) -> None:
    pub = impl.Publisher()
    a, plain = Batched(), PerMessage()
    pub.subscribe(a)
    pub.subscribe(plain)
    pub.unsubscribe(a)
    pub.notify_many([1, 2])
    assert a.batches == []
    assert plain.got == [1, 2]


def test_concurrent_batches_each_arrive_whole(impl: Impl) -> None:
    pub = impl.Publisher()
    o = Batched()
    pub.subscribe(o)
    producers, each = 4, 200
    start = threading.Barrier(producers)

    def produce(p: int) -> None:
        start.wait()
        for i in range(each):
            pub.notify_many([(p, i, k) for k in range(3)])

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(o.batches) == producers * each
    assert all([m[2] for m in batch] == [0, 1, 2] and len({m[:2] for m in batch}) == 1 for batch in o.batches)


def test_save_many_delivers_one_batch(db: Any) -> None:
    o = Batched()
    db.subscribe(o)
    messages = [db._email_cls(recipient=f"r{i}@example.com") for i in range(4)]
    assert db.save_many(messages) == 4
    assert o.batches == [tuple(messages)]


@pytest.mark.thread_unsafe(reason="opens the DatabaseConnection singleton its other copies use")
def test_each_committed_batch_is_one_call_with_after_commit(impl: Impl) -> None:
    db = impl.DatabaseConnection(":memory:", deliver="after_commit")
    got = threading.Event()

    class Waiting(Batched):
        def update_many(self, messages: tuple[Any, ...]) -> None:
            super().update_many(messages)
            got.set()

    o = Waiting()
    db.subscribe(o)
    db.save_many([db._email_cls(recipient=f"r{i}@example.com") for i in range(5)], durable=True)
    assert got.wait(30)
    assert o.got == []
    db.close()
    # One save_many is one committed batch (put_many queues it whole): one call, ids assigned.
    assert [len(b) for b in o.batches] == [5]
    assert all(m.id > 0 for m in o.batches[0])
