"""A kind of your own: a frozen, slotted dataclass registered with ``MessageFactory.register``,
saved to a SQLite file and read back as the same class, with its stored id. A stored row of a
kind this process has not registered would come back as a ``StoredAlert``.

Run: ``python examples/kinds.py`` (needs notipipe only; the file is in a temporary directory,
removed afterwards).
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

from notipipe import BaseMessage, DatabaseConnection, MessageFactory


@MessageFactory.register("push")
@dataclass(frozen=True, slots=True)
class PushMessage(BaseMessage):
    """A push notification: its own fields; priority, created_at and id come from BaseMessage."""

    device: str
    title: str = ""
    badge: int = 0


with tempfile.TemporaryDirectory() as tmp, DatabaseConnection(Path(tmp) / "alerts.db") as db:
    sent = PushMessage("pixel-7", "disk 91%", 3, priority=4)
    print("saved:", sent.kind, sent.device, sent.title, sent.badge, "priority", sent.priority)
    db.save(sent)
    db.flush()  # committed: readable by any reader of the file
    (read,) = db.last(1)
    assert isinstance(read, PushMessage)
    print("read: ", type(read).__name__, read.device, read.title, read.badge, "priority", read.priority)
    print(
        "stored id:",
        read.id,
        "same fields:",
        read == PushMessage("pixel-7", "disk 91%", 3, priority=4, created_at=sent.created_at, id=read.id),
    )
    print("count_by_kind:", db.count_by_kind())
