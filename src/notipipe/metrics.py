"""``DatabaseConnection.metrics()`` where monitoring looks for it: Prometheus and OpenTelemetry.

Both read the same snapshot (``notipipe.Metrics``) when they are scraped or collected, and give
its fields the same names on every backend (the table below). Neither library is a dependency
of notipipe: each is imported when its function is first called.

* Prometheus (``pip install 'notipipe[metrics]'``: ``prometheus_client``): ``collector(db)``
  is a collector to register in a ``CollectorRegistry`` (your own, or the default one your
  application already serves); ``notipipe serve`` serves one at ``/metrics``.
* OpenTelemetry (``opentelemetry-api``, and an SDK to export): ``instrument(db)`` registers
  observable instruments on a meter of ``meter_provider`` (default: the global one).

Each ``Metrics`` field, as Prometheus and OpenTelemetry name it:

- ``saved``: ``notipipe_alerts_saved_total``, ``notipipe.alerts.saved``
- ``committed``: ``notipipe_alerts_committed_total``, ``notipipe.alerts.committed``
- ``refused``: ``notipipe_alerts_refused_total{reason}``, ``notipipe.alerts.refused``
- ``pending``: ``notipipe_queue_depth``, ``notipipe.queue.depth``
- ``batches``: ``notipipe_batches_committed_total``, ``notipipe.batches.committed``
- ``commit_seconds``: ``notipipe_commit_duration_seconds``, ``notipipe.commit.duration.*``
- ``failures``: ``notipipe_publisher_failures_total``, ``notipipe.publisher.failures``
- ``observers``: ``notipipe_observer_failures_total{observer}``,
  ``notipipe_observer_dropped_total{observer}``, ``notipipe.observer.failures``,
  ``notipipe.observer.dropped``
- ``durable``: ``notipipe_durable_lag{name}``, ``notipipe_durable_oldest_age_seconds{name}``,
  ``notipipe_durable_active{name}``, ``notipipe.durable.lag``, ``notipipe.durable.oldest_age``,
  ``notipipe.durable.active``

The commit-latency histogram is a Prometheus histogram (``_bucket{le}``, ``_sum``, ``_count``);
OpenTelemetry has no asynchronous histogram, so it is three observable counters there:
``notipipe.commit.duration.bucket`` (attribute ``le``, cumulative), ``.sum`` and ``.count``.
Per-observer series carry the label (attribute) ``observer`` (``ObserverMetrics.label``),
durable ones ``name``, refusals ``reason``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from notipipe._metrics import REFUSAL_REASONS, Metrics, StoreCounters

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from prometheus_client.registry import Collector

__all__ = ["METRICS_HINT", "Family", "MetricsSource", "collector", "instrument", "samples"]

#: What to install for ``collector`` (and ``notipipe serve``'s ``/metrics``).
METRICS_HINT = "Prometheus metrics need the metrics extra: pip install 'notipipe[metrics]'"

#: The commit-latency histogram's Prometheus name.
_HISTOGRAM = "notipipe_commit_duration_seconds"


class MetricsSource(Protocol):
    """What the exporters read: a ``DatabaseConnection``, or anything with its ``metrics()``."""

    def metrics(self, *, durable: bool = True) -> Metrics: ...


type Labels = tuple[tuple[str, str], ...]
type Kind = Literal["counter", "gauge"]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric as both exporters name it, and its samples in a snapshot."""

    #: The Prometheus name (a counter's without its ``_total``).
    name: str
    #: The OpenTelemetry instrument's name.
    otel: str
    kind: Kind
    unit: str
    help: str
    #: ``(labels, value)`` of each series.
    samples: tuple[tuple[Labels, float], ...]


def _one(value: float) -> tuple[tuple[Labels, float], ...]:
    return (((), value),)


def samples(m: Metrics) -> list[Family]:
    """Every metric of the snapshot ``m``, by name, with its series (the histogram's too, as
    ``notipipe_commit_duration_seconds_bucket`` and so on: the flat form both exporters read)."""
    h = m.commit_seconds
    observers = m.observers
    return [
        Family("notipipe_alerts_saved", "notipipe.alerts.saved", "counter", "{alert}",
               "Alerts accepted by save/save_many", _one(m.saved)),
        Family("notipipe_alerts_committed", "notipipe.alerts.committed", "counter", "{alert}",
               "Alerts committed to the database", _one(m.committed)),
        Family("notipipe_alerts_refused", "notipipe.alerts.refused", "counter", "{alert}",
               "Alerts refused, by reason (invalid, closed, failing, database)",
               tuple(((("reason", r),), n) for r, n in m.refused)),
        Family("notipipe_queue_depth", "notipipe.queue.depth", "gauge", "{alert}",
               "Alerts saved, neither committed nor refused", _one(m.pending)),
        Family("notipipe_batches_committed", "notipipe.batches.committed", "counter", "{batch}",
               "Transactions committed by the writer", _one(m.batches)),
        Family(f"{_HISTOGRAM}_bucket", "notipipe.commit.duration.bucket", "counter", "{batch}",
               "Batches committed within le seconds of being taken off the queue (cumulative)",
               tuple(((("le", _bound(b)),), n) for b, n in zip(h.bounds, h.counts, strict=True))),
        Family(f"{_HISTOGRAM}_sum", "notipipe.commit.duration.sum", "counter", "s",
               "Seconds the committed batches took, in all", _one(h.sum)),
        Family(f"{_HISTOGRAM}_count", "notipipe.commit.duration.count", "counter", "{batch}",
               "Batches committed (timed)", _one(h.count)),
        Family("notipipe_publisher_failures", "notipipe.publisher.failures", "counter", "{failure}",
               "update calls that raised, of every observer ever subscribed", _one(m.failures)),
        Family("notipipe_observer_failures", "notipipe.observer.failures", "counter", "{failure}",
               "update calls that raised, per current observer",
               tuple(((("observer", o.label),), o.failures) for o in observers)),
        Family("notipipe_observer_dropped", "notipipe.observer.dropped", "counter", "{alert}",
               "Messages an async observer's overflow policy dropped, per current observer",
               tuple(((("observer", o.label),), o.dropped) for o in observers)),
        Family("notipipe_durable_lag", "notipipe.durable.lag", "gauge", "{alert}",
               "Alerts stored and not yet acknowledged, per durable name",
               tuple(((("name", d.name),), d.lag) for d in m.durable if d.lag is not None)),
        Family("notipipe_durable_oldest_age_seconds", "notipipe.durable.oldest_age", "gauge", "s",
               "Seconds since the oldest unacknowledged alert was created, per durable name",
               tuple(((("name", d.name),), d.oldest_age) for d in m.durable if d.oldest_age is not None)),
        Family("notipipe_durable_active", "notipipe.durable.active", "gauge", "1",
               "Whether a process holds the durable name now",
               tuple(((("name", d.name),), int(d.active)) for d in m.durable)),
    ]  # fmt: skip


def _bound(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


# -- Prometheus ----------------------------------------------------------------------------------


def collector(source: MetricsSource) -> Collector:
    """A Prometheus collector of ``source.metrics()`` (a ``DatabaseConnection``), read at each
    scrape: register it in a ``prometheus_client.CollectorRegistry``.

    ``ModuleNotFoundError`` (naming the extra) if ``prometheus_client`` is not installed.
    """
    try:
        from prometheus_client.core import HistogramMetricFamily, Metric
        from prometheus_client.registry import Collector
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"{METRICS_HINT} ({error})", name=error.name) from None

    class SnapshotCollector(Collector):
        """Reads ``source.metrics()`` at each scrape; keeps nothing between scrapes."""

        def collect(self) -> Iterator[Metric]:
            m = source.metrics()
            for family in samples(m):
                if family.name.startswith(_HISTOGRAM):
                    continue  # one histogram below, from the snapshot itself
                metric = Metric(family.name, family.help, family.kind)
                suffix = "_total" if family.kind == "counter" else ""
                for labels, value in family.samples:
                    metric.add_sample(family.name + suffix, dict(labels), value)
                yield metric
            h = m.commit_seconds
            yield HistogramMetricFamily(
                _HISTOGRAM,
                "Seconds from the writer taking a batch off the queue to its commit (retries included)",
                buckets=[(_bound(b), float(n)) for b, n in zip(h.bounds, h.counts, strict=True)],
                sum_value=h.sum,
            )

    return SnapshotCollector()


#: A snapshot of nothing: the families every snapshot has, to create the instruments from.
_EMPTY = Metrics(
    backend="",
    saved=0,
    committed=0,
    refused=tuple((reason, 0) for reason in REFUSAL_REASONS),
    pending=0,
    batches=0,
    commit_seconds=StoreCounters().commit_seconds,
    failures=0,
    observers=(),
    durable=(),
)


# -- OpenTelemetry ---------------------------------------------------------------------------------


def instrument(source: MetricsSource, meter_provider: MeterProvider | None = None) -> None:
    """Register OpenTelemetry observable instruments reading ``source.metrics()`` (a
    ``DatabaseConnection``) at each collection, on the meter ``notipipe`` of ``meter_provider``
    (default: the global provider). Counters are observable counters, gauges observable
    gauges; their names are in this module's table. Call it once per connection: OpenTelemetry
    cannot remove an instrument, and a second call would register the same names again.

    ``ModuleNotFoundError`` if ``opentelemetry-api`` is not installed.
    """
    from opentelemetry import metrics as otel

    from notipipe._version import __version__

    meter = otel.get_meter("notipipe", __version__, meter_provider)
    collection = _Collection(source)
    for i, family in enumerate(samples(_EMPTY)):
        make = meter.create_observable_counter if family.kind == "counter" else meter.create_observable_gauge
        observe = _callback(collection, family.otel, first=i == 0)
        make(family.otel, callbacks=[observe], unit=family.unit, description=family.help)


class _Collection:
    """One snapshot for all the instruments of a collection: OpenTelemetry calls their callbacks
    one by one, in the order the instruments were made, so the first one takes the snapshot and
    the others read it. A collection's figures then agree with each other (committed never
    above saved), and the database is asked for its durable names' lag once."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source
        self._lock = threading.Lock()  # two readers may collect at once
        self._families: dict[str, Family] | None = None

    def take(self) -> None:
        families = {family.otel: family for family in samples(self._source.metrics())}
        with self._lock:
            self._families = families

    def family(self, otel_name: str) -> Family | None:
        with self._lock:
            families = self._families
        if families is None:
            self.take()
            return self.family(otel_name)
        return families.get(otel_name)


def _callback(
    collection: _Collection, otel_name: str, *, first: bool
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    from opentelemetry.metrics import Observation

    def observe(_: CallbackOptions) -> Sequence[Observation]:
        if first:
            collection.take()
        family = collection.family(otel_name)
        if family is None:
            return []
        return [Observation(value, dict(labels)) for labels, value in family.samples]

    return observe
