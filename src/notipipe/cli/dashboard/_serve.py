"""``notipipe serve``: the dashboard on uvicorn, following one database."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from notipipe import DatabaseConnection, NotipipeError
from notipipe.cli._signals import StopSignals
from notipipe.cli.dashboard._access import Access, address_name, is_loopback, is_unspecified, new_token
from notipipe.cli.dashboard._app import QUEUE_BYTES, STALL, Dashboard, create_app
from notipipe.cli.serve import host_name

__all__ = ["serve"]


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, dashboard: Dashboard) -> None:
        super().__init__(config)
        self._dashboard = dashboard

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Event streams never end by themselves: end them first, or uvicorn waits for them.
        await self._dashboard.end_streams()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # serve() holds the signals from before the URL is printed, in StopSignals, which keeps an
        # inherited SIGINT-ignored and reports the signal instead of raising it again after the
        # shutdown (uvicorn's own would: SIGTERM would then end the process before its exit path).
        yield

    # -- Connections: the dashboard's hold on a browser's connection ----------------------------

    def abort(self, scope: MutableMapping[str, Any]) -> None:
        """Reset the connection of the request ``scope`` at once, dropping what it has still to
        send, in the process and in the kernel: a polite close waits for a browser that reads
        nothing for ever, and leaves the kernel holding its data."""
        transport = self._transport(scope)
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # linger on, 0 s: close() sends a reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def _transport(self, scope: MutableMapping[str, Any]) -> asyncio.WriteTransport | None:
        # The request's own connection, as _Connections captured it, never one found by its
        # address: a header may claim any address, another browser's included.
        transport = scope.get(_TRANSPORT)
        return transport if isinstance(transport, asyncio.WriteTransport) else None


#: The scope key under which _Connections keeps the request's transport.
_TRANSPORT = "notipipe.transport"


class _Connections:
    """The outermost ASGI application: keeps each request's transport in its scope, taken from
    uvicorn's ``send`` (its request cycle's method) before any middleware wraps it."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_TRANSPORT] = getattr(getattr(send, "__self__", None), "transport", None)
        await self._app(scope, receive, send)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or ``NotipipeError`` saying why not (in use, no such address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as error:
        raise NotipipeError(f"cannot listen on {host}:{port}: {error}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise NotipipeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.setblocking(False)
    return sock


def serve(
    path: str,
    host: str,
    port: int,
    ready: Callable[[str], None],
    *,
    allow_hosts: Sequence[str] = (),
    token: str | None = None,
    max_behind: int = QUEUE_BYTES,
    stall: float = STALL,
) -> int | None:
    """Serve the dashboard of the database at ``path`` until SIGTERM or Ctrl-C; the signal that
    stopped it (``None``: the server ended by itself, as when its startup failed).

    ``ready`` is called with the page's URL once the server listens (``port`` 0: a free one) and
    the signals are held: from then on either ends the open streams and the server cleanly (a
    second Ctrl-C cuts the wait for the requests in flight). SIGINT is not held when the process
    was started with it ignored (in the background, under nohup): see ``notipipe.cli._signals``.

    Requests are answered for the loopback names, ``host`` and ``allow_hosts``; with ``token``
    (always, on an address other than loopback: a new one if none is given) only those that
    carry it, as the URL does. ``max_behind`` and ``stall`` bound each browser (see ``Dashboard``).
    """
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    access = _access(host, bound_host, allow_hosts, token)
    db = DatabaseConnection(path)
    dashboard = Dashboard(db, queue_bytes=max_behind, stall=stall)
    config = uvicorn.Config(
        _Connections(create_app(dashboard, access=access, metrics=db)),
        # No proxy is trusted: X-Forwarded-For would let any local client name itself.
        proxy_headers=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
        access_log=False,
    )
    server = _Server(config, dashboard)
    dashboard.connections = server
    shown = address_name(_shown_address(bound_host))
    url = f"http://{shown}:{bound_port}/" + ("" if access.token is None else f"?token={access.token}")
    # A signal before the server runs makes it start and stop at once (should_exit is set).
    try:
        with StopSignals(also=server.handle_exit) as stop:
            ready(url)
            server.run(sockets=[sock])
    finally:
        db.close()
    return stop.signum


def _access(host: str, bound: str, allow_hosts: Sequence[str], token: str | None) -> Access:
    """The names served (the loopback names, ``host``, the address listened on, ``allow_hosts``)
    and the token, a new one where other machines may connect and none is given."""
    names = list(allow_hosts)
    if not is_unspecified(bound):
        names.append(address_name(bound.partition("%")[0]))
        if host_name(address_name(host)) is not None:  # a name that resolves to the address
            names.append(address_name(host))
    if token is None and not is_loopback(bound):
        token = new_token()
    return Access.of(names, token)


def _shown_address(bound: str) -> str:
    """The address the printed URL names: the one listened on, or, listening on every address
    (0.0.0.0, ::), this machine's loopback address (a browser here may always use it)."""
    if is_unspecified(bound):
        return "::1" if ":" in bound else "127.0.0.1"
    return bound.partition("%")[0]
