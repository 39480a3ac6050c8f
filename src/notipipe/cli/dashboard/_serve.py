"""``notipipe serve``: the dashboard on uvicorn, following one database."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator

import uvicorn

from notipipe._database import DatabaseConnection
from notipipe._errors import NotipipeError
from notipipe.cli._signals import StopSignals
from notipipe.cli.dashboard._app import Dashboard, create_app

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


def serve(path: str, host: str, port: int, ready: Callable[[str], None]) -> int | None:
    """Serve the dashboard of the database at ``path`` until SIGTERM or Ctrl-C; the signal that
    stopped it (``None``: the server ended by itself, as when its startup failed).

    ``ready`` is called with the page's URL once the server listens (``port`` 0: a free one) and
    the signals are held: from then on either ends the open streams and the server cleanly (a
    second Ctrl-C cuts the wait for the requests in flight). SIGINT is not held when the process
    was started with it ignored (in the background, under nohup): see ``notipipe.cli._signals``.
    """
    sock = listen(host, port)
    db = DatabaseConnection(path)
    dashboard = Dashboard(db)
    config = uvicorn.Config(
        create_app(dashboard),
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
        access_log=False,
    )
    server = _Server(config, dashboard)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    # A signal before the server runs makes it start and stop at once (should_exit is set).
    try:
        with StopSignals(also=server.handle_exit) as stop:
            ready(f"http://{shown}:{bound_port}/")
            server.run(sockets=[sock])
    finally:
        db.close()
    return stop.signum
