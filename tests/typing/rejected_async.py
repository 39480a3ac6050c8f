"""mypy must reject these: async observers of the wrong message type, and unknown options."""

import asyncio

from notipipe import AsyncObserver, Publisher


class IntFeed:
    async def update(self, message: int) -> None:
        print(message)


async def main() -> None:
    alerts: Publisher[str] = Publisher()
    alerts.subscribe(IntFeed())  # E: arg-type
    alerts.subscribe(IntFeed(), overflow="block")  # E: arg-type
    alerts.subscribe(IntFeed(), loop=asyncio.get_running_loop(), weak=1.5)  # E: arg-type
    feed: AsyncObserver[str] = IntFeed()  # E: assignment
    print(feed)
