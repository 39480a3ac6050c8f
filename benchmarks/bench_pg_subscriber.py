"""Durable subscriber benchmark: a backlog drained against raw paged reads, then rows/s and lag
while 4 writer processes save into PostgreSQL.

    python benchmarks/bench_pg_subscriber.py [--alerts N] [--writers W] [--page P] [--rate R] [--dsn DSN]
        [--backlog B] [--repeats R]

First (``--backlog``, default 100,000; 0 skips it) a backlog of B committed alerts is drained,
each path in turn, median of ``--repeats``, the clock from the first alert in hand to the last:

* raw: psycopg reading the table in pages of P by id (``WHERE id > %s ORDER BY id LIMIT P``,
  binary results), the fastest paged read a user could write (ids do not follow commits across
  writers, so it can skip rows a durable cursor may not; it is a ceiling, not an alternative);
* the same, committing a cursor (an ``UPDATE`` of a row of its own table, autocommit, so waiting
  for the server's fsync) after each page, as a durable subscriber must;
* that, each row also built into its ``EmailMessage``/``SMSMessage`` and given to ``update``;
* notipipe's durable subscriber (``subscribe(observer, durable_name=...)``, the name created
  before the backlog was written, so that all of it is due), its time to the first alert apart.

W writer processes (``DatabaseConnection(url).save_many``, 1,000 alerts a call, each alert
created just before its call; unpaced, or R alerts/s each) and one durable subscriber in this process
(``subscribe(observer, durable_name=...)``, subscribed before the writers start). Reported:

* the writers' total rate, from the first start to the last flush;
* the subscriber's rate over the same rows, from the first delivery to the last;
* the lag of each delivery: from the alert's creation (``created_at``, just before its
  ``save_many``) to its ``update`` call; so it includes the writer's group commit
  (``max_delay``), the commit, the wake-up, the page read and the cursor commits before it.
  p50 and p99 over every alert, and the time from the writers' last flush to the last delivery.

Without ``--dsn`` a throwaway server is started (fsync on, as in ``bench_pg``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import label
from _pg import as_url, run_together, start_server

import notipipe._database
from notipipe import DatabaseConnection, EmailMessage, SMSMessage
from notipipe._storage.postgresql.follow import connect, ensure_schema
from notipipe._storage.postgresql.schema import MESSAGES, SUBSCRIPTIONS

CHUNK = 1000
_COLUMNS = "id, kind, created_at, priority, address, subject, body"
_RAW_PAGE = f"SELECT {_COLUMNS} FROM {MESSAGES} WHERE id > %s ORDER BY id LIMIT %s"
_RAW_CURSORS = "bench_raw_cursors"


def writer(url: str, alerts: int, rate: float) -> None:
    """One writer process: say ready, wait for "go", save ``alerts`` alerts (at most ``rate``
    a second, if given), flush, say when."""
    db = DatabaseConnection(url)
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    for base in range(0, alerts, CHUNK):
        batch: list[EmailMessage | SMSMessage] = [
            EmailMessage("ops@eu.example.com", f"cpu at {i % 50}%", f"alert {i}")
            if i % 10 < 7
            else SMSMessage("+15550001000", f"cpu {i % 50}% host-{i % 97}")
            for i in range(base, min(base + CHUNK, alerts))
        ]
        db.save_many(batch)
        if rate:
            ahead = start + (base + CHUNK) / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)  # pacing the load, not synchronisation
    db.flush()
    print("done", start, time.time(), flush=True)
    db.close()


class Lag:
    """The observer: when each alert arrived, and how long after its creation."""

    def __init__(self, expected: int) -> None:
        self.lags: list[float] = []
        self.first = self.last = 0.0
        self._expected = expected
        self.all_in = threading.Event()

    def update(self, message: EmailMessage | SMSMessage) -> None:
        now = time.time()
        if not self.lags:
            self.first = now
        self.lags.append(now - message.created_at)
        self.last = now
        if len(self.lags) >= self._expected:
            self.all_in.set()


class Count:
    """The backlog's observer: when the first and the last alert arrived."""

    def __init__(self, expected: int) -> None:
        self.n = 0
        self.first = self.last = 0.0
        self._expected = expected
        self.all_in = threading.Event()

    def update(self, message: object) -> None:
        self.n += 1
        if self.n == 1:
            self.first = time.perf_counter()
        if self.n >= self._expected:
            self.last = time.perf_counter()
            self.all_in.set()


def fill(url: str, alerts: int) -> None:
    """``alerts`` alerts committed by notipipe's writer (the rows a durable subscriber reads)."""
    db = DatabaseConnection(url)
    for base in range(0, alerts, CHUNK):
        db.save_many(
            [
                EmailMessage("ops@eu.example.com", f"cpu at {i % 50}%", f"alert {i}")
                if i % 10 < 7
                else SMSMessage("+15550001000", f"cpu {i % 50}% host-{i % 97}")
                for i in range(base, min(base + CHUNK, alerts))
            ]
        )
    db.close()


def raw_drain(url: str, alerts: int, page: int, *, commit: bool, build: bool) -> float:
    """Read the backlog in pages by id (committing a cursor after each page, building and
    delivering each alert, if asked); alerts/s from the first page in hand to the last."""
    import psycopg

    observer = Count(alerts)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_RAW_CURSORS} (name text PRIMARY KEY, last_id bigint)")
        conn.execute(
            f"INSERT INTO {_RAW_CURSORS} VALUES ('bench', 0) ON CONFLICT (name) DO UPDATE SET last_id = 0"
        )
        last, got, first = 0, 0, 0.0
        update = observer.update
        while True:
            rows = conn.execute(_RAW_PAGE, (last, page), binary=True).fetchall()
            if not rows:
                break
            if not first:
                first = time.perf_counter()
            if build:
                for id_, kind, created_at, priority, address, subject, body in rows:
                    if kind == "email":
                        update(
                            EmailMessage(
                                address, subject, body, priority=priority, created_at=created_at, id=id_
                            )
                        )
                    else:
                        update(SMSMessage(address, body, priority=priority, created_at=created_at, id=id_))
            last = rows[-1][0]
            got += len(rows)
            if commit:
                conn.execute(f"UPDATE {_RAW_CURSORS} SET last_id = %s WHERE name = 'bench'", (last,))
        end = time.perf_counter()
    assert got == alerts, (got, alerts)
    return alerts / (end - first)


def durable_drain(url: str, alerts: int) -> tuple[float, float]:
    """notipipe's durable subscriber on a backlog of ``alerts`` (its name made before them):
    alerts/s from the first delivery to the last, and seconds from subscribe to the first."""
    observer = Count(alerts)
    db = DatabaseConnection(url)
    start = time.perf_counter()
    db.subscribe(observer, durable_name="backlog")
    if not observer.all_in.wait(600):
        raise SystemExit(f"the durable subscriber got {observer.n:,} of {alerts:,} alerts")
    db.unsubscribe(observer)
    db.close()
    return alerts / (observer.last - observer.first), observer.first - start


def backlog(url: str, alerts: int, page: int, repeats: int) -> dict[str, list[float]]:
    """Each path on the same backlog, round-robin, ``repeats`` times."""
    reset(url)
    notipipe._database.DURABLE_PAGE = page
    made = DatabaseConnection(url)
    made.subscribe(Count(0), durable_name="backlog")  # the name starts now: the backlog is due
    made.close()
    fill(url, alerts)
    with connect(url, "bench") as conn:
        conn.execute(f"VACUUM ANALYZE {MESSAGES}")
        start = conn.execute(f"SELECT delivered, window_end, window_pos FROM {SUBSCRIPTIONS}").fetchone()
    paths = {
        "raw paged binary SELECT": lambda: raw_drain(url, alerts, page, commit=False, build=False),
        "raw paged SELECT + cursor commit per page": lambda: raw_drain(
            url, alerts, page, commit=True, build=False
        ),
        "raw paged SELECT + cursor commit + build each alert, update": lambda: raw_drain(
            url, alerts, page, commit=True, build=True
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in [*paths, "notipipe durable subscriber", "first"]}
    for _ in range(repeats):
        for name, fn in paths.items():
            samples[name].append(fn())
        with connect(url, "bench") as conn:  # the name back where the backlog starts
            conn.execute(
                f"UPDATE {SUBSCRIPTIONS} SET delivered = %s, window_end = %s, window_pos = %s", start
            )
        rate, first = durable_drain(url, alerts)
        samples["notipipe durable subscriber"].append(rate)
        samples["first"].append(first)
    return samples


def reset(url: str) -> None:
    with connect(url, "bench") as conn:
        ensure_schema(conn)
        conn.execute(f"TRUNCATE {MESSAGES} RESTART IDENTITY")
        conn.execute(f"DELETE FROM {SUBSCRIPTIONS}")


def run(url: str, alerts: int, writers: int, page: int, rate: float) -> dict[str, str]:
    reset(url)
    notipipe._database.DURABLE_PAGE = page
    total = alerts * writers
    lag = Lag(total)
    db = DatabaseConnection(url)
    db.subscribe(lag, durable_name="bench")
    cmd = [sys.executable, __file__, "--writer", "--dsn", url, "--alerts", str(alerts), "--rate", str(rate)]
    spans = run_together(cmd, writers, timeout=900)
    if not lag.all_in.wait(600):
        raise SystemExit(f"the subscriber got {len(lag.lags):,} of {total:,} alerts")
    db.unsubscribe(lag)
    db.close()
    first_start, last_end = min(s for s, _ in spans), max(e for _, e in spans)
    q = statistics.quantiles(lag.lags, n=100)
    return {
        "alerts (writers x each)": f"{total:,} ({writers} x {alerts:,}"
        + (f", each paced at {rate:,.0f}/s)" if rate else ", unpaced)"),
        "writers, total": f"{total / (last_end - first_start):,.0f} alerts/s",
        f"durable subscriber (pages of {page:,})": f"{total / (lag.last - lag.first):,.0f} alerts/s",
        "lag p50": f"{q[49] * 1000:,.1f} ms",
        "lag p99": f"{q[98] * 1000:,.1f} ms",
        "last delivery after the writers' last flush": f"{max(0.0, lag.last - last_end) * 1000:,.0f} ms",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=100_000, help="alerts per writer (default 100,000)")
    parser.add_argument("--writers", type=int, default=4, help="writer processes (default 4)")
    parser.add_argument("--page", type=int, default=1000, help="subscriber page size (default 1,000)")
    parser.add_argument("--rate", type=float, default=0.0, help="alerts/s per writer (default: unpaced)")
    parser.add_argument("--dsn", default=None, help="an existing database (default: a throwaway server)")
    parser.add_argument(
        "--backlog", type=int, default=100_000, help="backlog drained (default 100,000; 0: none)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="backlog runs per path, median kept (default 3)"
    )
    parser.add_argument(
        "--writers-too",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="then the writers-and-subscriber run (default: yes)",
    )
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer(args.dsn, args.alerts, args.rate)
        return
    cluster: Any = None if args.dsn else start_server()
    before = os.getloadavg()
    drained: dict[str, list[float]] = {}
    figures: dict[str, str] = {}
    try:
        url = as_url(args.dsn or cluster.dsn)
        if args.backlog:
            drained = backlog(url, args.backlog, args.page, args.repeats)
        if args.writers_too:
            figures = run(url, args.alerts, args.writers, args.page, args.rate)
    finally:
        if cluster is not None:
            cluster.destroy()
    after = os.getloadavg()
    print(f"# Durable subscriber on PostgreSQL: {label()}")
    print()
    print(f"load average {_load(before)} before, {_load(after)} after")
    if drained:
        print()
        rates = {name: statistics.median(v) for name, v in drained.items() if name != "first"}
        refs = list(rates)[:3]
        heads = ["raw SELECT", "raw + cursor commit", "raw + commit + build, update"]
        print(
            f"| a backlog of {args.backlog:,} drained (pages of {args.page:,}), median of {args.repeats}"
            f" | alerts/s | {' | '.join('vs ' + h for h in heads)} |"
        )
        print("|---|---:|" + "---:|" * len(refs))
        for name, rate in rates.items():
            print(f"| {name} | {rate:,.0f} | {' | '.join(f'{rate / rates[r]:.0%}' for r in refs)} |")
        first = statistics.median(drained["first"])
        print()
        print(f"notipipe: subscribe() to the first alert {first * 1000:,.0f} ms (median)")
    if figures:
        print()
        print(f"## While {args.writers} writer processes save")
        print()
        print("| measure | value |")
        print("|---|---:|")
        for name, value in figures.items():
            print(f"| {name} | {value} |")


def _load(averages: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in averages)


if __name__ == "__main__":
    main()
