"""One browser's event stream: an async observer of the dashboard's pages.

Policy for a browser that cannot keep up: its queue holds ``queue_size`` pages; when full the
oldest page is dropped. The first page this browser then sees does not continue from the last
alert it was sent (``Page.after_id`` is past it), so instead of a gap it gets the end of the
response. ``EventSource`` reconnects by itself with ``Last-Event-ID``, and the new stream replays
the missed alerts from the database: the browser pays in delay, never in lost or repeated
alerts, and the server's memory per browser stays bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from notipipe.cli.dashboard._feed import Page, alerts_frame

__all__ = ["BrowserFeed", "Send"]

type Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BrowserFeed:
    """Sends pages to one browser, each alert once and in order.

    ``sent_upto`` is the last alert id this browser has been sent. Pages wait until ``ready``
    is set (after the snapshot or the replay); ``done`` is set once the response is over.
    """

    def __init__(self, send: Send, sent_upto: int) -> None:
        self._send = send
        self._lock = asyncio.Lock()  # one writer at a time: pages, heartbeats, the end
        self.sent_upto = sent_upto
        self.ready = asyncio.Event()
        self.done = asyncio.Event()
        #: Pages dropped for this browser (at most one is ever noticed: the stream ends there).
        self.lost_pages = False

    async def update(self, page: Page, /) -> None:
        await self.update_many((page,))

    async def update_many(self, pages: Sequence[Page], /) -> None:
        await self.ready.wait()
        chunks: list[bytes] = []
        upto = self.sent_upto
        for page in pages:
            if page.after_id > upto:  # a page between was dropped: see the module's policy
                self.lost_pages = True
                break
            if page.last_id <= upto:  # already sent (by the replay that started this stream)
                continue
            if page.after_id == upto:
                chunks.append(page.frame)
            else:  # it overlaps what the replay sent: only its new alerts
                chunks.append(alerts_frame([m for m in page.messages if m.id > upto]))
            upto = page.last_id
        if chunks:
            await self.write(b"".join(chunks), upto)
        if self.lost_pages:
            await self.end()

    async def write(self, chunk: bytes, sent_upto: int | None = None) -> None:
        async with self._lock:
            if self.done.is_set():
                return
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
            if sent_upto is not None:
                self.sent_upto = sent_upto

    async def end(self) -> None:
        async with self._lock:
            if self.done.is_set():
                return
            self.done.set()
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def disconnected(self) -> None:
        """The browser went away: nothing more is sent."""
        self.done.set()
