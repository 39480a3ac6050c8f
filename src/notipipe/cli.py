"""The ``notipipe`` command: run the simulated dashboard backend, inspect a database.

    notipipe run   [--alerts N] [--threads T] [--db PATH] [--mix email=0.7,sms=0.3] ...
    notipipe stats [--db PATH]
    notipipe tail  [--db PATH] [-n K] [--follow]
    notipipe subscriptions --db postgresql://...
    notipipe serve [--db PATH] [--host HOST] [--port PORT]
    notipipe info

Exit statuses: 0 done; 1 the database cannot be used (or, for serve, the address cannot be
listened on); 2 bad arguments, or serve without the dashboard extra (both with one line on
stderr, never a traceback); 130 interrupted by Ctrl-C (``tail --follow`` ends this way, quietly);
141 the output was closed (``notipipe tail | head -1``): the command stops quietly, as Unix tools
do, with the status a shell reports for a process ended by SIGPIPE.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import signal
import sqlite3
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self

import notipipe
from notipipe._dashboards import KindCounter, RateMeter, RunPlan, produce_alerts
from notipipe._database import DatabaseConnection, StoredMessage
from notipipe._errors import ConfigurationError, NotipipeError
from notipipe._storage.postgresql.store import is_url

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

DEFAULT_DB = "notipipe.db"

EXIT_OK = 0
EXIT_UNUSABLE_DATABASE = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`'s yes

#: SQLite's largest integer: no row count, row id or LIMIT goes past it.
MAX_ROWS = 2**63 - 1
#: The longest ``max_delay`` that ``DatabaseConnection`` accepts (0..60 seconds).
MAX_DELAY = 60.0
MAX_THREADS = 1024
#: Alerts per ``save_many`` call or per commit: past this a batch only costs memory.
MAX_BATCH = 1_000_000

#: How often ``tail --follow`` asks a SQLite file for new alerts, in seconds.
FOLLOW_INTERVAL = 0.1
#: How often ``tail --follow`` asks PostgreSQL without a wake-up (each commit sends one).
PG_FOLLOW_POLL = 1.0
#: Alerts read per query while following: a large backlog is printed in pieces.
FOLLOW_BATCH = 1000

_DB_HELP = f"database file or postgresql:// URL (default $NOTIPIPE_DB, else ./{DEFAULT_DB})"
_EXIT_STATUS = """\
exit status:
  0    done
  1    the database cannot be used (one line on stderr says why)
  2    bad arguments (one line on stderr says which)
  130  interrupted by Ctrl-C
  141  the output was closed (e.g. piped into `head`): stops quietly"""


def _wrap(text: str) -> str:
    # The help keeps its text's lines (for the examples and exit statuses): wrap paragraphs here.
    return textwrap.fill(text, 78)


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line: "notipipe run: error: ... (see --help)"."""

    def error(self, message: str) -> NoReturn:
        message = _one_line(message)  # argparse quotes some values as they are
        self.exit(EXIT_BAD_ARGUMENTS, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        # argparse's own printing ignores a failed write; a closed output must end the command
        # the same way whatever it prints (see main()).
        (file or sys.stdout).write(self.format_help())


class _Version(argparse.Action):
    """``--version``, written like ``--help`` (argparse's own action ignores a closed output)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(f"notipipe {notipipe.__version__}\n")
        parser.exit()


def _one_line(text: str) -> str:
    """``text`` with its line breaks escaped: an error is one line, whatever value it names."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _echo(text: str) -> str:
    """A bad value as an error message quotes it: without the blanks around it and, when long,
    only its start."""
    text = text.strip()
    return text if len(text) <= 40 else text[:40] + "..."


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in ``low..high`` (``1_000`` allowed)."""

    def whole(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            number = text.strip().replace("_", "")
            digits = number[1:] if number.startswith(("+", "-")) else number
            if not digits.isdecimal():
                raise argparse.ArgumentTypeError(f"{_echo(text)!r} is not a whole number") from None
            # All digits, yet refused: more of them than int() converts, far out of range.
            value = low - 1 if number.startswith("-") else high + 1
        if value < 0 <= low:
            raise argparse.ArgumentTypeError(f"{_echo(text)} is negative")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{_echo(text)} is too large (at most {high:,})")
        return value

    return whole


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_echo(text)!r} is not a number") from None
    if not 0 <= value <= MAX_DELAY:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{_echo(text)} is not between 0 and {MAX_DELAY:g} seconds")
    return value


def _path(text: str) -> str:
    # An empty --db would otherwise fall back to the default file without a word.
    if not text:
        raise argparse.ArgumentTypeError("the path is empty")
    return text


def _mix(text: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in text.split(","):
        kind, sep, weight = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in ("email", "sms"):
            raise argparse.ArgumentTypeError(f"{_echo(part)!r}: expected email=W or sms=W")
        try:
            w = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_echo(part)!r}: {_echo(weight)!r} is not a number") from None
        if not 0 <= w < float("inf"):
            raise argparse.ArgumentTypeError(f"{_echo(part)!r}: weights must be finite and >= 0")
        weights[kind] = w
    total = sum(weights.values())
    if total <= 0:
        raise argparse.ArgumentTypeError("the weights add up to 0")
    if not math.isfinite(total):  # each share would come out as 0
        raise argparse.ArgumentTypeError("the weights add up to more than a float holds")
    return weights


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="notipipe",
        description=_wrap(
            "A thread-safe notification pipeline: run the simulated dashboard backend "
            "or inspect an alert database."
        ),
        epilog="examples:\n"
        "  notipipe run --alerts 100000     store 100,000 synthetic alerts in ./notipipe.db\n"
        "  notipipe stats                   what ./notipipe.db holds\n"
        "  notipipe tail -f                 the last 10 alerts, then each new one\n"
        "  notipipe serve                   a live web dashboard of ./notipipe.db\n"
        "  notipipe COMMAND --help          a command's options\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print notipipe's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="simulate the backend: produce, store and broadcast alerts",
        description=_wrap(
            "T producer threads create N synthetic alerts through MessageFactory and save "
            "them through DatabaseConnection into a SQLite file; a per-kind counter and a rate "
            "dashboard observe them. Shows progress (with how many alerts are durable so far) and "
            "a summary. Several runs may write to one file at once; each summary counts what that "
            "run stored."
        ),
        epilog="examples:\n"
        "  notipipe run                                one million alerts into ./notipipe.db\n"
        "  notipipe run -n 100000 -t 4 --db /tmp/a.db  100,000 alerts from 4 threads\n"
        "  notipipe run --synchronous FULL --deliver after_commit --progress lines\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--alerts",
        "-n",
        type=_whole(0, MAX_ROWS),
        default=1_000_000,
        metavar="N",
        help="alerts to produce (default 1,000,000)",
    )
    run.add_argument(
        "--threads",
        "-t",
        type=_whole(1, MAX_THREADS),
        default=2,
        metavar="T",
        help=f"producer threads, 1..{MAX_THREADS:,} (default 2)",
    )
    run.add_argument("--db", type=_path, default=None, metavar="PATH", help=_DB_HELP)
    run.add_argument(
        "--mix",
        type=_mix,
        default={"email": 0.7, "sms": 0.3},
        metavar="KIND=W,...",
        help="relative weight of each kind (default email=0.7,sms=0.3)",
    )
    run.add_argument(
        "--chunk",
        type=_whole(1, MAX_BATCH),
        default=1000,
        metavar="K",
        help=f"alerts per save_many call, 1..{MAX_BATCH:,} (default 1000)",
    )
    run.add_argument(
        "--batch-size",
        type=_whole(1, MAX_BATCH),
        default=10_000,
        metavar="B",
        help=f"rows per commit, 1..{MAX_BATCH:,} (default 10,000)",
    )
    run.add_argument(
        "--max-delay",
        type=_seconds,
        default=0.05,
        metavar="S",
        help=f"longest wait before a commit, 0..{MAX_DELAY:g} seconds (default 0.05)",
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
        "--seed",
        type=_whole(0, MAX_ROWS),
        default=1,
        metavar="SEED",
        help="random seed for the synthetic alerts (default 1)",
    )
    run.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress display: a live bar (terminal), plain lines, or none (default auto: "
        "the bar on a terminal, else lines)",
    )

    stats = sub.add_parser(
        "stats",
        help="counts per kind, first and last alert, size",
        description=_wrap(
            "Summarise an alert database: alerts per kind, the first and last alert's time, the size on disk."
        ),
        epilog="example:\n  notipipe stats --db /tmp/a.db\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("--db", type=_path, default=None, metavar="PATH", help=_DB_HELP)

    tail = sub.add_parser(
        "tail",
        help="the last K alerts; with -f, then each new one",
        description=_wrap(
            "Print the most recent alerts, oldest first. With --follow, keep printing "
            "each alert as it is stored, by this or any other process, until Ctrl-C."
        ),
        epilog="examples:\n"
        "  notipipe tail -n 20            the last 20 alerts\n"
        "  notipipe tail -f -n 0          only the alerts stored from now on\n"
        "  notipipe tail -f | grep sms    new SMS alerts as they come\n\n"
        "With --follow, Ctrl-C ends the command quietly with status 130.\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("--db", type=_path, default=None, metavar="PATH", help=_DB_HELP)
    tail.add_argument("-n", type=_whole(0, MAX_ROWS), default=10, metavar="K", help="how many (default 10)")
    tail.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="then print new alerts as they are stored, by any process, until Ctrl-C "
        f"(a SQLite file is checked every {FOLLOW_INTERVAL:g} s; PostgreSQL wakes on each commit)",
    )

    subs = sub.add_parser(
        "subscriptions",
        help="durable subscribers of a PostgreSQL database, with their lag",
        description=_wrap(
            "List the durable subscriptions of a PostgreSQL database: for each name, how many "
            "committed alerts it has not delivered yet, the age of the oldest of them, and which "
            "process holds the name (none: no subscriber is running)."
        ),
        epilog="example:\n  notipipe subscriptions --db postgresql://alerts@db.internal/alerts\n\n"
        + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subs.add_argument("--db", type=_path, required=True, metavar="URL", help="a postgresql:// URL")
    serve = sub.add_parser(
        "serve",
        help="a live web dashboard of the alerts, as they are stored",
        description=_wrap(
            "Serve a web page showing the alerts stored in the database as they arrive, by this "
            "or any other process (run `notipipe run --db PATH` beside it): alerts per second, "
            "counts per kind and priority, the latest alerts. Browsers get the alerts as "
            "Server-Sent Events and resume where they were after a reconnect. Needs the "
            "dashboard extra: pip install 'notipipe[dashboard]'."
        ),
        epilog="examples:\n"
        "  notipipe serve                          http://127.0.0.1:8000/ for ./notipipe.db\n"
        "  notipipe serve --db /tmp/a.db --port 0  on a free port (the URL is printed)\n"
        "  notipipe serve --host 0.0.0.0           other machines may connect (no authentication)\n\n"
        "Ctrl-C stops the server (status 130).\n\n"
        + _EXIT_STATUS.replace(
            "one line on stderr says why)",
            "one line on stderr says why),\n       or the address cannot be listened on",
        ).replace(
            "2    bad arguments (one line on stderr says which)",
            "2    bad arguments, or the dashboard extra is not installed",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--db", type=_path, default=None, metavar="PATH", help=_DB_HELP)
    serve.add_argument(
        "--host",
        type=_path,
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    serve.add_argument(
        "--port",
        type=_whole(0, 65535),
        default=8000,
        help="port to listen on, 0..65535 (default 8000; 0 picks a free one)",
    )

    sub.add_parser(
        "info",
        help="version, compiled or pure, interpreter, GIL, SQLite",
        description=_wrap(
            "Describe this installation: notipipe's version, whether the compiled "
            "extension is in use, the interpreter, whether the GIL is on, SQLite's version."
        ),
        epilog="example:\n  notipipe info\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    if not is_url(path) and not os.path.exists(path):
        raise NotipipeError(f"{path}: no such database (run `notipipe run --db {path}` first)")
    return DatabaseConnection(path)


def cmd_stats(args: argparse.Namespace) -> int:
    with _open_existing(_db_path(args.db)) as db:
        st = db.stats()
    print(f"database: {st.path} ({_human_bytes(st.size_bytes)})")
    print(f"alerts: {st.total:,}")
    for kind, n in st.by_kind.items():
        print(f"  {kind}: {n:,}")
    if st.origins:
        print("origins:")
        for host, processes, n in st.origins:
            print(f"  {host}: {n:,} from {processes:,} process{'es' if processes != 1 else ''}")
    if st.first_at is not None and st.last_at is not None:
        print(f"first: {_stamp(st.first_at)}")
        print(f"last:  {_stamp(st.last_at)}")
    return 0


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def cmd_tail(args: argparse.Namespace) -> int:
    with _open_existing(_db_path(args.db)) as db:
        if args.follow:
            return _follow(db, args.n)
        _print_alerts(db.last(args.n))
    return EXIT_OK


def _print_alerts(messages: Iterable[StoredMessage], stop: Callable[[], bool] = lambda: False) -> None:
    for m in messages:
        if stop():
            return
        if isinstance(m, notipipe.EmailMessage):
            print(
                f"#{m.id} {_stamp(m.created_at)} email p{m.priority} to={m.recipient} subject={m.subject!r}"
            )
        else:
            print(f"#{m.id} {_stamp(m.created_at)} sms   p{m.priority} to={m.phone_number} body={m.body!r}")


def _follow(db: DatabaseConnection, n: int) -> int:
    """``tail --follow``: the last ``n`` alerts, then every alert committed after them, until Ctrl-C.

    ``DatabaseConnection.follow`` misses nothing and repeats nothing, whoever writes: a SQLite
    file by id (its writers commit one at a time), PostgreSQL by snapshot windows.
    """
    with _CtrlC() as ctrl_c:
        recent = db.last(max(n, 1))  # at least one: where "new" starts
        last_id = recent[-1].id if recent else 0
        _print_alerts(recent if n else (), ctrl_c.pressed)
        sys.stdout.flush()
        poll = PG_FOLLOW_POLL if is_url(db.path) else FOLLOW_INTERVAL
        for page in db.follow(last_id, page=FOLLOW_BATCH, poll=poll, stop=ctrl_c.event):
            _print_alerts(page, ctrl_c.pressed)
            sys.stdout.flush()  # a pipe is block-buffered: pass each alert on as it comes
    return EXIT_INTERRUPTED


def cmd_subscriptions(args: argparse.Namespace) -> int:
    if not is_url(args.db):
        raise NotipipeError(
            f"{args.db}: durable subscriptions live in a PostgreSQL database (a postgresql:// URL)"
        )
    from notipipe._storage.postgresql.subscribers import list_subscriptions

    states = list_subscriptions(args.db)
    if not states:
        print("no durable subscriptions")
        return EXIT_OK
    width = max(len("NAME"), *(len(s.name) for s in states))
    print(f"{'NAME':<{width}}  {'UNDELIVERED':>11}  {'OLDEST':>9}  HELD BY")
    for s in states:
        oldest = "-" if s.oldest_age is None else f"{s.oldest_age:.1f} s"
        print(f"{s.name:<{width}}  {s.undelivered:>11,}  {oldest:>9}  {s.holder or '-'}")
    return EXIT_OK


class _CtrlC:
    """While active, Ctrl-C (SIGINT) is noted instead of raising KeyboardInterrupt, so a follow
    loop ends between two reads (never inside one) and quietly."""

    def __init__(self) -> None:
        #: Set by Ctrl-C: a follow loop waiting on it wakes at once.
        self.event = threading.Event()
        self._previous: Callable[[int, FrameType | None], object] | int | None = None
        self._installed = False

    def pressed(self) -> bool:
        return self.event.is_set()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        # Set from another thread: the handler runs on the main thread, which may be inside the
        # event's own lock (Event.wait), and that lock is not reentrant.
        threading.Thread(target=self.event.set, name="ctrl-c").start()

    def __enter__(self) -> Self:
        # Only the main thread may set handlers; elsewhere Ctrl-C stays a KeyboardInterrupt.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._note)
            self._installed = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed and self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


#: What to install when the dashboard's dependencies are missing.
DASHBOARD_HINT = "the dashboard needs its extra: pip install 'notipipe[dashboard]'"


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from notipipe.dashboard._serve import serve
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in ("starlette", "uvicorn"):
            raise
        print(f"notipipe serve: error: {DASHBOARD_HINT} ({missing} is missing)", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    path = _db_path(args.db)
    if is_url(path):
        # A browser resumes by stored id, which is exact only where ids follow commits (SQLite).
        raise ConfigurationError(
            "notipipe serve follows a SQLite file; on PostgreSQL use `notipipe tail --follow` "
            "or a durable subscriber"
        )
    _open_existing(path).close()

    def ready(url: str) -> None:
        print(f"notipipe serve: {url} (the dashboard of {os.path.abspath(path)}; Ctrl-C stops)", flush=True)

    serve(path, args.host, args.port, ready)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from notipipe._run_display import Display

    path = _db_path(args.db)
    counter, meter = KindCounter(), RateMeter()
    sqlite_only = {"synchronous": args.synchronous}
    if is_url(path):
        if args.synchronous != "NORMAL":
            raise ConfigurationError(
                "--synchronous is a SQLite setting; on PostgreSQL the server's synchronous_commit decides"
            )
        sqlite_only = {}
    with DatabaseConnection(
        path,
        **sqlite_only,
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
            "database": f"{stats.path} ({_human_bytes(stats.size_bytes)}"
            + ("" if is_url(path) else f", synchronous={args.synchronous}")
            + ")",
            "threads": str(args.threads),
            "implementation": "compiled (Cython)" if notipipe.COMPILED else "pure Python",
            "GIL": "enabled" if _gil_enabled() else "disabled",
            "python": f"{sys.version.split()[0]}{' free-threaded' if _ft_build() else ''}",
        }
    )
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "stats": cmd_stats,
    "tail": cmd_tail,
    "subscriptions": cmd_subscriptions,
    "serve": cmd_serve,
    "info": cmd_info,
}


def main(argv: Sequence[str] | None = None) -> int:
    _escape_unencodable_output()
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a closed output shows here at the latest, not at exit
    except BrokenPipeError:
        _discard_output()
        return EXIT_OUTPUT_CLOSED


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_ARGUMENTS
    try:
        return COMMANDS[args.command](args)
    except NotipipeError as error:
        print(f"notipipe {args.command}: error: {_one_line(str(error))}", file=sys.stderr)
        return EXIT_UNUSABLE_DATABASE
    except KeyboardInterrupt:
        print(f"notipipe {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _escape_unencodable_output() -> None:
    # A path whose bytes are not valid in the locale's encoding reaches Python with lone
    # surrogates in it. A strict stdout (a UTF-8 locale, PYTHONIOENCODING) could not print it and
    # the command would fail after its work was done; escape what cannot be encoded, as stderr does.
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="backslashreplace")


def _discard_output() -> None:
    # The reader is gone. Whatever is still buffered goes to devnull, or Python's own flush at
    # exit would fail again and print "Exception ignored ... BrokenPipeError".
    with contextlib.suppress(OSError, ValueError):  # a stdout without a file descriptor
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
