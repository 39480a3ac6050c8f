"""The ``notipipe`` command: run the simulated dashboard backend, inspect a database.

    notipipe run   [--alerts N] [--threads T] [--db PATH] [--mix email=0.7,sms=0.3] ...
    notipipe stats [--db PATH]
    notipipe tail  [--db PATH] [-n K]
    notipipe info

Bad input prints one line to stderr and exits with status 2; a database that cannot be used
exits with status 1. Neither prints a traceback.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from typing import NoReturn

import notipipe
from notipipe._dashboards import KindCounter, RateMeter, RunPlan, produce_alerts
from notipipe._database import DatabaseConnection
from notipipe._errors import NotipipeError

DEFAULT_DB = "notipipe.db"


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line: "notipipe run: error: ... (see --help)"."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _mix(text: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in text.split(","):
        kind, sep, weight = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in ("email", "sms"):
            raise argparse.ArgumentTypeError(f"{part!r}: expected email=W or sms=W")
        try:
            w = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: {weight!r} is not a number") from None
        if not 0 <= w < float("inf"):
            raise argparse.ArgumentTypeError(f"{part!r}: weights must be finite and >= 0")
        weights[kind] = w
    if sum(weights.values()) <= 0:
        raise argparse.ArgumentTypeError("the weights add up to 0")
    return weights


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="notipipe",
        description="A thread-safe notification pipeline: run the simulated dashboard backend "
        "or inspect an alert database.",
    )
    parser.add_argument("--version", action="version", version=f"notipipe {notipipe.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="simulate the backend: produce, store and broadcast alerts",
        description="T producer threads create N synthetic alerts through MessageFactory and save "
        "them through DatabaseConnection into a SQLite file; a per-kind counter and a rate "
        "dashboard observe them. Shows progress (with how many alerts are durable so far) and "
        "a summary.",
    )
    run.add_argument(
        "--alerts",
        "-n",
        type=_count,
        default=1_000_000,
        metavar="N",
        help="alerts to produce (default 1,000,000)",
    )
    run.add_argument(
        "--threads", "-t", type=_positive, default=2, metavar="T", help="producer threads (default 2)"
    )
    run.add_argument(
        "--db", default=None, metavar="PATH", help=f"database file (default $NOTIPIPE_DB or {DEFAULT_DB})"
    )
    run.add_argument(
        "--mix",
        type=_mix,
        default={"email": 0.7, "sms": 0.3},
        metavar="KIND=W,...",
        help="share of each kind (default email=0.7,sms=0.3)",
    )
    run.add_argument(
        "--chunk", type=_positive, default=1000, metavar="K", help="alerts per save_many call (default 1000)"
    )
    run.add_argument(
        "--batch-size", type=_positive, default=10_000, metavar="B", help="rows per commit (default 10,000)"
    )
    run.add_argument(
        "--max-delay",
        type=float,
        default=0.05,
        metavar="S",
        help="longest wait before a commit, seconds (default 0.05)",
    )
    run.add_argument(
        "--synchronous",
        choices=("NORMAL", "FULL"),
        default="NORMAL",
        help="FULL also survives power loss (default NORMAL)",
    )
    run.add_argument(
        "--deliver",
        choices=("immediate", "after_commit"),
        default="immediate",
        help="observers see alerts at once, or once durable (default immediate)",
    )
    run.add_argument(
        "--seed", type=_count, default=1, help="random seed for the synthetic alerts (default 1)"
    )
    run.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress display: a live bar (terminal), plain lines, or none (default auto)",
    )

    stats = sub.add_parser(
        "stats",
        help="counts per kind, first and last alert, size",
        description="Summarise an alert database.",
    )
    stats.add_argument(
        "--db", default=None, metavar="PATH", help=f"database file (default $NOTIPIPE_DB or {DEFAULT_DB})"
    )

    tail = sub.add_parser(
        "tail", help="the last K alerts", description="Print the most recent alerts, oldest first."
    )
    tail.add_argument(
        "--db", default=None, metavar="PATH", help=f"database file (default $NOTIPIPE_DB or {DEFAULT_DB})"
    )
    tail.add_argument("-n", type=_count, default=10, metavar="K", help="how many (default 10)")

    sub.add_parser(
        "info",
        help="version, compiled or pure, interpreter, GIL, SQLite",
        description="Describe this installation.",
    )
    return parser


def _db_path(arg: str | None) -> str:
    return arg or os.environ.get("NOTIPIPE_DB") or DEFAULT_DB


def _gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def cmd_info(_: argparse.Namespace) -> int:
    print(f"notipipe {notipipe.__version__}")
    print(f"implementation: {'compiled (Cython)' if notipipe.COMPILED else 'pure Python'}")
    print(f"python: {sys.implementation.name} {sys.version.split()[0]} ({sys.executable})")
    print(f"free-threaded build: {'yes' if _ft_build() else 'no'}")
    print(f"GIL enabled: {'yes' if _gil_enabled() else 'no'}")
    print(f"sqlite: {sqlite3.sqlite_version}")
    return 0


def _ft_build() -> bool:
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _open_existing(path: str) -> DatabaseConnection:
    if not os.path.exists(path):
        raise NotipipeError(f"{path}: no such database (run `notipipe run --db {path}` first)")
    return DatabaseConnection(path)


def cmd_stats(args: argparse.Namespace) -> int:
    with _open_existing(_db_path(args.db)) as db:
        st = db.stats()
    print(f"database: {st.path} ({_human_bytes(st.size_bytes)})")
    print(f"alerts: {st.total:,}")
    for kind, n in st.by_kind.items():
        print(f"  {kind}: {n:,}")
    if st.first_at is not None and st.last_at is not None:
        print(f"first: {_stamp(st.first_at)}")
        print(f"last:  {_stamp(st.last_at)}")
    return 0


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def cmd_tail(args: argparse.Namespace) -> int:
    with _open_existing(_db_path(args.db)) as db:
        messages = db.last(args.n)
    for m in messages:
        if isinstance(m, notipipe.EmailMessage):
            print(
                f"#{m.id} {_stamp(m.created_at)} email p{m.priority} to={m.recipient} subject={m.subject!r}"
            )
        else:
            print(f"#{m.id} {_stamp(m.created_at)} sms   p{m.priority} to={m.phone_number} body={m.body!r}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from notipipe._run_display import Display

    path = _db_path(args.db)
    counter, meter = KindCounter(), RateMeter()
    with DatabaseConnection(
        path,
        synchronous=args.synchronous,
        batch_size=args.batch_size,
        max_delay=args.max_delay,
        deliver=args.deliver,
    ) as db:
        before = db.stats().total
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
        stats = db.stats()
        failures = db.failures
    display.summary(
        {
            "alerts produced": f"{sum(produced):,}",
            "alerts stored (this run)": f"{stats.total - before:,}",
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
            "database": f"{stats.path} ({_human_bytes(stats.size_bytes)}, synchronous={args.synchronous})",
            "threads": str(args.threads),
            "implementation": "compiled (Cython)" if notipipe.COMPILED else "pure Python",
            "GIL": "enabled" if _gil_enabled() else "disabled",
            "python": f"{sys.version.split()[0]}{' free-threaded' if _ft_build() else ''}",
        }
    )
    return 0


COMMANDS = {"run": cmd_run, "stats": cmd_stats, "tail": cmd_tail, "info": cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except NotipipeError as error:
        print(f"notipipe {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"notipipe {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
