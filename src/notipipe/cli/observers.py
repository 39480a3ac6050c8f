"""The observers of ``notipipe run``: a per-kind counter and a rate meter, its two dashboards.

The observers are called from every producer thread at once, so they count per thread (a
``threading.local`` dict each) and add the counts up only when asked: no shared counter, lock or
cache line on the per-message path, which matters on a free-threaded interpreter.
"""

from __future__ import annotations

import threading
import time

from notipipe import EmailMessage, SMSMessage

__all__ = ["KindCounter", "RateMeter"]


class _PerThreadCounts:
    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[dict[str, int]] = []
        self._lock = threading.Lock()  # only when a thread first counts

    def _mine(self) -> dict[str, int]:
        try:
            mine: dict[str, int] = self._local.counts
        except AttributeError:
            mine = self._local.counts = {}
            with self._lock:
                self._all.append(mine)
        return mine

    def totals(self) -> dict[str, int]:
        """Every thread's counts, added up."""
        with self._lock:
            shards = list(self._all)
        totals: dict[str, int] = {}
        for shard in shards:
            for key, n in list(shard.items()):
                totals[key] = totals.get(key, 0) + n
        return totals


class KindCounter(_PerThreadCounts):
    """A dashboard that counts the alerts it has seen, per kind (text alerts count as "text")."""

    def update(self, message: object) -> None:
        """Count ``message`` under its kind (called from the publishing threads, lock-free)."""
        counts = self._mine()
        kind = message.kind if isinstance(message, EmailMessage | SMSMessage) else "text"
        counts[kind] = counts.get(kind, 0) + 1

    def counts(self) -> dict[str, int]:
        """How many alerts of each kind this counter has seen so far."""
        return self.totals()

    def __repr__(self) -> str:
        return f"KindCounter({self.totals()})"


class RateMeter(_PerThreadCounts):
    """A dashboard that measures the alert rate; ``sample()`` it periodically for the peak."""

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[float, int] = (time.perf_counter(), 0)
        self._peak = 0.0

    def update(self, message: object) -> None:
        """Count ``message`` (called from the publishing threads, lock-free)."""
        counts = self._mine()
        counts["n"] = counts.get("n", 0) + 1

    def seen(self) -> int:
        """How many alerts this meter has seen so far."""
        return self.totals().get("n", 0)

    def sample(self) -> float:
        """The rate since the previous sample, in alerts per second."""
        now, n = time.perf_counter(), self.seen()
        then, before = self._last
        self._last = (now, n)
        rate = (n - before) / (now - then) if now > then else 0.0
        self._peak = max(self._peak, rate)
        return rate

    def peak_rate(self) -> float:
        """The highest rate ``sample()`` has measured, in alerts per second."""
        return self._peak

    def __repr__(self) -> str:
        return f"RateMeter(seen={self.seen()})"
