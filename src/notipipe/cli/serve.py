"""``notipipe serve``: the live web dashboard (its dependencies are the ``dashboard`` extra)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from notipipe._errors import ConfigurationError
from notipipe._storage.postgresql.store import is_url
from notipipe.cli._common import EXIT_BAD_ARGUMENTS, EXIT_OK, db_path, open_existing
from notipipe.cli._signals import exit_status

#: What to install when the dashboard's dependencies are missing.
DASHBOARD_HINT = "the dashboard needs its extra: pip install 'notipipe[dashboard]'"


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
    if is_url(path):
        # A browser resumes by stored id, which is exact only where ids follow commits (SQLite).
        raise ConfigurationError(
            "notipipe serve follows a SQLite file; on PostgreSQL use `notipipe tail --follow` "
            "or a durable subscriber"
        )
    open_existing(path).close()

    def ready(url: str) -> None:
        # Started in the background or under nohup, SIGINT stays ignored: say what stops it then.
        stops = "SIGTERM stops" if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else "Ctrl-C stops"
        print(f"notipipe serve: {url} (the dashboard of {os.path.abspath(path)}; {stops})", flush=True)

    signum = serve(path, args.host, args.port, ready)
    if signum is None:
        return EXIT_OK
    print(f"notipipe serve: {'interrupted' if signum == signal.SIGINT else 'terminated'}", file=sys.stderr)
    return exit_status(signum)
