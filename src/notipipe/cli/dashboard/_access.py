"""Who the dashboard answers: the Host names it serves, and the token beyond loopback.

A web page the user visits could rebind its own name to 127.0.0.1 (DNS rebinding) and read the
alerts with the browser's help: its requests carry its own name in ``Host``. So the dashboard
answers only the names it serves (127.0.0.1, localhost, [::1], the address it listens on and the
names the user adds) and turns every other away with 421 (a missing or malformed ``Host``: 400),
before anything is read. Where other machines may connect (an address other than loopback), a
request must also carry the token: ``?token=`` in the URL (the page passes its own on to the
event stream) or an ``Authorization: Bearer`` header; without it, 401.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from notipipe.cli.serve import LOOPBACK_NAMES, host_name

__all__ = ["Access", "HostGuard", "address_name", "is_loopback", "is_unspecified", "new_token"]

#: Served without the token: the page's script, the same for everyone and holding no alert.
_PUBLIC_PATHS = frozenset({"/dashboard.js"})


def address_name(address: str) -> str:
    """A listening address as a ``Host`` names it (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


def is_loopback(address: str) -> bool:
    """Whether the listening ``address`` (an IP address) is reachable from this machine only."""
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False


def is_unspecified(address: str) -> bool:
    """Whether ``address`` is a wildcard (0.0.0.0, ::): every address of the machine."""
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_unspecified
    except ValueError:
        return False


def new_token() -> str:
    """A fresh random token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class Access:
    """The ``Host`` names answered, and the token every request must carry (None: no token)."""

    hosts: frozenset[str]
    token: str | None = None

    @classmethod
    def of(cls, names: Iterable[str] = (), token: str | None = None) -> Access:
        """The loopback names and ``names`` (``Host`` values: a port and case are ignored)."""
        served = set(LOOPBACK_NAMES)
        for name in names:
            normal = host_name(name)
            if normal is None:
                raise ValueError(f"{name!r} is not a host name")
            served.add(normal)
        return cls(frozenset(served), token)

    def refusal(self, scope: MutableMapping[str, Any]) -> PlainTextResponse | None:
        """The answer to a request this dashboard does not serve, or None to serve it."""
        headers = Headers(scope=scope)
        hosts = headers.getlist("host")
        if len(hosts) != 1 or (name := host_name(hosts[0])) is None:
            return PlainTextResponse("a request needs one Host header naming this server", status_code=400)
        if name not in self.hosts:
            return PlainTextResponse(
                f"this dashboard does not serve the name {name!r}: start notipipe serve with "
                f"--allow-host {name.strip('[]')} to serve it",
                status_code=421,
            )
        if self.token is None or scope.get("path") in _PUBLIC_PATHS or self._has_token(scope, headers):
            return None
        return PlainTextResponse(
            "this dashboard needs its token: open the URL notipipe serve printed (...?token=...), "
            "or send 'Authorization: Bearer TOKEN'",
            status_code=401,
            headers={"www-authenticate": 'Bearer realm="notipipe"'},
        )

    def _has_token(self, scope: MutableMapping[str, Any], headers: Headers) -> bool:
        assert self.token is not None
        expected = self.token.encode()
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
            return True
        query = scope.get("query_string", b"").decode("latin-1")
        return any(
            key == "token" and hmac.compare_digest(value.encode(), expected)
            for key, value in parse_qsl(query, keep_blank_values=True)
        )


class HostGuard:
    """ASGI middleware: requests ``access`` refuses are answered here, before the application."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self._app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (refused := self._access.refusal(scope)) is not None:
            await refused(scope, receive, send)
            return
        await self._app(scope, receive, send)
