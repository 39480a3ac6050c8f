"""Publisher: subscription semantics, ordered delivery, error isolation, copy-on-write safety."""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from typing import Any

import pytest

from notipipe import _fanout
from tests.conftest import Impl
from tests.storm import (
    InPlacePublisher,
    LockingPublisher,
    Tally,
    WriterGate,
    churn_storm,
    notify_bypasses_writers,
)

pytestmark = pytest.mark.twin


class Recorder:
    def __init__(self, name: str, log: list[tuple[str, object]]) -> None:
        self.name = name
        self.log = log

    def update(self, message: object) -> None:
        self.log.append((self.name, message))

    def __repr__(self) -> str:
        return f"Recorder({self.name!r})"


class Exploding:
    def update(self, message: object) -> None:
        raise RuntimeError(f"boom on {message!r}")

    def __repr__(self) -> str:
        return "Exploding()"


def test_delivers_in_subscription_order(impl: Impl) -> None:
    pub = impl.Publisher()
    log: list[tuple[str, object]] = []
    for name in "abc":
        pub.subscribe(Recorder(name, log))
    pub.notify_all(1)
    pub.notify_all(2)
    assert log == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2), ("c", 2)]


def test_duplicate_subscribe_is_a_no_op(impl: Impl) -> None:
    pub = impl.Publisher()
    log: list[tuple[str, object]] = []
    r = Recorder("a", log)
    assert pub.subscribe(r) is True
    assert pub.subscribe(r) is False
    pub.notify_all("x")
    assert log == [("a", "x")]
    assert pub.observers == (r,)


def test_identity_not_equality_decides_duplicates(impl: Impl) -> None:
    class AlwaysEqual(Tally):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = object.__hash__

    pub = impl.Publisher()
    a, b = AlwaysEqual(), AlwaysEqual()
    assert pub.subscribe(a)
    assert pub.subscribe(b)
    assert pub.unsubscribe(b)
    assert pub.observers == (a,)


def test_unsubscribe_unknown_returns_false(impl: Impl) -> None:
    pub = impl.Publisher()
    assert pub.unsubscribe(Tally()) is False
    t = Tally()
    pub.subscribe(t)
    assert pub.unsubscribe(t) is True
    assert pub.unsubscribe(t) is False
    pub.notify_all(1)
    assert t.got == []


class Batching(Tally):
    """An observer that also takes batches (the fan-out's other generated shape)."""

    def update_many(self, messages: object) -> None:
        self.got.append(messages)


@pytest.mark.thread_unsafe(reason="disables the process-wide cyclic GC")
@pytest.mark.parametrize("count", [1, _fanout.UNROLL_LIMIT + 1], ids=["unrolled", "looped"])
@pytest.mark.parametrize("kind", [Tally, Batching], ids=["update", "update_many"])
def test_an_unsubscribed_observer_is_freed_at_once_not_by_the_cycle_collector(
    impl: Impl, count: int, kind: type[Tally]
) -> None:
    pub = impl.Publisher()
    others = [Tally() for _ in range(count - 1)]
    for other in others:
        pub.subscribe(other)
    gc.disable()  # a reference cycle would keep it until the next collection
    try:
        observer = kind()
        alive = weakref.ref(observer)
        assert pub.subscribe(observer)
        pub.notify_all(1)
        pub.notify_many([2, 3])
        assert pub.unsubscribe(observer)
        del observer
        assert alive() is None, "the unsubscribed observer is kept by a reference cycle"
    finally:
        gc.enable()
    pub.notify_all(4)
    assert all(other.got == [1, 2, 3, 4] for other in others)


def test_non_observer_is_rejected_with_a_clear_error(impl: Impl) -> None:
    pub = impl.Publisher()

    class NoUpdate:
        pass

    class NotCallable:
        update = 3

    with pytest.raises(TypeError, match=r"is not an observer: it needs a callable update\(message\) method"):
        pub.subscribe(NoUpdate())
    with pytest.raises(TypeError, match="NotCallable"):
        pub.subscribe(NotCallable())
    assert pub.observers == ()


def test_notify_many_sends_each_message_to_each_observer(impl: Impl) -> None:
    pub = impl.Publisher()
    log: list[tuple[str, object]] = []
    pub.subscribe(Recorder("a", log))
    pub.subscribe(Recorder("b", log))
    assert pub.notify_many(iter([1, 2, 3])) == 3
    assert log == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
    assert pub.notify_many([]) == 0


def test_failing_observer_is_isolated_logged_and_counted(
    impl: Impl, caplog: pytest.LogCaptureFixture
) -> None:
    pub = impl.Publisher()
    log: list[tuple[str, object]] = []
    pub.subscribe(Recorder("before", log))
    pub.subscribe(Exploding())
    pub.subscribe(Recorder("after", log))
    with caplog.at_level(logging.ERROR, logger="notipipe"):
        pub.notify_all("alert")
        pub.notify_many(["m1", "m2"])
    assert log == [
        ("before", "alert"), ("after", "alert"),
        ("before", "m1"), ("after", "m1"),
        ("before", "m2"), ("after", "m2"),
    ]  # fmt: skip
    assert pub.failures == 3
    # The default handler logs an observer's first failure with its traceback and only counts
    # the repeats (summarised later, see test_observer_failures).
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None
    assert "observer Exploding() failed on 'alert': RuntimeError: boom on 'alert'" in caplog.text


def test_custom_error_handler_receives_observer_message_error(impl: Impl) -> None:
    pub = impl.Publisher()
    seen: list[tuple[object, object, str]] = []
    bomb = Exploding()
    pub.error_handler = lambda o, m, e: seen.append((o, m, str(e)))
    pub.subscribe(bomb)
    pub.notify_all(5)
    assert seen == [(bomb, 5, "boom on 5")]
    assert pub.failures == 1
    with pytest.raises(TypeError, match="error_handler must be callable"):
        pub.error_handler = "nope"


def test_broken_error_handler_still_logs(impl: Impl, caplog: pytest.LogCaptureFixture) -> None:
    pub = impl.Publisher()

    def bad_handler(o: object, m: object, e: Exception) -> None:
        raise ValueError("handler bug")

    pub.error_handler = bad_handler
    pub.subscribe(Exploding())
    with caplog.at_level(logging.ERROR, logger="notipipe"):
        pub.notify_all(1)
    assert "observer Exploding() failed" in caplog.text
    assert "handler bug" in caplog.text


def test_base_exceptions_are_not_swallowed(impl: Impl) -> None:
    pub = impl.Publisher()

    class Interrupting:
        def update(self, message: object) -> None:
            raise KeyboardInterrupt

    pub.subscribe(Interrupting())
    with pytest.raises(KeyboardInterrupt):
        pub.notify_all(1)


def test_subscribe_and_unsubscribe_from_inside_update(impl: Impl) -> None:
    pub = impl.Publisher()
    late = Tally()
    log: list[tuple[str, object]] = []

    class Reentrant:
        def update(self, message: object) -> None:
            log.append(("re", message))
            if message == 1:
                pub.subscribe(late)  # takes effect from the next notify
                pub.unsubscribe(self)
            pub.notify_all(("nested", message)) if message == 1 else None

    re = Reentrant()
    stay = Recorder("stay", log)
    pub.subscribe(re)
    pub.subscribe(stay)
    pub.notify_all(1)
    pub.notify_all(2)
    assert log == [("re", 1), ("stay", ("nested", 1)), ("stay", 1), ("stay", 2)]
    assert late.got == [("nested", 1), 2]


def test_observers_is_a_snapshot(impl: Impl) -> None:
    pub = impl.Publisher()
    a = Tally()
    pub.subscribe(a)
    snap = pub.observers
    pub.subscribe(Tally())
    assert snap == (a,)
    assert len(pub.observers) == 2


def test_generic_alias_works_at_runtime(impl: Impl) -> None:
    pub = impl.Publisher[str]()
    assert isinstance(pub, impl.Publisher)


def test_concurrent_notify_and_churn_loses_nothing(impl: Impl) -> None:
    missed = churn_storm(impl.Publisher(), notifiers=4, churners=3, messages=3000)
    assert missed == [0, 0, 0, 0]


def test_concurrent_notify_on_the_database_connection(db: Any) -> None:
    assert churn_storm(db, notifiers=3, churners=2, messages=2000) == [0, 0, 0, 0]


def test_churn_storm_catches_an_in_place_list() -> None:
    # The harness must be able to fail: a publisher that iterates the live list loses or
    # repeats deliveries while other threads subscribe and unsubscribe.
    for _ in range(5):
        if any(churn_storm(InPlacePublisher(), notifiers=2, churners=2, messages=20000)):
            return
    pytest.fail("the churn storm never caught the in-place list")


def test_failures_counter_is_exact_under_threads(impl: Impl) -> None:
    pub = impl.Publisher()
    pub.error_handler = lambda o, m, e: None
    pub.subscribe(Exploding())
    threads = [threading.Thread(target=lambda: [pub.notify_all(i) for i in range(2000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pub.failures == 8000


def test_a_kept_notify_all_follows_later_subscriptions(impl: Impl) -> None:
    pub = impl.Publisher()
    first, second = Tally(), Tally()
    pub.subscribe(first)
    send, send_many = pub.notify_all, pub.notify_many  # kept across snapshot changes
    pub.subscribe(second)
    send(1)
    assert send_many([2, 3]) == 2
    pub.unsubscribe(first)
    send(4)
    assert first.got == [1, 2, 3]
    assert second.got == [1, 2, 3, 4]


def test_notify_delivers_while_a_subscribe_holds_the_lock(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both twins build the new snapshot's fan-out (_fanout.make_fanout) with the writers' lock
    # held: pausing there pauses a subscribe inside its locked region.
    gate = WriterGate()
    make_fanout = _fanout.make_fanout

    def paused(*args: Any) -> Any:
        gate.hold()
        return make_fanout(*args)

    monkeypatch.setattr(_fanout, "make_fanout", paused)
    assert notify_bypasses_writers(impl.Publisher(), gate, timeout=30)


def test_writer_pause_catches_a_notify_that_takes_the_lock() -> None:
    # The harness must be able to fail: a notify that takes the writers' lock waits for them.
    gate = WriterGate()
    assert not notify_bypasses_writers(LockingPublisher(gate), gate, timeout=0.5)
