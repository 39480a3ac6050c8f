"""The dashboard server: one follower thread, one hub, an async observer per browser.

The follower thread reads the database (``_feed.follow``) and publishes each page to ``hub``, a
``Publisher[Page]``. Each ``/events`` request subscribes a ``BrowserFeed`` to the hub: an async
observer, held weakly, delivered on the server's event loop, which queues the pages' frames for
its browser, bounded in bytes (see ``_browser``). The request first sends where the browser
starts from (a snapshot, or the alerts after its ``Last-Event-ID``, read from the database),
then lets the live pages through. ``/status`` tells how many browsers there are and how far
behind each is. Requests for a Host name the dashboard does not serve, or without its token
where it has one, are turned away first (see ``_access``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, MutableMapping
from importlib import resources
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from notipipe import MAX_ID, NotipipeError, Publisher, StoredMessage
from notipipe.cli.dashboard._access import Access, HostGuard
from notipipe.cli.dashboard._browser import BrowserFeed, Send
from notipipe.cli.dashboard._feed import (
    LATEST,
    REPLAY_PAGE,
    Page,
    Reads,
    Tally,
    follow,
    frame_after,
    snapshot,
)
from notipipe.cli.dashboard._metrics import metrics_endpoint
from notipipe.cli.dashboard._totals import Totals
from notipipe.cli.serve import MAX_BEHIND, STALL_TIMEOUT
from notipipe.metrics import MetricsSource

__all__ = ["QUEUE_BYTES", "QUEUE_SIZE", "STALL", "Connections", "Dashboard", "create_app"]

_log = logging.getLogger("notipipe.dashboard")

#: Pages the hub may hold for a browser before its event loop takes them (at once, normally).
QUEUE_SIZE = 256
#: Bytes of events a browser may fall behind (queued, and being written) before it is cut off,
#: to catch up from the database when it reconnects (``notipipe serve --max-behind``).
QUEUE_BYTES = MAX_BEHIND
#: Seconds a browser may take none of a write before its connection is cut off.
STALL = float(STALL_TIMEOUT)
#: Seconds between keep-alive comments on a quiet stream (a dead connection shows on writing).
HEARTBEAT = 15.0
#: Seconds a new browser waits at a time for the follower's first count (then looks whether it
#: is still there, and waits again).
_TOTALS_WAIT = 0.5
#: Milliseconds a browser waits before reconnecting (the SSE ``retry`` field).
RETRY_MS = 1000

type Receive = Any


type Scope = MutableMapping[str, Any]


class Connections(Protocol):
    """The server's hold on the connections of the requests (``notipipe serve``'s uvicorn)."""

    def abort(self, scope: Scope) -> None:
        """Reset the connection of the request ``scope`` at once."""


class _HangUp:
    """``Connections`` for one request (a ``_browser.HangUp``): what its feed may do to it."""

    def __init__(self, connections: Connections, scope: Scope) -> None:
        self._connections = connections
        self._scope = scope

    def abort(self) -> None:
        self._connections.abort(self._scope)


_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]


class Dashboard:
    """Follows ``db`` and streams it to browsers; ``start()`` and ``stop()`` the follower.

    ``queue_bytes`` and ``stall`` bound what one browser holds and how long it may take none of
    a write (see ``_browser``). ``connections``, set by the server, resets the connection of a
    request (its ASGI scope), as the server alone can.
    """

    def __init__(
        self,
        db: Reads,
        *,
        hub: Publisher[Page] | None = None,
        queue_size: int = QUEUE_SIZE,
        queue_bytes: int = QUEUE_BYTES,
        stall: float = STALL,
        heartbeat: float = HEARTBEAT,
        connections: Connections | None = None,
    ) -> None:
        self.db = db
        self.hub: Publisher[Page] = Publisher() if hub is None else hub
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.stall = stall
        self.heartbeat = heartbeat
        self.connections = connections
        self.cut_off: int = 0  # browsers cut off so far
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._totals: Totals | None = None  # kept by the follower, while it runs
        self._feeds: dict[BrowserFeed, str] = {}  # on the event loop only; each browser's address

    # -- the follower ----------------------------------------------------------------------------

    def start(self) -> None:
        """Follow the database from the last alert stored now, in a thread of its own, which
        first counts what is stored up to it (the totals each new browser is sent)."""
        latest = self.db.last(LATEST)
        self._stop.clear()
        self._totals = Totals()
        self._thread = threading.Thread(
            target=self._follow, args=(self._totals, latest), name="notipipe-dashboard"
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop following the database and wait for the follower thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._totals = None

    def _follow(self, totals: Totals, latest: list[StoredMessage]) -> None:
        after_id: int | None = None
        while not self._stop.is_set():
            try:
                if after_id is None:
                    after_id = totals.load(self.db, latest)
                for messages in follow(self.db, after_id, self._stop):
                    # Framed and counted here, once for every browser and off the event loop.
                    tally = Tally.of(messages)
                    page = Page.of(after_id, messages, tally)
                    del messages  # the page holds what it shows, not the alerts' full text
                    # Counted before it is published: a browser that takes the totals at this
                    # page's id has subscribed already, or takes the page from its queue.
                    totals.add(page.last_id, tally)
                    self.hub.notify_all(page)
                    after_id = page.last_id
            except Exception:  # noqa: BLE001 - a locked or vanished file: say so, and try again
                _log.exception("the dashboard cannot read the database; retrying in 1 s")
                self._stop.wait(1.0)

    # -- one browser -----------------------------------------------------------------------------

    async def events(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ``/events`` stream (an ASGI app)."""
        request = Request(scope)
        try:
            resume_from = _resume_point(request)
        except ValueError as error:
            await PlainTextResponse(str(error), status_code=400)(scope, receive, send)
            return
        client = _client(scope)
        feed = BrowserFeed(
            send,
            limit=self.queue_bytes,
            stall=self.stall,
            frame_after=self._frame_after,
            hang_up=None if self.connections is None else _HangUp(self.connections, scope),
            client=f"the browser at {client}",
        )
        self._feeds[feed] = client
        loop = asyncio.get_running_loop()
        # Subscribed before reading where to start, so no page falls between the two. Weakly:
        # a feed nobody holds any more (its request is over) receives nothing.
        self.hub.subscribe(feed, weak=True, loop=loop, queue_size=self.queue_size, overflow="drop_oldest")
        gone = asyncio.ensure_future(_disconnect(receive))
        gone.add_done_callback(lambda _: feed.disconnected())
        try:
            await feed.start(_STREAM_HEADERS)
            await feed.write(f"retry: {RETRY_MS}\n\n".encode())
            if resume_from is None:
                start = await self._snapshot(feed)
                if start is not None:
                    await feed.write(start[1], start[0])
            else:
                feed.sent_upto = resume_from
                await self._replay(feed)
            await feed.stream(self.heartbeat)
        finally:
            feed.disconnected()
            del self._feeds[feed]
            self.hub.unsubscribe(feed)
            if feed.cut_off is not None:
                self.cut_off += 1
                # The server noticing the cut connection ends the request quietly.
                await asyncio.wait((gone,), timeout=1.0)
            gone.cancel()

    async def _snapshot(self, feed: BrowserFeed) -> tuple[int, bytes] | None:
        """Where a new browser starts: the follower's totals (once it has counted them), else
        (no follower) read from the database; None if the browser went away meanwhile."""
        totals = self._totals
        if totals is None:
            return await asyncio.to_thread(snapshot, self.db)
        while not feed.done.is_set():
            start = await asyncio.to_thread(totals.frame, _TOTALS_WAIT)
            if start is not None:
                return start
        return None

    async def _frame_after(self, after_id: int, upto_id: int) -> bytes:
        frames: list[bytes] = []
        more = True
        while more and after_id < upto_id:
            frame, after_id, more = await asyncio.to_thread(
                frame_after, self.db, after_id, upto_id, REPLAY_PAGE
            )
            frames.append(frame)
        return b"".join(frames)

    async def _replay(self, feed: BrowserFeed) -> None:
        more = True
        while more and not feed.done.is_set():
            frame, last, more = await asyncio.to_thread(
                frame_after, self.db, feed.sent_upto, None, REPLAY_PAGE
            )
            if frame:
                await feed.write(frame, last)

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

    def stored(self) -> dict[str, int] | None:
        """Alerts stored per kind, as the follower counted them (None: not counted yet, or no
        follower)."""
        totals = self._totals
        return None if totals is None else totals.by_kind()

    def follower_lag(self) -> int | None:
        """How many alerts are stored after the last one the follower has read (None: no
        follower, it has not counted the stored alerts yet, or the database cannot be read now,
        which the follower reports itself). Reads the database: call it off the event loop."""
        totals = self._totals
        upto = None if totals is None else totals.upto()
        if upto is None:
            return None
        try:
            newest = self.db.last(1)
            if not newest or newest[-1].id <= upto:
                return 0
            # Counted, not subtracted: ids need not be consecutive (NATS, deleted rows).
            return self.db.count_between(upto, newest[-1].id)
        except NotipipeError:
            return None

    def status(self) -> dict[str, object]:
        """What ``/status`` answers: the browsers, how far behind each is, the bounds."""
        return {
            "browsers": [
                {"client": client, "queued_bytes": feed.queued_bytes, "sent_upto": feed.sent_upto}
                for feed, client in self._feeds.items()
            ],
            "queue_bytes": self.queue_bytes,
            "stall_seconds": self.stall,
            "cut_off": self.cut_off,
        }


def _client(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return "an unknown address"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _resume_point(request: Request) -> int | None:
    """The id a reconnecting browser last received: ``Last-Event-ID``, else ``?after=``."""
    text = request.headers.get("last-event-id") or request.query_params.get("after")
    if text is None or text == "":
        return None
    # The length first: int() of a long text would cost, or fail on, Python's digit limit.
    if not text.isascii() or not text.isdecimal() or len(text) > 19 or int(text) > MAX_ID:
        raise ValueError(
            f"Last-Event-ID must be an alert id (a whole number in 0..2**63-1), got {text[:40]!r}"
        )
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._dashboard.events(scope, receive, send)


def create_app(
    dashboard: Dashboard,
    *,
    follow: bool = True,
    access: Access | None = None,
    metrics: MetricsSource | None = None,
) -> Starlette:
    """The ASGI application: ``/`` (the page), ``/dashboard.js``, ``/events``, ``/status`` and
    ``/metrics``.

    With ``follow``, the application's lifespan starts and stops the dashboard's follower.
    ``access`` says which Host names are answered and the token they need (default: the
    loopback names, no token). ``/metrics`` is Prometheus text (the ``metrics`` extra; 501
    without it) of ``metrics.metrics()`` (the served connection's) and the dashboard's own.
    """
    page, script = _asset("page.html"), _asset("dashboard.js")

    async def index(_: Request) -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    async def js(_: Request) -> Response:
        return Response(script, media_type="text/javascript", headers={"cache-control": "no-store"})

    async def status(_: Request) -> Response:
        return JSONResponse(dashboard.status(), headers={"cache-control": "no-store"})

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
        routes=[
            Route("/", index),
            Route("/dashboard.js", js),
            Route("/events", _Events(dashboard)),
            Route("/status", status),
            Route("/metrics", metrics_endpoint(dashboard, metrics)),
        ],
        middleware=[Middleware(HostGuard, access=Access.of() if access is None else access)],
        lifespan=lifespan,
    )
