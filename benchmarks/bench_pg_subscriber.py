"""Durable subscriber benchmark: its rows/s and lag while 4 writer processes save into PostgreSQL.

    python benchmarks/bench_pg_subscriber.py [--alerts N] [--writers W] [--page P] [--rate R] [--dsn DSN]

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
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer(args.dsn, args.alerts, args.rate)
        return
    cluster: Any = None if args.dsn else start_server()
    try:
        figures = run(as_url(args.dsn or cluster.dsn), args.alerts, args.writers, args.page, args.rate)
    finally:
        if cluster is not None:
            cluster.destroy()
    print(f"# Durable subscriber while {args.writers} writer processes save: {label()}")
    print()
    print("| measure | value |")
    print("|---|---:|")
    for name, value in figures.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
