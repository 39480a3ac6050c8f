"""Batch delivery: notify_many to observers with update_many, against per-message delivery.

    python benchmarks/bench_batch.py [--batch B] [--batches N] [--observers K] [--repeats R]

Per-message cost, in the same run, of delivering N batches of B messages to K no-op observers:
with ``update_many`` (one call per batch per observer), against the same messages delivered one
call per message per observer, by ``notify_many`` and by ``notify_all`` in a loop. Both twins;
repeats round-robin, medians.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import label

from notipipe import _publisher_py


def publishers() -> dict[str, Any]:
    found: dict[str, Any] = {}
    try:
        from notipipe import _publisher_c  # type: ignore[attr-defined]

        found["compiled"] = _publisher_c.Publisher
    except ImportError:
        pass
    found["pure"] = _publisher_py.Publisher
    return found


class PerMessage:
    __slots__ = ()

    def update(self, message: object) -> None:
        pass


class Batched(PerMessage):
    __slots__ = ()

    def update_many(self, messages: object) -> None:
        pass


def cases(batch: int, batches: int, k: int) -> dict[str, Callable[[], object]]:
    stream = [list(range(i * batch, (i + 1) * batch)) for i in range(batches)]
    out: dict[str, Callable[[], object]] = {}
    for name, cls in publishers().items():
        per, many = cls(), cls()
        for _ in range(k):
            per.subscribe(PerMessage())
            many.subscribe(Batched())

        def loop_notify_all(notify: Callable[[object], None] = per.notify_all) -> None:
            for b in stream:
                for m in b:
                    notify(m)

        def per_message_notify_many(notify: Callable[[Any], int] = per.notify_many) -> None:
            for b in stream:
                notify(b)

        def batched_notify_many(notify: Callable[[Any], int] = many.notify_many) -> None:
            for b in stream:
                notify(b)

        out[f"{name}: notify_all per message, {k} update observers (baseline)"] = loop_notify_all
        out[f"{name}: notify_many, {k} update observers"] = per_message_notify_many
        out[f"{name}: notify_many, {k} update_many observers"] = batched_notify_many
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--observers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    todo = cases(args.batch, args.batches, args.observers)
    times: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(args.repeats):
        for name, fn in todo.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    n = args.batch * args.batches
    per_message = {name: statistics.median(t) / n * 1e9 for name, t in times.items()}

    print(f"# batch delivery, batches of {args.batch:,}, {n:,} messages, median of {args.repeats}: {label()}")
    print()
    print("| path | ns per message | vs notify_all per message |")
    print("|---|---:|---:|")
    for name, ns in per_message.items():
        twin = name.split(":")[0]
        base = per_message[f"{twin}: notify_all per message, {args.observers} update observers (baseline)"]
        print(f"| {name} | {ns:.1f} | {ns / base:.3f} |")


if __name__ == "__main__":
    main()
