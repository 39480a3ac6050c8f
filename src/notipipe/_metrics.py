"""What ``DatabaseConnection.metrics()`` returns: a frozen snapshot of counters and gauges.

Nothing here runs on the hot path. The counts it reports are kept where they were kept already
(the store's queue counters, under the lock every ``put`` takes anyway; the publisher's failure
count, under the lock every failure takes anyway) or by the writer thread once per committed
batch (``CommitTimes``); a snapshot only reads them. The names the snapshot's fields take in
Prometheus and OpenTelemetry are ``notipipe.metrics``'.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

__all__ = [
    "COMMIT_BUCKETS",
    "REFUSAL_REASONS",
    "CommitTimes",
    "DurableLag",
    "LatencyHistogram",
    "Metrics",
    "ObserverMetrics",
    "StoreCounters",
    "observer_labels",
]

#: Upper bounds (seconds) of the commit-latency histogram's buckets; the last catches the rest.
COMMIT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    math.inf,
)

#: Why ``save``/``save_many`` refused alerts, or the database did (``Metrics.refused``' keys).
REFUSAL_REASONS: tuple[str, ...] = ("invalid", "closed", "failing", "database")


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """A histogram as Prometheus keeps one: ``counts[i]`` observations took at most
    ``bounds[i]`` seconds (cumulative; the last bound is infinity, so ``counts[-1]`` is every
    observation), ``sum`` seconds in all."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        """How many observations there were."""
        return self.counts[-1] if self.counts else 0


@dataclass(frozen=True, slots=True)
class ObserverMetrics:
    """One subscribed observer's failures and drops.

    ``label`` is its type's qualified name (``module.Class``) and its index among the current
    subscribers of that type, in subscription order (``myapp.Audit#0``): as many labels as
    observers subscribed at once, whatever comes and goes.
    """

    label: str
    #: ``update`` calls that raised.
    failures: int
    #: Messages the overflow policy dropped (an async observer's; 0 for a plain one).
    dropped: int


@dataclass(frozen=True, slots=True)
class DurableLag:
    """One durable name of the database (``DatabaseConnection.subscriptions()``, read at the
    snapshot)."""

    name: str
    #: Alerts stored and not yet acknowledged (None where the backend cannot count them cheaply).
    lag: int | None
    #: Seconds since the oldest unacknowledged alert was created (None: none, or not known).
    oldest_age: float | None
    #: Whether a process holds the name now.
    active: bool


@dataclass(frozen=True, slots=True)
class StoreCounters:
    """What the store's writer and queue have counted since the store opened."""

    #: Alerts accepted by ``save``/``save_many`` (queued for the writer).
    saved: int = 0
    #: Alerts committed to the database.
    committed: int = 0
    #: Alerts the database refused (dropped alone; ``flush`` reports them).
    refused: int = 0
    #: Alerts queued and not yet committed.
    pending: int = 0
    #: Transactions committed by the writer.
    batches: int = 0
    commit_seconds: LatencyHistogram = LatencyHistogram(COMMIT_BUCKETS, (0,) * len(COMMIT_BUCKETS), 0.0)


@dataclass(frozen=True, slots=True)
class Metrics:
    """A snapshot of one ``DatabaseConnection``'s counters (since it opened) and gauges (now).

    The same fields on every backend; ``notipipe.metrics`` gives them their Prometheus and
    OpenTelemetry names.
    """

    #: The backend's name ("sqlite", "postgresql", "nats").
    backend: str
    #: Alerts accepted by ``save``/``save_many`` (queued to be stored).
    saved: int
    #: Alerts committed to the database (they survive ``kill -9``).
    committed: int
    #: Alerts refused, by reason: "invalid" (not a storable alert), "closed" (saved to a closed
    #: connection), "failing" (the writer could not take them: the database kept failing with
    #: the queue full, or the writer stopped), "database" (the database refused the row).
    refused: tuple[tuple[str, int], ...]
    #: Alerts saved and not yet committed (the queue's depth).
    pending: int
    #: Transactions committed by the writer (each holds a batch of alerts).
    batches: int
    #: Seconds from the writer taking a batch off the queue to its commit (retries included).
    commit_seconds: LatencyHistogram
    #: ``update`` calls that raised, of every observer ever subscribed (``Publisher.failures``).
    failures: int
    #: Each current observer's failures and drops.
    observers: tuple[ObserverMetrics, ...]
    #: Each durable name's lag (empty where the backend keeps no durable names).
    durable: tuple[DurableLag, ...]

    @property
    def refused_total(self) -> int:
        """Alerts refused, for every reason."""
        return sum(n for _, n in self.refused)


class CommitTimes:
    """The commit-latency histogram as the writer thread fills it (under the store's lock, once
    per committed batch): a count per bucket, not yet cumulative, and the sum."""

    __slots__ = ("_counts", "_sum")

    def __init__(self) -> None:
        self._counts = [0] * len(COMMIT_BUCKETS)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect_left(COMMIT_BUCKETS, seconds)] += 1
        self._sum += seconds

    def snapshot(self) -> LatencyHistogram:
        cumulative, total = [], 0
        for n in self._counts:
            total += n
            cumulative.append(total)
        return LatencyHistogram(COMMIT_BUCKETS, tuple(cumulative), self._sum)


def observer_labels(observers: tuple[tuple[object, int, int], ...]) -> tuple[ObserverMetrics, ...]:
    """``ObserverMetrics`` of ``(observer, failures, dropped)`` in subscription order, each
    labelled by its type and its index among the observers of that type."""
    seen: dict[str, int] = {}
    found = []
    for observer, failures, dropped in observers:
        cls = type(observer)
        name = f"{cls.__module__}.{cls.__qualname__}"
        index = seen.get(name, 0)
        seen[name] = index + 1
        found.append(ObserverMetrics(f"{name}#{index}", failures, dropped))
    return tuple(found)
