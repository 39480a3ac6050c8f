"""Observers unsubscribed, and their last reference dropped, while other threads notify.

On a free-threaded build each thread delivers through fan-out functions of its own, made from the
snapshot it saw (``_fanout.PerThread``); a change retires them. This churn checks what that must
keep: no notify that starts after ``unsubscribe`` returned reaches the observer, a delivery in
flight still owns the observer it calls (no failure, no crash), nothing is lost or repeated for
the observers that stay, and a retired observer is freed once no thread delivers to it.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Impl

pytestmark = pytest.mark.twin

ROUNDS = 400
NOTIFIERS = 4


class Steady:
    """Subscribed for the whole run, first in order: counts what it gets, does a little work.

    The work widens the window between a notify's start and its call to the transient observer
    that follows, where a retired observer must still be owned by the delivery in flight.
    """

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def update(self, message: tuple[int, str]) -> None:
        h = 0
        for ch in message[1]:
            h = (h * 31 + ord(ch)) & 0xFFFF
        with self._lock:
            self.count += 1

    def update_many(self, messages: tuple[tuple[int, str], ...]) -> None:
        for message in messages:
            self.update(message)


class Transient:
    """Subscribed for one round: any message from a notify begun after its unsubscribe is late."""

    def __init__(self, round_: int, late: list[tuple[int, int]]) -> None:
        self.round = round_
        self.late = late
        self.reached = threading.Event()

    def update(self, message: tuple[int, str]) -> None:
        epoch = message[0]
        if epoch > self.round:  # the epoch was read before the notify began
            self.late.append((self.round, epoch))
        self.reached.set()


def churn(pub: Any, *, rounds: int = ROUNDS) -> dict[str, Any]:
    """Subscribe, reach, unsubscribe and drop a Transient per round while NOTIFIERS threads send."""
    failures: list[BaseException] = []
    pub.error_handler = lambda observer, message, error: failures.append(error)
    steady = [Steady(), Steady()]
    for s in steady:
        pub.subscribe(s)
    epoch = [0]  # rounds whose observer's unsubscribe has returned
    late: list[tuple[int, int]] = []
    stop = threading.Event()
    sent = [0] * NOTIFIERS
    text = "cpu 97% on host-12 " * 4

    def kept(i: int) -> None:  # notify_all taken every 64 messages, kept across the changes between
        while not stop.is_set():
            send = pub.notify_all
            for _ in range(64):
                send((epoch[0], text))
            sent[i] += 64

    def fresh(i: int) -> None:  # pub.notify_all read for every message
        while not stop.is_set():
            pub.notify_all((epoch[0], text))
            sent[i] += 1

    def batches(i: int) -> None:  # notify_many, taken afresh, two messages at a time
        while not stop.is_set():
            e = epoch[0]
            sent[i] += pub.notify_many([(e, text), (e, text)])

    kinds: list[Callable[[int], None]] = [kept, kept, fresh, batches]
    threads = [threading.Thread(target=kinds[i], args=(i,)) for i in range(NOTIFIERS)]
    for t in threads:
        t.start()
    gone: list[weakref.ref[Transient]] = []
    unreached = 0
    try:
        for r in range(rounds):
            observer = Transient(r, late)
            pub.subscribe(observer)
            if not observer.reached.wait(10):
                unreached += 1
            pub.unsubscribe(observer)
            epoch[0] = r + 1
            gone.append(weakref.ref(observer))
            del observer  # the last reference outside the publisher and the deliveries in flight
    finally:
        stop.set()
        for t in threads:
            t.join()
    gc.collect()
    return {
        "failures": failures,
        "late": late,
        "unreached": unreached,
        "alive": sum(1 for ref in gone if ref() is not None),
        "sent": sum(sent),
        "steady": [s.count for s in steady],
    }


def test_unsubscribed_observers_churn_while_threads_notify(impl: Impl) -> None:
    result = churn(impl.Publisher())
    assert result["failures"] == []
    assert result["late"] == []
    assert result["unreached"] == 0
    assert result["steady"] == [result["sent"]] * 2  # nothing lost, nothing repeated
    assert result["alive"] == 0  # retired observers are freed


def test_unsubscribed_observers_churn_through_a_database_connection(db: Any) -> None:
    result = churn(db, rounds=ROUNDS // 4)
    assert (result["failures"], result["late"], result["unreached"], result["alive"]) == ([], [], 0, 0)
    assert result["steady"] == [result["sent"]] * 2
