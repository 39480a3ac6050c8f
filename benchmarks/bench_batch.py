"""Batch delivery: notify_many to observers with update_many, against per-message delivery.

    python benchmarks/bench_batch.py [--batch B] [--batches N] [--observers K] [--repeats R]
    python benchmarks/bench_batch.py --family [--quick]

Per-message cost, in the same run, of delivering N batches of B messages to K no-op observers:
with ``update_many`` (one call per batch per observer), against the same messages delivered one
call per message per observer, by ``notify_many`` and by ``notify_all`` in a loop. Both twins;
repeats round-robin, medians.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import BODY, PHONE, STAMP, Observer, Sizes, family_flag, label, open_db, publishers, race
from report import batches_table

from notipipe._twins import Twin


class Batched(Observer):
    __slots__ = ()

    def update_many(self, messages: object) -> None:
        pass


def cases(batch: int, batches: int, k: int) -> dict[str, Callable[[], object]]:
    stream = [list(range(i * batch, (i + 1) * batch)) for i in range(batches)]
    out: dict[str, Callable[[], object]] = {}
    for name, cls in publishers().items():
        per, many = cls(), cls()
        for _ in range(k):
            per.subscribe(Observer())
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


def measure(sizes: Sizes, twin_list: list[Twin]) -> dict[str, float]:
    """run.py's "batches": ns per message, notify_many of one batch against notify_all once per
    message, K = 4, through each twin's DatabaseConnection."""
    n = sizes.batch
    cases: dict[str, Callable[[], object]] = {}
    for twin in twin_list:
        db = open_db(twin)
        for _ in range(4):
            db.subscribe(Observer())
        batch = [twin.SMSMessage(PHONE, BODY, created_at=STAMP) for _ in range(n)]

        def one_by_one(notify: Callable[[object], None] = db.notify_all, batch: list[Any] = batch) -> None:
            for m in batch:
                notify(m)

        def all_at_once(db: Any = db, batch: list[Any] = batch) -> object:
            return db.notify_many(batch)

        cases[f"{twin.label}: notify_all x {n:,}"] = one_by_one
        cases[f"{twin.label}: notify_many({n:,})"] = all_at_once
    return {name: s / n * 1e9 for name, s in race(cases, sizes.repeats).items()}


def main() -> int:
    family = family_flag(__doc__, measure, lambda result, sizes: batches_table(result, sizes.__dict__))
    if family is not None:
        return family
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--observers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--family", action="store_true", help="run.py's batches family instead (with --quick: tiny sizes)"
    )
    args = parser.parse_args()
    n = args.batch * args.batches
    seconds = race(cases(args.batch, args.batches, args.observers), args.repeats)
    per_message = {name: t / n * 1e9 for name, t in seconds.items()}

    print(f"# batch delivery, batches of {args.batch:,}, {n:,} messages, median of {args.repeats}: {label()}")
    print()
    print("| path | ns per message | vs notify_all per message |")
    print("|---|---:|---:|")
    for name, ns in per_message.items():
        twin = name.split(":")[0]
        base = per_message[f"{twin}: notify_all per message, {args.observers} update observers (baseline)"]
        print(f"| {name} | {ns:.1f} | {ns / base:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
