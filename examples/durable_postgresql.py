"""A durable subscriber on PostgreSQL: ``subscribe(observer, durable_name=...)`` delivers every
alert any process commits, at least once, after the commit, each with its stored id; the name's
cursor is kept in the database, so a subscriber started again resumes where it stopped.

Run: ``NOTIPIPE_DB=postgresql://user@host/db python examples/durable_postgresql.py``
(needs ``pip install 'notipipe[postgresql]'`` and a PostgreSQL server; it adds 3 alerts there).
"""

import os
import sys
import threading
import uuid

from notipipe import DatabaseConnection, MessageFactory, describe_target, known_targets

url = os.environ.get("NOTIPIPE_DB", "")
if not url.startswith(("postgresql://", "postgres://")):
    sys.exit("set NOTIPIPE_DB to a postgresql:// URL")
COUNT = 3


class Dashboard:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.all_in = threading.Event()

    def update(self, message: object) -> None:  # on the subscription's own thread
        print(f"durable: id={message.id} {message.body}")  # type: ignore[attr-defined]
        self.ids.append(message.id)  # type: ignore[attr-defined]
        if len(self.ids) == COUNT:
            self.all_in.set()


target = describe_target(url)
scheme = url.split("://", 1)[0] + "://"
print("target:", target.backend, "| keeps durable names:", scheme in known_targets(durable=True).split(", "))
db = DatabaseConnection()  # $NOTIPIPE_DB
name = f"example-{uuid.uuid4().hex[:8]}"
dashboard = Dashboard()
db.subscribe(dashboard, durable_name=name)  # starts from now on
for n in range(COUNT):
    db.save(MessageFactory.create_message("sms", phone_number="+15551234567", body=f"replica {n} lagging"))
db.flush()
print(
    "all delivered:",
    dashboard.all_in.wait(timeout=60),
    "| ids ascending:",
    dashboard.ids == sorted(dashboard.ids),
)
print("subscriptions:", [s.name for s in db.subscriptions() if s.name == name])
db.close()
