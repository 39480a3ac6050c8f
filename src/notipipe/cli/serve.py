"""``notipipe serve``: the live web dashboard (its dependencies are the ``dashboard`` extra).

Who is answered (the Host names served, the token beyond loopback) and how far a browser may
fall behind are options of the command; their rules are here, importable without the extra, so
that ``notipipe serve --help`` and bad arguments never need it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap

from notipipe import ConfigurationError, describe_target
from notipipe.cli._arguments import whole_number
from notipipe.cli._common import EXIT_BAD_ARGUMENTS, EXIT_OK, db_path, open_existing
from notipipe.cli._signals import exit_status

__all__ = [
    "DASHBOARD_HINT",
    "LOOPBACK_NAMES",
    "MAX_BEHIND",
    "MIN_TOKEN",
    "STALL_TIMEOUT",
    "TOKEN_VARIABLE",
    "add_serve_options",
    "cmd_serve",
    "host_name",
    "token_problem",
]

#: What to install when the dashboard's dependencies are missing.
DASHBOARD_HINT = "the dashboard needs its extra: pip install 'notipipe[dashboard]'"
#: The names of this machine that no other site can take: always served.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: The shortest token accepted: guessing one must be hopeless.
MIN_TOKEN = 16
#: The environment variable a token may come from (a command line is visible to every user).
TOKEN_VARIABLE = "NOTIPIPE_TOKEN"
#: Bytes of events a browser may fall behind (queued for it, and being written) before it is
#: cut off; it reconnects and catches up from the database.
MAX_BEHIND = 4 * 1024 * 1024
#: The smallest such bound: a page of the largest alerts must fit.
MIN_BEHIND = 256 * 1024
#: Seconds a browser may take none of a write before its connection is cut off.
STALL_TIMEOUT = 30
#: Characters a token may hold: it travels in a URL's query unescaped.
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")
#: Characters of a host name as ``host_name`` leaves it, and of an address in brackets.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
_ADDRESS_CHARS = frozenset("0123456789abcdef:.")


def _is_name(name: str) -> bool:
    if name.startswith("[") and name.endswith("]"):
        return len(name) > 2 and set(name[1:-1]) <= _ADDRESS_CHARS
    return bool(name) and set(name) <= _NAME_CHARS


def host_name(value: str) -> str | None:
    """The name in a ``Host`` value, lower case, without its port or final dot, IPv6 in
    brackets; None if it holds none (empty, a bad port, characters no host name has)."""
    value = value.strip().lower()
    if value.startswith("["):
        inside, bracket, after = value[1:].partition("]")
        if not bracket:
            return None
        name = f"[{inside}]"
    else:
        name, colon, port = value.partition(":")
        name = name.removesuffix(".")
        after = colon + port
    port = after.removeprefix(":")
    if after and (after == port or not (port == "" or (port.isascii() and port.isdigit()))):
        return None
    return name if _is_name(name) else None


def token_problem(token: str) -> str | None:
    """What is wrong with a token the user chose, or None."""
    if len(token) < MIN_TOKEN:
        return f"the token must be at least {MIN_TOKEN} characters long"
    if not set(token) <= _TOKEN_CHARS:
        return "the token may hold only letters, digits and - _ . ~"
    return None


def _served_name(text: str) -> str:
    """An argparse type: a name for ``--allow-host`` (a bare IPv6 address gets its brackets)."""
    name = host_name(f"[{text}]" if text.count(":") > 1 and not text.startswith("[") else text)
    if name is None:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a host name")
    return name


def _token(text: str) -> str:
    """An argparse type: a token of the user's choosing."""
    problem = token_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def _para(text: str) -> str:
    return textwrap.fill(text, 78)


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    """``serve``'s options for who is answered and for browsers that fall behind."""
    access = serve.add_argument_group(
        "who is answered",
        _para(
            "Only requests whose Host names this server are answered: "
            f"{', '.join(LOOPBACK_NAMES)}, the --host address and each --allow-host; any other "
            "gets 421, so no web site can read the alerts through a browser of this machine (DNS "
            "rebinding). On an address other than loopback every request also needs the token: "
            "the printed URL carries it (?token=...; the page passes it on), a program may send "
            "'Authorization: Bearer TOKEN'; a request without it gets 401."
        ),
    )
    access.add_argument(
        "--allow-host",
        action="append",
        type=_served_name,
        default=[],
        metavar="NAME",
        help="also answer requests for NAME, as other machines or a reverse proxy call this one "
        "(repeatable; a port in NAME is ignored)",
    )
    access.add_argument(
        "--token",
        type=_token,
        default=None,
        help=f"require TOKEN (at least {MIN_TOKEN} letters, digits, - _ . ~) in every request, on "
        f"any address (default ${TOKEN_VARIABLE}; on an address other than loopback, a new random "
        "token if neither is given)",
    )
    behind = serve.add_argument_group(
        "browsers that fall behind",
        _para(
            "A browser that takes its events slower than they come (a slow link, a laptop asleep "
            "with its connection open) holds on the server only the events it has still to be "
            "sent, up to --max-behind bytes. Past them, or once a write to it has waited "
            "--stall-timeout seconds (timed from when the connection's kernel buffers are full, "
            "not from its last read), its connection is cut off; the browser reconnects and "
            "catches up from the database, missing nothing."
        ),
    )
    behind.add_argument(
        "--max-behind",
        type=whole_number(MIN_BEHIND, 1 << 40),
        default=MAX_BEHIND,
        metavar="BYTES",
        help=f"bytes of events a browser may fall behind (default {MAX_BEHIND:,}; at least {MIN_BEHIND:,})",
    )
    behind.add_argument(
        "--stall-timeout",
        type=whole_number(1, 3600),
        default=STALL_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds a browser may take none of its events, 1..3600 (default {STALL_TIMEOUT})",
    )


def _given_token(args: argparse.Namespace) -> str | None:
    """``--token``, else the environment's, checked as ``--token`` is."""
    if args.token is not None:
        return str(args.token)
    token = os.environ.get(TOKEN_VARIABLE) or None
    if token is not None and (problem := token_problem(token)) is not None:
        raise ConfigurationError(f"${TOKEN_VARIABLE}: {problem}")
    return token


def cmd_serve(args: argparse.Namespace) -> int:
    """``notipipe serve``: serve the live dashboard of a SQLite file until SIGTERM or Ctrl-C.

    Either signal ends the open streams and the server, then the command, with one line on
    stderr ("interrupted" or "terminated") and status 130 or 143. A process started with SIGINT
    ignored (in the background, under nohup) keeps ignoring it: SIGTERM stops it.
    """
    try:
        from notipipe.cli.dashboard._serve import serve
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in ("starlette", "uvicorn"):
            raise
        print(f"notipipe serve: error: {DASHBOARD_HINT} ({missing} is missing)", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    path = db_path(args.db)
    target = describe_target(path)
    if not target.ids_follow_commits:
        # A browser resumes by stored id, which is exact only where ids follow commits.
        raise ConfigurationError(
            f"notipipe serve follows a database whose ids follow commits (a SQLite file); on the "
            f"{target.backend} backend use `notipipe tail --follow` or a durable subscriber"
        )
    token = _given_token(args)
    open_existing(path).close()

    def ready(url: str) -> None:
        # Started in the background or under nohup, SIGINT stays ignored: say what stops it then.
        stops = "SIGTERM stops" if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else "Ctrl-C stops"
        print(f"notipipe serve: {url} (the dashboard of {target.shown}; {stops})", flush=True)

    signum = serve(
        path,
        args.host,
        args.port,
        ready,
        allow_hosts=args.allow_host,
        token=token,
        max_behind=args.max_behind,
        stall=float(args.stall_timeout),
    )
    if signum is None:
        return EXIT_OK
    print(f"notipipe serve: {'interrupted' if signum == signal.SIGINT else 'terminated'}", file=sys.stderr)
    return exit_status(signum)
