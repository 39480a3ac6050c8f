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
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests._pg_server, tests._pg_util

from _common import label, median_seconds
from bench_store import Tally, make_messages

from notipipe import DatabaseConnection
from notipipe._storage.postgresql.schema import MESSAGES, SCHEMA_SQL

BATCH = 10_000
_RAW_COLUMNS = "kind, created_at, priority, address, subject, body, origin_host, origin_pid"
_RAW_COPY = f"COPY {MESSAGES} ({_RAW_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_RAW_TYPES = ["text", "float8", "int4", "text", "text", "text", "text", "int4"]


def _url(dsn: str) -> str:
    from tests._pg_util import as_url

    return as_url(dsn)


def reset(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
        conn.execute(f"TRUNCATE {MESSAGES} RESTART IDENTITY")
        conn.execute("CHECKPOINT")  # each run starts with the same amount of WAL to write


def raw_copy(dsn: str, rows: list[tuple[object, ...]]) -> None:
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


def notipipe_end_to_end(url: str, messages: list[object], observers: int, chunk: int = 1000) -> None:
    db = DatabaseConnection(url, batch_size=BATCH)
    for _ in range(observers):
        db.subscribe(Tally())
    for i in range(0, len(messages), chunk):
        db.save_many(messages[i : i + chunk])  # type: ignore[arg-type]
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
        notipipe_end_to_end(_url(dsn), messages, observers)  # type: ignore[arg-type]
    print("done", start, time.monotonic(), flush=True)


def processes(mode: str, dsn: str, n: int, alerts: int, observers: int) -> float:
    """``n`` writer processes at once; total rows per second from the first start to the last end."""
    cmd = [sys.executable, __file__, "--worker", mode, "--dsn", dsn, "--alerts", str(alerts)]
    cmd += ["--observers", str(observers)]
    children = [
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(n)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    spans = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        assert child.returncode == 0, out
        _, start, end = out.split()
        spans.append((float(start), float(end)))
    return n * alerts / (max(e for _, e in spans) - min(s for s, _ in spans))


def run(dsn: str, alerts: int, repeats: int, observers: int) -> dict[str, float]:
    """Each figure the median of ``repeats``; raw and notipipe runs alternate, so that a machine
    busy with something else weighs on both alike."""
    messages = make_messages(alerts)
    rows = [m._row() for m in messages]
    url = _url(dsn)
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


def _start_server() -> object:
    from tests._pg_server import PgCluster

    class DurableCluster(PgCluster):
        def start(self) -> None:  # as the tests' cluster, but with fsync on
            options = (
                f"-c listen_addresses='' -c unix_socket_directories='{self.root}' -c port=5432 "
                "-c fsync=on -c max_connections=50 -c shared_buffers=128MB -c max_wal_size=4GB"
            )
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    cluster = DurableCluster()
    cluster.start()
    return cluster


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
    cluster = None if args.dsn else _start_server()
    try:
        dsn = args.dsn or cluster.dsn  # type: ignore[attr-defined]
        rates = run(dsn, args.alerts, args.repeats, args.observers)
    finally:
        if cluster is not None:
            cluster.destroy()  # type: ignore[attr-defined]
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
