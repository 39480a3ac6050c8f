"""An async observer: ``async def update`` is awaited on the asyncio loop it subscribed on,
while any thread may publish.

Run: ``python examples/async_observer.py`` (needs notipipe only).
"""

import asyncio
import threading

from notipipe import DatabaseConnection


class Feed:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.got: list[object] = []
        self.done = asyncio.Event()

    async def update(self, message: object) -> None:
        self.got.append(message)
        print(f"feed on the loop's thread={threading.current_thread() is threading.main_thread()}: {message}")
        if len(self.got) == self.expected:
            self.done.set()


async def main() -> None:
    db = DatabaseConnection()
    feed = Feed(expected=3)
    db.subscribe(feed)  # on the running loop

    def publish() -> None:
        for i in range(3):
            db.notify_all(f"alert {i}")

    publisher = threading.Thread(target=publish)
    publisher.start()
    await asyncio.wait_for(feed.done.wait(), timeout=30)
    publisher.join()
    db.unsubscribe(feed)
    print("received in order:", feed.got == ["alert 0", "alert 1", "alert 2"])


asyncio.run(main())
