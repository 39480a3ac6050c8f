"""Thread-to-loop hand-off: a producer thread publishing to a no-op async observer.

    python benchmarks/bench_async.py [--messages N] [--repeats R] [--seconds S] [--rate HZ]

Throughput: one producer thread publishes N messages flat out; the clock stops when the
observer, on an asyncio loop in another thread, has awaited the last one. notipipe's async
subscription (both twins, default queue and overflow) is raced against the naive bridge a
dashboard writes by hand, ``loop.call_soon_threadsafe`` per message scheduling the coroutine as
a task, measured in the same run (repeats round-robin, medians). Latency: the producer publishes
``perf_counter()`` stamps paced at HZ messages/s for S seconds; the observer records how long
each took to reach it (p50, p99, max).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import label, publishers

from notipipe import _publisher_py


class Counter:
    """A no-op async observer that sets ``done`` at the ``target``-th message."""

    def __init__(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done = threading.Event()

    async def update(self, message: object, /) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()


class NaiveBridge:
    """The hand-written bridge: one ``call_soon_threadsafe`` and one task per message."""

    def __init__(self, observer: Counter, loop: asyncio.AbstractEventLoop) -> None:
        self.observer = observer
        self.loop = loop

    def update(self, message: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.create_task, self.observer.update(message))


class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        ready = threading.Event()
        self.loop.call_soon_threadsafe(ready.set)
        ready.wait()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def flat_out(make: Callable[[Counter, asyncio.AbstractEventLoop], Any], n: int) -> float:
    """Seconds for n messages from a producer thread to be awaited by the observer."""
    loop = Loop()
    observer = Counter(n)
    pub = make(observer, loop.loop)
    messages = range(n)
    gc.collect()
    start = time.perf_counter()

    def produce() -> None:
        notify = pub.notify_all
        for m in messages:
            notify(m)

    producer = threading.Thread(target=produce)
    producer.start()
    observer.done.wait()
    elapsed = time.perf_counter() - start
    producer.join()
    loop.close()
    return elapsed


def via_notipipe(cls: Any) -> Callable[[Counter, asyncio.AbstractEventLoop], Any]:
    def make(observer: Counter, loop: asyncio.AbstractEventLoop) -> Any:
        pub = cls()
        pub.subscribe(observer, loop=loop)
        return pub

    return make


def via_naive(observer: Counter, loop: asyncio.AbstractEventLoop) -> Any:
    pub = _publisher_py.Publisher[int]()
    pub.subscribe(NaiveBridge(observer, loop))
    return pub


class Stamps:
    """An async observer recording each message's age (it is a ``perf_counter`` stamp)."""

    def __init__(self) -> None:
        self.ages: list[float] = []

    async def update(self, stamp: float, /) -> None:
        self.ages.append(time.perf_counter() - stamp)


def paced_latency(cls: Any, rate: float, seconds: float) -> list[float]:
    loop = Loop()
    observer = Stamps()
    pub = cls()
    pub.subscribe(observer, loop=loop.loop)
    interval = 1.0 / rate
    total = int(rate * seconds)
    notify = pub.notify_all
    start = time.perf_counter()
    for i in range(total):
        # Sleeping (not spinning) until each message is due, as a real producer waits for its
        # input: a spinning producer would hold the GIL from the loop for a switch interval.
        wait = start + i * interval - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        notify(time.perf_counter())
    deadline = time.perf_counter() + 10
    while len(observer.ages) < total and time.perf_counter() < deadline:
        time.sleep(0.01)
    loop.close()
    return observer.ages


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=10_000)
    args = parser.parse_args()

    cases: dict[str, Callable[[Counter, asyncio.AbstractEventLoop], Any]] = {
        "naive call_soon_threadsafe per message (baseline)": via_naive
    }
    for name, cls in publishers().items():
        cases[f"notipipe {name} async subscription"] = via_notipipe(cls)
    times: dict[str, list[float]] = {name: [] for name in cases}
    load_before = os.getloadavg()
    for _ in range(args.repeats):
        for name, make in cases.items():
            times[name].append(flat_out(make, args.messages))
    medians = {name: statistics.median(t) for name, t in times.items()}
    baseline = args.messages / medians["naive call_soon_threadsafe per message (baseline)"]

    load_after = os.getloadavg()
    print(f"# thread-to-loop hand-off, {args.messages:,} messages, median of {args.repeats}: {label()}")
    print()
    # The machine may be shared: its load says how far the figures can be trusted.
    print(f"load average (1, 5, 15 min): before {_load(load_before)}, after {_load(load_after)}")
    print()
    print("| path | messages/s | vs naive bridge |")
    print("|---|---:|---:|")
    for name, seconds in medians.items():
        rate = args.messages / seconds
        print(f"| {name} | {rate:,.0f} | {rate / baseline:.1f}x |")
    print()
    print(f"# latency at {args.rate:,.0f} messages/s for {args.seconds:g} s (one producer thread)")
    print()
    print(f"load average (1, 5, 15 min): {_load(os.getloadavg())}")
    print()
    print("| path | delivered | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for name, cls in publishers().items():
        ages = sorted(paced_latency(cls, args.rate, args.seconds))
        p50 = ages[len(ages) // 2] * 1e3
        p99 = ages[min(len(ages) - 1, int(len(ages) * 0.99))] * 1e3
        print(f"| notipipe {name} | {len(ages):,} | {p50:.3f} | {p99:.3f} | {ages[-1] * 1e3:.3f} |")


if __name__ == "__main__":
    main()
