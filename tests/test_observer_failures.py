"""Failing observers: isolation after the publisher is gone, a bounded log, the right observer.

Every test runs on both twins. The throttle of the default handler reads ``_failures._now``;
the ``clock`` fixture replaces it so that the tests decide when time passes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from notipipe import _failures
from notipipe._failures import SUMMARY_INTERVAL, Failures, ObserverFailures
from tests.conftest import Impl
from tests.storm import Tally, UnlockedFailures, failure_storm

pytestmark = pytest.mark.twin

type Records = list[logging.LogRecord]

GIL_ENABLED = getattr(sys, "_is_gil_enabled", lambda: True)()

SUMMARY = re.compile(
    r"observer (?P<observer>.+) failed (?P<count>\d+) more times in the last (?P<seconds>\d+) s; "
    r"last error on (?P<message>.+?): (?P<error>\w+: .*)"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_failures, "_now", fake)
    return fake


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: Records = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    """Every record the ``notipipe`` logger emits during the test."""
    logger = logging.getLogger("notipipe")
    collect = Collect()
    old_level = logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    try:
        yield collect.records
    finally:
        logger.removeHandler(collect)
        logger.setLevel(old_level)


class Exploding:
    def __init__(self, name: str = "") -> None:
        self.name = name

    def update(self, message: object) -> None:
        raise RuntimeError(f"boom on {message!r}")

    def __repr__(self) -> str:
        return f"Exploding({self.name!r})"


def summaries(records: Records) -> list[re.Match[str]]:
    found = [SUMMARY.fullmatch(r.getMessage()) for r in records]
    return [m for m in found if m is not None]


# -- a kept notify_all outliving its publisher (issue 11, #1) -----------------------------------

_OUTLIVE = textwrap.dedent(
    """
    import gc, json, sys, weakref
    import notipipe

    assert notipipe.Publisher.__module__ == "notipipe._publisher_" + sys.argv[1]
    got, handled = [], []

    class Recorder:
        def __init__(self, name):
            self.name = name
        def update(self, message):
            got.append([self.name, message])

    class Exploding:
        def update(self, message):
            raise RuntimeError("boom on " + message)
        def __repr__(self):
            return "Exploding()"

    def kept_functions(pub, name, handler):
        pub.subscribe(Recorder(name + ".before"))
        pub.subscribe(Exploding())
        pub.subscribe(Recorder(name + ".after"))
        if handler is not None:
            pub.error_handler = handler
        return pub.notify_all, pub.notify_many

    def custom(observer, message, error):
        handled.append([repr(observer), message, str(error)])

    runs = []
    for name, make, handler in [
        ("pub", notipipe.Publisher, None),
        ("pub-custom", notipipe.Publisher, custom),
        ("db", lambda: notipipe.DatabaseConnection(":memory:"), None),
    ]:
        pub = make()
        send, send_many = kept_functions(pub, name, handler)
        if name == "db":
            pub.close()
        alive = weakref.ref(pub)
        del pub
        gc.collect()
        assert alive() is None, name + " is still alive"
        runs.append((name, send, send_many))
    for name, send, send_many in runs:
        send(name + ":1")
        assert send_many([name + ":2", name + ":3"]) == 2
    print(json.dumps({"got": got, "handled": handled}))
    """
)


def test_a_kept_notify_all_outlives_its_publisher(impl: Impl, tmp_path: Path) -> None:
    # Compiled, this was a segfault (the failure went to a typed report function with the dead
    # publisher's None); pure, an AttributeError that skipped the observers after the failing one.
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIPIPE_NO_EXTENSIONS", "NOTIPIPE_DB")}
    if impl.name == "py":
        env["NOTIPIPE_NO_EXTENSIONS"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", _OUTLIVE, impl.name],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr}"
    out = json.loads(result.stdout)
    expected = [
        [f"{name}.{where}", f"{name}:{i}"]
        for name in ("pub", "pub-custom", "db")
        for i in (1, 2, 3)
        for where in ("before", "after")
    ]
    assert sorted(out["got"]) == sorted(expected)
    # The handler each publisher had when it died: the custom one is called for every failure,
    # the default one logs the first failure of each observer in full (to stderr, here).
    assert out["handled"] == [
        ["Exploding()", f"pub-custom:{i}", f"boom on pub-custom:{i}"] for i in (1, 2, 3)
    ]
    for name in ("pub", "db"):
        assert f"observer Exploding() failed on '{name}:1': RuntimeError: boom on {name}:1" in result.stderr
    assert "pub-custom" not in result.stderr


# -- a broken observer must not flood the log (issue 11, #4) ------------------------------------


def test_ten_thousand_failures_log_one_traceback(impl: Impl, clock: FakeClock, records: Records) -> None:
    pub = impl.Publisher()
    bomb, tally = Exploding("dash"), Tally()
    pub.subscribe(bomb)
    pub.subscribe(tally)
    for i in range(5000):
        pub.notify_all(i)
    assert pub.notify_many(range(5000, 10_000)) == 5000
    assert pub.failures == 10_000
    assert tally.got == list(range(10_000))
    assert len(records) == 1
    first = records[0]
    assert first.exc_info is not None
    assert str(first.exc_info[1]) == "boom on 0"
    assert first.getMessage() == "observer Exploding('dash') failed on 0: RuntimeError: boom on 0"


def test_repeated_failures_are_summarised_with_their_count(
    impl: Impl, clock: FakeClock, records: Records
) -> None:
    pub = impl.Publisher()
    pub.subscribe(Exploding("dash"))
    for i in range(10_000):
        pub.notify_all(i)
        clock.now += 0.025  # 250 s in all: a few summary intervals
    clock.now += SUMMARY_INTERVAL
    pub.notify_all("last")  # brings out the count of the failures since the last line
    assert pub.failures == 10_001
    assert records[0].exc_info is not None
    found = summaries(records)
    assert len(found) == len(records) - 1  # the full first line, then summaries only
    assert len(records) <= 2 + int(250 / SUMMARY_INTERVAL) + 1
    assert all(r.exc_info is None for r in records[1:])
    assert all(m["observer"] == "Exploding('dash')" for m in found)
    assert all(float(m["seconds"]) >= SUMMARY_INTERVAL - 1 for m in found)
    assert 1 + sum(int(m["count"]) for m in found) == pub.failures
    assert found[-1]["message"] == "'last'"
    assert found[-1]["error"] == "RuntimeError: boom on 'last'"


def test_a_failure_after_a_quiet_interval_is_logged_in_full(
    impl: Impl, clock: FakeClock, records: Records
) -> None:
    pub = impl.Publisher()
    pub.subscribe(Exploding())
    pub.notify_all(1)
    clock.now += SUMMARY_INTERVAL + 1
    pub.notify_all(2)  # nothing was counted in between: a fresh failure, with its traceback
    clock.now += 1
    pub.notify_all(3)  # counted only
    clock.now += SUMMARY_INTERVAL
    pub.notify_all(4)
    assert [r.exc_info is not None for r in records] == [True, True, False]
    match = SUMMARY.fullmatch(records[2].getMessage())
    assert match is not None
    assert (match["count"], match["seconds"], match["message"]) == ("2", "61", "4")


def test_each_observer_gets_its_own_first_traceback(impl: Impl, clock: FakeClock, records: Records) -> None:
    pub = impl.Publisher()
    a, b = Exploding("a"), Exploding("b")
    pub.subscribe(a)
    pub.subscribe(b)
    pub.notify_many(range(100))
    assert pub.failures == 200
    assert [r.getMessage() for r in records] == [
        "observer Exploding('a') failed on 0: RuntimeError: boom on 0",
        "observer Exploding('b') failed on 0: RuntimeError: boom on 0",
    ]


def test_a_custom_handler_is_still_called_for_every_failure(
    impl: Impl, clock: FakeClock, records: Records
) -> None:
    pub = impl.Publisher()
    seen: list[object] = []
    pub.error_handler = lambda o, m, e: seen.append(m)
    pub.subscribe(Exploding())
    pub.notify_many(range(10_000))
    assert seen == list(range(10_000))
    assert pub.failures == 10_000
    assert records == []


def test_a_broken_custom_handler_does_not_flood_the_log(
    impl: Impl, clock: FakeClock, records: Records
) -> None:
    pub = impl.Publisher()
    calls: list[object] = []

    def broken(observer: object, message: object, error: Exception) -> None:
        calls.append(message)
        raise ValueError("handler bug")

    pub.error_handler = broken
    pub.subscribe(Exploding())
    pub.notify_many(range(10_000))
    assert len(calls) == 10_000
    assert pub.failures == 10_000
    assert [r.getMessage() for r in records] == [
        "observer Exploding('') failed on 0: RuntimeError: boom on 0",
        f"error handler {broken!r} failed: ValueError('handler bug')",
    ]


def test_failures_and_summaries_are_exact_under_threads(
    impl: Impl, clock: FakeClock, records: Records
) -> None:
    pub = impl.Publisher()
    pub.subscribe(Exploding())
    failure_storm(pub.notify_all, threads=4, per_thread=20_000)
    clock.now += SUMMARY_INTERVAL
    pub.notify_all("last")
    assert pub.failures == 80_001
    found = summaries(records)
    assert len(records) == 2
    assert len(found) == 1
    assert int(found[0]["count"]) == 80_000


@pytest.mark.skipif(
    GIL_ENABLED, reason="the GIL never switches between the read and the write of an unlocked +="
)
def test_failure_storm_catches_unlocked_counters(clock: FakeClock, records: Records) -> None:
    # The harness must be able to fail: without the lock, concurrent failures lose counts.
    shared = UnlockedFailures()
    watch = ObserverFailures(shared, Exploding())
    error = RuntimeError("boom")
    for _ in range(5):
        shared.count = 0
        failure_storm(lambda m: watch.failed(m, error), threads=4, per_thread=50_000)
        if shared.count != 200_000:
            return
    pytest.fail("the failure storm never caught the unlocked counters")


def test_the_locked_counters_pass_the_same_storm(clock: FakeClock, records: Records) -> None:
    # The same storm as above, on the real Failures: the control for the broken variant.
    shared = Failures()
    watch = ObserverFailures(shared, Exploding())
    error = RuntimeError("boom")
    failure_storm(lambda m: watch.failed(m, error), threads=4, per_thread=50_000)
    assert shared.count == 200_000
    assert len(records) == 1


# -- the error handler is told the subscribed object (issue 11, #5) -----------------------------


def _boom(message: object) -> None:
    raise RuntimeError(f"boom on {message!r}")


class Target:
    def fire(self, message: object) -> None:
        _boom(message)


class Delegate:
    """Its ``update`` is another object's bound method."""

    def __init__(self) -> None:
        self.update = Target().fire


class PartialUpdate:
    def __init__(self) -> None:
        self.update = functools.partial(_boom)


class StaticUpdate:
    update = staticmethod(_boom)


def _observers() -> list[object]:
    module = types.ModuleType("alerts_module")
    module.update = _boom  # type: ignore[attr-defined]
    return [module, Delegate(), PartialUpdate(), StaticUpdate(), Exploding()]


@pytest.mark.parametrize("padding", [0, 40], ids=["unrolled", "loop"])
def test_the_error_handler_receives_the_subscribed_object(impl: Impl, padding: int) -> None:
    pub = impl.Publisher()
    for _ in range(padding):  # past UNROLL_LIMIT the fan-out is a loop over pairs
        pub.subscribe(Tally())
    seen: list[object] = []
    pub.error_handler = lambda o, m, e: seen.append(o)
    observers = _observers()
    for observer in observers:
        assert pub.subscribe(observer)
    pub.notify_all(1)
    pub.notify_many([2])
    assert [id(o) for o in seen] == [id(o) for o in observers] * 2


def test_the_default_log_names_the_subscribed_object(impl: Impl, records: Records) -> None:
    pub = impl.Publisher()
    delegate = Delegate()
    pub.subscribe(delegate)
    pub.notify_all(1)
    assert [r.getMessage() for r in records] == [
        f"observer {delegate!r} failed on 1: RuntimeError: boom on 1"
    ]


def test_the_same_bound_method_under_two_observers_is_told_apart(impl: Impl) -> None:
    pub = impl.Publisher()
    target = Target()
    first, second = Delegate(), Delegate()
    first.update = second.update = target.fire
    seen: list[object] = []
    pub.error_handler = lambda o, m, e: seen.append(o)
    pub.subscribe(first)
    pub.subscribe(second)
    pub.notify_all(1)
    assert seen == [first, second]
    pub.unsubscribe(first)
    pub.notify_all(2)
    assert seen == [first, second, second]


# -- BaseException propagates, and the publisher stays usable ----------------------------------


class Exiting:
    def __init__(self) -> None:
        self.armed = True

    def update(self, message: object) -> None:
        if self.armed:
            raise SystemExit(3)


@pytest.mark.parametrize("padding", [0, 40], ids=["unrolled", "loop"])
@pytest.mark.parametrize("send", ["notify_all", "notify_many"])
def test_base_exceptions_propagate_and_the_publisher_stays_usable(
    impl: Impl, padding: int, send: str
) -> None:
    pub = impl.Publisher()
    handled: list[object] = []
    pub.error_handler = lambda o, m, e: handled.append(o)
    for _ in range(padding):
        pub.subscribe(Tally())
    before, exiting, after = Tally(), Exiting(), Tally()
    for observer in (before, exiting, after):
        pub.subscribe(observer)
    deliver: Callable[[object], object] = (
        pub.notify_all if send == "notify_all" else lambda m: pub.notify_many([m, "never"])
    )
    with pytest.raises(SystemExit) as raised:
        deliver(1)
    assert raised.value.code == 3
    assert (before.got, after.got) == ([1], [])  # delivery stops where the exception started
    assert pub.failures == 0
    assert handled == []
    exiting.armed = False
    late = Tally()
    assert pub.subscribe(late)
    deliver(2)
    expected = [2] if send == "notify_all" else [2, "never"]
    assert (before.got[1:], after.got, late.got) == (expected, expected, expected)
    pub.notify_all(3)
    assert pub.unsubscribe(exiting)
    assert pub.observers[-3:] == (before, after, late)


def test_keyboard_interrupt_propagates_from_a_kept_notify(impl: Impl) -> None:
    pub = impl.Publisher()
    send = pub.notify_all

    class Interrupting:
        def update(self, message: object) -> None:
            raise KeyboardInterrupt

    interrupting, tally = Interrupting(), Tally()
    pub.subscribe(interrupting)
    pub.subscribe(tally)
    with pytest.raises(KeyboardInterrupt):
        send(1)
    assert pub.unsubscribe(interrupting)
    send(2)
    assert tally.got == [2]
    assert pub.failures == 0


def test_each_observers_failures_are_counted_with_the_publishers_total(impl: Impl) -> None:
    # What DatabaseConnection.metrics() reports per observer, the same from both twins: counted
    # under the lock that counts the total, by the default handler and by one of the user's own.
    class Failing:
        def update(self, message: object) -> None:
            raise ValueError(message)

    class Quiet:
        def update(self, message: object) -> None:
            pass

    pub = impl.Publisher()
    first, quiet, second = Failing(), Quiet(), Failing()
    for observer in (first, quiet, second):
        pub.subscribe(observer)
    logging.disable(logging.CRITICAL)
    try:
        pub.notify_many([1, 2, 3])  # the default handler
    finally:
        logging.disable(logging.NOTSET)
    pub.error_handler = lambda *_: None
    pub.notify_all(4)
    assert _counts(pub) == (8, ((first, 4, 0), (quiet, 0, 0), (second, 4, 0)))
    assert pub.failures == 8
    pub.unsubscribe(first)
    assert _counts(pub) == (8, ((quiet, 0, 0), (second, 4, 0)))


def _counts(pub: Any) -> tuple[int, tuple[tuple[object, int, int], ...]]:
    """``_observer_counts()`` without each subscription's reporter: the total, and (observer,
    failures, dropped) of each."""
    total, found = pub._observer_counts()
    return total, tuple((observer, failures, dropped) for _, observer, failures, dropped in found)
