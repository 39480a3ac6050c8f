"""``notipipe stats``, ``tail`` and ``subscriptions``: the commands that read a database."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from notipipe import DatabaseConnection, NotipipeError, StorageTarget, describe_target, fields_of
from notipipe.cli._arguments import ResetTo
from notipipe.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    cells,
    db_path,
    human_bytes,
    open_existing,
    pad,
    stamp,
)
from notipipe.cli._json import alert_object, json_line, print_json, stats_object, subscriptions_object
from notipipe.cli._shown import Shown, familiar, field_pairs, label
from notipipe.cli._signals import StopSignals, exit_status

#: Alerts read per query while following: a large backlog is printed in pieces.
FOLLOW_BATCH = 1000


def cmd_stats(args: argparse.Namespace) -> int:
    """``notipipe stats``: the alerts per kind and origin, the first and last, the size."""
    with open_existing(db_path(args.db)) as db:
        st = db.stats()
    if args.json:
        print_json(stats_object(st))
        return EXIT_OK
    print(f"database: {st.path} ({human_bytes(st.size_bytes)})")
    print(f"alerts: {st.total:,}")
    for kind, n in st.by_kind.items():
        print(f"  {label(kind)}: {n:,}")
    if st.origins:
        print("origins:")
        for host, processes, n in st.origins:
            print(f"  {host}: {n:,} from {processes:,} process{'es' if processes != 1 else ''}")
    if st.first_at is not None and st.last_at is not None:
        print(f"first: {stamp(st.first_at)}")
        print(f"last:  {stamp(st.last_at)}")
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """``notipipe tail``: the last ``-n`` alerts, oldest first; with ``--follow``, then each new one."""
    show = alert_json_line if args.json else alert_line
    with open_existing(db_path(args.db)) as db:
        if args.follow:
            return _follow(db, args.n, args.since, show, per_line=args.json)
        _print_alerts(db.last(args.n), show)
    return EXIT_OK


def alert_line(m: Shown) -> str:
    """An alert as ``tail`` prints it: e-mail and SMS as always, any other kind by its fields
    (``#17 2026-12-07 09:30:01.250 push  p3 device='pixel-7' title='disk full'``)."""
    head = f"#{m.id} {stamp(m.created_at)} {label(m.kind):<5} p{m.priority}"
    fields = fields_of(m)
    if shown := familiar(m.kind, fields):
        to, name, text = shown
        return f"{head} to={to} {name}={text!r}"
    return " ".join([head, *field_pairs(fields)])


def alert_json_line(m: Shown) -> str:
    """An alert as ``tail --json`` prints it: one JSON object (docs/json.md)."""
    return json_line(alert_object(m))


def _print_alerts(
    messages: Iterable[Shown],
    show: Callable[[Shown], str],
    stop: Callable[[], bool] = lambda: False,
    *,
    per_line: bool = False,
) -> None:
    for m in messages:
        if stop():
            return
        print(show(m), flush=per_line)


def _follow(
    db: DatabaseConnection, n: int, since: float | None, show: Callable[[Shown], str], *, per_line: bool
) -> int:
    """``tail --follow``: the last ``n`` alerts (or every alert from ``since`` on), then every
    alert committed after them, until
    SIGTERM or Ctrl-C (see ``notipipe.cli._signals``); then, quietly, 143 or 130.

    ``DatabaseConnection.follow`` misses nothing and repeats nothing, whoever writes: a SQLite
    file by id (its writers commit one at a time), PostgreSQL by snapshot windows. How often it
    asks when nothing wakes it is the backend's (``StorageTarget.follow_poll``). ``per_line``
    passes each line on as it is printed (``--json``: a script reading line by line gets each
    alert at once, never a part of a line); else each page is passed on whole.
    """
    with StopSignals() as stop:
        if since is None:
            recent = db.last(max(n, 1))  # at least one: where "new" starts
            _print_alerts(recent if n else (), show, stop.received, per_line=per_line)
            sys.stdout.flush()
            pages = db.follow(recent[-1].id if recent else 0, **_following(db, stop.event))
        else:
            pages = db.follow(since=since, **_following(db, stop.event))
        for page in pages:
            _print_alerts(page, show, stop.received, per_line=per_line)
            sys.stdout.flush()  # a pipe is block-buffered: pass each alert on as it comes
    # The loop ends only when stopped; outside the main thread no handler notes a signal.
    return EXIT_INTERRUPTED if stop.signum is None else exit_status(stop.signum)


def _following(db: DatabaseConnection, stop: threading.Event) -> dict[str, Any]:
    return {"page": FOLLOW_BATCH, "poll": db.target.follow_poll, "stop": stop}


def cmd_subscriptions(args: argparse.Namespace) -> int:
    """``notipipe subscriptions``: each durable subscription of the database, its lag (a backend
    that keeps no durable names, a SQLite file, is refused with the ones that do)."""
    # Listed without a DatabaseConnection: main() may run in a process that has one open.
    target = describe_target(args.db)
    if args.delete is not None:
        return _delete_subscription(target, args.delete, force=args.force)
    if args.reset is not None:
        return _reset_subscription(target, args.reset, args.to, force=args.force)
    states = target.subscriptions()
    if args.json:
        print_json(subscriptions_object(states))
        return EXIT_OK
    if not states:
        print("no durable subscriptions")
        return EXIT_OK
    width = max(cells("NAME"), *(cells(s.name) for s in states))
    print(f"{pad('NAME', width)}  {'UNDELIVERED':>11}  {'OLDEST':>9}  HELD BY")
    for s in states:
        lag = "-" if s.lag is None else f"{s.lag:,}"
        oldest = "-" if s.oldest_age is None else f"{s.oldest_age:.1f} s"
        print(f"{pad(s.name, width)}  {lag:>11}  {oldest:>9}  {s.holder or '-'}")
    return EXIT_OK


def _delete_subscription(target: StorageTarget, name: str, *, force: bool) -> int:
    if not target.delete_subscription(name, force=force):
        raise NotipipeError(f"{target.shown}: no durable subscription named {name!r}")
    print(f"deleted the durable subscription {name!r}")
    return EXIT_OK


def _reset_subscription(target: StorageTarget, name: str, to: ResetTo, *, force: bool) -> int:
    if not target.reset_subscription(name, to_id=to.to_id, since=to.since, force=force):
        raise NotipipeError(f"{target.shown}: no durable subscription named {name!r}")
    where = f"after the alert #{to.to_id}" if to.since is None else f"at the first alert of {stamp(to.since)}"
    print(f"reset the durable subscription {name!r}: its next delivery starts {where}")
    return EXIT_OK
