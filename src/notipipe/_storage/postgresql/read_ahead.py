"""Reading a durable subscriber's next page while its observer works through the one before.

A page read is a round trip in which the server finds the rows and the client decodes them; a
cursor commit is one that waits for the server's disk. Done one after the other with the
deliveries, the subscriber waits for each in turn. A ``ReadAhead`` reads on a thread and a
connection of its own, at most one page ahead of the delivery, so the server's work overlaps
the observer's calls and the cursor's commits (and, on a free-threaded build, so does the
decoding). It waits for the wake-ups on another connection of its own (``follow.Wakeup``): a
holder has three connections, the one that holds the name and commits the cursor, and these two.

Pages follow from the windows alone (see ``follow``), so reading ahead changes nothing the
subscriber delivers or commits: the delivery thread still commits the cursor of each page it
delivered, on the connection that holds the name. A lost reading connection is made again and
reading goes on from the window it had reached, with backoff (logged once), as ``follow()``
does; the holder keeps the name meanwhile.

The reader's connections are locals of its thread, never attributes: a forked child, which
drops the subscriptions it inherits, must not close the parent's sessions by finalising them.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

import psycopg

from notipipe._storage.postgresql.follow import STOP_CHECK, Backoff, Row, Wakeup, Window, connect, read_page
from notipipe._storage.urls import redact, scrub

__all__ = ["READER_NAME", "Page", "ReadAhead"]

_log = logging.getLogger("notipipe")

#: ``application_name`` prefix of a durable subscriber's reading connection.
READER_NAME: Final = "notipipe read-ahead"

#: A page: its rows, the window it was read from, and where a reader stands past it.
type Page = tuple[list[Row], Window, Window]


class ReadAhead:
    """The pages from ``window`` on, read by a thread of their own (started at once); ``get``
    takes them in order. ``stopping`` lets the thread wind down while the delivery finishes;
    ``close`` ends it and waits for it."""

    def __init__(self, dsn: str, name: str, window: Window, page: int, poll: float) -> None:
        self._dsn, self._name, self._window, self._page, self._poll = dsn, name, window, page, poll
        # One page waits here while the delivery thread has the one before; a reader's failure
        # other than the connection's (a bug) comes this way too, for the delivery thread.
        self._pages: queue.Queue[Page | BaseException] = queue.Queue(maxsize=1)
        self._closing = threading.Event()
        #: Cancels the reader's statement in progress (None: none can be).
        self._cancel: Callable[[], None] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"notipipe-subscriber-{name}-read-ahead", daemon=True
        )
        self._thread.start()

    def get(self, stop: threading.Event, timeout: float) -> Page | None:
        """The next page with rows, waiting for it at most ``timeout`` seconds (None after that,
        or once ``stop`` is set). What stopped the reader, other than a lost connection (which
        it makes again itself), is raised here, on the delivery thread."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                got = self._pages.get(timeout=min(remaining, STOP_CHECK))
            except queue.Empty:
                continue
            if isinstance(got, BaseException):
                raise got
            return got
        return None

    def stopping(self) -> None:
        """Read no more (from any thread, without waiting): the delivery is stopping."""
        self._closing.set()

    def close(self) -> None:
        """Stop reading and wait for the reading thread to end: at once if it was waiting (for a
        wake-up, or for room for its page); a statement in progress is cancelled if it does not
        end within ``STOP_CHECK`` seconds (a table lock an operator holds, say)."""
        self._closing.set()
        with contextlib.suppress(queue.Empty):  # a page waiting for room gets it, and is dropped
            self._pages.get_nowait()
        self._thread.join(STOP_CHECK)
        if self._thread.is_alive():
            cancel = self._cancel
            if cancel is not None:
                with contextlib.suppress(Exception):  # the statement may have ended meanwhile
                    cancel()
            self._thread.join()

    def _run(self) -> None:
        wakeup = Wakeup(self._dsn)
        backoff = Backoff()
        warned = False
        try:
            while not self._closing.is_set():
                try:
                    self._read(wakeup, backoff)
                except psycopg.Error as error:
                    if self._closing.is_set():
                        return
                    if not warned:
                        _log.warning(
                            "durable subscriber %r on %s: reading ahead: %s; reconnecting",
                            self._name,
                            redact(self._dsn),
                            scrub(str(error), self._dsn),
                        )
                        warned = True
                    self._closing.wait(backoff.next())
        except BaseException as error:  # noqa: BLE001 - handed to the delivery thread, which reports it
            self._put(error)
        finally:
            wakeup.close()

    def _read(self, wakeup: Wakeup, backoff: Backoff) -> None:
        """Read pages on a connection of this thread until closing, from ``_window`` on (kept
        up to date: a new connection goes on from there)."""
        with connect(self._dsn, READER_NAME) as conn:
            self._cancel = conn.cancel_safe
            try:
                wakeup.listen()
                while not self._closing.is_set():
                    rows, after = read_page(conn, self._window, self._page)
                    backoff.reset()
                    if rows:
                        self._put((rows, self._window, after))
                    else:
                        wakeup.wait(self._poll, self._closing)
                    self._window = after
            finally:
                self._cancel = None

    def _put(self, item: Page | BaseException) -> None:
        while not self._closing.is_set():
            try:
                self._pages.put(item, timeout=STOP_CHECK)
            except queue.Full:
                continue
            return
