"""Programs the registered-kind storage tests run in child processes:
``python -m tests._kinds_children NAME ...``. The twin comes from the environment
(``NOTIPIPE_NO_EXTENSIONS``), as for users.

The child registers the kind ``"ghost"``, which the tests' own process never registers: what it
stores there is a kind the reading process does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from notipipe import BaseMessage, DatabaseConnection, MessageFactory, SMSMessage
from tests._processes import Programs

program = Programs()


@MessageFactory.register("ghost")
@dataclass(frozen=True, slots=True)
class GhostMessage(BaseMessage):
    device: str = ""
    badge: int = 0


@program
def write(target: str) -> None:
    """Store an SMS, a ghost and an SMS, committed on return."""
    with DatabaseConnection(target) as db:
        db.save_many(
            [
                SMSMessage(body="before", created_at=1000.0),
                GhostMessage("pixel-7", 3, priority=5, created_at=1001.0),
                SMSMessage(body="after", created_at=1002.0),
            ],
            durable=True,
        )


if __name__ == "__main__":
    program.main()
