"""Deleting and resetting a durable name on PostgreSQL: ``notipipe subscriptions --delete/--reset``.

* **Held or not.** A name is held while a session holds its advisory lock (see ``subscribers``).
  Unforced, the change takes that lock itself first, so no subscriber can take the name while
  it is made; a name another session holds is refused, naming the holder (``pid@host``).
* **Forced.** The change is made whatever holds the name, and then the holder's session is ended
  (``pg_terminate_backend``). A reset gives the row a new ``lock_key``, and a delete removes the
  row, so the old holder can commit no cursor over it: its next check of its session (every
  0.1 ms of ``update`` calls) or, should its session not be ended (no right to), its next cursor commit
  fails; it reconnects as any subscriber that lost its connection, and then takes the name as
  it now stands: a reset name from the reset position, a deleted name made again, delivering
  what is committed from then on (it logs both). The ``update`` call in progress finishes.
* **A reset's position.** Ids do not follow commits (see ``follow``), so "after id N" is defined
  by a snapshot taken at the reset: every alert committed by then with an id up to N counts as
  delivered; every alert committed by then with a higher id, and every alert committed later
  (whatever its id: a transaction that took a lower id and commits after the reset too), is
  delivered. The cursor is the window from a snapshot that sees none of those higher ids to the
  reset's snapshot, read from id N on. A reset by time ``since`` is a reset to the id just
  before the first alert created at or after ``since`` (as ``follow(since=...)`` starts): no
  alert of ``since`` or later is skipped; an older alert with a higher id (another writer's)
  is delivered again too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import psycopg

from notipipe._errors import StorageError
from notipipe._storage.postgresql.follow import Row, connect, ensure_schema
from notipipe._storage.postgresql.schema import MESSAGES, SUBSCRIPTIONS, ensure_lock_keys
from notipipe._storage.postgresql.subscribers import HOLDER_NAME
from notipipe._storage.urls import redact, scrub

__all__ = ["TERMINATE_WAIT", "delete_subscription", "reset_subscription"]

_log = logging.getLogger("notipipe")

#: Milliseconds a forced change waits for the holder's session to end.
TERMINATE_WAIT: Final = 5000
#: Times an unforced change tries again when the holder it saw let go meanwhile.
_ATTEMPTS: Final = 5

type _Change = Callable[[psycopg.Connection[Row], int], None]


def delete_subscription(dsn: str, name: str, *, force: bool) -> bool:
    """Delete the name's row (False: there is none); held: see the module."""

    def delete(conn: psycopg.Connection[Row], key: int) -> None:
        conn.execute(f"DELETE FROM {SUBSCRIPTIONS} WHERE name = %s AND lock_key = %s", (name, key))

    return _managed(dsn, name, "delete", force, delete)


def reset_subscription(
    dsn: str, name: str, *, after_id: int | None, since: float | None, force: bool
) -> bool:
    """Move the name's cursor (see the module); False: there is no such name."""

    def reset(conn: psycopg.Connection[Row], key: int) -> None:
        with conn.transaction():
            upto = after_id if after_id is not None else _id_before(conn, since)
            _reset_cursor(conn, name, key, upto)

    return _managed(dsn, name, "reset", force, reset)


def _managed(dsn: str, name: str, what: str, force: bool, change: _Change) -> bool:
    try:
        with connect(dsn, "notipipe subscriptions") as conn:
            ensure_schema(conn)
            ensure_lock_keys(conn)
            return _change(conn, dsn, name, what=what, force=force, change=change)
    except psycopg.Error as error:
        raise StorageError(redact(dsn), f"cannot {what} {name!r}: {scrub(str(error), dsn)}") from None


def _change(
    conn: psycopg.Connection[Row], dsn: str, name: str, *, what: str, force: bool, change: _Change
) -> bool:
    for _ in range(_ATTEMPTS):
        got = conn.execute(f"SELECT lock_key FROM {SUBSCRIPTIONS} WHERE name = %s", (name,)).fetchone()
        if got is None:
            return False
        key = int(got[0])
        if _try_lock(conn, key):
            try:
                change(conn, key)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return True
        holder = _holder(conn, key)
        if holder is None:
            continue  # let go since: ask again
        pid, who = holder
        if not force:
            raise StorageError(
                redact(dsn),
                f"cannot {what} the durable subscription {name!r}: {who} holds it (stop that subscriber"
                " first, or force it: its session is ended, and it takes the name again as it then stands)",
            )
        change(conn, key)
        _end_session(conn, dsn, name, pid, who)
        return True
    raise StorageError(redact(dsn), f"cannot {what} {name!r}: its holder keeps changing; try again")


def _try_lock(conn: psycopg.Connection[Row], key: int) -> bool:
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(got and got[0])


def _holder(conn: psycopg.Connection[Row], key: int) -> tuple[int, str] | None:
    """The session holding the lock ``key``: its pid and who it is (``pid@host``), or None."""
    got = conn.execute(
        """
        SELECT a.pid, a.application_name || coalesce(' from ' || host(a.client_addr), '')
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
                SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
        LIMIT 1
        """,
        (key,),
    ).fetchone()
    if got is None:
        return None
    return int(got[0]), str(got[1]).removeprefix(HOLDER_NAME + " ")


def _end_session(conn: psycopg.Connection[Row], dsn: str, name: str, pid: int, who: str) -> None:
    """End the holder's session; if it cannot be ended, the holder stops at its next cursor
    commit instead (the change already made it lose the name): logged, not raised."""
    try:
        got = conn.execute("SELECT pg_terminate_backend(%s, %s)", (pid, TERMINATE_WAIT)).fetchone()
        ended = bool(got and got[0])
        reason = "it did not end in time"
    except psycopg.Error as error:
        ended, reason = False, scrub(str(error), dsn)
    if not ended:
        _log.warning(
            "durable subscription %r on %s: the session of its holder %s was not ended (%s); it stops"
            " delivering under the old position at its next cursor commit",
            name,
            redact(dsn),
            who,
            reason,
        )


def _id_before(conn: psycopg.Connection[Row], since: float | None) -> int:
    """The id just before the first alert created at or after ``since``; the last id if none is."""
    got = conn.execute(
        f"SELECT (SELECT min(id) FROM {MESSAGES} WHERE created_at >= %s), (SELECT max(id) FROM {MESSAGES})",
        (since,),
    ).fetchone()
    first, last = got if got is not None else (None, None)
    if first is not None:
        return int(first) - 1
    return 0 if last is None else int(last)


def _reset_cursor(conn: psycopg.Connection[Row], name: str, key: int, upto: int) -> None:
    """The cursor after ``upto`` at this statement's snapshot E: the window from ``X:X:`` (which
    sees only transactions below X, the lowest xid of a row above ``upto`` visible in E) to E,
    read from id ``upto`` on; no such row: E itself. A new lock key, so that a holder still
    working from the old cursor can commit no cursor over this one."""
    conn.execute(
        f"""
        WITH e AS (SELECT pg_current_snapshot() AS snap),
        x AS (
            SELECT min(m.xid::text::numeric) AS low FROM {MESSAGES} m, e
            WHERE m.id > %(upto)s AND pg_visible_in_snapshot(m.xid, e.snap)
        )
        UPDATE {SUBSCRIPTIONS} SET
            delivered = CASE WHEN x.low IS NULL THEN e.snap
                             ELSE (x.low::text || ':' || x.low::text || ':')::pg_snapshot END,
            window_end = CASE WHEN x.low IS NULL THEN NULL ELSE e.snap END,
            window_pos = CASE WHEN x.low IS NULL THEN 0 ELSE %(upto)s END,
            updated_at = now(),
            lock_key = DEFAULT
        FROM e, x
        WHERE name = %(name)s AND lock_key = %(key)s
        """,
        {"upto": upto, "name": name, "key": key},
    )
