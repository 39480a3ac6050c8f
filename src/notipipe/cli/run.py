"""``notipipe run``: the simulated backend, producer threads saving alerts that observers watch."""

from __future__ import annotations

import argparse
import sys
import threading
import time

import notipipe
from notipipe import ConfigurationError, DatabaseConnection, StoreOptions, describe_target
from notipipe.cli._common import EXIT_OK, db_path, ft_build, gil_enabled, human_bytes
from notipipe.cli.load import RunPlan, produce_alerts
from notipipe.cli.observers import KindCounter, RateMeter


def cmd_run(args: argparse.Namespace) -> int:
    """``notipipe run``: produce, store and observe the alerts; print progress and a summary."""
    from notipipe.cli.progress import Display

    path = db_path(args.db)
    counter, meter = KindCounter(), RateMeter()
    target = describe_target(path)
    synchronous = {"synchronous": args.synchronous}
    if "synchronous" not in target.options:
        if args.synchronous != StoreOptions().synchronous:
            raise ConfigurationError(
                f"--synchronous is a SQLite setting; the {target.backend} backend does not read it"
                f" ({target.shown}: the server decides durability)"
            )
        synchronous = {}
    with DatabaseConnection(
        path,
        **synchronous,
        batch_size=args.batch_size,
        max_delay=args.max_delay,
        deliver=args.deliver,
    ) as db:
        db.subscribe(counter)
        db.subscribe(meter)
        produced = [0] * args.threads
        errors: list[BaseException] = []
        display = Display(args.progress, args.alerts, db, produced)
        plan = RunPlan(args.alerts, args.threads, args.mix, args.chunk, args.seed)
        start = time.perf_counter()
        threads = [
            threading.Thread(
                target=produce_alerts,
                args=(db, i, plan, produced, errors),
                name=f"producer-{i}",
            )
            for i in range(args.threads)
        ]
        with display:
            for t in threads:
                t.start()
            ticks = 0
            while any(t.is_alive() for t in threads):
                display.refresh()
                time.sleep(0.1)
                ticks += 1
                if ticks % 5 == 0:  # the rate dashboard's window: half a second
                    meter.sample()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            db.flush()
            elapsed = time.perf_counter() - start
            display.refresh()
        # What this connection committed: other processes may be writing to the same file, so
        # the database total before and after would count their alerts too.
        stored = db.durable_count
        stats = db.stats()
        failures = db.failures
    display.summary(
        {
            "alerts produced": f"{sum(produced):,}",
            "alerts stored (this run)": f"{stored:,}",
            "alerts stored (database total)": f"{stats.total:,}",
            "elapsed": f"{elapsed:.2f} s",
            "throughput": f"{sum(produced) / elapsed:,.0f} alerts/s" if elapsed > 0 else "n/a",
            "per kind (counter dashboard)": ", ".join(
                f"{k}={v:,}" for k, v in sorted(counter.counts().items())
            )
            or "-",
            "per kind (database total)": ", ".join(f"{k}={v:,}" for k, v in stats.by_kind.items()) or "-",
            "peak rate (rate dashboard)": f"{meter.peak_rate():,.0f} alerts/s",
            "observer failures": f"{failures:,}",
            "database": f"{stats.path} ({human_bytes(stats.size_bytes)}"
            + (f", synchronous={args.synchronous}" if synchronous else "")
            + ")",
            "threads": str(args.threads),
            "implementation": "compiled (Cython)" if notipipe.COMPILED else "pure Python",
            "GIL": "enabled" if gil_enabled() else "disabled",
            "python": f"{sys.version.split()[0]}{' free-threaded' if ft_build() else ''}",
        }
    )
    return EXIT_OK
