"""A NATS JetStream stream as the store: ``flush`` returns once the server acknowledged every
alert saved before it; ``follow()`` and durable subscribers (a durable consumer) read it back.

Run: ``NOTIPIPE_DB=nats://127.0.0.1:4222/ALERTS python examples/nats_jetstream.py``
(needs ``pip install 'notipipe[nats]'`` and a nats-server >= 2.11 with JetStream, ``-js``;
the stream is made if missing, and gets 3 alerts).
"""

import os
import sys
import threading
import uuid

from notipipe import DatabaseConnection, MessageFactory, describe_target

url = os.environ.get("NOTIPIPE_DB", "")
if not url.startswith("nats://"):
    sys.exit("set NOTIPIPE_DB to a nats://host:port/STREAM URL")
COUNT = 3


class Dashboard:
    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.all_in = threading.Event()

    def update(self, message: object) -> None:  # on the subscription's own thread
        self.subjects.append(message.subject)  # type: ignore[attr-defined]
        print(f"durable consumer: {message.subject}")  # type: ignore[attr-defined]
        if len(self.subjects) == COUNT:
            self.all_in.set()


print("target:", describe_target(url).backend)
db = DatabaseConnection()  # $NOTIPIPE_DB
dashboard = Dashboard()
db.subscribe(dashboard, durable_name=f"example-{uuid.uuid4().hex[:8]}")
db.save_many(
    MessageFactory.create_message("email", recipient="ops@example.com", subject=f"node {n} down")
    for n in range(COUNT)
)
db.flush()  # acknowledged by the server
print("stored:", db.stats().total)
print("all delivered:", dashboard.all_in.wait(timeout=60), "| in save order:", dashboard.subjects)
db.close()
