"""Programs the NATS durable-subscriber tests run in child processes:
``python -m tests._nats_durable_children NAME ...``.

``subscriber`` delivers a durable subscription into a file, one ``id body`` line per alert,
written as it goes (a ``kill -9`` keeps what was written); it may kill itself (SIGKILL) inside an
``update``, between the update calls of a chunk and its acknowledgement. It says ``subscribed``
once subscribed, and unsubscribes and says ``stopped`` when its stdin closes. The twin comes from
the environment (``NOTIPIPE_NO_EXTENSIONS``), as for users.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from notipipe import DatabaseConnection
from tests._processes import Programs, say

program = Programs()


class _ToFile:
    """Writes each alert as ``id body``; SIGKILLs its own process in the ``kill_at``-th update
    (0: never), after writing that alert."""

    def __init__(self, path: str, kill_at: int) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._kill_at, self._calls = kill_at, 0

    def update(self, message: Any) -> None:
        os.write(self._fd, f"{message.id} {message.body}\n".encode())
        self._calls += 1
        if self._calls == self._kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


@program
def subscriber(url: str, name: str, out: str, kill_at: str = "0") -> None:
    db = DatabaseConnection(url)
    observer = _ToFile(out, int(kill_at))
    assert db.subscribe(observer, durable_name=name)
    say("subscribed")
    sys.stdin.read()  # the test closes stdin to stop this subscriber
    assert db.unsubscribe(observer)
    say("stopped")


if __name__ == "__main__":
    program.main()
