"""End-to-end storage benchmark: save_many + fan-out into a file database, against the raw ceiling.

    python benchmarks/bench_store.py [--alerts N] [--repeats R] [--observers K]
    python benchmarks/bench_store.py --family [--quick]

The ceiling is the same rows written straight through sqlite3, batched (10,000 rows a
transaction), WAL, synchronous=NORMAL, measured in the same run: with ``executemany`` (as the
issue defines it) and with multi-row INSERT statements (the writer's own method, the stricter
bar). notipipe's figure includes the message fan-out to K observers and the flush to disk; the
messages are created beforehand, outside the timing, for both. ``--family``: run.py's
end-to-end family instead (both twins side by side, 4 observers, repeats round-robin).
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import Sizes, close_db, family_flag, label, median_seconds, race
from report import end_to_end_table

import notipipe
from notipipe import DatabaseConnection, MessageFactory
from notipipe._storage.sqlite.file import SCHEMA
from notipipe._storage.sqlite.store import _insert_sql
from notipipe._twins import Twin

BATCH = 10_000


def make_messages(n: int) -> list[notipipe.EmailMessage | notipipe.SMSMessage]:
    out: list[notipipe.EmailMessage | notipipe.SMSMessage] = []
    for i in range(n):
        if i % 10 < 7:
            out.append(
                MessageFactory.create_message(
                    "email", recipient="ops@eu.example.com", subject=f"cpu at {i % 50}%", body=f"alert {i}"
                )
            )
        else:
            out.append(
                MessageFactory.create_message(
                    "sms", phone_number="+15550001000", body=f"cpu {i % 50}% host-{i % 97}"
                )
            )
    return out


def _fresh(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _raw_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def raw_executemany(path: Path, rows: Sequence[tuple[object, ...]]) -> None:
    conn = _raw_connection(path)
    sql = (
        "INSERT INTO messages (kind, created_at, priority, address, subject, body) VALUES (?, ?, ?, ?, ?, ?)"
    )
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        conn.executemany(sql, rows[i : i + BATCH])
        conn.execute("COMMIT")
    conn.close()


def raw_multirow(path: Path, rows: Sequence[tuple[object, ...]], per_statement: int = 2000) -> None:
    conn = _raw_connection(path)
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        batch = rows[i : i + BATCH]
        for j in range(0, len(batch), per_statement):
            part = batch[j : j + per_statement]
            conn.execute(_insert_sql(len(part)), list(itertools.chain.from_iterable(part)))
        conn.execute("COMMIT")
    conn.close()


class Tally:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def update(self, message: object) -> None:
        self.n += 1


def notipipe_end_to_end(
    path: Path,
    messages: Sequence[notipipe.EmailMessage | notipipe.SMSMessage],
    observers: int,
    chunk: int = 1000,
    database: Callable[[Path], Any] = lambda p: DatabaseConnection(p, batch_size=BATCH),
) -> None:
    db = database(path)
    for _ in range(observers):
        db.subscribe(Tally())
    for i in range(0, len(messages), chunk):
        db.save_many(messages[i : i + chunk])
    db.close()  # flushes: everything is on disk when the clock stops


def run(alerts: int, repeats: int, observers: int) -> dict[str, float]:
    messages = make_messages(alerts)
    rows = [m._row() for m in messages]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        results = {
            "raw executemany": median_seconds(
                lambda: raw_executemany(path, rows), repeats, lambda: _fresh(path)
            ),
            "raw multi-row INSERT": median_seconds(
                lambda: raw_multirow(path, rows), repeats, lambda: _fresh(path)
            ),
            f"notipipe save_many + fan-out to {observers}": median_seconds(
                lambda: notipipe_end_to_end(path, messages, observers), repeats, lambda: _fresh(path)
            ),
        }
    return {name: alerts / seconds for name, seconds in results.items()}


def measure(sizes: Sizes, twin_list: list[Twin]) -> dict[str, float]:
    """run.py's "end_to_end": alerts/s, save_many + fan-out to 4 observers into a file, each
    twin, against the raw ceilings; repeats round-robin, each from an empty file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"

        def fresh() -> None:
            for twin in twin_list:
                close_db(twin)
            _fresh(path)

        messages = make_messages(sizes.alerts)
        rows = [m._row() for m in messages]
        cases: dict[str, Callable[[], object]] = {
            "raw executemany (ceiling)": lambda: raw_executemany(path, rows),
            "raw multi-row INSERT": lambda: raw_multirow(path, rows),
        }
        for twin in twin_list:

            def end_to_end(database: Callable[..., Any] = twin.DatabaseConnection) -> None:
                notipipe_end_to_end(path, messages, 4, database=lambda p: database(p, batch_size=BATCH))

            cases[f"notipipe {twin.label} save_many + fan-out to 4"] = end_to_end
        seconds = race(cases, sizes.repeats, setup=fresh)
        fresh()
    return {name: sizes.alerts / s for name, s in seconds.items()}


def main() -> int:
    family = family_flag(__doc__, measure, lambda result, sizes: end_to_end_table(result, sizes.__dict__))
    if family is not None:
        return family
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=200_000, help="messages per run (default 200,000)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs per figure; the median is kept (default 5)"
    )
    parser.add_argument("--observers", type=int, default=4, help="observers subscribed (default 4)")
    parser.add_argument(
        "--family", action="store_true", help="run.py's end-to-end family instead (with --quick: tiny sizes)"
    )
    args = parser.parse_args()
    rates = run(args.alerts, args.repeats, args.observers)
    ceiling = rates["raw executemany"]
    strict = rates["raw multi-row INSERT"]
    print(f"# end-to-end storage, {args.alerts:,} alerts, median of {args.repeats}: {label()}")
    print()
    print("| path | alerts/s | vs executemany ceiling | vs multi-row ceiling |")
    print("|---|---:|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / ceiling:.0%} | {rate / strict:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
