"""Pruning a PostgreSQL database: the alerts created before a time, deleted a step at a time.

Each step finds up to ``step`` ids with a read (no lock), then deletes them in a transaction of
its own, checking ``created_at`` again, so no lock is held for long and writers, followers and
durable subscribers go on meanwhile. Ids come from a sequence: a deleted newest row never gives
its id again.

Durable names: in the same transaction, each name's ``pruned`` count grows by the deleted alerts
its cursor had not passed (counted against the committed cursor: alerts of the page a holder is
delivering right then, and of the page it has read ahead, count, though it delivers them). The
holder reports the count once to its error handler (``AlertsPrunedError``, see
``report_pruned``), and ``subscriptions()`` shows it.
``keep_undelivered`` deletes only alerts every durable name's cursor has passed: a name that
stopped holds its alerts back until it resumes or is deleted.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

from notipipe._errors import StorageError
from notipipe._storage.postgresql.follow import connect
from notipipe._storage.postgresql.schema import MESSAGES, SUBSCRIPTIONS, ensure_lock_keys, ensure_schema
from notipipe._storage.prune import PruneRequest
from notipipe._storage.urls import redact, scrub

__all__ = ["prune", "report_pruned"]

#: ``application_name`` prefix of the pruning connection.
PRUNER_NAME: Final = "notipipe prune"
#: Attempts of a step two prunes deadlocked (each updates the names' counts).
_ATTEMPTS: Final = 5


def _undelivered(m: str, s: str) -> str:
    """SQL: the alert ``m`` (id, xid) is past the committed cursor of the name ``s``."""
    return (
        f"(NOT pg_visible_in_snapshot({m}.xid, {s}.delivered) AND NOT ({s}.window_end IS NOT NULL"
        f" AND pg_visible_in_snapshot({m}.xid, {s}.window_end) AND {m}.id <= {s}.window_pos))"
    )


def _kept(keep_undelivered: bool) -> str:
    if not keep_undelivered:
        return ""
    return f" AND NOT EXISTS (SELECT FROM {SUBSCRIPTIONS} s WHERE {_undelivered('m', 's')})"


def prune(dsn: str, request: PruneRequest) -> int:
    """Delete (or with ``dry_run`` count) the alerts created before ``request.before``."""
    try:
        with connect(dsn, PRUNER_NAME) as conn:
            ensure_schema(conn)
            ensure_lock_keys(conn)
            if request.dry_run:
                kept = _kept(request.keep_undelivered)
                count = f"SELECT count(*) FROM {MESSAGES} m WHERE m.created_at < %s{kept}"
                got = conn.execute(count, (request.before,)).fetchone()
                return int(got[0]) if got else 0
            return _prune(conn, request)
    except psycopg.Error as error:
        raise StorageError(redact(dsn), f"pruning failed: {scrub(str(error), dsn)}") from None


def _prune(conn: psycopg.Connection[Any], request: PruneRequest) -> int:
    kept = _kept(request.keep_undelivered)
    find = f"SELECT m.id FROM {MESSAGES} m WHERE m.id > %s AND m.created_at < %s{kept} ORDER BY m.id LIMIT %s"
    done, last = 0, 0
    while True:
        ids = [int(r[0]) for r in conn.execute(find, (last, request.before, request.step))]
        if not ids:
            return done
        first, last = ids[0], ids[-1]
        done += _step(conn, first, last, request.before, kept)
        request.report(done)
        if len(ids) < request.step:
            return done


def _step(conn: psycopg.Connection[Any], first: int, last: int, before: float, kept: str) -> int:
    """One transaction: the alerts from id ``first`` to ``last`` still older than ``before``
    deleted, and each durable name's count of them it had not been delivered."""
    sql = f"""
        WITH gone AS (
            DELETE FROM {MESSAGES} m WHERE m.id BETWEEN %(first)s AND %(last)s
              AND m.created_at < %(before)s{kept}
            RETURNING m.id, m.xid
        ), lost AS (
            SELECT s.name, count(*) AS n FROM {SUBSCRIPTIONS} s JOIN gone g ON {_undelivered("g", "s")}
            GROUP BY s.name
        ), counted AS (
            UPDATE {SUBSCRIPTIONS} s SET pruned = s.pruned + lost.n FROM lost WHERE s.name = lost.name
            RETURNING s.name
        )
        SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM counted)
    """
    for attempt in range(_ATTEMPTS):
        try:
            with conn.transaction():
                got = conn.execute(sql, {"first": first, "last": last, "before": before}).fetchone()
            return int(got[0]) if got else 0
        except psycopg.errors.DeadlockDetected:  # two prunes counting for the same names
            if attempt == _ATTEMPTS - 1:
                raise
    return 0


def report_pruned(conn: psycopg.Connection[Any], name: str, key: int) -> int:
    """How many alerts were pruned before delivery to ``name`` since its holder last reported
    (marked reported now: each is told once, whichever process holds the name)."""
    got = conn.execute(
        f"UPDATE {SUBSCRIPTIONS} s SET pruned_reported = s.pruned "
        f"FROM (SELECT name, pruned_reported FROM {SUBSCRIPTIONS} WHERE name = %s AND lock_key = %s "
        ") o WHERE s.name = o.name AND s.pruned > o.pruned_reported "
        "RETURNING s.pruned - o.pruned_reported",
        (name, key),
    ).fetchone()
    return 0 if got is None else int(got[0])
