"""The ``retention=`` option: a thread of the writing process that prunes every so often.

Started with the store (the first save or read), stopped by ``close()``. It deletes through the
backend's ``prune`` (small transactions on a connection of its own; a ``":memory:"`` database a
step at a time through its one connection), so it never holds the writer's lock for more than
one step. A failure (the server out of reach, a locked file) is logged and tried again next time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from notipipe._errors import StorageClosedError

__all__ = ["Retention", "interval_for"]

_log = logging.getLogger("notipipe")

#: The shortest and longest wait between two prunes.
_SHORTEST: Final = 0.5
_LONGEST: Final = 600.0


def interval_for(retention: float) -> float:
    """Seconds between prunes: a tenth of the retention, so an alert outlives it by at most that,
    between half a second and ten minutes."""
    return min(max(retention / 10, _SHORTEST), _LONGEST)


class _StoppedError(Exception):
    """Raised from the progress callback to end a prune once ``stop()`` is called."""


class Retention:
    """Prunes by calling ``prune(progress)`` now and every ``interval`` seconds, until ``stop``."""

    def __init__(self, prune: Callable[[Callable[[int], None]], int], interval: float, shown: str) -> None:
        self._prune = prune
        self._interval = interval
        self._shown = shown
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name=f"notipipe-retention:{shown}", daemon=True)
        #: Prunes done, and alerts they deleted (read by tests and metrics, no lock: ints).
        self.rounds = 0
        self.deleted = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop at the prune's next step; wait for it unless called on the thread itself."""
        self._stop.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join()

    def _check(self, _done: int) -> None:
        if self._stop.is_set():
            raise _StoppedError

    def _run(self) -> None:
        while True:
            try:
                self.deleted += self._prune(self._check)
                self.rounds += 1
                if self._failing:
                    _log.warning("notipipe: %s: pruning by retention works again", self._shown)
                    self._failing = False
            except (_StoppedError, StorageClosedError):  # close() is stopping it
                return
            except Exception as error:  # noqa: BLE001 - an outage or a lock: logged, tried next time
                if not self._failing:
                    _log.warning(
                        "notipipe: %s: pruning by retention failed (%s); retrying", self._shown, error
                    )
                    self._failing = True
            if self._stop.wait(self._interval):
                return
