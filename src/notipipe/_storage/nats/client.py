"""One NATS connection per store, on an asyncio loop of its own, for threads that block.

nats-py is asyncio; notipipe's writer, readers and followers are plain threads. A ``NatsClient``
runs its own event loop on a daemon thread and its callers block on ``call`` (a concurrent
future with a timeout), so no caller needs a loop and none holds a lock while the loop waits on
the network.

The target is ``nats://[user:pass@]host:port/STREAM[?limits]`` (``parse_target``): the stream's
name is required; its messages go to the subject ``notipipe.<STREAM>``. The connection
reconnects forever: a server restart is a wait, never an error. The server's version, from the
INFO line it sends first, must be at least ``MIN_SERVER``.

nats-py is imported only by ``import_nats`` (a nats:// target in use), never by this module's
import.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from notipipe._errors import ConfigurationError, ServerTooOldError, StreamMismatchError
from notipipe._storage.urls import redact, scheme_of

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

__all__ = [
    "MIN_SERVER",
    "SUBJECT_PREFIX",
    "NatsClient",
    "NatsTarget",
    "ServerTooOldError",
    "StreamMismatchError",
    "import_nats",
    "is_nats_url",
    "parse_target",
    "redact",
]

T = TypeVar("T")

_log = logging.getLogger("notipipe")

#: The oldest server notipipe accepts. What it relies on from 2.11: priority groups with
#: ``priority_policy: pinned_client``, for the durable consumer's "one active holder per name".
#: The writer and the reads themselves need only message-id de-duplication (2.2) and direct get
#: (2.9); Debian's 2.9.10 is refused nonetheless (it silently ignores atomic batches, which newer
#: clients may send) rather than left half-working.
MIN_SERVER: Final = (2, 11, 0)
#: Each stream's alerts go to ``notipipe.<STREAM>``.
SUBJECT_PREFIX: Final = "notipipe."
#: Seconds one request (a publish, a read) waits for its answer before it counts as lost.
REQUEST_TIMEOUT: Final = 5.0
#: Seconds between reconnection attempts (nats-py's own loop, forever).
RECONNECT_WAIT: Final = 0.25

_FORM: Final = "nats://[user:password@]host:port/STREAM[?max_age=7d&max_bytes=10GB&...]"
_STREAM_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,255}")
_HINT: Final = "a nats:// target needs nats-py: pip install 'notipipe[nats]'"


def import_nats() -> ModuleType:
    """nats-py, or ``ConfigurationError`` saying how to install it."""
    try:
        import nats
        import nats.js
    except ImportError as error:
        raise ConfigurationError(_HINT) from error
    return nats


def is_nats_url(target: str) -> bool:
    return scheme_of(target) == "nats"


# -- the URL's limits ------------------------------------------------------------------------------

_UNITS: Final = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2}
_UNITS.update({"mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3})
_UNITS.update({"t": 1024**4, "tb": 1024**4, "tib": 1024**4})
_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _size(name: str, text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", text.strip())
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{name} must be a size such as 512MB or 10GB (powers of 1024), got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _duration(name: str, text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", text.strip())
    if match is None or match.group(2).lower() not in _SECONDS:
        raise ValueError(f"{name} must be a duration such as 45s, 30m, 12h, 7d or 2w, got {text!r}")
    return float(match.group(1)) * _SECONDS[match.group(2).lower()]


def _count(name: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a positive whole number, got {text!r}")
    return int(text)


def _choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, text: str) -> str:
        if text not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {text!r}")
        return text

    return parse


#: The URL query's options: name -> parser. Each maps to the JetStream stream setting of the same
#: meaning (see ``NatsTarget.stream_config``).
_LIMITS: Final[dict[str, Callable[[str, str], object]]] = {
    "max_age": _duration,
    "max_bytes": _size,
    "max_msgs": _count,
    "replicas": _count,
    "retention": _choice(("limits", "interest", "workqueue")),
    "discard": _choice(("old", "new")),
    "duplicate_window": _duration,
    "storage": _choice(("file", "memory")),
}


@dataclass(frozen=True, slots=True)
class NatsTarget:
    """A parsed ``nats://`` target: where the server is, which stream, which limits."""

    #: The server's URL with any credentials (for the connection only; never shown).
    server: str
    #: The server as messages show it: ``host:port``.
    address: str
    stream: str
    #: The URL's limits, parsed (only those it gives).
    limits: dict[str, object] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return SUBJECT_PREFIX + self.stream

    def stream_config(self) -> dict[str, Any]:
        """The JetStream stream configuration (nats-py ``StreamConfig`` fields) for a new stream."""
        limits = self.limits
        config: dict[str, Any] = {
            "name": self.stream,
            "subjects": [self.subject],
            "allow_direct": True,
        }
        for name, key in (("max_age", "max_age"), ("max_bytes", "max_bytes"), ("max_msgs", "max_msgs")):
            if name in limits:
                config[key] = limits[name]
        if "replicas" in limits:
            config["num_replicas"] = limits["replicas"]
        if "duplicate_window" in limits:
            config["duplicate_window"] = limits["duplicate_window"]
        for name in ("retention", "discard", "storage"):
            if name in limits:
                config[name] = limits[name]
        return config


def parse_target(url: str) -> NatsTarget:
    """``nats://[user:password@]host:port/STREAM[?limits]``; ``ValueError`` naming the form."""
    shown = redact(url)
    parts = urllib.parse.urlsplit(url)
    stream = parts.path.strip("/")
    if parts.scheme != "nats" or not parts.hostname:
        raise ValueError(f"{shown}: expected {_FORM}")
    if not stream:
        raise ValueError(f"{shown}: the stream's name is missing; expected {_FORM}")
    if not _STREAM_NAME.fullmatch(stream):
        raise ValueError(
            f"{shown}: stream name {stream!r} must be letters, digits, '-' or '_' (no '.', '*', '>' or"
            f" '/'); expected {_FORM}"
        )
    try:
        port = parts.port or 4222
    except ValueError:
        raise ValueError(f"{shown}: the port is not a number; expected {_FORM}") from None
    limits: dict[str, object] = {}
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        parser = _LIMITS.get(name)
        if parser is None:
            raise ValueError(f"{shown}: unknown option {name!r}; known: {', '.join(_LIMITS)}")
        try:
            limits[name] = parser(name, value)
        except ValueError as error:
            raise ValueError(f"{shown}: {error}") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    server = urllib.parse.urlunsplit(("nats", parts.netloc, "", "", ""))
    return NatsTarget(server, f"{host}:{port}", stream, limits)


def version_tuple(text: str) -> tuple[int, int, int]:
    """``"2.12.3"`` or ``"v2.11.0-RC.1"`` as ``(2, 12, 3)``; unparsable parts count as 0."""
    major, minor, patch, *_ = [*(int(n) for n in re.findall(r"\d+", text.split("-", 1)[0])[:3]), 0, 0, 0]
    return major, minor, patch


def too_old(version: str, address: str) -> ServerTooOldError | None:
    """The refusal of a server older than ``MIN_SERVER``, naming its version; None if it is not."""
    if version_tuple(version) >= MIN_SERVER:
        return None
    return ServerTooOldError(
        f"nats-server {version} at {address} is too old: notipipe needs"
        f" {MIN_SERVER[0]}.{MIN_SERVER[1]} or newer"
    )


def check_version(version: str, address: str) -> None:
    """Refuse a server older than ``MIN_SERVER``, naming its version."""
    error = too_old(version, address)
    if error is not None:
        raise error


# -- the client -------------------------------------------------------------------------------------


async def _quiet(*_: object) -> None:
    """nats-py's callbacks: notipipe reports outages itself (the writer's waits, flush)."""


class NatsClient:
    """A NATS connection on an event loop of its own (a daemon thread), for blocking callers.

    ``connect`` makes the first connection (raising if the server answers and refuses, or is too
    old); afterwards nats-py reconnects forever by itself, and requests made meanwhile time out
    (``REQUEST_TIMEOUT``): the caller's wait.
    """

    def __init__(self, target: NatsTarget, name: str = "notipipe") -> None:
        self.target = target
        self.name = name
        self.nats = import_nats()
        # The loop and its thread start on the first call: a client made and never used (a
        # store only configured, or remade in a forked child) costs no thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock = threading.Lock()  # guards starting the loop
        self._connecting = threading.Lock()  # one connect at a time (held while it waits)
        #: The server's version as its INFO said, once connected.
        self.server_version = ""
        #: The most bytes one message may carry (headers included), from the server's INFO.
        self.max_payload = 0
        #: The stream's configuration (nats-py ``StreamConfig``) as found or made on connecting.
        self.config: Any = None
        # The version last checked by ``refusal`` and what it found (a reconnection may reach
        # another server, perhaps an older one).
        self._checked = ""
        self._refusal: ServerTooOldError | None = None

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "not connected"
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "not connected"
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc is not None

    def call(self, make: Callable[[], Awaitable[T]], timeout: float | None = REQUEST_TIMEOUT) -> T:
        """Run ``make()`` on the loop and wait for its result (``TimeoutError`` past ``timeout``)."""

        future = self.submit(make)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def submit(self, make: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Start ``make()`` on the loop and return at once: its future, to wait on later."""

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self._running_loop())

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name=f"notipipe-nats:{self.target.address}", daemon=True
                )
                self._thread.start()
            return self._loop

    def connect(self, timeout: float = REQUEST_TIMEOUT, *, make_stream: bool = True) -> None:
        """Connect once (idempotent). Raises nats-py's errors if the server cannot be reached,
        ``ServerTooOldError``/``StreamMismatchError``/``ConfigurationError`` if it answers and
        cannot be used. ``make_stream=False``: the stream is neither made nor checked."""
        with self._connecting:
            if self._nc is not None:
                return
            nc = self.call(self._open, timeout + 1)
            try:
                info = getattr(nc, "_server_info", {}) or {}
                self.server_version = str(info.get("version", "0.0.0"))
                check_version(self.server_version, self.target.address)
                self.max_payload = int(nc.max_payload)
                js = nc.jetstream(timeout=REQUEST_TIMEOUT)
                if make_stream:
                    self.call(lambda: self._ensure_stream(js), timeout + 1)
            except BaseException:
                self.call(nc.close, timeout)
                raise
            self._nc, self._js = nc, js

    def refusal(self) -> ServerTooOldError | None:
        """Why the server connected now cannot be used (too old), or None. Checked on every
        publish and read, not only on connecting: a reconnection may reach an older server."""
        nc = self._nc
        info = getattr(nc, "_server_info", None) or {}
        version = str(info.get("version", "")) if nc is not None else ""
        if version and version != self._checked:
            self._refusal = too_old(version, self.target.address)
            self._checked = version
        return self._refusal

    async def _on_reconnected(self) -> None:
        before = self._refusal
        refusal = self.refusal()
        if refusal is not None and before is None:
            _log.error(
                "notipipe: %s; nothing is written to or read from it until a newer server is back", refusal
            )
        elif refusal is None and before is not None:
            _log.warning("notipipe: %s: nats-server %s is back", self.shown, self._checked)

    async def _open(self) -> Client:
        """Connect, retrying an unreachable server until the caller's timeout, but refusing at
        once a server that refuses the credentials (retrying those would only repeat it)."""
        refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def on_error(error: BaseException) -> None:
            # nats-py reports a refusal on connecting as a plain Error with the server's text.
            denied = isinstance(error, self.nats.errors.AuthorizationError) or (
                "authorization violation" in str(error).lower()
            )
            if denied and not refused.done():
                refused.set_result(error)

        connecting = asyncio.ensure_future(
            self.nats.connect(
                self.target.server,
                name=self.name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,  # forever: a restart is a wait
                reconnect_time_wait=RECONNECT_WAIT,
                connect_timeout=2,
                error_cb=on_error,
                disconnected_cb=_quiet,
                reconnected_cb=self._on_reconnected,
                closed_cb=_quiet,
            )
        )
        try:
            await asyncio.wait((connecting, refused), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not connecting.done():
                connecting.cancel()
        if not connecting.done() or connecting.cancelled():
            raise ConfigurationError(f"{self.shown}: authorization refused by {self.target.address}")
        nc: Client = connecting.result()
        return nc

    def recreate_stream(self) -> bool:
        """The stream made again if it is missing (an operator deleted it, or the server came
        back on an emptied store); whether it was."""
        return self.call(lambda: self._ensure_stream(self.js), REQUEST_TIMEOUT * 2 + 1)

    async def _ensure_stream(self, js: JetStreamContext) -> bool:
        """Create the stream with the URL's limits if it is missing (True); else check it matches
        them (False)."""
        errors = self.nats.js.errors
        api = self.nats.js.api
        try:
            info = await js.stream_info(self.target.stream)
        except errors.NotFoundError:
            settings = self.target.stream_config()
            for key, enum in (
                ("retention", api.RetentionPolicy),
                ("discard", api.DiscardPolicy),
                ("storage", api.StorageType),
            ):
                if key in settings:
                    settings[key] = enum(settings[key])
            config = api.StreamConfig(**settings)
            try:
                self.config = (await js.add_stream(config)).config
                return True
            except errors.BadRequestError as error:
                if error.err_code != 10058:  # "stream name already in use": another process won
                    raise ConfigurationError(
                        f"{self.shown}: cannot create the stream: {error.description}"
                    ) from None
            info = await js.stream_info(self.target.stream)
        self._check_stream(info.config)
        self.config = info.config
        return False

    def _check_stream(self, config: Any) -> None:
        """An existing stream is used as it is; the URL's limits, where given, must be its own."""
        target = self.target
        if target.subject not in (config.subjects or []):
            raise StreamMismatchError(
                f"{self.shown}: stream {target.stream} exists without the subject {target.subject}"
                f" (its subjects: {', '.join(config.subjects or []) or 'none'}); notipipe writes its"
                " alerts there: use another stream name"
            )
        wanted = target.stream_config()
        mismatched = []
        for key, value in wanted.items():
            if key in ("name", "subjects", "allow_direct"):
                continue
            have = getattr(config, key, None)
            have = getattr(have, "value", have)  # enums: their JSON value
            if isinstance(value, float) or isinstance(have, float):
                same = have is not None and abs(float(have) - float(value)) < 1e-6
            else:
                same = have == value
            if not same:
                mismatched.append(f"{key}: the stream has {have!r}, the URL asks {value!r}")
        if mismatched:
            raise StreamMismatchError(
                f"{self.shown}: stream {target.stream} exists with other limits ({'; '.join(mismatched)});"
                " notipipe does not change an existing stream: drop those options from the URL or change"
                " the stream yourself"
            )

    def state(self) -> Any:
        """The stream's state now (nats-py ``StreamState``: messages, bytes, first and last seq)."""
        return self.call(lambda: self.js.stream_info(self.target.stream)).state

    @property
    def shown(self) -> str:
        return f"nats://{self.target.address}/{self.target.stream}"

    def close(self) -> None:
        """Close the connection and stop the loop's thread. Idempotent."""
        nc, self._nc, self._js = self._nc, None, None
        with self._lock:
            loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        if nc is not None:
            with contextlib.suppress(Exception):  # closing: nothing left to report to
                self.call(nc.close, REQUEST_TIMEOUT)
        with contextlib.suppress(Exception):
            self.call(_cancel_pending, REQUEST_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(REQUEST_TIMEOUT)
        if not thread.is_alive():
            loop.close()


async def _cancel_pending() -> None:
    """Cancel what still runs on the loop (a first connect still trying, nats-py's own tasks) and
    let it finish, so that nothing is destroyed pending, or cleaned up later on a closed loop."""
    for _ in range(3):  # a cancelled task may leave another behind
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=1.0)
