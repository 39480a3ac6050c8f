"""Thread scaling: alerts/s with T threads notifying their own streams through one DatabaseConnection.

    python benchmarks/bench_scaling.py [--quick]

T = 1, 2 and the machine's vCPU count; 4 shared observers doing a little CPU work per message.
Each thread takes ``db.notify_all`` once, before its loop, as a worker would.
Against two references: the same per-message work in T threads sharing nothing (the machine's
own ceiling) and a plain loop over the same kind of shared observers (what sharing an observer
costs without notipipe). Every T is measured as is and with every vCPU kept busy by spinning
processes; see ``measure``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import BODY, PHONE, STAMP, Sizes, family_main, open_db
from report import NOTHING_SHARED, PLAIN_SHARED, scaling_table

from notipipe import _messages_py
from notipipe._twins import Twin


class Worker:
    """A shared observer doing a little CPU work per message, writing no shared state."""

    __slots__ = ()

    def update(self, message: Any) -> None:
        h = 0
        for ch in message.body:
            h = (h * 31 + ord(ch)) & 0xFFFF


def _reference_deliver(message: Any) -> None:
    # The observers' work, four times a message, with nothing shared between threads. A
    # module-level function: on 3.13t it becomes immortal once a thread starts, so calling it
    # writes no reference count (a nested function would be shared, and written, by every thread).
    body = message.body
    for _ in range(4):
        h = 0
        for ch in body:
            h = (h * 31 + ord(ch)) & 0xFFFF


def _plain_loop_over(updates: list[Callable[[Any], None]]) -> Callable[[Any], None]:
    # A nested function, like notipipe's fan-out: shared by the threads, its reference count
    # written by each call from both, as the fan-out's is.
    def deliver(message: Any, updates: list[Callable[[Any], None]] = updates) -> None:
        for update in updates:
            update(message)

    return deliver


#: A case's deliver function as a thread takes it: called once in each thread, before its loop,
#: the way a worker takes ``db.notify_all`` (on a free-threaded build, each thread's own).
type Take = Callable[[], Callable[[Any], object]]


def _drive(
    take: Take, chunks: list[list[Any]], barrier: threading.Barrier, window: float
) -> tuple[int, float]:
    """Deliver messages, a chunk at a time, for ``window`` seconds: (alerts, seconds taken)."""
    deliver = take()
    barrier.wait()
    start = time.perf_counter()
    end = start + window
    done = 0
    while True:
        for chunk in chunks:
            for message in chunk:
                deliver(message)
            done += len(chunk)
            now = time.perf_counter()
            if now >= end:
                return done, now - start


# The stand-in processes of _other_vcpus_busy: spin until the parent is gone (an orphan left by a
# killed suite stops within milliseconds).
_SPINNER = """
import os, sys
parent = int(sys.argv[1])
print("spinning", flush=True)
while os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


@contextlib.contextmanager
def _other_vcpus_busy(count: int) -> Iterator[None]:
    """Keep ``count`` vCPUs busy with processes that spin and share nothing with us."""
    command = [sys.executable, "-c", _SPINNER, str(os.getpid())]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(count)]
    try:
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()  # spinning from here on
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


def rate(t: int, take: Take, streams: list[Any], window: float) -> float:
    """alerts/s of ``t`` threads, each delivering its own stream for ``window`` seconds.

    The sum of each thread's own rate: a thread on a slower vCPU adds less, it does not hold up
    the total the way a fixed amount of work per thread (waiting for the last one) would.
    """
    barrier = threading.Barrier(t)
    out: list[tuple[int, float]] = [(0, 1.0)] * t

    def run(i: int) -> None:
        out[i] = _drive(take, streams[i], barrier, window)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(t)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(done / seconds for done, seconds in out)


def measure(sizes: Sizes, twin_list: list[Twin]) -> dict[str, Any]:
    """alerts/s with T threads notifying their own streams through the one DatabaseConnection.

    The first case is the machine's own ceiling: the same per-message work in T threads that
    share nothing at all; the second, a plain loop over shared observers (see below).

    Two baselines for the speed-up. On a VM a lone thread can run faster while the other vCPUs
    idle than while they are busy (host turbo or a shared core: the 1-thread rate of the
    nothing-shared case jumps from one second to the next; benchmarks/results and the method
    notes hold the figures measured here). So every T is measured twice: as is, and
    with every vCPU busy (T threads plus cpu_count - T processes that spin and share nothing),
    which holds the clock equal across T and leaves the cost of sharing alone in the ratio.
    Rounds are interleaved (every case at every T back to back) and each speed-up is the median
    of each round's own ratio. Returns {"rates": {case: {T: median alerts/s}}, "ratios": {case:
    {T: median speed-up}}, "of_ceiling": {case: {T: median of each round's speed-up over the
    nothing-shared case's}}, and the same three with every vCPU busy, prefixed "busy_"}.
    """
    cpus = os.cpu_count() or 1
    counts = sorted({1, 2, cpus})
    window = sizes.scaling_window
    chunk = 250  # messages between two looks at the clock

    def streams_of(cls: Callable[..., object]) -> list[list[list[object]]]:
        # One stream per thread, made apart: threads share the observers, never the messages.
        return [
            [
                [cls(PHONE, f"{BODY} {i}", created_at=STAMP) for i in range(start, start + chunk)]
                for start in range(0, sizes.scaling_messages, chunk)
            ]
            for _ in range(max(counts))
        ]

    cases: dict[str, tuple[Take, Any]] = {
        NOTHING_SHARED: (lambda: _reference_deliver, streams_of(_messages_py.SMSMessage))
    }
    # The observers are shared between the threads, as a user's dashboards would be; calling a
    # shared object's method writes its reference count from every thread. This case pays that
    # and nothing else: a plain loop over the same kind of shared observers, no notipipe.
    plain = _plain_loop_over([Worker().update for _ in range(4)])
    cases[PLAIN_SHARED] = (lambda: plain, streams_of(_messages_py.SMSMessage))
    for twin in twin_list:
        db = open_db(twin)
        for _ in range(4):
            db.subscribe(Worker())
        # Each thread takes db.notify_all itself, as a worker does.
        cases[twin.label] = (lambda db=db: db.notify_all, streams_of(twin.SMSMessage))
    runs: dict[str, dict[str, dict[str, list[float]]]] = {
        mode: {name: {str(t): [] for t in counts} for name in cases} for mode in ("as_is", "busy")
    }
    for _ in range(sizes.scaling_rounds):
        for name, (take, streams) in cases.items():
            for t in counts:
                gc.collect()
                runs["as_is"][name][str(t)].append(rate(t, take, streams, window))
                if t < cpus:
                    with _other_vcpus_busy(cpus - t):
                        runs["busy"][name][str(t)].append(rate(t, take, streams, window))
                else:  # every vCPU is busy already
                    runs["busy"][name][str(t)].append(runs["as_is"][name][str(t)][-1])

    def speedups(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, list[float]]]:
        # Each round's own T-thread / 1-thread ratio.
        return {
            n: {t: [x / one for x, one in zip(v, by_t["1"], strict=True)] for t, v in by_t.items()}
            for n, by_t in samples.items()
        }

    def medians(samples: dict[str, dict[str, list[float]]]) -> Any:
        return {n: {t: statistics.median(v) for t, v in by_t.items()} for n, by_t in samples.items()}

    out: dict[str, Any] = {}
    for mode, prefix in (("as_is", ""), ("busy", "busy_")):
        ratios = speedups(runs[mode])
        ceiling = ratios[NOTHING_SHARED]
        out[f"{prefix}rates"] = medians(runs[mode])
        out[f"{prefix}ratios"] = medians(ratios)
        # Each round's speed-up over the nothing-shared one of the same round: what sharing
        # costs, with the machine's state of that moment divided out.
        out[f"{prefix}of_ceiling"] = medians(
            {
                n: {t: [x / c for x, c in zip(v, ceiling[t], strict=True)] for t, v in by_t.items()}
                for n, by_t in ratios.items()
            }
        )
    return out


if __name__ == "__main__":
    sys.exit(family_main(__doc__, measure, lambda result, sizes: scaling_table(result, sizes.__dict__)))
