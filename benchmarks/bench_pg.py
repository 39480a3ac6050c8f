"""PostgreSQL storage benchmark: save_many + fan-out into PostgreSQL, against the raw COPY ceiling.

    python benchmarks/bench_pg.py [--alerts N] [--repeats R] [--observers K] [--dsn DSN]

The ceiling is the same rows written straight through psycopg with ``COPY ... FROM STDIN
(FORMAT BINARY)``, 10,000 rows a transaction (notipipe's default batch), measured in the same
run on the same server. notipipe's figure includes the fan-out to K observers, reserving each
batch's ids, the origin columns, the wake-up NOTIFY and the final flush. Then 1, 2 and 4 writer
processes at once, each writing N alerts: their total against as many raw COPY processes.

Without ``--dsn`` a throwaway server is started (fsync on, as in production); with it, the
given database is used and its ``notipipe_messages`` table is emptied before each run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import label, median_seconds
from _pg import as_url, run_together, start_server
from bench_store import Tally, make_messages

from notipipe import DatabaseConnection, EmailMessage, SMSMessage
from notipipe._storage.postgresql.schema import MESSAGES, SCHEMA_SQL

BATCH = 10_000
_RAW_COLUMNS = "kind, created_at, priority, address, subject, body, origin_host, origin_pid"
_RAW_COPY = f"COPY {MESSAGES} ({_RAW_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_RAW_TYPES = ["text", "float8", "int4", "text", "text", "text", "text", "int4"]


def reset(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
        conn.execute(f"TRUNCATE {MESSAGES} RESTART IDENTITY")
        conn.execute("CHECKPOINT")  # each run starts with the same amount of WAL to write


def raw_copy(dsn: str, rows: Sequence[tuple[object, ...]]) -> None:
    """The ceiling: binary COPY of the same rows, BATCH rows a transaction, ids from the table."""
    import psycopg

    host, pid = os.uname().nodename, os.getpid()
    with psycopg.connect(dsn) as conn:
        for i in range(0, len(rows), BATCH):
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {MESSAGES} ({_RAW_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(_RAW_TYPES)
                for row in rows[i : i + BATCH]:
                    copy.write_row((*row, host, pid))
            conn.commit()


def notipipe_end_to_end(
    url: str, messages: Sequence[EmailMessage | SMSMessage], observers: int, chunk: int = 1000
) -> None:
    db = DatabaseConnection(url, batch_size=BATCH)
    for _ in range(observers):
        db.subscribe(Tally())
    for i in range(0, len(messages), chunk):
        db.save_many(messages[i : i + chunk])
    db.close()  # flushes: everything is committed on the server when the clock stops


def worker(mode: str, dsn: str, alerts: int, observers: int) -> None:
    """One writer process: build the alerts, say ready, wait for "go", write, say when."""
    messages = make_messages(alerts)
    rows = [m._row() for m in messages]
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    if mode == "raw":
        raw_copy(dsn, rows)
    else:
        notipipe_end_to_end(as_url(dsn), messages, observers)
    print("done", start, time.monotonic(), flush=True)


def processes(mode: str, dsn: str, n: int, alerts: int, observers: int) -> float:
    """``n`` writer processes at once; total rows per second from the first start to the last end."""
    cmd = [sys.executable, __file__, "--worker", mode, "--dsn", dsn, "--alerts", str(alerts)]
    cmd += ["--observers", str(observers)]
    spans = run_together(cmd, n, timeout=600)
    return n * alerts / (max(e for _, e in spans) - min(s for s, _ in spans))


def run(dsn: str, alerts: int, repeats: int, observers: int) -> dict[str, float]:
    """Each figure the median of ``repeats``; raw and notipipe runs alternate, so that a machine
    busy with something else weighs on both alike."""
    messages = make_messages(alerts)
    rows = [m._row() for m in messages]
    url = as_url(dsn)
    one = {
        "raw binary COPY": lambda: raw_copy(dsn, rows),
        f"notipipe save_many + fan-out to {observers}": lambda: notipipe_end_to_end(url, messages, observers),
    }
    samples: dict[str, list[float]] = {name: [] for name in one}
    for _ in range(repeats):
        for name, fn in one.items():
            samples[name].append(alerts / median_seconds(fn, 1, lambda: reset(dsn)))
    for n in (1, 2, 4):
        for _ in range(repeats):
            for mode, name in (("raw", "raw binary COPY"), ("notipipe", "notipipe")):
                reset(dsn)
                key = f"{n} process{'es' if n > 1 else ''}: {name}"
                samples.setdefault(key, []).append(processes(mode, dsn, n, alerts, observers))
    return {name: statistics.median(figures) for name, figures in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=100_000, help="messages per run (default 100,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure, median kept (default 3)")
    parser.add_argument("--observers", type=int, default=4, help="observers subscribed (default 4)")
    parser.add_argument("--dsn", default=None, help="an existing database (default: a throwaway server)")
    parser.add_argument("--worker", choices=("raw", "notipipe"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.dsn, args.alerts, args.observers)
        return
    cluster: Any = None if args.dsn else start_server()
    try:
        dsn = args.dsn or cluster.dsn
        rates = run(dsn, args.alerts, args.repeats, args.observers)
    finally:
        if cluster is not None:
            cluster.destroy()
    print(f"# PostgreSQL storage, {args.alerts:,} alerts per process, median of {args.repeats}: {label()}")
    print()
    print("| path | alerts/s | vs raw binary COPY, as many processes |")
    print("|---|---:|---:|")
    ceiling = rates["raw binary COPY"]
    for name, rate in rates.items():
        if name.endswith("notipipe"):
            ref = rates[name.replace("notipipe", "raw binary COPY")]
        else:
            ref = ceiling if not name[0].isdigit() else rate
        print(f"| {name} | {rate:,.0f} | {rate / ref:.0%} |")


if __name__ == "__main__":
    main()
