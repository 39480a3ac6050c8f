"""Metrics: what counting costs ``notify_all`` and ``save_many``, and what scraping costs them.

    python benchmarks/bench_metrics.py [--quick] [--baseline DIR]

In this process: ``notify_all`` to 4 no-op observers and ``save_many`` of 1,000 ``SMSMessage``
(built in the loop, committed by ``flush``), each with and without a thread calling
``db.metrics()`` every 10 ms (a scraper far busier than any), round-robin; the ratio is
"with" over "without".

With ``--baseline DIR`` (a directory holding another build's ``notipipe`` package, e.g. main's
installed package copied aside), the same two cases also run in child processes, one of this
checkout's installed build and one of DIR's, taking turns (so that drift hits both alike); the
ratio is this build's median over the baseline's.

Instruction counts (deterministic where timings on a busy machine are not): ``--callgrind CASE
N`` runs only N calls of ``notify`` (4 no-op observers) or ``save`` (1,000 ``SMSMessage`` built
and saved, then one flush); run it under callgrind for N and N+K calls, on this build and with
``PYTHONPATH`` naming the baseline, and divide the difference by K::

    PYTHONHASHSEED=0 valgrind --tool=callgrind python benchmarks/bench_metrics.py --callgrind notify 20000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).parent))

from _common import BODY, PHONE, STAMP, Observer, label, race

import notipipe
from notipipe import DatabaseConnection, SMSMessage

#: Messages per notify_all case; alerts per save_many call, and calls per case.
NOTIFY, BATCH, CALLS = 1_000_000, 1_000, 100
QUICK_NOTIFY, QUICK_CALLS = 2_000, 2


def notify_case(db: Any, n: int) -> Callable[[], None]:
    message = SMSMessage(PHONE, BODY, created_at=STAMP)

    def run(send: Callable[[object], None] = db.notify_all) -> None:
        for _ in range(n):
            send(message)

    return run


def save_case(db: Any, calls: int) -> Callable[[], None]:
    def run(save_many: Callable[[list[SMSMessage]], int] = db.save_many) -> None:
        for _ in range(calls):
            save_many([SMSMessage(PHONE, BODY, created_at=STAMP) for _ in range(BATCH)])
        db.flush()

    return run


def open_db() -> Any:
    close_db_all()
    db = DatabaseConnection(":memory:")
    for _ in range(4):
        db.subscribe(Observer())
    return db


def close_db_all() -> None:
    old: Any = DatabaseConnection.reset_instance()
    if old is not None:
        old.close()


class Scraper:
    """A thread taking ``db.metrics()`` every 10 ms while it runs."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self._stop = threading.Event()
        self.scrapes = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self._db.metrics()
            self.scrapes += 1

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def scraped(case: Callable[[], None], db: Any) -> Callable[[], None]:
    def run() -> None:
        with Scraper(db):
            case()

    return run


def in_process(notify_n: int, calls: int, repeats: int) -> list[str]:
    db = open_db()
    try:
        notify, save = notify_case(db, notify_n), save_case(db, calls)
        times = race(
            {
                "notify_all": notify,
                "notify_all, scraped": scraped(notify, db),
                "save_many": save,
                "save_many, scraped": scraped(save, db),
            },
            repeats,
        )
    finally:
        close_db_all()
    return [
        "| case | ns per call | scraped / not |",
        "|---|---:|---:|",
        f"| notify_all, 4 no-op observers | {1e9 * times['notify_all'] / notify_n:.0f} |"
        f" {times['notify_all, scraped'] / times['notify_all']:.3f} |",
        f"| save_many of {BATCH:,} SMSMessage + flush | {1e9 * times['save_many'] / calls:,.0f} |"
        f" {times['save_many, scraped'] / times['save_many']:.3f} |",
    ]


# -- against another build, in child processes ------------------------------------------------


def child(case: str, n: int, repeats: int) -> None:
    """Print the median seconds per call of ``case`` (run by ``--child``)."""
    db = open_db()
    run = notify_case(db, n) if case == "notify" else save_case(db, n)
    times = []
    for _ in range(repeats):
        start = _now()
        run()
        times.append((_now() - start) / n)
    close_db_all()
    print(statistics.median(times), notipipe.__file__)


def _now() -> float:
    return time.perf_counter()


def _child_seconds(case: str, n: int, repeats: int, pythonpath: str | None) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [sys.executable, __file__, "--child", case, str(n), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, where = done.stdout.split()
    return float(seconds), where


def against(baseline: Path, notify_n: int, calls: int, turns: int) -> list[str]:
    lines = ["| case | this build ns | baseline ns | this / baseline |", "|---|---:|---:|---:|"]
    for case, n, shown in (
        ("notify", notify_n, "notify_all, 4 no-op observers"),
        ("save", calls, f"save_many of {BATCH:,} SMSMessage + flush"),
    ):
        mine, theirs = [], []
        for _ in range(turns):  # taking turns: drift hits both alike
            seconds, where = _child_seconds(case, n, 3, None)
            mine.append(seconds)
            seconds, theirs_where = _child_seconds(case, n, 3, str(baseline))
            theirs.append(seconds)
            assert where != theirs_where, "the baseline child imported this build"
        a, b = statistics.median(mine), statistics.median(theirs)
        lines.append(f"| {shown} | {1e9 * a:,.0f} | {1e9 * b:,.0f} | {a / b:.3f} |")
    return lines


def callgrind_case(case: str, n: int) -> None:
    """``n`` calls of ``case`` and nothing else to time (run by ``--callgrind``)."""
    db = DatabaseConnection(":memory:", max_delay=0.001)
    if case == "notify":
        for _ in range(4):
            db.subscribe(Observer())
        notify_case(db, n)()
    else:
        save_case(db, n)()
    db.close()


def main() -> int:
    if sys.argv[1:2] == ["--callgrind"]:
        callgrind_case(sys.argv[2], int(sys.argv[3]))
        return 0
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--baseline", type=Path, help="a directory holding another build's notipipe package")
    args = parser.parse_args()
    notify_n, calls = (QUICK_NOTIFY, QUICK_CALLS) if args.quick else (NOTIFY, CALLS)
    repeats = 2 if args.quick else 9
    print(f"# {label()}{' (--quick)' if args.quick else ''}")
    print("\n".join(in_process(notify_n, calls, repeats)))
    if args.baseline is not None:
        print(f"\n# against {args.baseline}")
        print("\n".join(against(args.baseline, notify_n, calls, 2 if args.quick else 7)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
