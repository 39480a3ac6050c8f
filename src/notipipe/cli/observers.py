"""The built-in observers of ``notipipe run`` and its synthetic alert producer.

The observers are called from every producer thread at once, so they count per thread (a
``threading.local`` dict each) and add the counts up only when asked: no shared counter, lock or
cache line on the per-message path, which matters on a free-threaded interpreter.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from notipipe._database import DatabaseConnection
from notipipe._factory import MessageFactory
from notipipe._select import EmailMessage, SMSMessage

__all__ = ["KindCounter", "RateMeter", "RunPlan", "produce_alerts"]


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
        counts = self._mine()
        kind = message.kind if isinstance(message, EmailMessage | SMSMessage) else "text"
        counts[kind] = counts.get(kind, 0) + 1

    def counts(self) -> dict[str, int]:
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
        counts = self._mine()
        counts["n"] = counts.get("n", 0) + 1

    def seen(self) -> int:
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
        return self._peak

    def __repr__(self) -> str:
        return f"RateMeter(seen={self.seen()})"


_RECIPIENTS = [
    f"{team}@{host}.example.com"
    for team in ("ops", "dba", "sre", "noc", "oncall")
    for host in ("eu", "us", "ap")
]
_PHONES = [f"+1555{n:07d}" for n in range(0, 15_000, 1_000)]
_CHECKS = ["cpu", "disk", "memory", "latency", "errors", "queue depth"]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What ``notipipe run`` produces: ``total`` alerts from ``threads`` threads, saved in chunks."""

    total: int
    threads: int
    mix: dict[str, float]
    chunk: int
    seed: int


def produce_alerts(
    db: DatabaseConnection, index: int, plan: RunPlan, produced: list[int], errors: list[BaseException]
) -> None:
    """Producer thread ``index``: create its share of the plan's alerts and save them.

    Progress goes to ``produced[index]`` (one slot per thread, so no lock); an exception is
    appended to ``errors`` for the main thread to raise.
    """
    try:
        threads, chunk = plan.threads, plan.chunk
        share = plan.total // threads + (1 if index < plan.total % threads else 0)
        rng = random.Random(plan.seed * 1_000_003 + index)
        email_share = plan.mix.get("email", 0.0) / sum(plan.mix.values())
        create = MessageFactory.create_message
        done = 0
        while done < share:
            n = min(chunk, share - done)
            batch: list[EmailMessage | SMSMessage] = []
            for i in range(done, done + n):
                check = _CHECKS[i % len(_CHECKS)]
                level = 50 + i % 50
                priority = 1 + i % 5
                if rng.random() < email_share:
                    batch.append(
                        create(
                            "email",
                            recipient=_RECIPIENTS[i % len(_RECIPIENTS)],
                            subject=f"{check} at {level}% on host-{i % 97}",
                            body=f"producer {index} alert {i}: {check} crossed {level}%",
                            priority=priority,
                        )
                    )
                else:
                    batch.append(
                        create(
                            "sms",
                            phone_number=_PHONES[i % len(_PHONES)],
                            body=f"{check} {level}% host-{i % 97}",
                            priority=priority,
                        )
                    )
            db.save_many(batch)
            done += n
            produced[index] = done
    except BaseException as error:  # noqa: BLE001 - re-raised by the main thread
        errors.append(error)
