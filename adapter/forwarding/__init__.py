"""Delivery of accepted bundles: settings, routing (region, explicit, metahub), destinations
(``fhir-rest``, ``mhd``, ``kmehr-hub``) and background workers. The mock hub for tests and
demos is ``adapter.testing.mockhub``."""

from __future__ import annotations

from dataclasses import dataclass

from adapter.outbox.store import Outbox

from .destinations import (
    DeliveryResult,
    Destination,
    build_destinations,
    classify,
    known_kinds,
    register_kind,
)
from .metahub import LocatorAnswer, MetahubError, MetahubLocator
from .region import bundle_region, person_ssin, region_for_postal_code
from .routing import RouteDecision, Router, RoutingError
from .settings import ConfigError, Settings, load_settings
from .worker import Forwarder


@dataclass
class Forwarding:
    """What the service needs, built from one Settings: start() / close() around its lifetime."""

    settings: Settings
    outbox: Outbox
    router: Router
    forwarder: Forwarder

    def start(self) -> None:
        if self.settings.outbox.workers > 0:
            self.forwarder.start()

    def close(self) -> None:
        self.forwarder.close()
        self.router.close()
        self.outbox.close()


def build_forwarding(settings: Settings, *, outbox: Outbox | None = None) -> Forwarding:
    """Outbox + Router + Forwarder (not started) from settings."""
    box = outbox or Outbox(
        settings.db_url,
        max_attempts=settings.outbox.max_attempts,
        sqlite_synchronous=settings.outbox.sqlite_synchronous,
    )
    return Forwarding(settings, box, Router(settings), Forwarder.from_settings(settings, box))


__all__ = [
    "ConfigError",
    "DeliveryResult",
    "Destination",
    "Forwarder",
    "Forwarding",
    "LocatorAnswer",
    "MetahubError",
    "MetahubLocator",
    "RouteDecision",
    "Router",
    "RoutingError",
    "Settings",
    "build_destinations",
    "build_forwarding",
    "bundle_region",
    "classify",
    "known_kinds",
    "load_settings",
    "person_ssin",
    "region_for_postal_code",
    "register_kind",
]
