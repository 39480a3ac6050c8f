"""What the PostgreSQL benchmarks share: a throwaway durable server and writer processes started together.

The tests' helpers (``tests._pg_server``, ``tests._pg_util``) are imported from the checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests._pg_server, tests._pg_util


def as_url(dsn: str) -> str:
    """The DSN as the URL notipipe takes."""
    from tests._pg_util import as_url as tests_as_url

    return tests_as_url(dsn)


def start_server() -> Any:
    """A throwaway server as the tests start it, but with fsync on, as in production."""
    from tests._pg_server import PgCluster

    class DurableCluster(PgCluster):
        def start(self) -> None:
            options = (
                f"-c listen_addresses='' -c unix_socket_directories='{self.root}' -c port=5432 "
                "-c fsync=on -c max_connections=50 -c shared_buffers=128MB -c max_wal_size=4GB"
            )
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    cluster = DurableCluster()
    cluster.start()
    return cluster


def run_together(cmd: list[str], n: int, timeout: float) -> list[tuple[float, float]]:
    """Start ``n`` copies of ``cmd``, let them go at once, return each one's (start, end).

    Each child prints "ready" once set up, waits for a line on stdin, works, then prints
    ``done <start> <end>``: the set-up (building its alerts, connecting) stays out of the span.
    """
    children = [
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(n)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    spans = []
    for child in children:
        out, _ = child.communicate(timeout=timeout)
        assert child.returncode == 0, out
        _, start, end = out.split()
        spans.append((float(start), float(end)))
    return spans
