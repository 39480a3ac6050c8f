"""``notipipe prune``: delete the alerts older than an age, in small transactions."""

from __future__ import annotations

import argparse
import sys
import time

from notipipe.cli._common import EXIT_OK, db_path, open_existing
from notipipe.cli._json import print_json, utc
from notipipe.cli.progress import LINE_INTERVAL

__all__ = ["cmd_prune", "prune_object"]


class _Progress:
    """The running total on stderr while a prune lasts past ``LINE_INTERVAL`` seconds: redrawn in
    place on a terminal, else a line at most every ``LINE_INTERVAL`` seconds."""

    def __init__(self, verb: str) -> None:
        self._verb = verb
        self._tty = sys.stderr.isatty()
        self._next = time.monotonic() + LINE_INTERVAL
        self._shown = False

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + LINE_INTERVAL
        self._shown = True
        end = "\r" if self._tty else "\n"
        print(f"{self._verb} {done:,} alerts...", end=end, file=sys.stderr, flush=True)

    def end(self) -> None:
        if self._shown and self._tty:
            print(file=sys.stderr)


def prune_object(
    database: str, older_than: float, cutoff: float, pruned: int, *, dry_run: bool, keep_undelivered: bool
) -> dict[str, object]:
    """``notipipe prune --json``: what was (or would be) deleted (docs/json.md)."""
    return {
        "database": database,
        "older_than_seconds": older_than,
        "cutoff": cutoff,
        "cutoff_utc": utc(cutoff),
        "dry_run": dry_run,
        "keep_undelivered": keep_undelivered,
        "pruned": pruned,
    }


def cmd_prune(args: argparse.Namespace) -> int:
    """``notipipe prune``: delete (``--dry-run``: count) the alerts older than ``--older-than``."""
    progress = _Progress("counted" if args.dry_run else "pruned")
    cutoff = time.time() - args.older_than
    with open_existing(db_path(args.db)) as db:
        try:
            pruned = db.prune(
                older_than=args.older_than,
                keep_undelivered=args.keep_undelivered,
                dry_run=args.dry_run,
                progress=progress,
            )
        finally:
            progress.end()
        path = db.path
    if args.json:
        keep = args.keep_undelivered
        print_json(
            prune_object(path, args.older_than, cutoff, pruned, dry_run=args.dry_run, keep_undelivered=keep)
        )
        return EXIT_OK
    verb = "would prune" if args.dry_run else "pruned"
    print(f"{path}: {verb} {pruned:,} alert{'s' if pruned != 1 else ''} created before {utc(cutoff)}")
    return EXIT_OK
