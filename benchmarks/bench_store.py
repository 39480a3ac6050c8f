"""End-to-end storage benchmark: save_many + fan-out into a file database, against the raw ceiling.

    python benchmarks/bench_store.py [--alerts N] [--repeats R] [--observers K] [--mixed]
    python benchmarks/bench_store.py --family [--quick]

The ceilings are the same rows written straight through a Python SQLite binding into a fresh
file, batched (10,000 rows a transaction, notipipe's default batch), WAL, synchronous=NORMAL,
measured in the same run, repeats round-robin: the stdlib's ``executemany``, the stdlib's
multi-row INSERT statements of 500 rows, the same through apsw (the fastest binding on PyPI;
left out, and said so, where it is not installed), and the stdlib's multi-row INSERTs with the
rows built from the messages inside the clock (as a program holding messages, not rows, would).
The rows of the others are built beforehand, outside the clock: the fastest raw path a user
could write. notipipe's figure includes building the rows, the fan-out to K no-op observers and
the flush to disk (``save_many`` of 1,000 alerts at a time, default options); the messages are
created beforehand for every path. Alerts are SMS (``--mixed``: 7 e-mails in 10). The ratio
column is notipipe against each path; the load average is printed before and after.
``--family``: run.py's end-to-end family instead (both twins side by side, 4 observers).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import Sizes, close_db, family_flag, label, peer, race
from report import end_to_end_table

import notipipe
from notipipe import DatabaseConnection, MessageFactory
from notipipe._storage.sqlite.file import SCHEMA
from notipipe._twins import Twin

BATCH = 10_000
#: Rows per multi-row INSERT of the raw paths (the fastest size measured for them).
PER_STATEMENT = 500
_SQL = "INSERT INTO messages (kind, created_at, priority, address, subject, body) VALUES "


@functools.cache
def _insert_sql(rows: int) -> str:
    return _SQL + ",".join(["(?,?,?,?,?,?)"] * rows)


def make_messages(n: int, mixed: bool = True) -> list[notipipe.EmailMessage | notipipe.SMSMessage]:
    out: list[notipipe.EmailMessage | notipipe.SMSMessage] = []
    for i in range(n):
        if mixed and i % 10 < 7:
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


def raw_multirow(path: Path, rows: Sequence[tuple[object, ...]], per_statement: int = PER_STATEMENT) -> None:
    conn = _raw_connection(path)
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        batch = rows[i : i + BATCH]
        for j in range(0, len(batch), per_statement):
            part = batch[j : j + per_statement]
            conn.execute(_insert_sql(len(part)), list(itertools.chain.from_iterable(part)))
        conn.execute("COMMIT")
    conn.close()


def raw_multirow_from_messages(
    path: Path, messages: Sequence[Any], per_statement: int = PER_STATEMENT
) -> None:
    """The stdlib's multi-row INSERTs, each statement's flat parameters built from the messages
    (their fields read, as their ``_row()`` gives them) inside the clock."""
    conn = _raw_connection(path)
    for i in range(0, len(messages), BATCH):
        conn.execute("BEGIN")
        batch = messages[i : i + BATCH]
        for j in range(0, len(batch), per_statement):
            part = batch[j : j + per_statement]
            params: list[object] = []
            for m in part:
                params += m._row()
            conn.execute(_insert_sql(len(part)), params)
        conn.execute("COMMIT")
    conn.close()


def raw_apsw_multirow(
    path: Path, rows: Sequence[tuple[object, ...]], per_statement: int = PER_STATEMENT
) -> None:
    """Multi-row INSERTs through apsw (its statement cache keeps each text prepared)."""
    apsw = peer("apsw")
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(SCHEMA)
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        batch = rows[i : i + BATCH]
        for j in range(0, len(batch), per_statement):
            part = batch[j : j + per_statement]
            conn.execute(_insert_sql(len(part)), list(itertools.chain.from_iterable(part)))
        conn.execute("COMMIT")
    conn.close()


def has_apsw() -> bool:
    try:
        peer("apsw")
    except ImportError:
        return False
    return True


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


def run(alerts: int, repeats: int, observers: int, mixed: bool) -> dict[str, float]:
    """alerts/s of each path, repeats round-robin, each from an empty file."""
    messages = make_messages(alerts, mixed)
    rows = [m._row() for m in messages]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        cases: dict[str, Callable[[], object]] = {
            "raw stdlib executemany": lambda: raw_executemany(path, rows),
            f"raw stdlib multi-row {PER_STATEMENT}": lambda: raw_multirow(path, rows),
        }
        if has_apsw():
            cases[f"raw apsw multi-row {PER_STATEMENT}"] = lambda: raw_apsw_multirow(path, rows)
        cases[f"raw stdlib multi-row {PER_STATEMENT}, rows built in the clock"] = lambda: (
            raw_multirow_from_messages(path, messages)
        )
        cases[f"notipipe save_many + fan-out to {observers}"] = lambda: notipipe_end_to_end(
            path, messages, observers
        )
        seconds = race(cases, repeats, setup=lambda: _fresh(path))
        _fresh(path)
    return {name: alerts / s for name, s in seconds.items()}


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


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
    parser.add_argument("--mixed", action="store_true", help="7 e-mails in 10 alerts (default: SMS only)")
    args = parser.parse_args()
    before = _load()
    rates = run(args.alerts, args.repeats, args.observers, args.mixed)
    after = _load()
    ours = rates[f"notipipe save_many + fan-out to {args.observers}"]
    kinds = "alerts, 7 e-mails in 10" if args.mixed else "SMS alerts"
    print(f"# end-to-end storage, {args.alerts:,} {kinds}, median of {args.repeats}: {label()}")
    print()
    print(f"load average (1, 5, 15 min): {before} before, {after} after")
    if not has_apsw():
        print("apsw is not installed: its path is left out (pip install apsw)")
    print()
    print("| path | alerts/s | notipipe vs this path |")
    print("|---|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {ours / rate:.2f}x |")
    best = max((name for name in rates if name.startswith("raw")), key=rates.__getitem__)
    print()
    print(f"notipipe against the fastest raw path ({best}): {ours / rates[best]:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
