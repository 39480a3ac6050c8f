"""What ``DatabaseConnection.metrics()`` returns: a frozen snapshot of counters and gauges.

Nothing here runs on the hot path. The counts it reports are kept where they were kept already
(the store's queue counters, under the lock every ``put`` takes anyway; the publisher's failure
count, under the lock every failure takes anyway) or by the writer thread once per committed
batch (``CommitTimes``); a snapshot only reads them. The names the snapshot's fields take in
Prometheus and OpenTelemetry are ``notipipe.metrics``'.
"""

from __future__ import annotations

import itertools
import math
import threading
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from notipipe._failures import ObserverFailures

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

    ``label`` is its type's qualified name (``module.Class``) and an index (``myapp.Audit#0``),
    given at the observer's first snapshot (the lowest free among the current observers of its
    type) and kept while it stays subscribed: as many labels as observers subscribed at once,
    and each counter's series one observer's for its whole subscription.
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
    #: Alerts queued, neither committed nor refused.
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
    #: the queue full, the writer stopped, or the database could not be opened at all, a wrong
    #: password say), "database" (the database refused the row).
    refused: tuple[tuple[str, int], ...]
    #: Alerts saved, neither committed nor refused by the database (the queue's depth):
    #: ``saved == committed + pending + refused["database"]`` in every snapshot.
    pending: int
    #: Transactions committed by the writer (each holds a batch of alerts).
    batches: int
    #: Seconds from the writer taking a batch off the queue (before its rows are built) to its
    #: commit, retries included.
    commit_seconds: LatencyHistogram
    #: ``update`` calls that raised, of every observer ever subscribed (``Publisher.failures``;
    #: a durable subscriber's are its error handler's, not counted here).
    failures: int
    #: Each current observer's failures and drops, read at the same instant as ``failures``.
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


#: Held while labels are given: two snapshots at once must not give one label twice.
_LABELS = threading.Lock()


def observer_labels(
    observers: tuple[tuple[ObserverFailures, object, int, int], ...],
) -> tuple[ObserverMetrics, ...]:
    """``ObserverMetrics`` of ``(reporter, observer, failures, dropped)`` in subscription order.

    Each observer is labelled by its type and an index, given at its first snapshot (the lowest
    free among the current observers of that type) and kept while it stays subscribed: a
    counter's series belongs to one observer for its whole life, never passed to another when
    one before it leaves; a label freed by an unsubscribe may be given to a later observer,
    which starts from 0 (a counter reset, as monitoring expects).
    """
    with _LABELS:
        taken: dict[str, set[int]] = {}
        for reporter, _, _, _ in observers:
            if reporter.label is not None:
                taken.setdefault(reporter.label[0], set()).add(reporter.label[1])
        for reporter, observer, _, _ in observers:
            if reporter.label is None:
                cls = type(observer)
                name = f"{cls.__module__}.{cls.__qualname__}"
                used = taken.setdefault(name, set())
                index = next(i for i in itertools.count() if i not in used)
                used.add(index)
                reporter.label = (name, index)
        labels = [f"{r.label[0]}#{r.label[1]}" for r, _, _, _ in observers if r.label is not None]
    return tuple(
        ObserverMetrics(label, failures, dropped)
        for label, (_, _, failures, dropped) in zip(labels, observers, strict=True)
    )
