"""Programs the NATS fault tests run in child processes: ``python -m tests._nats_children NAME ...``.

Each prints what it has done, one line at a time and flushed, so that the test can act at a
chosen moment (kill the server meanwhile). The twin comes from the environment
(``NOTIPIPE_NO_EXTENSIONS``), as for users.
"""

from __future__ import annotations

import os

from notipipe import DatabaseConnection, SMSMessage
from tests._processes import Programs, say

program = Programs()


@program
def write(url: str, count: str, chunk: str) -> None:
    """Save ``count`` alerts (bodies ``"0"``, ``"1"``, ...) in ``save_many`` calls of ``chunk``,
    flushing after each and saying ``flushed N`` (N: alerts flushed so far); ``done`` at the end."""
    db = DatabaseConnection(url, max_delay=0.001, batch_size=int(chunk))
    say("ready", os.getpid())
    n, step = int(count), int(chunk)
    for start in range(0, n, step):
        db.save_many([SMSMessage(body=str(i)) for i in range(start, min(n, start + step))])
        db.flush()
        say("flushed", min(n, start + step))
    say("done")
    db.close()


if __name__ == "__main__":
    program.main()
