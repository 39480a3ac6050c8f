"""The ``notipipe`` command: run the simulated dashboard backend, inspect a database.

    notipipe run   [--alerts N] [--threads T] [--db PATH] [--mix email=0.7,sms=0.3] ...
    notipipe stats [--db PATH]
    notipipe tail  [--db PATH] [-n K] [--follow [--since WHEN]]
    notipipe subscriptions --db URL [--delete NAME | --reset NAME --to ID|WHEN] [--force]
    notipipe prune --older-than 7d [--db PATH] [--dry-run]
    notipipe serve [--db PATH] [--host HOST] [--port PORT]
    notipipe info

Exit statuses: 0 done; 1 the database cannot be used (or, for serve, the address cannot be
listened on); 2 bad arguments, or serve without the dashboard extra (both with one line on
stderr, never a traceback); 130 interrupted by Ctrl-C (``tail --follow`` ends this way, quietly);
141 the output was closed (``notipipe tail | head -1``): the command stops quietly, as Unix tools
do, with the status a shell reports for a process ended by SIGPIPE; 143 stopped by SIGTERM.

``tail --follow`` and ``serve`` run until stopped: SIGTERM stops them as Ctrl-C does, on the same
path (see ``notipipe.cli._signals``). Started with SIGINT ignored (in the background of a script,
under nohup) they keep ignoring Ctrl-C, and SIGTERM stops them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import notipipe
from notipipe import NotipipeError, StoreOptions, describe_target, known_targets
from notipipe.cli._arguments import (
    MAX_BATCH,
    MAX_DELAY,
    MAX_ROWS,
    MAX_THREADS,
    age,
    id_or_moment,
    kind_mix,
    moment,
    nonempty,
    seconds,
    whole_number,
)
from notipipe.cli._common import (
    DEFAULT_DB,
    EXIT_BAD_ARGUMENTS,
    EXIT_INTERRUPTED,
    EXIT_OUTPUT_CLOSED,
    EXIT_UNUSABLE_DATABASE,
    one_line,
)
from notipipe.cli.info import cmd_info
from notipipe.cli.prune import cmd_prune
from notipipe.cli.read import cmd_stats, cmd_subscriptions, cmd_tail
from notipipe.cli.run import cmd_run
from notipipe.cli.serve import add_serve_options, cmd_serve

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["build_parser", "main"]

#: The options' defaults, shown in --help.
DEFAULT_OPTIONS = StoreOptions()
_DB_HELP = f"the database: {known_targets()} (default $NOTIPIPE_DB, else ./{DEFAULT_DB})"
#: How often tail --follow asks a file (the default target's backend) when nothing wakes it.
#: Asked of ":memory:", the file backend's too: a relative file's path would be made absolute,
#: which fails in a working directory since deleted, and --help must work there.
_FILE_POLL = describe_target(":memory:").follow_poll
#: Where the --json objects are documented, for a reader of --help without the source at hand.
_JSON_DOCS = "https://github.com/notipipe/notipipe/blob/main/docs/json.md"
_EXIT_STATUS = """\
exit status:
  0    done
  1    the database cannot be used (one line on stderr says why)
  2    bad arguments (one line on stderr says which)
  130  interrupted by Ctrl-C
  141  the output was closed (e.g. piped into `head`): stops quietly"""
_SUBSCRIPTION_CHANGES = """\
deleting and resetting:
  A name a running subscriber holds is refused (exit status 1, naming it as
  pid@host) unless --force: then the holder loses the name at once
  (PostgreSQL ends its session, NATS deletes its consumer under it) and the
  update call in progress finishes. A holder still subscribed goes on under the
  name as it then stands: after a reset from the new position, after a delete
  from then on (the name made again); it logs either. Stop it first to be rid
  of the name.
  A reset re-delivers: every alert after ID, or from the first alert of WHEN
  (alerts before it are skipped). PostgreSQL: alerts committed by the reset
  with ids up to ID count as delivered, every other one (also any committed
  later, whatever its id) is delivered; WHEN starts at the lowest id created
  then. NATS: delivery starts at ID's chunk, so the alerts of that chunk up to
  ID come again; WHEN starts at the first chunk the server stored then.

"""
#: The status of the commands that SIGTERM stops cleanly (tail --follow, serve), after the others.
_EXIT_TERMINATED = "\n  143  stopped by SIGTERM"


def _add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json``: the command's output for scripts, its fields documented in docs/json.md."""
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print {what}, for scripts: the fields, their types and meaning are in docs/json.md "
        f"({_JSON_DOCS}), and kept across versions",
    )


class _NarrowOptions(argparse.RawDescriptionHelpFormatter):
    """Help that starts on the option's next line for a long option."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=15)


def _wrap(text: str) -> str:
    # The help keeps its text's lines (for the examples and exit statuses): wrap paragraphs here.
    return textwrap.fill(text, 78)


def _stopped(how: str) -> str:
    """How ``tail --follow`` and ``serve`` stop (see notipipe.cli._signals), before their statuses."""
    return (
        _wrap(
            f"{how} with status 130; SIGTERM (`kill PID`) the same way, with status 143. Started "
            "with SIGINT ignored (`&` in a script, nohup), the command keeps ignoring Ctrl-C; "
            "SIGTERM still stops it."
        )
        + "\n\n"
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line: "notipipe run: error: ... (see --help)"."""

    def error(self, message: str) -> NoReturn:
        message = one_line(message)  # argparse quotes some values as they are
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


def build_parser() -> argparse.ArgumentParser:
    """The ``notipipe`` command's parser, each subcommand's options and help included."""
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
        "  notipipe COMMAND --help          a command's options\n\n"
        + _EXIT_STATUS
        + _EXIT_TERMINATED
        + " (tail --follow, serve)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print notipipe's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="simulate the backend: produce, store and broadcast alerts",
        description=_wrap(
            "T producer threads create N synthetic alerts through MessageFactory and save "
            "them through DatabaseConnection into the database (a SQLite file or PostgreSQL); a "
            "per-kind counter and a rate "
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
        type=whole_number(0, MAX_ROWS),
        default=1_000_000,
        metavar="N",
        help="alerts to produce (default 1,000,000)",
    )
    run.add_argument(
        "--threads",
        "-t",
        type=whole_number(1, MAX_THREADS),
        default=2,
        metavar="T",
        help=f"producer threads, 1..{MAX_THREADS:,} (default 2)",
    )
    run.add_argument("--db", type=nonempty, default=None, metavar="PATH", help=_DB_HELP)
    run.add_argument(
        "--mix",
        type=kind_mix,
        default={"email": 0.7, "sms": 0.3},
        metavar="KIND=W,...",
        help="relative weight of each kind (default email=0.7,sms=0.3)",
    )
    run.add_argument(
        "--chunk",
        type=whole_number(1, MAX_BATCH),
        default=1000,
        metavar="K",
        help=f"alerts per save_many call, 1..{MAX_BATCH:,} (default 1000)",
    )
    run.add_argument(
        "--batch-size",
        type=whole_number(1, MAX_BATCH),
        default=DEFAULT_OPTIONS.batch_size,
        metavar="B",
        help=f"rows per commit, 1..{MAX_BATCH:,} (default {DEFAULT_OPTIONS.batch_size:,})",
    )
    run.add_argument(
        "--max-delay",
        type=seconds,
        default=DEFAULT_OPTIONS.max_delay,
        metavar="S",
        help=f"longest wait before a commit, 0..{MAX_DELAY:g} s (default {DEFAULT_OPTIONS.max_delay:g})",
    )
    run.add_argument(
        "--synchronous",
        choices=("NORMAL", "FULL"),
        default=DEFAULT_OPTIONS.synchronous,
        help=f"FULL also survives power loss (default {DEFAULT_OPTIONS.synchronous})",
    )
    run.add_argument(
        "--deliver",
        choices=("immediate", "after_commit"),
        default="immediate",
        help="observers see alerts at once, or once durable (default immediate)",
    )
    run.add_argument(
        "--seed",
        type=whole_number(0, MAX_ROWS),
        default=1,
        metavar="SEED",
        help="random seed for the synthetic alerts (default 1)",
    )
    run.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="bar: a live bar (rich, from the cli extra; without it a plain line on stderr); "
        "lines: a plain line on stdout every half second; none: only the summary "
        "(default auto: the bar on a terminal, else lines)",
    )

    stats = sub.add_parser(
        "stats",
        help="counts per kind, first and last alert, size",
        description=_wrap(
            "Summarise an alert database: alerts per kind, the first and last alert's time, the size on disk."
        ),
        epilog="examples:\n  notipipe stats --db /tmp/a.db\n"
        "  notipipe stats --json | jq .by_kind    the counts per kind, for a script\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("--db", type=nonempty, default=None, metavar="PATH", help=_DB_HELP)
    _add_json(stats, "the summary as one JSON object")

    tail = sub.add_parser(
        "tail",
        help="the last K alerts; with -f, then each new one",
        description=_wrap(
            "Print the most recent alerts, oldest first. With --follow, keep printing "
            "each alert as it is stored, by this or any other process, until Ctrl-C or SIGTERM."
        ),
        epilog="examples:\n"
        "  notipipe tail -n 20            the last 20 alerts\n"
        "  notipipe tail -f -n 0          only the alerts stored from now on\n"
        "  notipipe tail -f | grep sms    new SMS alerts as they come\n"
        "  notipipe tail -f --since 1h    the last hour's alerts, then each new one\n"
        "  notipipe tail -f --json | jq -c 'select(.priority >= 4)'\n"
        "                                 new alerts of priority 4 and 5, as JSON\n\n"
        + _stopped("With --follow, Ctrl-C (SIGINT) ends the command quietly")
        + _EXIT_STATUS
        + _EXIT_TERMINATED,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("--db", type=nonempty, default=None, metavar="PATH", help=_DB_HELP)
    tail.add_argument(
        "-n",
        type=whole_number(0, MAX_ROWS),
        default=10,
        metavar="K",
        help="how many of the last alerts (default 10)",
    )
    tail.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="then print new alerts as they are stored, by any process, until Ctrl-C or SIGTERM "
        f"(a SQLite file is checked every {_FILE_POLL:g} s; PostgreSQL wakes on each commit)",
    )
    tail.add_argument(
        "--since",
        type=moment,
        default=None,
        metavar="WHEN",
        help="with --follow: start at the first alert of WHEN or later instead of the last K: an age "
        "(90s, 10m, 2h, 7d, 2w) or an ISO time (2026-12-07T09:30, local unless it gives its zone); "
        "a NATS stream starts at the first chunk the server stored then",
    )
    _add_json(tail, "each alert as a JSON object on a line of its own (with --follow, flushed at once)")

    subs = sub.add_parser(
        "subscriptions",
        help="durable subscribers of a database, with their lag",
        description=_wrap(
            f"List the durable subscriptions of a database ({known_targets(durable=True)}): for "
            "each name, how many "
            "committed alerts it has not delivered yet, the age of the oldest of them, and which "
            "process holds the name (none: no subscriber is running)."
        ),
        epilog="examples:\n  notipipe subscriptions --db postgresql://alerts@db.internal/alerts\n"
        "  notipipe subscriptions --db postgresql://... --json | jq '.subscriptions[].lag'\n"
        "  notipipe subscriptions --db postgresql://... --delete old-dashboard\n"
        "  notipipe subscriptions --db nats://127.0.0.1:4222/ALERTS --reset audit --to 2h\n\n"
        + _SUBSCRIPTION_CHANGES
        + _EXIT_STATUS,
        # The options' help no further right than the other commands': the docs URL fits a line.
        formatter_class=_NarrowOptions,
    )
    subs.add_argument(
        "--db",
        type=nonempty,
        required=True,
        metavar="URL",
        help=f"a database that keeps durable names ({known_targets(durable=True)})",
    )
    change = subs.add_mutually_exclusive_group()
    change.add_argument(
        "--delete",
        type=nonempty,
        metavar="NAME",
        help="delete the durable subscription NAME: a later subscribe with it starts from then on",
    )
    change.add_argument(
        "--reset",
        type=nonempty,
        metavar="NAME",
        help="move the durable subscription NAME to the position --to gives",
    )
    subs.add_argument(
        "--to",
        type=id_or_moment,
        metavar="ID|WHEN",
        help="with --reset: deliver every alert after the alert ID, or from the first alert of WHEN: "
        "an age (90s, 10m, 2h, 7d, 2w) or an ISO time (2026-12-07T09:30, local unless it gives its zone)",
    )
    subs.add_argument(
        "--force",
        action="store_true",
        help="with --delete or --reset: change a name a running subscriber holds (see below)",
    )
    _add_json(subs, "the subscriptions as one JSON object")
    _add_prune(sub)
    serve = sub.add_parser(
        "serve",
        help="a live web dashboard of the alerts, as they are stored",
        description=_wrap(
            "Serve a web page showing the alerts stored in the database as they arrive, by this "
            "or any other process (run `notipipe run --db PATH` beside it): alerts per second, "
            "counts per kind and priority, the latest alerts. Browsers get the alerts as "
            "Server-Sent Events and resume where they were after a reconnect. Needs the "
            "dashboard extra: pip install 'notipipe[dashboard]'. Prometheus scrapes /metrics (the "
            "database's counters, the dashboard's follower lag and browsers; the metrics extra: "
            "pip install 'notipipe[metrics]')."
        ),
        epilog="examples:\n"
        "  notipipe serve                          http://127.0.0.1:8000/ for ./notipipe.db\n"
        "  notipipe serve --db /tmp/a.db --port 0  on a free port (the URL is printed)\n"
        "  notipipe serve --host 0.0.0.0 --allow-host alerts.lan\n"
        "                                          other machines may connect, with the printed token\n\n"
        + _stopped("Ctrl-C (SIGINT) stops the server, ending the open streams,")
        + (_EXIT_STATUS + _EXIT_TERMINATED)
        .replace(
            "one line on stderr says why)",
            "one line on stderr says why),\n       or the address cannot be listened on",
        )
        .replace(
            "2    bad arguments (one line on stderr says which)",
            "2    bad arguments, or the dashboard extra is not installed",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--db",
        type=nonempty,
        default=None,
        metavar="PATH",
        help=f"SQLite database file (default $NOTIPIPE_DB, else ./{DEFAULT_DB})",
    )
    serve.add_argument(
        "--host",
        type=nonempty,
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    serve.add_argument(
        "--port",
        type=whole_number(0, 65535),
        default=8000,
        help="port to listen on, 0..65535 (default 8000; 0 picks a free one)",
    )
    add_serve_options(serve)

    info = sub.add_parser(
        "info",
        help="version, compiled or pure, interpreter, GIL, SQLite",
        description=_wrap(
            "Describe this installation: notipipe's version, whether the compiled "
            "extension is in use, the interpreter, whether the GIL is on, SQLite's version."
        ),
        epilog="examples:\n  notipipe info\n  notipipe info --json | jq -r .version\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_json(info, "the description as one JSON object")
    return parser


def _add_prune(sub: Any) -> None:
    prune = sub.add_parser(
        "prune",
        help="delete the alerts older than an age",
        description=_wrap(
            "Delete the alerts created more than AGE ago, a few thousand per transaction, so "
            "that writers, followers (tail --follow, the dashboard) and durable subscribers "
            "keep going meanwhile; ids never go back. Alerts a durable name had not been "
            "delivered are reported to it (and counted under `pruned` in `notipipe "
            "subscriptions --json`) unless --keep-undelivered keeps them. A NATS stream loses "
            "whole chunks from its start: a chunk goes only once its newest alert is older "
            "than AGE. Prints how many alerts went. To prune by itself, a process passes "
            "DatabaseConnection(..., retention=SECONDS); a NATS stream's URL takes ?max_age=7d."
        ),
        epilog="examples:\n"
        "  notipipe prune --older-than 7d               delete the alerts of more than a week ago\n"
        "  notipipe prune --older-than 30d --dry-run    how many would go, deleting nothing\n"
        "  notipipe prune --older-than 12h --json       the summary as JSON, for a script\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prune.add_argument("--db", type=nonempty, default=None, metavar="PATH", help=_DB_HELP)
    prune.add_argument(
        "--older-than",
        type=age,
        required=True,
        metavar="AGE",
        help="delete the alerts created more than AGE ago: 90s, 10m, 2h, 7d, 2w, or seconds",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="count the alerts that would go; delete nothing"
    )
    prune.add_argument(
        "--keep-undelivered",
        action="store_true",
        help="keep the alerts a durable name has not been delivered yet (PostgreSQL, NATS)",
    )
    _add_json(prune, "the summary as one JSON object")


#: Each subcommand's function: it returns the exit status (errors it raises are handled by main).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "stats": cmd_stats,
    "tail": cmd_tail,
    "subscriptions": cmd_subscriptions,
    "prune": cmd_prune,
    "serve": cmd_serve,
    "info": cmd_info,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``notipipe`` command on ``argv`` (default: ``sys.argv[1:]``); return its exit status."""
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
    if getattr(args, "since", None) is not None and not args.follow:
        parser.error("tail --since needs --follow")
    if args.command == "subscriptions":
        _check_subscription_change(parser, args)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_ARGUMENTS
    try:
        return COMMANDS[args.command](args)
    except NotipipeError as error:
        print(f"notipipe {args.command}: error: {one_line(str(error))}", file=sys.stderr)
        return EXIT_UNUSABLE_DATABASE
    except KeyboardInterrupt:
        print(f"notipipe {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _check_subscription_change(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``subscriptions``' options that go together: --to with --reset, --force with a change."""
    changing = args.delete is not None or args.reset is not None
    if args.reset is not None and args.to is None:
        parser.error("subscriptions --reset needs --to ID|WHEN")
    if args.to is not None and args.reset is None:
        parser.error("subscriptions --to needs --reset")
    if args.force and not changing:
        parser.error("subscriptions --force needs --delete or --reset")
    if args.json and changing:
        parser.error("subscriptions --json lists; it does not go with --delete or --reset")


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
