"""PostgreSQL storage benchmark: save_many + fan-out into PostgreSQL, against the raw COPY ceiling.

    python benchmarks/bench_pg.py [--alerts N] [--repeats R] [--observers K] [--dsn DSN]

The ceiling is the same rows written straight through psycopg with ``COPY ... FROM STDIN
(FORMAT BINARY)``, 10,000 rows a transaction (notipipe's default batch), measured in the same
run on the same server, two ways a careful user could write it: psycopg's ``write_row`` per row,
and the rows packed into the binary format with ``struct``, 1,000 rows a ``copy.write``. Each
ratio is against the faster of the two, with as many processes. notipipe's figure includes the
fan-out to K observers, the origin columns, the wake-up NOTIFY and the final flush; the raw
paths' rows are built before the clock starts, notipipe builds its rows from the alerts. Then
1, 2 and 4 writer processes at once, each writing N alerts: their total against as many raw
processes.

Without ``--dsn`` a throwaway server is started (fsync on, as in production); with it, the
given database is used and its ``notipipe_messages`` table is emptied before each run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
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
from notipipe._storage.postgresql.schema import MESSAGES, ensure_schema

BATCH = 10_000
#: Rows packed per write by the raw packer (as notipipe's pure-Python path does).
PIECE = 1000
#: The raw paths by worker mode.
RAWS = {"raw": "raw binary COPY, write_row", "packed": "raw binary COPY, packed rows"}
_RAW_COLUMNS = "kind, created_at, priority, address, subject, body, origin_host, origin_pid"
_RAW_COPY = f"COPY {MESSAGES} ({_RAW_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_RAW_TYPES = ["text", "float8", "int4", "text", "text", "text", "text", "int4"]


#: The raw packer's pieces: field count 8, then kind's length (its bytes follow); created_at and
#: priority with their lengths, then the address's length; the origin's pid with its length.
_PACK_HEAD = struct.Struct(">hi")
_PACK_MIDDLE = struct.Struct(">idiii")
_PACK_LENGTH = struct.Struct(">i")
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


def reset(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        # Every table notipipe keeps, as in a database it has written to before: a writer that
        # had to create one in its clock would be timed making a table, not writing alerts.
        ensure_schema(conn)
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


def pack(rows: Sequence[tuple[Any, ...]], host: str, pid: int) -> bytes:
    """The binary COPY data of rows of (kind, created_at, priority, address, subject, body) with
    their origin, without the header and trailer: what a user writing the format by hand sends."""
    host_bytes = host.encode()
    tail = _PACK_LENGTH.pack(len(host_bytes)) + host_bytes + struct.pack(">ii", 4, pid)
    head, middle, length = _PACK_HEAD.pack, _PACK_MIDDLE.pack, _PACK_LENGTH.pack
    parts: list[bytes] = []
    append = parts.append
    for kind, created_at, priority, address, subject, body in rows:
        k, a, s, b = kind.encode(), address.encode(), subject.encode(), body.encode()
        append(head(8, len(k)))
        append(k)
        append(middle(8, created_at, 4, priority, len(a)))
        append(a)
        append(length(len(s)))
        append(s)
        append(length(len(b)))
        append(b)
        append(tail)
    return b"".join(parts)


def raw_copy_packed(dsn: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """The same COPY with its rows packed by hand (``pack``, in the clock), PIECE rows a write:
    the server takes in one piece while the next is packed."""
    import psycopg

    host, pid = os.uname().nodename, os.getpid()
    with psycopg.connect(dsn) as conn:
        for i in range(0, len(rows), BATCH):
            with conn.cursor() as cur, cur.copy(_RAW_COPY) as copy:
                copy.write(_COPY_HEADER)
                for j in range(i, min(i + BATCH, len(rows)), PIECE):
                    copy.write(pack(rows[j : min(j + PIECE, i + BATCH)], host, pid))
                copy.write(_COPY_TRAILER)
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
    url = as_url(dsn)  # as the raw paths have their DSN: before the clock
    # Imported before the clock, as a running application has it (notipipe imports it when its
    # store opens, inside the clock): the import alone takes a good part of a 50,000-row run,
    # and it weighed on every path alike.
    import psycopg  # noqa: F401

    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    if mode == "raw":
        raw_copy(dsn, rows)
    elif mode == "packed":
        raw_copy_packed(dsn, rows)
    else:
        notipipe_end_to_end(url, messages, observers)
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
        RAWS["raw"]: lambda: raw_copy(dsn, rows),
        RAWS["packed"]: lambda: raw_copy_packed(dsn, rows),
        f"notipipe save_many + fan-out to {observers}": lambda: notipipe_end_to_end(url, messages, observers),
    }
    samples: dict[str, list[float]] = {name: [] for name in one}
    for _ in range(repeats):
        for name, fn in one.items():
            samples[name].append(alerts / median_seconds(fn, 1, lambda: reset(dsn)))
    for n in (1, 2, 4):
        for _ in range(repeats):
            for mode, name in (*RAWS.items(), ("notipipe", "notipipe")):
                reset(dsn)
                key = f"{n} process{'es' if n > 1 else ''}: {name}"
                samples.setdefault(key, []).append(processes(mode, dsn, n, alerts, observers))
    return {name: statistics.median(figures) for name, figures in samples.items()}


def _load(averages: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in averages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=100_000, help="messages per run (default 100,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure, median kept (default 3)")
    parser.add_argument("--observers", type=int, default=4, help="observers subscribed (default 4)")
    parser.add_argument("--dsn", default=None, help="an existing database (default: a throwaway server)")
    parser.add_argument("--worker", choices=(*RAWS, "notipipe"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.dsn, args.alerts, args.observers)
        return
    cluster: Any = None if args.dsn else start_server()
    before = os.getloadavg()
    try:
        dsn = args.dsn or cluster.dsn
        rates = run(dsn, args.alerts, args.repeats, args.observers)
    finally:
        if cluster is not None:
            cluster.destroy()
    after = os.getloadavg()
    print(f"# PostgreSQL storage, {args.alerts:,} alerts per process, median of {args.repeats}: {label()}")
    print()
    print(f"load average {_load(before)} before, {_load(after)} after")
    print()
    print("| path | alerts/s | vs best raw COPY, as many processes |")
    print("|---|---:|---:|")
    for name, rate in rates.items():
        prefix = name.split(": ")[0] + ": " if name[0].isdigit() else ""
        best = max(rates[prefix + raw] for raw in RAWS.values())
        print(f"| {name} | {rate:,.0f} | {rate / best:.0%} |")


if __name__ == "__main__":
    main()
