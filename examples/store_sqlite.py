"""Storing into SQLite: ``save`` queues, the writer thread commits in batches, ``flush`` waits
for it; reads and ``stats()``; ``describe_target`` tells the backend without opening anything.

Run: ``python examples/store_sqlite.py [FILE]`` (needs notipipe only; default: a file in a
temporary directory, removed afterwards).
"""

import sys
import tempfile
from pathlib import Path

from notipipe import DatabaseConnection, MessageFactory, describe_target

with tempfile.TemporaryDirectory() as tmp:
    path = sys.argv[1] if len(sys.argv) > 1 else str(Path(tmp) / "alerts.db")
    print("target:", describe_target(path).backend)
    with DatabaseConnection(path) as db:  # close() on leaving: what is queued is committed
        db.save(MessageFactory.create_message("sms", phone_number="+15551234567", body="db down", priority=5))
        saved = db.save_many(
            MessageFactory.create_message("email", recipient="ops@example.com", subject=f"disk {n}%")
            for n in (90, 95)
        )
        print("save_many accepted:", saved)
        db.flush()  # everything saved so far is committed
        print("count_by_kind:", db.count_by_kind())
        print("last 2:", [(m.id, m.kind) for m in db.last(2)])
        stats = db.stats()
        print("stats: total", stats.total, "by kind", stats.by_kind)
