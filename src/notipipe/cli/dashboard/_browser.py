"""One browser's event stream: the pages it has still to be sent, bounded in bytes.

Policy for a browser that cannot keep up (a slow link, or a laptop asleep with its connection
open): the hub hands each page to the browser's queue at once, and the queue holds the pages'
frames only (what the page shows, never an alert's full text). The frames queued and the one
being written may add up to ``limit`` bytes; a page that would pass it cuts the browser off, as
does a write it takes none of for ``stall`` seconds. Cut off means the connection is reset
(``HangUp.abort``): the server drops what it holds for the browser at once, where a polite end
would need the browser to read. Only where no server hold is given (the ASGI application alone)
does a browser that falls behind get the end of its response instead.

``EventSource`` then reconnects by itself with the ``Last-Event-ID`` of the last event it
received whole, and the new stream replays the missed alerts from the database: the browser
pays in delay, never in lost or repeated alerts. What one browser holds on the server is
``limit`` bytes of frames (shared with the other browsers) and what its connection buffers,
until it is cut off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

from notipipe.cli.dashboard._feed import Page

__all__ = ["CHUNK_BYTES", "BrowserFeed", "FrameAfter", "HangUp", "Send"]

_log = logging.getLogger("notipipe.dashboard")

type Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
#: ``(after_id, upto_id)`` -> the frame of the alerts stored in between, read again.
type FrameAfter = Callable[[int, int], Awaitable[bytes]]


class HangUp(Protocol):
    """What the server can do to one browser's connection, which its ASGI application cannot."""

    def abort(self) -> None:
        """Reset the connection at once, dropping what it has still to send."""


#: Queued frames are joined into writes of about this size: a write is this browser's own copy.
CHUNK_BYTES = 64 * 1024


class BrowserFeed:
    """Sends pages to one browser, each alert once and in order (an async observer of the hub).

    ``sent_upto`` is the last alert id this browser has been sent. ``update_many`` only queues
    (it never waits); ``stream()`` writes the queue out once the snapshot or the replay is sent.
    ``done`` is set once the response is over: ended, cut off (``cut_off`` says why) or gone.
    """

    def __init__(
        self,
        send: Send,
        *,
        limit: int,
        stall: float,
        frame_after: FrameAfter,
        hang_up: HangUp | None = None,
        client: str = "a browser",
    ) -> None:
        self._send = send
        self._limit = limit
        self._stall = stall
        self._frame_after = frame_after
        self._hang_up = hang_up
        self._client = client
        self._lock = asyncio.Lock()  # one write at a time: pages, heartbeats, the end
        self._pending: deque[Page] = deque()
        self._pending_bytes = 0
        self._writing = 0  # bytes of the write in progress
        self._wake = asyncio.Event()
        self._behind = False  # a page would have passed the limit: cut off after the write in progress
        self.sent_upto = 0
        self.done = asyncio.Event()
        #: Why the stream was cut short (fell behind, or stalled), if it was.
        self.cut_off: str | None = None

    @property
    def queued_bytes(self) -> int:
        """The bytes this browser holds: the frames queued for it and the write in progress."""
        return self._pending_bytes + self._writing

    # -- the hub's side (on the event loop) ---------------------------------------------------------

    async def update(self, page: Page, /) -> None:
        self.queue(page)

    async def update_many(self, pages: Sequence[Page], /) -> None:
        for page in pages:
            self.queue(page)

    def queue(self, page: Page) -> None:
        """Queue ``page``, or, when it would pass the limit, drop the queue and end the stream."""
        if self.done.is_set() or self._behind:
            return
        size = len(page.frame)
        if self.queued_bytes + size > self._limit:
            self._fall_behind(f"fell more than {self._limit:,} bytes behind")
        else:
            self._pending.append(page)
            self._pending_bytes += size
            self._wake.set()

    # -- the request's side ---------------------------------------------------------------------

    async def stream(self, heartbeat: float) -> None:
        """Write the queued pages (a keep-alive comment every ``heartbeat`` quiet seconds) until
        the response is over."""
        while not self.done.is_set():
            if self._behind:
                if self._hang_up is None:
                    await self.end()
                else:
                    self._cut_off(self.cut_off or "fell behind")
            elif self._pending:
                chunk = await self._next_chunk()
                if chunk is None:
                    self._fall_behind("lost a page (the event loop fell behind)")
                elif chunk[0]:
                    await self.write(*chunk)
            else:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), heartbeat)
                except TimeoutError:
                    await self.write(b": keep-alive\n\n")

    async def _next_chunk(self) -> tuple[bytes, int] | None:
        """The queued pages this browser lacks, joined up to about ``CHUNK_BYTES``, and the id
        they go up to; None if a page between was dropped (the hub's own queue was full)."""
        chunks: list[bytes] = []
        upto = self.sent_upto
        try:
            while self._pending and self._writing < CHUNK_BYTES:
                page = self._pending.popleft()
                self._pending_bytes -= len(page.frame)
                if page.after_id > upto:
                    return None
                if page.last_id <= upto:  # already sent (by the replay that started this stream)
                    continue
                if page.after_id == upto:
                    frame = page.frame
                else:  # it overlaps what the replay sent: its other alerts, read again
                    frame = await self._frame_after(upto, page.last_id)
                chunks.append(frame)
                self._writing += len(frame)  # counted from here: popped, not yet written
                upto = page.last_id
            return b"".join(chunks), upto
        finally:
            self._writing = 0

    async def start(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Start the response: status 200 and ``headers``."""
        async with self._lock:
            if not self.done.is_set():
                await self._within_stall(
                    self._send({"type": "http.response.start", "status": 200, "headers": headers})
                )

    async def write(self, chunk: bytes, sent_upto: int | None = None) -> None:
        """Write ``chunk``; then this browser has been sent every alert up to ``sent_upto``."""
        async with self._lock:
            self._writing = len(chunk)
            try:
                sent = not self.done.is_set() and await self._within_stall(
                    self._send({"type": "http.response.body", "body": chunk, "more_body": True})
                )
            finally:
                self._writing = 0
            if sent and sent_upto is not None:
                self.sent_upto = sent_upto

    async def end(self) -> bool:
        """End the response (the browser reconnects and resumes); False if it was over already,
        or if the browser took none of the end in time (then its connection is cut off)."""
        async with self._lock:
            if self.done.is_set() or not await self._within_stall(
                self._send({"type": "http.response.body", "body": b"", "more_body": False})
            ):
                return False
            self.done.set()
            return True

    async def _within_stall(self, sending: Awaitable[None]) -> bool:
        """Run one ``send``; False if the response ended meanwhile, or if the browser took none
        of it for ``stall`` seconds: then its connection is cut off."""
        write = asyncio.ensure_future(sending)
        over = asyncio.ensure_future(self.done.wait())
        try:
            await asyncio.wait((write, over), timeout=self._stall, return_when=asyncio.FIRST_COMPLETED)
        finally:
            over.cancel()
        if write.done():
            write.result()
            return True
        write.cancel()
        if not self.done.is_set():
            self._cut_off(f"took nothing for {self._stall:g} s")
        return False

    def _cut_off(self, why: str) -> None:
        self.cut_off = why
        self.disconnected()
        _log.warning("%s %s: cut off (it resumes after alert %s)", self._client, why, self.sent_upto)
        if self._hang_up is not None:
            self._hang_up.abort()

    def _fall_behind(self, why: str) -> None:
        self.cut_off = why
        self._behind = True
        self._drop_queue()
        self._wake.set()

    def _drop_queue(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0

    def disconnected(self) -> None:
        """The browser went away, or is cut off: nothing more is sent or queued."""
        self.done.set()
        self._drop_queue()
        self._wake.set()
