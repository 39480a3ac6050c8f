"""A registered kind against the built-in kind of the same field count, in the same run.

    python benchmarks/bench_kinds.py [--alerts N] [--repeats R] [--quick]

``PushMessage(phone, body, priority=4)`` (a registered kind: 2 own fields, 5 in all) against
``SMSMessage(phone, body, priority=4)`` (built in: the same fields), each twin: creation alone,
and create + ``save_many`` + fan-out to 4 no-op observers + flush into a fresh SQLite file (as
bench_store.py). The cases alternate (round-robin repeats) and every figure is a median; the
ratio is registered over built-in, of the same twin in the same run. The load average is printed
with the table: a busy machine stretches every case, the ratios less.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import BODY, PHONE, Observer, close_db, label, race, twins

from notipipe import BaseMessage
from notipipe._twins import Twin

CHUNK = 1000
OBSERVERS = 4


def push_class(twin: Twin) -> type[Any]:
    """A registered kind with the SMS's fields, registered with the twin's own factory."""

    @dataclass(frozen=True, slots=True)
    class PushMessage(BaseMessage):
        phone: str = ""
        body: str = ""

    twin.MessageFactory.register(f"bench_push_{twin.name}")(PushMessage)
    return PushMessage


def create(cls: Callable[..., object], n: int) -> list[object]:
    return [cls(PHONE, BODY, priority=4) for _ in range(n)]


def end_to_end(twin: Twin, cls: Callable[..., object], n: int, path: Path) -> None:
    messages = create(cls, n)
    db = twin.DatabaseConnection(path, batch_size=10_000)
    for _ in range(OBSERVERS):
        db.subscribe(Observer())
    for i in range(0, n, CHUNK):
        db.save_many(messages[i : i + CHUNK])
    db.close()  # flushes: everything is on disk when the clock stops


def measure(alerts: int, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per alert of each case: (creation alone, create + save_many + fan-out + flush)."""
    found = twins()
    kinds = {twin.label: (twin, push_class(twin)) for twin in found}
    creating: dict[str, Callable[[], object]] = {}
    for name, (twin, push) in kinds.items():
        creating[f"{name} SMSMessage"] = lambda sms=twin.SMSMessage: create(sms, alerts)
        creating[f"{name} PushMessage"] = lambda push=push: create(push, alerts)
    created = race(creating, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"

        def fresh() -> None:
            for twin in found:
                close_db(twin)
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)

        storing: dict[str, Callable[[], object]] = {}
        for name, (twin, push) in kinds.items():
            storing[f"{name} SMSMessage"] = lambda t=twin: end_to_end(t, t.SMSMessage, alerts, path)
            storing[f"{name} PushMessage"] = lambda t=twin, p=push: end_to_end(t, p, alerts, path)
        stored = race(storing, repeats, setup=fresh)
        fresh()
    return (
        {k: s / alerts for k, s in created.items()},
        {k: s / alerts for k, s in stored.items()},
    )


def table(title: str, seconds: dict[str, float]) -> list[str]:
    lines = [f"## {title}", "", "| twin | SMSMessage ns | PushMessage ns | ratio |", "|---|---:|---:|---:|"]
    for name in dict.fromkeys(key.split()[0] for key in seconds):
        sms, push = seconds[f"{name} SMSMessage"], seconds[f"{name} PushMessage"]
        lines.append(f"| {name} | {sms * 1e9:,.0f} | {push * 1e9:,.0f} | {push / sms:.2f}x |")
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=100_000, help="alerts per run (default 100,000)")
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure, median kept (default 7)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    args = parser.parse_args()
    alerts, repeats = (2_000, 2) if args.quick else (args.alerts, args.repeats)
    created, stored = measure(alerts, repeats)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# registered kind vs built-in: {label()}")
    print()
    print(f"{alerts:,} alerts a run, median of {repeats}, cases alternated; load average {load}")
    print()
    print("\n".join(table("Creation alone: ns per alert", created)))
    print("\n".join(table(f"Create + save_many + fan-out to {OBSERVERS} + flush: ns per alert", stored)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
