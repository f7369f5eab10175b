"""Prometheus metrics, one registry per app so several apps (tests) never collide."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _DeliveryCollector(Collector):
    """Deliveries by status, read from the outbox at scrape time (the outbox is the truth)."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("becare_deliveries", "Outbox deliveries by status", labels=["status"])
        try:
            counts = self._counts()
        except Exception:  # a scrape must not fail because the database blinked
            counts = {}
        for status, count in sorted(counts.items()):
            family.add_metric([status], float(count))
        yield family


class Metrics:
    def __init__(self, delivery_counts: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "becare_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "becare_http_request_seconds", "HTTP request latency", ["route"], buckets=_BUCKETS,
            registry=self.registry,
        )
        self.validations = Counter(
            "becare_validations", "Validations by verdict (valid / invalid / unparseable)", ["verdict"],
            registry=self.registry,
        )
        self.accepted = Counter("becare_accepted", "Bundles accepted for forwarding", registry=self.registry)
        if delivery_counts is not None:
            self.registry.register(_DeliveryCollector(delivery_counts))

    def render(self) -> bytes:
        return generate_latest(self.registry)
