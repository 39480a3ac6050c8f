"""A throwaway PostgreSQL cluster for the tests: ``initdb`` + ``pg_ctl`` into a temporary directory.

The suite never mocks the server. ``NOTIPIPE_PG_DSN`` points the shared tests at an existing
server instead; tests that kill and restart the server always start a cluster of their own.
No server binaries is a failure with a hint, never a skip.

The cluster listens on a Unix socket in its own directory only (no TCP port to collide with),
with ``fsync`` off: the tests kill the server, not the machine, and the operating system keeps
what a killed server wrote. As root (CI), the server runs as the ``postgres`` user, since
``initdb`` refuses root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PgCluster", "find_bindir"]

_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
    "(Debian/Ubuntu: apt-get install postgresql), put their directory on PATH, set "
    "NOTIPIPE_PG_BINDIR, or point NOTIPIPE_PG_DSN at a running server"
)


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``, or ``RuntimeError`` with a hint."""
    candidates: list[str] = []
    if os.environ.get("NOTIPIPE_PG_BINDIR"):
        candidates.append(os.environ["NOTIPIPE_PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    # Debian keeps the server binaries off PATH, one directory per major version.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    raise RuntimeError(_HINT)


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root needs runuser(1) to start PostgreSQL as the postgres user")
    return [runuser, "-u", "postgres", "--"]


class PgCluster:
    """One private server: ``start``, ``kill`` (``-m immediate``), ``stop``, ``dsn``."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="notipipe-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._sudo = _as_server_user()
        if self._sudo:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.root}&port=5432"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self._sudo, str(self.bindir / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def start(self) -> None:
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.root}' -c port=5432 "
            "-c fsync=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB"
        )
        data, log = str(self.data), str(self.log)
        self._run("pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")

    def kill(self) -> None:
        """Stop at once, as a crash would: open transactions are lost, clients cut off."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
