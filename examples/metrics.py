"""Metrics: ``db.metrics()`` is a frozen snapshot of counters and gauges (the same on every
backend); ``notipipe.metrics`` exports it as Prometheus text and, where ``opentelemetry-api`` is
installed, as OpenTelemetry instruments. ``notipipe serve`` answers ``/metrics`` with the same.

Run: ``python examples/metrics.py`` (needs ``pip install 'notipipe[metrics]' opentelemetry-sdk``;
an in-memory database).
"""

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from prometheus_client import CollectorRegistry, generate_latest

from notipipe import DatabaseConnection, SMSMessage
from notipipe.metrics import collector, instrument


class Pager:
    """An observer that fails: counted per observer, by its type and index."""

    def update(self, message: object) -> None:
        raise ConnectionError("pager gateway down")


with DatabaseConnection(":memory:") as db:
    db.error_handler = lambda observer, message, error: None  # counted; not logged here
    db.subscribe(Pager())
    db.save_many(SMSMessage("+15551234567", f"disk {n}%") for n in range(90, 100))
    db.flush()

    m = db.metrics()
    print("saved", m.saved, "committed", m.committed, "pending", m.pending)
    print("refused", dict(m.refused))
    print("batches timed", m.commit_seconds.count == m.batches)
    print("observers", [(o.label, o.failures) for o in m.observers])

    # Prometheus: a registry of your own (or the one your application serves already).
    registry = CollectorRegistry()
    registry.register(collector(db))
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(("notipipe_alerts_saved_total", "notipipe_observer_failures_total")):
            print(line)

    # OpenTelemetry: observable instruments on your meter provider (here one read in memory).
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument(db, provider)
    data = reader.get_metrics_data()
    assert data is not None
    for scope in data.resource_metrics[0].scope_metrics:
        for metric in scope.metrics:
            if metric.name == "notipipe.alerts.committed":
                print(
                    metric.name, [p.value for p in metric.data.data_points if isinstance(p, NumberDataPoint)]
                )
    provider.shutdown()
