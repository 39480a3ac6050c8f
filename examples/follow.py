"""Following: ``db.follow()`` yields pages of what any process commits, each alert with its id;
here a writer process stores alerts while this one follows the same SQLite file.

Run: ``python examples/follow.py`` (needs notipipe only; the file lives in a temporary
directory). The writer is this script again, started with ``--write FILE``.
"""

import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from notipipe import DatabaseConnection, EmailMessage, MessageFactory

COUNT = 5

if sys.argv[1:2] == ["--write"]:
    with DatabaseConnection(sys.argv[2]) as db:
        for n in range(COUNT):
            db.save(
                MessageFactory.create_message("email", recipient="ops@example.com", subject=f"job {n} done")
            )
    sys.exit(0)

with tempfile.TemporaryDirectory() as tmp:
    path = str(Path(tmp) / "alerts.db")
    db = DatabaseConnection(path)
    stop = threading.Event()
    pages = db.follow(poll=0.1, stop=stop)  # from the first stored alert on
    writer = subprocess.Popen([sys.executable, __file__, "--write", path])
    seen = 0
    for page in pages:
        for message in page:
            assert isinstance(message, EmailMessage)  # the writer saves emails only
            print(f"followed id={message.id}: {message.subject}")
        seen += len(page)
        if seen >= COUNT:
            stop.set()
    print("writer exit status:", writer.wait(timeout=60))
    db.close()
