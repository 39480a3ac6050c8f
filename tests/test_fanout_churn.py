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


class Notifiers:
    """NOTIFIERS threads sending until stopped, each message tagged with the epoch read before."""

    TEXT = "cpu 97% on host-12 " * 16

    def __init__(self, pub: Any) -> None:
        self.pub = pub
        self.epoch = 0  # rounds whose observer's unsubscribe has returned
        self.stop = threading.Event()
        self.sent = [0] * NOTIFIERS
        self.crashed: list[BaseException] = []
        self.waiting: list[Transient] = []  # the round's observer, woken if a notifier dies
        kinds: list[Callable[[int], None]] = [self.kept, self.kept, self.fresh, self.batches]
        self.threads = [threading.Thread(target=self.guarded, args=(i, kinds[i])) for i in range(NOTIFIERS)]

    def kept(self, i: int) -> None:  # notify_all taken every 64 messages, kept across changes
        while not self.stop.is_set():
            send = self.pub.notify_all
            for _ in range(64):
                send((self.epoch, self.TEXT))
            self.sent[i] += 64

    def fresh(self, i: int) -> None:  # pub.notify_all read for every message
        while not self.stop.is_set():
            self.pub.notify_all((self.epoch, self.TEXT))
            self.sent[i] += 1

    def batches(self, i: int) -> None:  # notify_many, taken afresh, two messages at a time
        while not self.stop.is_set():
            e = self.epoch
            self.sent[i] += self.pub.notify_many([(e, self.TEXT), (e, self.TEXT)])

    def guarded(self, i: int, kind: Callable[[int], None]) -> None:
        try:
            kind(i)
        except Exception as error:  # noqa: BLE001 - any escaped error is the finding; it ends the run
            self.crashed.append(error)
            self.stop.set()
            for observer in list(self.waiting):
                observer.reached.set()


def churn(pub: Any, *, rounds: int = ROUNDS) -> dict[str, Any]:
    """Subscribe, reach, unsubscribe and drop a Transient per round while NOTIFIERS threads send."""
    failures: list[BaseException] = []
    pub.error_handler = lambda observer, message, error: failures.append(error)
    steady = [Steady(), Steady()]
    for s in steady:
        pub.subscribe(s)
    late: list[tuple[int, int]] = []
    senders = Notifiers(pub)
    for t in senders.threads:
        t.start()
    gone: list[weakref.ref[Transient]] = []
    unreached = 0
    try:
        for r in range(rounds):
            observer = Transient(r, late)
            senders.waiting[:] = [observer]
            pub.subscribe(observer)
            if senders.stop.is_set() or not observer.reached.wait(10):
                unreached += 1
                break
            senders.waiting.clear()
            pub.unsubscribe(observer)
            senders.epoch = r + 1
            gone.append(weakref.ref(observer))
            del observer  # the last reference outside the publisher and the deliveries in flight
            gc.collect()  # frees it now (a subscription's cycles wait for the collector otherwise)
    finally:
        senders.stop.set()
        for t in senders.threads:
            t.join()
    gc.collect()
    return {
        "crashed": senders.crashed,
        "failures": failures,
        "late": late,
        "unreached": unreached,
        "alive": sum(1 for ref in gone if ref() is not None),
        "sent": sum(senders.sent),
        "steady": [s.count for s in steady],
    }


@pytest.mark.thread_unsafe(reason="runs its own notifier threads and collects garbage every round")
def test_unsubscribed_observers_churn_while_threads_notify(impl: Impl) -> None:
    result = churn(impl.Publisher())
    assert result["crashed"] == []
    assert result["failures"] == []
    assert result["late"] == []
    assert result["unreached"] == 0
    assert result["steady"] == [result["sent"]] * 2  # nothing lost, nothing repeated
    assert result["alive"] == 0  # retired observers are freed


def test_unsubscribed_observers_churn_through_a_database_connection(db: Any) -> None:
    result = churn(db, rounds=ROUNDS // 4)
    assert (result["crashed"], result["failures"], result["late"]) == ([], [], [])
    assert (result["unreached"], result["alive"]) == (0, 0)
    assert result["steady"] == [result["sent"]] * 2
