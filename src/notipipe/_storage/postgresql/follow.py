"""Following ``notipipe_messages`` on PostgreSQL: snapshot-to-snapshot windows, and the wake-up.

Ids do not order commits across writers (see ``schema``), so a reader never asks for
``id > last_seen``: a transaction that took a lower id and commits later would be skipped. It
reads in windows instead, as PGQ does. A window is the rows whose transaction is visible in the
snapshot ``end`` (taken when the window opens) and was not visible in ``start`` (the previous
window's end): every commit falls into exactly one window, whatever the order of commits and
however long a transaction anywhere on the server stays open. A window is read in pages, by id,
so a writer's rows come in its save order; a writer's next batch commits after its previous one,
so it falls into the same window or a later one.

Readers wake on ``LISTEN`` of the wake-up channel, on a connection of their own (psycopg's
``notifies()`` holds its connection while it waits), and poll as a safety net. A wake-up is a
hint: after a lost listening connection the reader reconnects and reads at once, since
notifications sent meanwhile are gone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from notipipe._errors import StorageError
from notipipe._storage.postgresql.connect import connect as make_connection
from notipipe._storage.postgresql.schema import MESSAGES, WAKEUP_CHANNEL, ensure_schema
from notipipe._storage.urls import redact, scrub

__all__ = [
    "LISTENER_NAME",
    "Backoff",
    "Wakeup",
    "Window",
    "connect",
    "ensure_schema",
    "follow_rows",
    "read_page",
]

_log = logging.getLogger("notipipe")

#: ``application_name`` of a follower's listening connection (``pg_stat_activity`` shows it).
LISTENER_NAME: Final = "notipipe listen"

#: What a reader selects, in the order ``DatabaseCore._message`` takes.
COLUMNS: Final = "id, kind, created_at, priority, address, subject, body"

#: Longest wait, in seconds, before a waiting reader notices its ``stop`` event.
STOP_CHECK: Final = 0.1

type Row = tuple[Any, ...]


def connect(dsn: str, purpose: str) -> psycopg.Connection[Row]:
    """An autocommit connection (no statement holds a snapshot open), named for ``pg_stat_activity``
    (``purpose pid@host``), made as every connection is (``connect``: keepalives, the URL's
    settings first).

    A page is read along the primary key from where the previous one ended and stops after
    ``page`` rows. The planner, which cannot estimate the snapshot filters (and has no
    statistics yet for a table just filled), would rather collect the whole id range and sort
    it, on every page: sorting and bitmap scans are turned off for these connections.
    """
    name = f"{purpose} {os.getpid()}@{socket.gethostname()}"[:63]
    return make_connection(dsn, name, options="-c enable_sort=off -c enable_bitmapscan=off")


@dataclass(frozen=True, slots=True)
class Window:
    """Where a reader stands: every row visible in ``start`` is behind it (``None``: the first
    window, which takes the rows visible in ``end`` with an id above ``position``). ``end`` is the
    window being read (``None``: the next read opens one); ``position`` the last id read in it;
    ``last`` the window's highest id (``None``: not known yet; it is never stored, since the
    window's rows, and so its highest id, follow from the two snapshots)."""

    start: str | None
    end: str | None
    position: int
    last: int | None = None

    @classmethod
    def first(cls, after_id: int) -> Window:
        return cls(None, None, after_id)


def _xmin(snapshot: str) -> int:
    return int(snapshot.split(":", 1)[0])


def _xmax(snapshot: str) -> int:
    return int(snapshot.split(":", 2)[1])


def read_page(conn: psycopg.Connection[Row], window: Window, page: int) -> tuple[list[Row], Window]:
    """The next up to ``page`` rows of ``window`` by id, and where the reader stands after them.

    A short page ends the window: the next read opens a new one from its end. Each statement
    runs in a snapshot of its own, which sees every transaction the window's ``end`` sees.
    """
    end, position, last = window.end, window.position, window.last
    if end is None:
        got = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
        assert got is not None
        end = str(got[0])
    params: dict[str, object] = {"start": window.start, "end": end, "xmax": str(_xmax(end)), "page": page}
    if window.start is None:
        within = "pg_visible_in_snapshot(xid, %(end)s::pg_snapshot)"
        narrow = "TRUE"
    else:
        within = (
            "pg_visible_in_snapshot(xid, %(end)s::pg_snapshot) "
            "AND NOT pg_visible_in_snapshot(xid, %(start)s::pg_snapshot)"
        )
        # Only narrows the index scan: a transaction not visible in ``start`` has an xid of at
        # least its xmin, and one visible in ``end`` is below its xmax.
        narrow = "xid >= %(xmin)s::text::xid8 AND xid < %(xmax)s::text::xid8"
        params["xmin"] = str(_xmin(window.start))
    if last is None:
        # The window's id range, found once by transaction id; its pages are then read along
        # the primary key from where the previous one ended, so a page costs about its own rows
        # however large the window.
        params["position"] = position
        got = conn.execute(
            f"SELECT min(id), max(id) FROM {MESSAGES} WHERE {narrow} AND id > %(position)s AND {within}",
            params,
        ).fetchone()
        if got is None or got[1] is None:
            return [], Window(end, None, 0)
        position, last = max(position, int(got[0]) - 1), int(got[1])
    params["position"], params["last"] = position, last
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM {MESSAGES} WHERE id > %(position)s AND id <= %(last)s AND {within} "
        "ORDER BY id LIMIT %(page)s",
        params,
        binary=True,  # no text parsing of every value on the client
    ).fetchall()
    if len(rows) < page:
        return rows, Window(end, None, 0)
    return rows, Window(window.start, end, int(rows[-1][0]), last)


class Backoff:
    """Seconds to wait before the next reconnection attempt: doubling, up to ``most``."""

    def __init__(self, first: float = 0.05, most: float = 2.0) -> None:
        self._first, self._most = first, most
        self._next = first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self._most)
        return delay

    def reset(self) -> None:
        self._next = self._first


class Wakeup:
    """A ``LISTEN`` on the wake-up channel, on a connection of its own, reconnected when lost."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Row] | None = None
        # Paces the attempts to (re)make the listening connection while it cannot be made: the
        # reads may still work, and a caller that reads and waits again must not spin.
        self._backoff = Backoff()

    def listen(self) -> bool:
        """Make sure a connection listens; True if it had to be (re)made, so wake-ups were missed."""
        if self._conn is not None and not self._conn.closed:
            return False
        self.close()
        conn = connect(self._dsn, LISTENER_NAME)
        try:
            conn.execute(f"LISTEN {WAKEUP_CHANNEL}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return True

    def wait(self, timeout: float, stop: threading.Event) -> None:
        """Return after a wake-up, after ``timeout`` seconds, once ``stop`` is set, or at once
        after reconnecting (the caller then reads: what was committed meanwhile sent no wake-up
        it could still receive). Connection errors end the wait too, after a pause (doubling
        while the listening connection cannot be made, within ``timeout``) so that a caller
        whose reads still work does not spin; the caller's read reports the errors it meets."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                if self.listen():
                    self._backoff.reset()
                    return
                assert self._conn is not None
                woken = False
                for _ in self._conn.notifies(timeout=min(remaining, STOP_CHECK), stop_after=1):
                    woken = True
                if woken:
                    for _ in self._conn.notifies(timeout=0):  # one read answers them all
                        pass
                    return
            except psycopg.Error:
                self.close()
                stop.wait(min(max(deadline - time.monotonic(), 0.0), self._backoff.next()))
                return

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def follow_rows(
    dsn: str, after_id: int, page: int, poll: float, stop: threading.Event
) -> Iterator[list[Row]]:
    """``DatabaseConnection.follow`` on PostgreSQL, in rows: see there.

    The first connection's failure raises ``StorageError``; later ones are retried with backoff
    (the reader's place is kept in memory, so nothing is skipped or repeated).
    """
    wakeup = Wakeup(dsn)
    reader: psycopg.Connection[Row] | None = None
    window = Window.first(after_id)
    backoff = Backoff()
    warned = False
    try:
        try:
            wakeup.listen()
            reader = connect(dsn, "notipipe follow")
            ensure_schema(reader)
        except psycopg.Error as error:
            raise StorageError(redact(dsn), f"cannot follow: {scrub(str(error), dsn)}") from None
        while not stop.is_set():
            try:
                if reader is None:
                    reader = connect(dsn, "notipipe follow")
                rows, window = read_page(reader, window, page)
            except psycopg.Error as error:
                if reader is not None:
                    reader.close()
                    reader = None
                if not warned:
                    _log.warning("following %s: %s; reconnecting", redact(dsn), scrub(str(error), dsn))
                    warned = True
                stop.wait(backoff.next())
                continue
            backoff.reset()
            warned = False
            if rows:
                yield rows
            else:
                wakeup.wait(poll, stop)
    finally:
        wakeup.close()
        if reader is not None:
            reader.close()
