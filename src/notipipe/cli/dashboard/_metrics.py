"""``/metrics``: the Prometheus text of the served database's ``metrics()`` and the dashboard's own.

``prometheus_client`` is the ``metrics`` extra: without it ``/metrics`` answers 501 saying what
to install, and the rest of the dashboard works as before. A registry of its own (never the
global default one), read at each scrape, off the event loop (a snapshot may ask the database
for its durable names' lag).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from notipipe.metrics import METRICS_HINT, MetricsSource, collector

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ["DashboardState", "metrics_endpoint"]


class DashboardState(Protocol):
    """What the dashboard reports of itself."""

    @property
    def browsers(self) -> int: ...
    @property
    def cut_off(self) -> int: ...
    def stored(self) -> dict[str, int] | None:
        """Alerts stored per kind, as the follower counted them (None: not counted yet)."""
        ...

    def follower_lag(self) -> int | None:
        """Alerts stored after the last one the follower read (None: not following yet)."""
        ...


def metrics_endpoint(
    dashboard: DashboardState, source: MetricsSource | None
) -> Callable[[Request], Awaitable[Response]]:
    """The ``/metrics`` endpoint: ``source.metrics()`` (the served connection's) and the
    dashboard's stored totals, follower lag and browsers, as Prometheus text."""
    registry: list[CollectorRegistry] = []  # made at the first scrape, then kept
    # One scrape at a time: a scrape may read the database (durable lag, the follower's lag),
    # and scrapers that overlap must not pile those reads up on the threads browsers need.
    one_at_a_time = asyncio.Lock()

    async def endpoint(_: Request) -> Response:
        try:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        except ModuleNotFoundError as error:
            text = f"notipipe serve: /metrics: {METRICS_HINT} ({error.name} is missing)\n"
            return PlainTextResponse(text, status_code=501)
        if not registry:
            registry.append(_registry(dashboard, source))
        async with one_at_a_time:
            body = await asyncio.to_thread(generate_latest, registry[0])
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})

    return endpoint


def _registry(dashboard: DashboardState, source: MetricsSource | None) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class DashboardCollector(Collector):
        def collect(self) -> Iterator[Metric]:
            stored = GaugeMetricFamily(
                "notipipe_stored_alerts",
                "Alerts stored in the database, per kind, as the dashboard counted them",
                labels=["kind"],
            )
            for kind, n in sorted((dashboard.stored() or {}).items()):
                stored.add_metric([kind], n)
            yield stored
            lag = dashboard.follower_lag()
            if lag is not None:
                yield GaugeMetricFamily(
                    "notipipe_follower_lag",
                    "Alerts stored after the last one the dashboard's follower read",
                    lag,
                )
            browsers = dashboard.browsers
            yield GaugeMetricFamily("notipipe_dashboard_browsers", "Browsers connected now", browsers)
            yield CounterMetricFamily(
                "notipipe_dashboard_cut_off", "Browsers cut off for falling behind", dashboard.cut_off
            )

    registry = CollectorRegistry(auto_describe=False)
    if source is not None:
        registry.register(collector(source))
    registry.register(DashboardCollector())
    return registry
