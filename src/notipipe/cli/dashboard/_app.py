"""The dashboard server: one follower thread, one hub, an async observer per browser.

The follower thread reads the database (``_feed.follow``) and publishes each page to ``hub``, a
``Publisher[Page]``. Each ``/events`` request subscribes a ``BrowserFeed`` to the hub: an async
observer, held weakly, with a bounded queue, delivered on the server's event loop. The request
first sends where the browser starts from (a snapshot, or the alerts after its
``Last-Event-ID``, read from the database), then lets the live pages through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, MutableMapping
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from notipipe._select import Publisher
from notipipe.cli.dashboard._browser import BrowserFeed, Send
from notipipe.cli.dashboard._feed import PAGE_SIZE, Page, Reads, alerts_frame, follow, snapshot

__all__ = ["QUEUE_SIZE", "Dashboard", "create_app"]

_log = logging.getLogger("notipipe.dashboard")

#: Pages a browser may fall behind before it is cut off, to catch up from the database.
QUEUE_SIZE = 256
#: Seconds between keep-alive comments on a quiet stream (a dead connection shows on writing).
HEARTBEAT = 15.0
#: Milliseconds a browser waits before reconnecting (the SSE ``retry`` field).
RETRY_MS = 1000

type Receive = Any


class Dashboard:
    """Follows ``db`` and streams it to browsers; ``start()`` and ``stop()`` the follower."""

    def __init__(
        self,
        db: Reads,
        *,
        hub: Publisher[Page] | None = None,
        queue_size: int = QUEUE_SIZE,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.db = db
        self.hub: Publisher[Page] = Publisher() if hub is None else hub
        self.queue_size = queue_size
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._feeds: set[BrowserFeed] = set()  # on the event loop only

    # -- the follower ----------------------------------------------------------------------------

    def start(self, after_id: int | None = None) -> None:
        """Follow from ``after_id`` (default: the last alert stored now)."""
        if after_id is None:
            last = self.db.last(1)
            after_id = last[-1].id if last else 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow, args=(after_id,), name="notipipe-dashboard")
        self._thread.start()

    def stop(self) -> None:
        """Stop following the database and wait for the follower thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _follow(self, after_id: int) -> None:
        while not self._stop.is_set():
            try:
                for messages in follow(self.db, after_id, self._stop):
                    # Framed here, once for every browser and off the event loop.
                    self.hub.notify_all(Page.of(after_id, messages))
                    after_id = messages[-1].id
            except Exception:  # noqa: BLE001 - a locked or vanished file: say so, and try again
                _log.exception("the dashboard cannot read the database; retrying in 1 s")
                self._stop.wait(1.0)

    # -- one browser -----------------------------------------------------------------------------

    async def events(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """The ``/events`` stream (an ASGI app)."""
        request = Request(scope)
        try:
            resume_from = _resume_point(request)
        except ValueError as error:
            await PlainTextResponse(str(error), status_code=400)(scope, receive, send)
            return
        feed = BrowserFeed(send, 0)
        self._feeds.add(feed)
        loop = asyncio.get_running_loop()
        # Subscribed before reading where to start, so no page falls between the two. Weakly:
        # a feed nobody holds any more (its request is over) receives nothing.
        self.hub.subscribe(feed, weak=True, loop=loop, queue_size=self.queue_size, overflow="drop_oldest")
        gone = asyncio.ensure_future(_disconnect(receive))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await feed.write(f"retry: {RETRY_MS}\n\n".encode())
            if resume_from is None:
                upto, frame = await asyncio.to_thread(snapshot, self.db)
                await feed.write(frame, upto)
            else:
                feed.sent_upto = resume_from
                await self._replay(feed)
            feed.ready.set()
            done = asyncio.ensure_future(feed.done.wait())
            try:
                while not (gone.done() or done.done()):
                    await asyncio.wait((gone, done), timeout=self.heartbeat, return_when="FIRST_COMPLETED")
                    if not (gone.done() or done.done()):
                        await feed.write(b": keep-alive\n\n")
            finally:
                done.cancel()
        finally:
            feed.disconnected()
            self._feeds.discard(feed)
            gone.cancel()
            self.hub.unsubscribe(feed)

    async def _replay(self, feed: BrowserFeed) -> None:
        while not feed.done.is_set():
            messages = await asyncio.to_thread(self.db.after, feed.sent_upto, PAGE_SIZE)
            if messages:
                await feed.write(alerts_frame(messages), messages[-1].id)
            if len(messages) < PAGE_SIZE:
                return

    async def end_streams(self) -> None:
        """End every browser's response (the server is shutting down): their handlers return."""
        feeds = list(self._feeds)
        # A browser that reads nothing would keep its end waiting: it is given a second.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(f.end() for f in feeds)), timeout=1.0)
        for feed in feeds:
            feed.disconnected()

    @property
    def browsers(self) -> int:
        """How many browsers are subscribed now."""
        return len(self.hub.observers)


def _resume_point(request: Request) -> int | None:
    """The id a reconnecting browser last received: ``Last-Event-ID``, else ``?after=``."""
    text = request.headers.get("last-event-id") or request.query_params.get("after")
    if text is None or text == "":
        return None
    if not text.isascii() or not text.isdecimal() or len(text) > 19:
        raise ValueError(f"Last-Event-ID must be an alert id (a whole number >= 0), got {text[:40]!r}")
    return int(text)


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _asset(name: str) -> str:
    return resources.files("notipipe.cli.dashboard").joinpath(name).read_text(encoding="utf-8")


class _Events:
    """``Dashboard.events`` as a Starlette endpoint (an object, so it is called as an ASGI app)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        await self._dashboard.events(scope, receive, send)


def create_app(dashboard: Dashboard, *, follow: bool = True) -> Starlette:
    """The ASGI application: ``/`` (the page), ``/dashboard.js`` and ``/events``.

    With ``follow``, the application's lifespan starts and stops the dashboard's follower.
    """
    page, script = _asset("page.html"), _asset("dashboard.js")

    async def index(_: Request) -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    async def js(_: Request) -> Response:
        return Response(script, media_type="text/javascript", headers={"cache-control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncGenerator[None]:
        if follow:
            await asyncio.to_thread(dashboard.start)
        try:
            yield
        finally:
            if follow:
                await asyncio.to_thread(dashboard.stop)

    return Starlette(
        routes=[Route("/", index), Route("/dashboard.js", js), Route("/events", _Events(dashboard))],
        lifespan=lifespan,
    )
