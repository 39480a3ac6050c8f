"""Helpers for the asyncio tests: an event loop running in its own thread, and observers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

#: Seconds a test waits for something that must happen before it calls it a failure (a hang).
PATIENCE = 30.0


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the wake-ups other threads ask of it."""

    def __init__(self) -> None:
        super().__init__()
        self.wakeups = 0

    def call_soon_threadsafe(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, **kwargs: Any
    ) -> asyncio.Handle:
        self.wakeups += 1
        return super().call_soon_threadsafe(callback, *args, **kwargs)


class LoopThread:
    """A ``CountingLoop`` running forever in a daemon thread, until ``stop``."""

    def __init__(self) -> None:
        self.loop = CountingLoop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.run(_nothing())  # returns once the loop is running

    def run[R](self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(PATIENCE)

    def block(self) -> threading.Event:
        """Keep the loop busy in a callback until the returned event is set."""
        gate, busy = threading.Event(), threading.Event()

        def hold() -> None:
            busy.set()
            gate.wait(PATIENCE)

        self.loop.call_soon_threadsafe(hold)
        assert busy.wait(PATIENCE)
        return gate

    def stop(self) -> None:
        """Stop the loop, finish its tasks (cancelled, as ``asyncio.run`` does) and close it."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            # Stops the loop only on its thread: a loop the test stopped already may leave this
            # callback queued, and run_until_complete below must not run it.
            thread = self._thread

            def stop_there() -> None:
                if threading.current_thread() is thread:
                    self.loop.stop()

            self.loop.call_soon_threadsafe(stop_there)
            self._thread.join(PATIENCE)
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()


async def _nothing() -> None:
    return None


@contextmanager
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.stop()


class Recorder:
    """An async observer that records what it is given; ``done`` is set at ``expected`` messages."""

    def __init__(self, expected: int = 0) -> None:
        self.got: list[Any] = []
        self.expected = expected
        self.done = threading.Event()
        self.active = 0
        self.overlapped = False  # two updates ran at once: delivery is not one at a time

    async def update(self, message: Any, /) -> None:
        self.active += 1
        if self.active > 1:
            self.overlapped = True
        await asyncio.sleep(0)  # give a concurrent delivery the chance to show itself
        self.got.append(message)
        self.active -= 1
        if len(self.got) >= self.expected:
            self.done.set()
