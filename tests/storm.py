"""Concurrency harnesses shared by the tests, written so that they can fail.

Each harness is run twice in the suite: against the real code (must pass) and against a
deliberately broken variant (must be caught).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from notipipe._failures import Failures


@contextmanager
def fast_switching() -> Iterator[None]:
    """On GIL builds, switch threads every microsecond so races get a chance to interleave."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def singleton_storm(
    make: Callable[[], object], reset: Callable[[], object], *, threads: int = 64, rounds: int = 300
) -> tuple[int, int]:
    """Release ``threads`` threads at once on ``make()``, ``rounds`` times, resetting in between.

    Returns (rounds in which more than one distinct instance was seen, rounds completed).
    Workers are kept alive across rounds; two barriers per round line them up.
    """
    start = threading.Barrier(threads + 1)
    done = threading.Barrier(threads + 1)
    results: list[object | None] = [None] * threads
    errors: list[BaseException] = []
    stop = False

    def worker(slot: int) -> None:
        while True:
            start.wait()
            if stop:
                return
            try:
                results[slot] = make()
            except BaseException as error:  # noqa: BLE001 - reported to the main thread
                errors.append(error)
            done.wait()

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    bad = 0
    completed = 0
    try:
        with fast_switching():
            for _ in range(rounds):
                reset()
                start.wait()
                done.wait()
                completed += 1
                if len({id(r) for r in results}) != 1:
                    bad += 1
                results[:] = [None] * threads
    finally:
        stop = True
        start.wait()
        for t in pool:
            t.join()
    if errors:
        raise errors[0]
    return bad, completed


class Tally:
    """A stable observer that records every delivery (list.append is atomic on every build)."""

    def __init__(self) -> None:
        self.got: list[object] = []

    def update(self, message: object) -> None:
        self.got.append(message)


class Transient:
    def update(self, message: object) -> None:
        pass


def churn_storm(
    publisher: object, *, notifiers: int = 4, churners: int = 3, messages: int = 3000, stable: int = 4
) -> list[int]:
    """Notify from several threads while others subscribe and unsubscribe transient observers.

    ``stable`` observers stay subscribed throughout; returns, for each, how many deliveries it
    missed (negative: got extra). All zeros means no lost and no duplicated delivery.
    """
    pub: Any = publisher
    tallies = [Tally() for _ in range(stable)]
    for tally in tallies:
        pub.subscribe(tally)
    go = threading.Barrier(notifiers + churners)
    done = threading.Event()
    errors: list[BaseException] = []

    def notifier(n: int) -> None:
        go.wait()
        try:
            for i in range(messages):
                pub.notify_all((n, i))
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    def churner() -> None:
        go.wait()
        try:
            while not done.is_set():
                extra = [Transient() for _ in range(3)]
                for e in extra:
                    pub.subscribe(e)
                for e in extra:
                    pub.unsubscribe(e)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    with fast_switching():
        workers = [threading.Thread(target=notifier, args=(n,)) for n in range(notifiers)]
        churn = [threading.Thread(target=churner) for _ in range(churners)]
        for t in workers + churn:
            t.start()
        for t in workers:
            t.join()
        done.set()
        for t in churn:
            t.join()
    if errors:
        raise errors[0]
    return [notifiers * messages - len(tally.got) for tally in tallies]


class InPlacePublisher:
    """The deliberately broken variant: notify iterates the live list that subscribe mutates."""

    def __init__(self) -> None:
        self._updates: list[Callable[[object], object]] = []

    def subscribe(self, observer: Any) -> None:
        self._updates.insert(0, observer.update)

    def unsubscribe(self, observer: Any) -> None:
        self._updates.remove(observer.update)

    def notify_all(self, message: object) -> None:
        for update in self._updates:
            update(message)


class WriterGate:
    """Pauses a subscriber change inside its locked region, once armed (see notify_bypasses_writers)."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self) -> None:
        if self.armed:
            self.entered.set()
            self.release.wait(30)


def notify_bypasses_writers(publisher: object, gate: WriterGate, *, timeout: float) -> bool:
    """Whether notify_all and notify_many deliver while a subscribe is paused holding its lock.

    ``publisher`` must call ``gate.hold()`` inside the locked region of ``subscribe``. Delivery
    must not wait for writers (the hot path takes no lock), and it goes to the snapshot that was
    live before the paused change.
    """
    pub: Any = publisher
    tally = Tally()
    pub.subscribe(tally)
    gate.armed = True
    writer = threading.Thread(target=pub.subscribe, args=(Transient(),))
    writer.start()
    try:
        if not gate.entered.wait(30):
            raise AssertionError("the writer never reached its locked region")
        sent = threading.Event()

        def send() -> None:
            pub.notify_all(1)
            pub.notify_many([2, 3])
            sent.set()

        notifier = threading.Thread(target=send, daemon=True)
        notifier.start()
        delivered = sent.wait(timeout)
    finally:
        gate.release.set()
        writer.join()
    notifier.join()
    return delivered and tally.got == [1, 2, 3]


class LockingPublisher:
    """The deliberately broken variant: notify takes the writers' lock."""

    def __init__(self, gate: WriterGate) -> None:
        self._lock = threading.Lock()
        self._gate = gate
        self._updates: tuple[Callable[[object], object], ...] = ()

    def subscribe(self, observer: Any) -> None:
        with self._lock:
            self._gate.hold()
            self._updates = (*self._updates, observer.update)

    def notify_all(self, message: object) -> None:
        with self._lock:
            updates = self._updates
        for update in updates:
            update(message)

    def notify_many(self, messages: list[object]) -> int:
        for message in messages:
            self.notify_all(message)
        return len(messages)


def failure_storm(fail: Callable[[int], object], *, threads: int, per_thread: int) -> None:
    """Call ``fail(i)`` for i in range(per_thread) from ``threads`` threads released together.

    Used with a publisher whose only observer raises, or with one ``ObserverFailures.failed``:
    afterwards the failure count must be exactly ``threads * per_thread``.
    """
    go = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker() -> None:
        go.wait()
        try:
            for i in range(per_thread):
                fail(i)
        except BaseException as error:  # noqa: BLE001 - reported to the main thread
            errors.append(error)

    with fast_switching():
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    if errors:
        raise errors[0]


class UnlockedFailures(Failures):
    """The deliberately broken variant: failures counted without the lock."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = nullcontext()
