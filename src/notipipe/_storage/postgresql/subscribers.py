"""Durable named subscribers on PostgreSQL: ``subscribe(observer, durable_name=...)``.

The promise, for a subscription named N:

* **Where it starts.** The first ``subscribe`` with the name N creates it, before returning:
  every alert not yet committed at that moment is delivered (alerts committed earlier are not;
  read them with ``after``). A later ``subscribe`` with the name N, from any process, resumes
  where the name's cursor stands.
* **What it delivers.** Every alert committed by any writer process, at least once, after it
  is committed (durable), none skipped, each carrying its stored ``id``; each writer's alerts in
  that writer's save order. Alerts of different writers may interleave in any order.
* **The cursor** is the row N of ``notipipe_subscriptions``. It is committed after each page's
  ``update`` calls have returned, every ``poll`` seconds during a page that takes longer, and
  when delivery stops, just past the last alert delivered. So a restart resumes after the last
  committed alert; an alert is delivered twice only when the subscriber dies (or loses its
  connection) before the cursor's next commit, and then only the alerts since the last one (at
  most ``page``).
* **One holder.** One process at a time delivers N: it holds a session advisory lock, keyed by
  the row's own ``lock_key`` (distinct names never share a lock), on the connection that
  commits the cursor. Another ``subscribe`` with the name N waits as a standby and takes over
  (within ``poll`` seconds) when the holder's connection ends: the process died, unsubscribed,
  or its connection was cut. A holder whose session ends while its observer works through a
  page makes no further ``update`` call once it can know: within ``SESSION_CHECK`` (0.1 ms) of
  calls when the server ended the session (``pg_terminate_backend``, a shutdown: the server
  says so before the lock is free), and at the cursor's next commit, at most ``poll`` seconds
  of calls later, when the connection was cut without a word (a failover, a network cut). So a
  standby's delivery overlaps the old holder's by at most the ``update`` call in progress and
  0.1 ms of calls, or for a silent cut by at most ``poll`` seconds of calls; those alerts are
  delivered twice, never skipped.
* **Failures.** An ``update`` that raises goes to the database's ``error_handler`` (throttled as
  for every observer), and delivery goes on with the next alert: that alert counts as delivered.
  An ``Exception`` is reported as it is; a ``BaseException`` (``SystemExit``,
  ``KeyboardInterrupt``: on this thread they can stop nothing but the delivery) is reported
  wrapped in a ``RuntimeError`` whose ``__cause__`` it is, since handlers take an ``Exception``.
  A stored row that is not a valid alert (written by another tool: say, a priority out of range)
  is reported the same way, with the row's tuple as the message, and skipped: the cursor moves
  past it. Lost connections, and any other error of the delivery thread, are logged and retried
  with backoff, resuming from the committed cursor.
* **Stopping.** ``unsubscribe(observer)``, also from inside ``update``, stops delivery before the
  next alert (never at the end of the page), commits the cursor just past the last alert
  delivered, and releases the name; the cursor stays for the next ``subscribe``. Called from
  another thread it waits only for the ``update`` call in progress, if any, and that commit
  (and, should the reading thread be in a statement then, at most 0.1 s more: the statement is
  then cancelled).
  ``close()`` (and so the atexit hook) does the same for every durable subscription of the
  connection.

* **Deleted or reset** (``delete_subscription``, ``reset_subscription``: see ``manage``) while
  held, with ``force``: the holder reconnects and takes the name as it then stands (made again
  from then on, or from the reset position), and logs it.

Delivery runs on a thread of the subscription, with no lock of notipipe's held; the next page
is read meanwhile by another (``read_ahead``), on a connection of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import psycopg

from notipipe._errors import AlertsPrunedError, StorageError
from notipipe._failures import DatabaseFailures, ObserverFailures
from notipipe._protocols import ErrorHandler
from notipipe._storage.backend import check_durable_name as check_name
from notipipe._storage.postgresql.follow import Backoff, Row, Window, connect, ensure_schema
from notipipe._storage.postgresql.prune import report_pruned
from notipipe._storage.postgresql.read_ahead import ReadAhead
from notipipe._storage.postgresql.schema import MESSAGES, SUBSCRIPTIONS, ensure_lock_keys
from notipipe._storage.urls import redact, scrub

__all__ = ["DurableSubscription", "SubscriptionState", "check_name", "list_subscriptions"]

_log = logging.getLogger("notipipe")

#: ``application_name`` prefix of the connection that holds (or waits for) a subscription.
HOLDER_NAME: Final = "notipipe subscriber"


class DurableSubscription:
    """One observer's delivery under one durable name, on a thread of its own."""

    def __init__(
        self,
        dsn: str,
        name: str,
        observer: Any,
        to_message: Callable[[Row], object],
        error_handler: Callable[[], ErrorHandler],
        *,
        page: int,
        poll: float,
        message_classes: tuple[type, type] | None = None,
    ) -> None:
        self.dsn, self.name, self.observer = dsn, name, observer
        self._update: Callable[[object], object] = observer.update
        self._to_message = to_message
        self._classes = message_classes
        self._failures = DatabaseFailures(error_handler)
        self._failed = ObserverFailures(self._failures, observer).failed
        self._page, self._poll = page, poll
        self._stop = threading.Event()
        #: The lock key this subscription last held the name under (None: never held it).
        self._held_key: int | None = None
        self._pruned_checked = -float("inf")
        self._stopping = False  # set with _stop: read before each alert, cheaper than is_set()
        self._reader: ReadAhead | None = None  # the holder's reader, told when stop() is called
        self._thread = threading.Thread(target=self._run, name=f"notipipe-subscriber-{name}", daemon=True)

    def start(self) -> None:
        """Create the name's cursor if it is new (so the start is fixed on return), then deliver."""
        try:
            with connect(self.dsn, HOLDER_NAME) as conn:
                ensure_schema(conn)
                ensure_lock_keys(conn)
                self._create(conn)
        except psycopg.Error as error:
            raise StorageError(
                redact(self.dsn), f"cannot subscribe {self.name!r}: {scrub(str(error), self.dsn)}"
            ) from None
        self._thread.start()

    def stop(self) -> None:
        """Stop delivering at the next alert and release the name; unless called from the delivery
        thread, wait for it: for the ``update`` call in progress, if any, and the cursor's commit
        (the reading thread winds down meanwhile: see ``ReadAhead.close``)."""
        self._stopping = True
        self._stop.set()
        reader = self._reader
        if reader is not None:  # winds down while the update in progress finishes
            reader.stopping()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join()

    @property
    def failures(self) -> int:
        return self._failures.count

    # -- the delivery thread ---------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff()
        warned = False
        while not self._stop.is_set():
            try:
                self._hold_and_deliver(backoff)
            except (psycopg.Error, _NameLostError) as error:
                if not warned:
                    _log.warning(
                        "durable subscriber %r on %s: %s; reconnecting",
                        self.name,
                        redact(self.dsn),
                        scrub(str(error), self.dsn),
                    )
                    warned = True
                self._stop.wait(backoff.next())
            except Exception:  # noqa: BLE001 - a bug must not end delivery silently: logged, retried
                _log.exception("durable subscriber %r on %s failed; retrying", self.name, redact(self.dsn))
                self._stop.wait(backoff.next())

    def _hold_and_deliver(self, backoff: Backoff) -> None:
        # The lock and the cursor live on one connection: a cursor commit that succeeds proves
        # the lock is still held, and the lock goes with the connection, whatever ends it.
        with connect(self.dsn, HOLDER_NAME) as conn:
            while True:  # a standby until the lock is ours
                key = self._try_lock(conn)
                if key is not None:
                    break
                backoff.reset()
                if self._stop.wait(self._poll):
                    return
            window = self._load(conn, key)
            reader = self._reader = ReadAhead(self.dsn, self.name, window, self._page, self._poll)
            if self._stop.is_set():  # stop() came before the reader was there to be told
                reader.stopping()
            try:
                backoff.reset()
                while not self._stop.is_set():
                    self._report_pruned(conn, key)
                    got = reader.get(self._stop, self._poll)  # the prune check's pace when idle
                    if got is not None:
                        rows, before, after = got
                        self._deliver(conn, key, rows, before, after)
                # Released here, not by closing: the server ends a closed session's backend (and
                # its locks) some time after the client has gone, and unsubscribe() promises the
                # name free once it returns.
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            finally:
                self._reader = None
                reader.close()

    def _report_pruned(self, conn: psycopg.Connection[Row], key: int) -> None:
        """Tell the error handler, once, of alerts a prune deleted before delivery (at most
        every ``poll`` seconds: one small statement)."""
        now = time.monotonic()
        if now < self._pruned_checked + self._poll:
            return
        self._pruned_checked = now
        if lost := report_pruned(conn, self.name, key):
            self._failed(None, AlertsPrunedError(self.name, lost))

    def _create(self, conn: psycopg.Connection[Row]) -> None:
        """The name's row, starting now, unless it exists (no identity value spent if it does)."""
        conn.execute(
            f"INSERT INTO {SUBSCRIPTIONS} (name, delivered) SELECT %(name)s, pg_current_snapshot() "
            f"WHERE NOT EXISTS (SELECT FROM {SUBSCRIPTIONS} WHERE name = %(name)s) "
            "ON CONFLICT (name) DO NOTHING",
            {"name": self.name},
        )

    def _try_lock(self, conn: psycopg.Connection[Row]) -> int | None:
        """The name's lock key once this session holds its lock; None if another session does."""
        while True:
            got = conn.execute(
                f"SELECT lock_key, pg_try_advisory_lock(lock_key) FROM {SUBSCRIPTIONS} WHERE name = %s",
                (self.name,),
            ).fetchone()
            if got is not None:
                return int(got[0]) if got[1] else None
            self._create_again(conn)  # deleted meanwhile: start again from now

    def _deliver(
        self, conn: psycopg.Connection[Row], key: int, rows: list[Row], before: Window, after: Window
    ) -> None:
        """Deliver a page read from ``before`` (``after``: past all of it) and commit the cursor
        where it then stands. Stops between alerts once ``stop`` is set, committing the cursor just
        past the last alert delivered. The session is checked before the first ``update`` and
        then every ``SESSION_CHECK`` seconds of calls: the server ending it (the lock goes with
        it) is seen by what it sent; a session cut off without a word is found by the cursor's
        commit every ``poll`` seconds of a page."""
        messages = self._messages(rows)
        # The session check makes no round trip: it reads only what the server has already sent.
        # A session the server ends (``pg_terminate_backend``, a shutdown) gets its last message
        # and the socket's end before its locks are free for another session, so once another
        # holder can have the name, the next check sees it. A check is a system call, which a
        # backlog's quick calls would pay per alert: it runs before the page's first call and
        # then before each call that starts ``SESSION_CHECK`` or more after the last check.
        pgconn = conn.pgconn
        consume_input = pgconn.consume_input
        # perf_counter: monotonic() ticks every 15.6 ms on Windows before 3.13.
        update, failed, poll, clock = self._update, self._failed, self._poll, time.perf_counter
        delivered = 0
        due = clock() + poll  # the cursor's next commit during a long page
        check_at = 0.0
        for message in messages:
            if self._stopping:
                break
            if (now := clock()) >= check_at:
                consume_input()  # raises once the server has closed the connection
                if pgconn.status != _CONNECTION_OK:
                    raise psycopg.OperationalError(_SESSION_ENDED)
                if delivered and now >= due:
                    self._save(conn, key, _through(before, after, rows[delivered - 1]))
                    now = clock()
                    due = now + poll
                check_at = now + SESSION_CHECK
            if type(message) is _Unreadable:
                failed(message.row, message.error)
            else:
                try:
                    update(message)
                except Exception as error:  # noqa: BLE001 - reported, never ends the subscription
                    failed(message, error)
                except BaseException as error:  # noqa: BLE001 - SystemExit here could only end delivery
                    wrapped = RuntimeError(f"update raised {type(error).__name__}: {error}")
                    wrapped.__cause__ = error
                    failed(message, wrapped)
            delivered += 1
        if delivered == 0:
            return
        reached = after if delivered == len(rows) else _through(before, after, rows[delivered - 1])
        self._save(conn, key, reached)

    def _messages(self, rows: list[Row]) -> list[object]:
        """Each row's alert, or an ``_Unreadable`` for a row that holds none (another tool's).

        Built for the whole page before delivery starts, an e-mail or an SMS by the same calls
        as ``to_message`` (``DatabaseCore._message``) makes, straight from the row: no call of
        its per alert. Other kinds, and rows those calls refuse, go through ``to_message``, which
        raises what it raises for them.
        """
        to_message = self._to_message
        out: list[object] = []
        append = out.append
        if self._classes is None:
            for row in rows:
                try:
                    append(to_message(row))
                except Exception as error:  # noqa: BLE001 - a row another tool stored: reported, skipped
                    append(_Unreadable(row, error))
            return out
        email, sms = self._classes
        for row in rows:
            id_, kind, created_at, priority, address, subject, body = row
            try:
                if created_at is None:  # the classes take None for "now": to_message refuses it
                    append(to_message(row))
                elif kind == "email":
                    append(email(address, subject, body, priority=priority, created_at=created_at, id=id_))
                elif kind == "sms":
                    append(sms(address, body, priority=priority, created_at=created_at, id=id_))
                else:
                    append(to_message(row))
            except Exception as error:  # noqa: BLE001 - a row another tool stored: reported, skipped
                append(_Unreadable(row, error))
        return out

    def _load(self, conn: psycopg.Connection[Row], key: int) -> Window:
        got = conn.execute(
            f"SELECT delivered::text, window_end::text, window_pos FROM {SUBSCRIPTIONS} "
            "WHERE name = %s AND lock_key = %s",
            (self.name, key),
        ).fetchone()
        if got is None:
            raise _NameLostError(self.name)
        self._note_key(key)
        return Window(str(got[0]), None if got[1] is None else str(got[1]), int(got[2]))

    def _create_again(self, conn: psycopg.Connection[Row]) -> None:
        """The name's row made again after it was deleted; logged if this subscription held it."""
        if self._held_key is not None:
            _log.warning(
                "durable subscriber %r on %s: its name was deleted while held (notipipe subscriptions"
                " --delete --force, or by hand): made again, delivering the alerts committed from now on",
                self.name,
                redact(self.dsn),
            )
            self._held_key = None
        self._create(conn)

    def _note_key(self, key: int) -> None:
        """Note the lock key the name is now held under; a new one for a name this subscription
        held means its cursor was reset meanwhile (``reset_subscription``): logged."""
        if self._held_key is not None and key != self._held_key:
            _log.warning(
                "durable subscriber %r on %s: its name was reset while held (notipipe subscriptions"
                " --reset --force): delivering from the reset position",
                self.name,
                redact(self.dsn),
            )
        self._held_key = key

    def _save(self, conn: psycopg.Connection[Row], key: int, window: Window) -> None:
        done = conn.execute(
            f"UPDATE {SUBSCRIPTIONS} SET delivered = %s::pg_snapshot, window_end = %s::pg_snapshot, "
            "window_pos = %s, updated_at = now() WHERE name = %s AND lock_key = %s",
            (window.start, window.end, window.position, self.name, key),
        )
        if done.rowcount != 1:
            raise _NameLostError(self.name)


class _Unreadable:
    """A row no alert can be built from, and why: reported in its place, then skipped."""

    __slots__ = ("error", "row")

    def __init__(self, row: Row, error: Exception) -> None:
        self.row, self.error = row, error


class _NameLostError(Exception):
    """The name's row went (dropped by hand, perhaps made again, with a new lock key) while held."""

    def __str__(self) -> str:
        return f"its row in {SUBSCRIPTIONS} was dropped while held"


#: Seconds of ``update`` calls between two checks of the holder's session, at most (a call
#: that starts later than this after the last check is preceded by one).
SESSION_CHECK: Final = 0.0001
#: What ``pgconn.status`` is while the session lives.
_CONNECTION_OK: Final = int(psycopg.pq.ConnStatus.OK)
_SESSION_ENDED: Final = "the session holding the name has ended"


def _through(before: Window, after: Window, row: Row) -> Window:
    """Where a reader stands after the rows up to ``row`` of a page read from ``before`` (``after``:
    where it stands past the whole page). Ids order the rows within a window, so the rest of
    the window is its rows above ``row``'s id."""
    end = after.end if after.end is not None else after.start  # a short page closed its window
    return Window(before.start, end, int(row[0]), after.last)


class SubscriptionState:
    """One row of ``list_subscriptions``: a durable name, its lag, and who holds it (a
    ``SubscriptionInfo``)."""

    __slots__ = ("holder", "name", "oldest_age", "pruned", "undelivered", "updated_at")

    def __init__(
        self,
        name: str,
        undelivered: int,
        oldest_age: float | None,
        holder: str | None,
        updated_at: float,
        *,
        pruned: int = 0,
    ) -> None:
        self.name = name
        #: Alerts a prune deleted before delivery (see ``prune``).
        self.pruned = pruned
        #: Committed alerts not yet delivered (the cursor not yet past them).
        self.undelivered = undelivered
        #: Seconds since the oldest undelivered alert was created, or None.
        self.oldest_age = oldest_age
        #: The holding process as ``pid@host`` (its client address added for a remote one), or
        #: None if no process holds the name.
        self.holder = None if holder is None else holder.removeprefix(HOLDER_NAME + " ")
        #: When the cursor was last committed (seconds since the epoch).
        self.updated_at = updated_at

    @property
    def last_id(self) -> None:
        """None: the cursor is a snapshot, ids do not follow commits (see ``follow``)."""
        return None

    @property
    def lag(self) -> int:
        return self.undelivered

    @property
    def active(self) -> bool:
        return self.holder is not None


def list_subscriptions(dsn: str) -> list[SubscriptionState]:
    """Every durable subscription of the database at ``dsn``, by name (``StorageError`` if the
    database cannot be reached)."""
    try:
        return _list_subscriptions(dsn)
    except psycopg.Error as error:
        raise StorageError(redact(dsn), f"cannot list the subscriptions: {scrub(str(error), dsn)}") from None


def _list_subscriptions(dsn: str) -> list[SubscriptionState]:
    with connect(dsn, "notipipe subscriptions") as conn:
        ensure_schema(conn)
        ensure_lock_keys(conn)
        rows = conn.execute(
            f"""
            SELECT s.name, lag.n, lag.oldest, holder.who, extract(epoch FROM s.updated_at)::float8, s.pruned
            FROM {SUBSCRIPTIONS} s
            CROSS JOIN LATERAL (
                SELECT count(*) AS n, extract(epoch FROM now())::float8 - min(m.created_at) AS oldest
                FROM {MESSAGES} m
                WHERE m.xid >= pg_snapshot_xmin(s.delivered)
                  AND NOT pg_visible_in_snapshot(m.xid, s.delivered)
                  AND NOT (s.window_end IS NOT NULL AND pg_visible_in_snapshot(m.xid, s.window_end)
                           AND m.id <= s.window_pos)
            ) lag
            LEFT JOIN LATERAL (
                SELECT a.application_name || coalesce(' from ' || host(a.client_addr), '') AS who
                FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
                        SELECT oid FROM pg_database WHERE datname = current_database())
                  AND l.objsubid = 1  -- a lock on one bigint key, split in two
                  AND ((l.classid::bigint << 32) | l.objid::bigint) = s.lock_key
                LIMIT 1
            ) holder ON true
            ORDER BY s.name
            """
        ).fetchall()
    return [
        SubscriptionState(
            str(name),
            int(n),
            None if oldest is None else float(oldest),
            who,
            float(updated),
            pruned=int(pruned),
        )
        for name, n, oldest, who, updated, pruned in rows
    ]
