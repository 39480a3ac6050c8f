"""Reading a durable subscriber's next page while its observer works through the one before.

A page read is a round trip in which the server finds the rows and the client decodes them; a
cursor commit is one that waits for the server's disk. Done one after the other with the
deliveries, the subscriber waits for each in turn. A ``ReadAhead`` reads on a connection and a
thread of its own (which also waits for the wake-ups), at most one page ahead of the delivery,
so the server's work, the decoding and the observer's calls overlap.

Pages follow from the windows alone (see ``follow``), so reading ahead changes nothing the
subscriber delivers or commits: the delivery thread still commits the cursor of each page it
delivered, on the connection that holds the name.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Final

from notipipe._storage.postgresql.follow import STOP_CHECK, Row, Wakeup, Window, connect, read_page

__all__ = ["READER_NAME", "Page", "ReadAhead"]

#: ``application_name`` prefix of a durable subscriber's reading connection.
READER_NAME: Final = "notipipe read-ahead"

#: A page: its rows, the window it was read from, and where a reader stands past it.
type Page = tuple[list[Row], Window, Window]


class ReadAhead:
    """The pages from ``window`` on, read by a thread of their own (started at once); ``get``
    takes them in order. ``close`` stops the thread and its connections."""

    def __init__(self, dsn: str, name: str, window: Window, page: int, poll: float) -> None:
        self._dsn, self._window, self._page, self._poll = dsn, window, page, poll
        # One page waits here while the delivery thread has the one before.
        self._pages: queue.Queue[Page | BaseException] = queue.Queue(maxsize=1)
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"notipipe-subscriber-{name}-reader", daemon=True
        )
        self._thread.start()

    def get(self, stop: threading.Event, timeout: float) -> Page | None:
        """The next page with rows, waiting for it at most ``timeout`` seconds (None after that,
        or once ``stop`` is set). What stopped the reader (a lost connection, say) is raised
        here, on the delivery thread."""
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

    def close(self) -> None:
        """Stop reading, and wait for the reading thread to end (its statement in progress)."""
        self._done.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        wakeup = Wakeup(self._dsn)
        try:
            with connect(self._dsn, READER_NAME) as conn:
                wakeup.listen()
                window = self._window
                while not self._done.is_set():
                    rows, after = read_page(conn, window, self._page)
                    if rows:
                        self._put((rows, window, after))
                    else:
                        wakeup.wait(self._poll, self._done)
                    window = after
        except BaseException as error:  # noqa: BLE001 - handed to the delivery thread, which decides
            self._put(error)
        finally:
            wakeup.close()

    def _put(self, item: Page | BaseException) -> None:
        while not self._done.is_set():
            try:
                self._pages.put(item, timeout=STOP_CHECK)
            except queue.Full:
                continue
            return
